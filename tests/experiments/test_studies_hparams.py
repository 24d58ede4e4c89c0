"""The chapter 13 studies run at their tiny size, write their files, and keep their invariants
(the laws themselves are tested on the library in tests/core)."""

import json

import numpy as np
import pytest

from core.hparam_search import grid_size_within
from experiments.studies import common, hparam_search, lr_finder, warmup_schedules


def _written(name, result, tmp_path):
    png_path, json_path = common.write(name, result, tmp_path)
    assert png_path.stat().st_size > 10_000
    payload = json.loads(json_path.read_text())
    assert payload["claim"].startswith("13.") and payload["finding"]
    return payload["figures"]


@pytest.mark.slow  # compiles one Bayesian-optimization proposal (~5 s on 2 cores)
def test_hparam_search_study_runs_the_three_methods_on_the_same_budget(tmp_path):
    result = hparam_search.run(tiny=True)
    figures = _written("hparam_search", result, tmp_path)
    budget, seeds = figures["budget"], figures["seeds"]
    curves = figures["median_best_so_far_curve"]
    assert len(curves["random"]) == len(curves["bayesian"]) == budget
    grid_points = grid_size_within(budget, len(hparam_search.SPACE))
    assert len(curves["grid"]) == grid_points ** len(hparam_search.SPACE)
    for method, curve in curves.items():
        assert np.all(np.diff(curve) <= 0), method  # a best-so-far curve never rises
        assert len(figures["trials_to_target_per_seed"][method]) == seeds
    assert 0.0 <= figures["fraction_of_box_reaching_target"] <= 1.0
    losses_axes = result.figure.axes[0]
    assert losses_axes.get_yscale() == "log"


@pytest.mark.slow  # compiles the finder's loop and a vmapped training scan (~4 s of CPU)
def test_lr_finder_study_suggests_rates_inside_the_ramp(tmp_path):
    result = lr_finder.run(tiny=True)
    figures = _written("lr_finder", result, tmp_path)
    for rule, rates in figures["suggestions"].items():
        assert all(lr_finder.MIN_RATE / 10 <= r <= lr_finder.MAX_RATE for r in rates), rule
    assert all(1 <= steps <= figures["finder"]["steps"] for steps in figures["finder_steps_run"])
    assert figures["best_fixed_rate"] in figures["fixed_rates"]
    assert result.figure.axes[0].get_xscale() == "log"


@pytest.mark.slow  # compiles one vmapped training scan over schedules, peaks, seeds (~4 s)
def test_warmup_schedules_study_sweeps_every_schedule_over_the_peaks(tmp_path):
    result = warmup_schedules.run(tiny=True)
    figures = _written("warmup_schedules", result, tmp_path)
    names = set(warmup_schedules.unit_peak_schedules(figures["steps"]))
    assert set(figures["median_validation_loss"]) == names
    for name, losses in figures["median_validation_loss"].items():
        assert len(losses) == len(figures["peaks"]), name
        assert all(0 < loss <= np.log(10) + 1e-6 for loss in losses), name  # capped at chance


def test_unit_peak_schedules_start_at_the_peak_except_warmup_and_end_where_they_should():
    steps = 700
    unit = warmup_schedules.unit_peak_schedules(steps)
    assert float(unit["warmup + cosine"](0)) == 0.0
    assert float(unit["warmup + cosine"](steps // 10)) == pytest.approx(1.0)
    for name in ("constant", "step decay", "cosine", "SGDR"):
        assert float(unit[name](0)) == pytest.approx(1.0), name
    assert float(unit["cosine"](steps)) == pytest.approx(0.0, abs=1e-7)
    assert float(unit["step decay"](steps - 1)) == pytest.approx(0.01)  # two drops of γ = 0.1
    assert float(unit["SGDR"](100)) == pytest.approx(1.0)  # restarts at T₀ = 100 and 300
    assert float(unit["SGDR"](300)) == pytest.approx(1.0)
