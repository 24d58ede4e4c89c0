"""A run's logs: TensorBoard event files, metrics.jsonl and a progress bar.

Every logged step writes one JSON object per line to `workdir/metrics.jsonl`, e.g.
{"step": 100, "train/loss": 0.21, "train/steps_per_second": 480.0, ...}, and the same scalars
to TensorBoard event files in the workdir (`tensorboard --logdir runs`). The progress bar shows
the step, the loss, steps/s and the time left.

Resuming from the checkpoint of step s, the records of steps after s (logged by the killed
run before it died, and about to be logged again) are dropped from metrics.jsonl, and
TensorBoard is told to purge them, so both hold one consistent history.

Only process 0 of a multi-process run writes; the others log nothing.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import tensorboardX
from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"


def _complete_records(text: str) -> list[dict]:
    """The records of a metrics.jsonl text. A last line without its newline is the torn write
    of a killed run and is left out."""
    lines = text.split("\n")
    return [json.loads(line) for line in lines[:-1] if line.strip()]


def read_metrics(workdir: str | Path) -> list[dict]:
    """The records of `workdir/metrics.jsonl`, in file order ([] if there is none)."""
    path = Path(workdir) / METRICS_FILE
    return _complete_records(path.read_text()) if path.exists() else []


def _drop_records_after(path: Path, step: int) -> None:
    """Rewrites metrics.jsonl without the records of steps > `step` (atomically)."""
    if not path.exists():
        return
    kept = [record for record in _complete_records(path.read_text()) if record["step"] <= step]
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text("".join(json.dumps(record) + "\n" for record in kept))
    os.replace(temporary, path)


def _json_value(value: float) -> float | str:
    """JSON has no NaN or inf: those are written as the strings "nan", "inf", "-inf"."""
    return value if math.isfinite(value) else str(value)


class RunLog:
    """Writes a run's metrics and shows its progress.

    Args:
      workdir: the run's directory.
      start_step: the step the run starts (or resumes) from.
      total_steps: the step it ends at.
      enabled: False in processes other than 0: nothing is written or shown.
      progress: show the progress bar.
    """

    def __init__(
        self,
        workdir: str | Path,
        *,
        start_step: int,
        total_steps: int,
        enabled: bool = True,
        progress: bool = True,
    ):
        self.enabled = enabled
        self._path = Path(workdir) / METRICS_FILE
        self._writer = None
        self._bar = None
        if not enabled:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        _drop_records_after(self._path, start_step)
        self._writer = tensorboardX.SummaryWriter(
            str(workdir),
            purge_step=start_step + 1,
            # distinct and in order for a resume within the same second (files sort by name)
            filename_suffix=f".from{start_step:010d}",
        )
        self._bar = tqdm(
            total=total_steps,
            initial=start_step,
            unit="step",
            dynamic_ncols=True,
            disable=not progress,
        )

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        """Records scalars (e.g. {"train/loss": 0.2, "val/loss": 0.3}) at `step`."""
        if not self.enabled:
            return
        record = {"step": step, **{k: _json_value(float(v)) for k, v in metrics.items()}}
        with self._path.open("a") as file:
            file.write(json.dumps(record) + "\n")
        for name, value in metrics.items():
            self._writer.add_scalar(name, float(value), step)
        self._writer.flush()

    def write_text(self, tag: str, text: str) -> None:
        """A text summary (e.g. the config) in TensorBoard's Text tab."""
        if self.enabled:
            self._writer.add_text(tag, text, 0)

    def advance(self, step: int, loss: float | None = None) -> None:
        """Moves the progress bar to `step`, showing the latest loss."""
        if self._bar is None:
            return
        self._bar.update(step - self._bar.n)
        if loss is not None:
            self._bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    def message(self, text: str) -> None:
        """Prints a line without breaking the progress bar."""
        if self.enabled:
            tqdm.write(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
