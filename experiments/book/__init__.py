"""The book reproduction report: every worked number recomputed with the library."""
