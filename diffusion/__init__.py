"""Diffusion Policy (book ch. 18). Built on `core`; arrives with its issue."""
