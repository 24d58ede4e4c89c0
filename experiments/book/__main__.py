"""Recomputes every worked number of the book and writes the reproduction report.

    python -m experiments.book [--out results/book] [--workers 2]

Runs in float64 so that the comparison with the printed digits is not blurred by float32.
"""

import argparse
import os
import time
from pathlib import Path

import jax


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/book"), help="output directory")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="processes to run the chapters in (default: 2, or 1 on a one-core machine)",
    )
    args = parser.parse_args()
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")

    jax.config.update("jax_enable_x64", True)
    from experiments.book import report  # after x64 is on, so module-level arrays are float64

    start = time.perf_counter()
    collected = report.collect(workers=args.workers)
    summary = report.write(args.out, collected)
    seconds = time.perf_counter() - start
    print(report.summary_line(summary))
    written = f"{args.out / 'book_report.md'} and {args.out / 'book_report.json'}"
    print(f"Wrote {written} in {seconds:.1f} s")


if __name__ == "__main__":
    main()
