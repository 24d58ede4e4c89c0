"""Writes the golden parity fixtures (needs the `parity` extra: PyTorch and friends).

    python -m experiments.parity                 # every reference
    python -m experiments.parity --only resnet   # one of them

Each module `experiments/parity/<name>.py` exposes `generate() -> dict[str, np.ndarray]`; the
arrays are saved to `tests/fixtures/parity/<name>.npz`.
"""

import argparse
import importlib
import pkgutil
from pathlib import Path

import numpy as np

import experiments.parity as parity_package
from experiments.parity.common import FIXTURE_DIR

# lerobot_dataset writes a whole dataset directory and has its own main().
NOT_REFERENCES = {"common", "lerobot_dataset"}


def reference_names() -> list[str]:
    names = (info.name for info in pkgutil.iter_modules(parity_package.__path__))
    return sorted(n for n in names if n not in NOT_REFERENCES and not n.startswith("_"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=reference_names(), action="append")
    parser.add_argument("--out", type=Path, default=Path(FIXTURE_DIR))
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or reference_names():
        module = importlib.import_module(f"experiments.parity.{name}")
        arrays = module.generate()
        path = args.out / f"{name}.npz"
        np.savez_compressed(path, **arrays)
        size_kb = path.stat().st_size / 1024
        print(f"{name}: {len(arrays)} arrays -> {path} ({size_kb:.0f} KiB)")


if __name__ == "__main__":
    main()
