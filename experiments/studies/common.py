"""What a study returns and how it is written to disk."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # studies write files; they never open windows

from matplotlib.figure import Figure


@dataclasses.dataclass
class StudyResult:
    """The outcome of one study.

    Attributes:
      claim: what the book claims, with its section (one sentence).
      finding: what we measured, with the key figures (one sentence; says so where the book
        is wrong).
      figures: JSON-serializable measurements (lists, floats, ints, strings).
      figure: the plot.
    """

    claim: str
    finding: str
    figures: dict[str, Any]
    figure: Figure


def write(name: str, result: StudyResult, out_dir: Path) -> tuple[Path, Path]:
    """Writes `<name>.png` and `<name>.json` (claim, finding and figures) to `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png_path, json_path = out_dir / f"{name}.png", out_dir / f"{name}.json"
    result.figure.savefig(png_path, dpi=120, bbox_inches="tight")
    payload = {"study": name, "claim": result.claim, "finding": result.finding}
    payload["figures"] = result.figures
    json_path.write_text(json.dumps(payload, indent=1) + "\n")
    return png_path, json_path
