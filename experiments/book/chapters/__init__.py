"""One module per chapter group; each exposes `records() -> list[Record]`."""
