"""ACT: Action Chunking with Transformers (book ch. 17, 20), built on `core`."""
