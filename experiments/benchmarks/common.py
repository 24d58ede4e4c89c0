"""What the benchmarks share: the machine a figure was measured on, and writing the figures."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def machine_info(**versions: str) -> dict:
    """CPU count, Python version, the given library versions and the 1/5/15-minute load
    average at the time of the call (other jobs on a shared machine slow every figure)."""
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        **versions,
        "load_average_1_5_15_min": os.getloadavg(),
    }


def write_results(results: dict, path: Path) -> None:
    """Writes `results` as indented JSON to `path` (parents created) and says where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {path}")
