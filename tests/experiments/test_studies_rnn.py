"""The chapter 15 studies run at their tiny size, write their files, and show their effect."""

import json

import numpy as np
import pytest

from experiments.studies import common, rnn_delay_recall, rnn_gradient_clipping, rnn_spectral_radius


@pytest.fixture(scope="module")
def spectral():
    return rnn_spectral_radius.run(tiny=True)


@pytest.fixture(scope="module")
def clipping():
    return rnn_gradient_clipping.run(tiny=True)


def test_spectral_radius_study_writes_its_plot_and_json(spectral, tmp_path):
    png_path, json_path = common.write("rnn_spectral_radius", spectral, tmp_path)
    assert png_path.stat().st_size > 10_000
    payload = json.loads(json_path.read_text())
    assert payload["claim"].startswith("Book 15.5.2")
    assert payload["figures"]["radii"] == list(rnn_spectral_radius._sizes(tiny=True)["radii"])
    norms_axes, _, powers_axes = spectral.figure.axes
    assert norms_axes.get_yscale() == powers_axes.get_yscale() == "log"


def test_linear_rnn_gradient_grows_by_rho_per_step_and_nonlinearities_shrink_it(spectral):
    radii = np.asarray(spectral.figures["radii"])
    factors = {name: np.asarray(v) for name, v in spectral.figures["per_step_factor"].items()}
    # A linear RNN's ∂h^(T)/∂h^(k) is W^(T-k): Gelfand's formula gives the rate ρ; the short
    # tiny sequence (T = 30) leaves a polynomial prefactor, hence 1%.
    np.testing.assert_allclose(factors["linear"], radii, rtol=0.01)
    for name in ("tanh", "ReLU"):
        assert np.all(factors[name] < factors["linear"]), name  # |σ'| ≤ 1 only removes gain
        assert np.all(np.diff(factors[name]) > 0), name  # and a larger ρ still grows faster
    book_radii = np.isin(radii, (0.9, 1.0, 1.1))
    assert np.all(factors["tanh"][book_radii] < 1.0)  # ρ = 1.1 vanishes with tanh


def test_non_normal_matrix_with_rho_below_one_has_growing_powers(spectral):
    non_normal = spectral.figures["non_normal"]
    assert non_normal["spectral_radius"] < 1.0 < non_normal["spectral_norm"]
    assert non_normal["peak_power_norm"] > 1e6  # ‖W^n‖ grows six orders of magnitude first
    assert non_normal["peak_at_n"] > 10


def test_clipping_study_unclipped_diverges_and_clipped_trains(clipping, tmp_path):
    _, json_path = common.write("rnn_gradient_clipping", clipping, tmp_path)
    figures = json.loads(json_path.read_text())["figures"]
    shown = figures["learning_rates"].index(figures["shown_learning_rate"])
    assert figures["first_non_finite_step_at_shown_rate"]["no clipping"] is not None
    assert figures["first_non_finite_step_at_shown_rate"]["clipped"] is None
    assert figures["final_loss"]["no clipping"][shown] is None  # NaN is written as null
    assert figures["final_loss"]["clipped"][shown] < 0.5 * figures["initial_loss"]


@pytest.mark.slow  # three training loops compiled (two RNN lengths, one transformer): ~10 s CPU
def test_delay_recall_rnn_fails_at_the_long_delay_where_the_transformer_succeeds(tmp_path):
    result = rnn_delay_recall.run(tiny=True)
    common.write("rnn_delay_recall", result, tmp_path)
    rnn_short, rnn_long = result.figures["mean_accuracy"]["RNN"]
    transformer_short, transformer_long = result.figures["mean_accuracy"]["transformer"]
    assert rnn_short > 0.9 and transformer_short > 0.9
    assert transformer_long > 0.9
    assert rnn_long < 0.5
