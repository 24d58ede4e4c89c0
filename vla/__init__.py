"""Vision-Language-Action models (book ch. 19). Built on `core`; arrives with its issue."""
