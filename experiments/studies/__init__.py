"""The book's studies as small reproducible experiments (chapters 9, 13, 15), each with a plot.

Each module here (other than `common`) is one study and exposes `run(tiny: bool = False) ->
StudyResult`; `python -m experiments.studies <name>` (or `--all`) writes
`results/studies/<name>.png` and `<name>.json`. `tiny=True` runs the same code at a size the
tests can afford.
"""
