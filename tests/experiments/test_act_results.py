"""experiments.act_results: the controllers it compares and the table it writes (no training)."""

import json

import pytest

from experiments import act_results


def test_controllers_query_every_1_half_k_and_k_steps_and_ensemble_in_both_conventions():
    settings = act_results.controller_settings(10)
    assert tuple(settings) == act_results.CONTROLLERS
    assert [settings[label]["query_every"] for label in act_results.CONTROLLERS[:3]] == [1, 5, 10]
    assert settings["ensemble_book"]["convention"] == "book"
    assert settings["ensemble_act"] == {
        "name": "temporal_ensembling",
        "decay": 0.01,
        "convention": "act",
    }
    assert act_results.controller_settings(1)["chunked_half_k"]["query_every"] == 1


def _row(latent, label, rate, shares):
    settings = act_results.controller_settings(10)[label]
    results = {
        "task": "obstacle",
        "success_rate": rate,
        "success_ci95": (rate - 0.05, rate + 0.01),
        "mode_shares": shares,
        "mean_length": 38.75,
    }
    return {"latent": latent, "controller": label, **settings, "results": results}


def test_summary_has_one_row_per_latent_and_controller_with_success_modes_and_length(tmp_path):
    rows = [
        _row("zero", "chunked_k", 0.945, {"left": 0.515, "right": 0.43, "collided": 0.055}),
        _row(
            "prior_sample", "ensemble_act", 0.42, {"left": 0.215, "right": 0.205, "collided": 0.58}
        ),
    ]
    path = act_results.write_summary(rows, tmp_path, "run")
    lines = path.read_text().splitlines()
    assert (
        lines[2]
        == "| latent | controller | success [95% CI] | left | right | collided | mean length |"
    )
    assert (
        lines[4]
        == "| zero | chunked_k (n = 10) | 94.5% [89.5%, 95.5%] | 51.5% | 43.0% | 5.5% | 38.8 |"
    )
    assert lines[5].startswith("| prior_sample | ensemble_act (m = 0.01) | 42.0% [37.0%, 43.0%]")
    assert json.loads((tmp_path / "summary.json").read_text())[1]["results"]["success_rate"] == (
        pytest.approx(0.42)
    )
