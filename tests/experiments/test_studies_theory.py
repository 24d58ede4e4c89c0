"""The chapter 9 studies at their tiny size: each runs, writes its plot and JSON, and shows its
effect in the right direction (the laws themselves are tested on the library in tests/core)."""

import json

import numpy as np
import pytest

from experiments.studies import (
    approximation_rates,
    bias_variance,
    common,
    double_descent,
    implicit_regularization,
    linear_regions,
    linearization,
)


def run_and_write(module, tmp_path):
    result = module.run(tiny=True)
    name = module.__name__.rsplit(".", 1)[-1]
    png_path, json_path = common.write(name, result, tmp_path)
    assert png_path.stat().st_size > 10_000
    payload = json.loads(json_path.read_text())
    assert payload["claim"] and payload["finding"]
    return payload["figures"]


def test_implicit_regularization_reaches_the_pinv_solution_only_from_zero(tmp_path):
    figures = run_and_write(implicit_regularization, tmp_path)
    assert figures["final_distance_from_zero_start_to_pinv"] < 1e-6
    assert figures["final_distance_from_random_start_to_predicted_limit"] < 1e-6
    assert figures["final_distance_from_random_start_to_pinv"] == pytest.approx(
        figures["null_space_component_of_start"], rel=1e-6
    )
    assert figures["null_space_component_of_start"] > 0.1


@pytest.mark.slow  # ~4-7 s: six compilations (3 feature counts x 2 feature kinds)
def test_double_descent_peaks_at_the_interpolation_threshold(tmp_path):
    figures = run_and_write(double_descent, tmp_path)
    for kind in ("relu", "fourier"):
        assert figures[kind]["test_mse_peak_at_features"] == figures["num_samples"]
        median = figures[kind]["median_test_mse"]
        assert median[1] > 2 * max(median[0], median[2])


@pytest.mark.slow  # ~4-7 s: two programs of 40 retrained datasets x 3 models each
def test_bias_variance_terms_trade_off_and_sum_to_the_measured_error(tmp_path):
    figures = run_and_write(bias_variance, tmp_path)
    polynomial = figures["polynomial"]
    assert polynomial["bias_squared"][0] > 10 * polynomial["bias_squared"][-1]
    assert polynomial["variance"][-1] > polynomial["variance"][0]
    assert figures["max_gap_in_standard_errors"] < 4


@pytest.mark.slow  # ~4-7 s: four trainings (2 widths x 2 dimensions), 3 seeds each
def test_approximation_error_falls_with_width(tmp_path):
    figures = run_and_write(approximation_rates, tmp_path)
    for errors in figures["best_sup_norm_error"].values():
        assert errors[-1] < errors[0]


def test_linearization_error_falls_with_width(tmp_path):
    figures = run_and_write(linearization, tmp_path)
    for name in ("taylor_at_trained_params", "relative_parameter_change"):
        seed_means = np.mean(figures[name], axis=1)
        assert seed_means[-1] < seed_means[0]


@pytest.mark.slow  # ~4-8 s: exact line counts at 2 depths, 2 sawtooths, 3 plane grids per depth
def test_linear_regions_sawtooth_doubles_and_random_nets_stay_below_units(tmp_path):
    figures = run_and_write(linear_regions, tmp_path)
    assert figures["sawtooth_counts"] == [2**depth for depth in figures["sawtooth_depths"]]
    one_layer_counts = figures["line_counts"][0]
    assert max(one_layer_counts) <= figures["total_units"] + 1
