"""Run logs: metrics.jsonl and TensorBoard event files, read back with TensorBoard itself."""

import math

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from core.training.logs import RunLog, read_metrics


def _tensorboard_scalars(workdir, tag: str) -> list[tuple[int, float]]:
    accumulator = EventAccumulator(str(workdir))
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def test_logged_steps_are_in_metrics_jsonl_and_tensorboard(tmp_path):
    with RunLog(tmp_path, start_step=0, total_steps=4, progress=False) as log:
        for step in (2, 4):
            log.write(step, {"train/loss": 1.0 / step, "train/steps_per_second": 100.0})
        log.write(4, {"val/loss": 0.75})
    assert read_metrics(tmp_path) == [
        {"step": 2, "train/loss": 0.5, "train/steps_per_second": 100.0},
        {"step": 4, "train/loss": 0.25, "train/steps_per_second": 100.0},
        {"step": 4, "val/loss": 0.75},
    ]
    assert _tensorboard_scalars(tmp_path, "train/loss") == [(2, 0.5), (4, 0.25)]
    assert _tensorboard_scalars(tmp_path, "val/loss") == [(4, 0.75)]


def test_resuming_drops_the_records_after_the_checkpoint_from_both_logs(tmp_path):
    """A run killed after logging step 6 resumes from its checkpoint of step 4: steps 5 and 6
    are logged again, and only the new values remain."""
    with RunLog(tmp_path, start_step=0, total_steps=8, progress=False) as log:
        for step in range(1, 7):
            log.write(step, {"train/loss": float(step)})
    with RunLog(tmp_path, start_step=4, total_steps=8, progress=False) as log:
        for step in range(5, 9):
            log.write(step, {"train/loss": 10.0 * step})
    expected = [(s, float(s)) for s in range(1, 5)] + [(s, 10.0 * s) for s in range(5, 9)]
    assert [(r["step"], r["train/loss"]) for r in read_metrics(tmp_path)] == expected
    assert _tensorboard_scalars(tmp_path, "train/loss") == expected


def test_non_finite_values_are_written_as_strings_json_can_hold(tmp_path):
    with RunLog(tmp_path, start_step=0, total_steps=1, progress=False) as log:
        log.write(1, {"train/loss": math.nan, "train/grad_norm": math.inf})
    assert read_metrics(tmp_path) == [{"step": 1, "train/loss": "nan", "train/grad_norm": "inf"}]


def test_a_disabled_log_writes_nothing(tmp_path):
    with RunLog(tmp_path, start_step=0, total_steps=1, enabled=False) as log:
        log.write(1, {"train/loss": 1.0})
        log.advance(1, 1.0)
    assert list(tmp_path.iterdir()) == []


def test_a_torn_last_line_of_a_killed_run_is_dropped_on_resume(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "train/loss": 1.0}\n{"step": 2, "tr')
    assert read_metrics(tmp_path) == [{"step": 1, "train/loss": 1.0}]
    with RunLog(tmp_path, start_step=1, total_steps=3, progress=False) as log:
        log.write(2, {"train/loss": 2.0})
    assert read_metrics(tmp_path) == [
        {"step": 1, "train/loss": 1.0},
        {"step": 2, "train/loss": 2.0},
    ]
