"""Runs the book's studies and writes their plots and figures.

python -m experiments.studies <name> [<name> ...]
python -m experiments.studies --all [--out results/studies] [--tiny]
"""

import argparse
import importlib
import pkgutil
import time
from pathlib import Path

import experiments.studies as studies_package
from experiments.studies import common

NOT_STUDIES = {"common"}


def study_names() -> list[str]:
    names = (info.name for info in pkgutil.iter_modules(studies_package.__path__))
    return sorted(n for n in names if n not in NOT_STUDIES and not n.startswith("_"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", choices=[[], *study_names()], metavar="name")
    parser.add_argument("--all", action="store_true", help="run every study")
    parser.add_argument("--out", type=Path, default=Path("results/studies"))
    parser.add_argument("--tiny", action="store_true", help="the tests' size: fast, rough")
    args = parser.parse_args()
    names = study_names() if args.all else args.names
    if not names:
        parser.error(f"name a study or pass --all; studies: {', '.join(study_names())}")

    for name in names:
        start = time.perf_counter()
        module = importlib.import_module(f"experiments.studies.{name}")
        result = module.run(tiny=args.tiny)
        png_path, json_path = common.write(name, result, args.out)
        seconds = time.perf_counter() - start
        print(f"[{name}] {result.finding}\n  -> {png_path}, {json_path} ({seconds:.1f} s)")


if __name__ == "__main__":
    main()
