"""Chapter 2: the perceptron, its geometry and the mistake bound (2.1-2.4).

The chapter prints no worked numbers; its statements are checked with `core.perceptron`:
scaling invariance (2.6), the signed distance (2.7-2.8), γ >= 1/‖w*‖ under (2.13), and the
mistake bound (2.15), which fails as printed once a bias is learned (a two-point counterexample)
and holds on the augmented vectors [x, 1], [w*, b*] of the book's own proof.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from core import perceptron
from experiments.book.records import Record, claim

NUM_DATASETS = 40
DATASET_SHAPE = (16, 2)
MAX_EPOCHS = 5000


def _counterexample():
    """x = 4 (y = +1), x = 8 (y = -1), with w* = -1/2, b* = 3 tight in (2.13) at both points."""
    return jnp.array([-0.5]), jnp.array(3.0), jnp.array([[4.0], [8.0]]), jnp.array([1.0, -1.0])


def _random_datasets(with_bias: bool):
    keys = jax.random.split(jax.random.key(2), NUM_DATASETS)
    return [
        perceptron.random_separable_dataset(key, *DATASET_SHAPE, with_bias=with_bias)
        for key in keys
    ]


def _geometry_records() -> list[Record]:
    weights, bias, points, _ = perceptron.random_separable_dataset(
        jax.random.key(1), *DATASET_SHAPE
    )
    alpha = 3.7
    same_predictions = bool(
        jnp.all(
            perceptron.predict_binary(alpha * weights, alpha * bias, points)
            == perceptron.predict_binary(weights, bias, points)
        )
    )
    distance_change = float(
        jnp.max(
            jnp.abs(
                perceptron.signed_distance(alpha * weights, alpha * bias, points)
                - perceptron.signed_distance(weights, bias, points)
            )
        )
    )
    out = claim(
        "eq. 2.6",
        "scaling invariance",
        "(αw, αb), α > 0, leaves the decision boundary unchanged",
        f"α = {alpha} on {DATASET_SHAPE[0]} points: identical predictions, signed distances "
        f"change by at most {distance_change:.1e}",
        holds=same_predictions and distance_change < 1e-12,
    )

    normal, offset, point = jnp.array([3.0, 4.0]), jnp.array(-5.0), jnp.array([[3.0, 4.0]])
    distance = perceptron.signed_distance(normal, offset, point)[0]
    foot = point - distance * normal / jnp.linalg.norm(normal)  # the projection onto H (eq. 2.8)
    foot_score = float(perceptron.score(normal, offset, foot)[0])
    euclidean = float(jnp.linalg.norm(point - foot))
    out += claim(
        "eqs. 2.7-2.8",
        "signed distance to the hyperplane",
        "d(x, H) = (wᵀx + b)/‖w‖; |d| is the Euclidean distance to H, d > 0 on H+",
        f"w = [3, 4], b = -5, x = [3, 4]: d = {float(distance):.4f}; x - d w/‖w‖ = "
        f"{np.round(np.asarray(foot[0]), 6).tolist()} has score {foot_score:.1e} (on H) at "
        f"distance {euclidean:.4f}",
        holds=float(distance) > 0 and abs(foot_score) < 1e-12 and abs(euclidean - distance) < 1e-12,
    )
    return out


def _margin_records() -> list[Record]:
    weights, bias, points, labels = _counterexample()
    functional = labels * perceptron.score(weights, bias, points)
    gamma = float(perceptron.margin(weights, bias, points, labels))
    inverse_norm = float(1 / jnp.linalg.norm(weights))
    return claim(
        "2.4.1 (eqs. 2.13-2.14)",
        "γ >= 1/‖w*‖ under (2.13)",
        "Under y_i(w*ᵀx_i + b*) >= 1 for all i, γ >= 1/‖w*‖",
        f"x = (4, 8), y = (+1, -1), w* = -0.5, b* = 3: y_i(w*x_i + b*) = "
        f"{np.asarray(functional).tolist()}, γ = {gamma:.4f}, 1/‖w*‖ = {inverse_norm:.4f} "
        "(equality: (2.13) is tight)",
        holds=bool(jnp.all(functional >= 1)) and gamma >= inverse_norm,
        note="γ = min_i y_i(w*ᵀx_i + b*)/‖w*‖ >= min_i 1/‖w*‖",
    )


def _bound_records() -> list[Record]:
    weights, bias, points, labels = _counterexample()
    fit = perceptron.train(points, labels, max_epochs=MAX_EPOCHS)
    printed_bound = float(perceptron.printed_mistake_bound(weights, bias, points, labels))
    augmented_bound = float(perceptron.augmented_mistake_bound(weights, bias, points, labels))
    mistakes = int(fit.mistakes)
    out = claim(
        "eq. 2.15",
        "mistake bound with a learned bias, as printed",
        "M <= (R/γ)² with R = max ‖x_i‖, γ = min y_i(w*ᵀx_i + b*)/‖w*‖",
        f"x = (4, 8), y = (+1, -1), w* = -0.5, b* = 3: R = "
        f"{float(perceptron.radius(points)):.0f}, γ = "
        f"{float(perceptron.margin(weights, bias, points, labels)):.0f}, (R/γ)² = "
        f"{printed_bound:.0f}, and no separator has γ > 2 (half the gap); the perceptron "
        f"(w, b from 0, η = 1, data in order) makes M = {mistakes} mistakes",
        holds=mistakes <= printed_bound,
        why=(
            "the proof runs on x̃ = [x, 1], w̃ = [w, b]; correct: M <= (R̃/γ̃)² with R̃ = max "
            "‖[x_i, 1]‖ and γ̃ = min y_i(w*ᵀx_i + b*)/‖[w*, b*]‖ (here "
            f"{augmented_bound:.2f} >= {mistakes}); (R/γ)² as printed is guaranteed only "
            "for b = b* = 0"
        ),
    )

    random_fits = [
        (perceptron.train(x, y, max_epochs=MAX_EPOCHS), w, b, x, y)
        for w, b, x, y in _random_datasets(with_bias=True)
    ]
    slack = [
        float(perceptron.augmented_mistake_bound(w, b, x, y)) - int(fit.mistakes)
        for fit, w, b, x, y in random_fits
    ]
    converged = all(bool(fit.converged) for fit, *_ in random_fits)
    out += claim(
        "eq. 2.15 (corrected)",
        "mistake bound on augmented vectors",
        "M <= (R/γ)², with the bias absorbed as in the proof sketch (2.4.3)",
        f"the counterexample: M = {mistakes} <= (R̃/γ̃)² = {augmented_bound:.2f}; "
        f"{NUM_DATASETS} random separable {DATASET_SHAPE[0]}-point 2-D datasets: all converge, "
        f"smallest (R̃/γ̃)² - M = {min(slack):.2f}",
        holds=mistakes <= augmented_bound and converged and min(slack) >= 0,
    )

    origin_fits = [
        (perceptron.train(x, y, learn_bias=False, max_epochs=MAX_EPOCHS), w, x, y)
        for w, _, x, y in _random_datasets(with_bias=False)
    ]
    origin_slack = [
        float(perceptron.printed_mistake_bound(w, jnp.zeros([]), x, y)) - int(fit.mistakes)
        for fit, w, x, y in origin_fits
    ]
    out += claim(
        "eq. 2.15 (b = 0)",
        "mistake bound without a bias",
        "M <= (R/γ)²",
        f"{NUM_DATASETS} random datasets separable through the origin, no bias learned: "
        f"smallest (R/γ)² - M = {min(origin_slack):.2f}",
        holds=all(bool(fit.converged) for fit, *_ in origin_fits) and min(origin_slack) >= 0,
    )
    return out


def _non_separable_records() -> list[Record]:
    xor_points = jnp.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    xor_labels = jnp.array([-1.0, -1.0, 1.0, 1.0])
    fit = perceptron.train(xor_points, xor_labels, max_epochs=MAX_EPOCHS)
    return claim(
        "2.4.4",
        "non-separable data",
        "if the data is not linearly separable the perceptron may cycle and never converge",
        f"XOR: {int(fit.mistakes)} mistakes in {int(fit.epochs)} epochs, none mistake-free",
        holds=not bool(fit.converged),
    )


def records() -> list[Record]:
    return [
        *_geometry_records(),
        *_margin_records(),
        *_bound_records(),
        *_non_separable_records(),
    ]
