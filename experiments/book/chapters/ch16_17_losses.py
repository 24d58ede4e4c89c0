"""Chapters 16-17: the robot-learning losses (Gaussian NLL, reconstruction, KL) and their gradients.

Book 16.3.2 (eqs. 16.30-16.33), 16.3.3 (eqs. 16.37, 16.39), 17.3.3 (eqs. 17.13-17.15, 17.18),
17.6.2 (eqs. 17.53, 17.55-17.57) and 17.11 (eq. 17.71). The losses are `core.losses`
functions; the references are `jax.scipy.stats` densities, Gauss-Hermite quadrature and
`jax.grad`. Action chunks use the book's sizes, k = 100 steps of D = 14 joints (20.1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import multivariate_normal, norm

from core import activations, losses
from experiments.book.records import Record, ambiguous, check, claim

TOLERANCE = 1e-10  # float64 agreement of two computations of the same quantity
CHUNK_LENGTH, ACTION_DIM = 100, 14  # k and D (book 20.1, bimanual)
LATENT_MEAN = (0.8, -0.3, 0.0, 1.5)  # an example posterior for the KL checks
LATENT_VARIANCE = (0.5, 1.0, 2.0, 0.2)
GAUSS_HERMITE_NODES = 8  # exact for polynomials up to degree 15; log q - log p is quadratic

# 16.3.3: the three grasp modes as (x, y, z, θ in degrees); mode 3 prints no θ
# ("approach vertical"), taken here as 0°.
GRASP_MODES = ((-5.0, 0.0, -2.0, 30.0), (5.0, 0.0, -2.0, -30.0), (0.0, 0.0, -5.0, 0.0))


def _normal_arrays(seed: int, *shapes: tuple[int, ...]) -> list[jax.Array]:
    keys = jax.random.split(jax.random.key(seed), len(shapes))
    return [jax.random.normal(key, shape) for key, shape in zip(keys, shapes, strict=True)]


def _max_difference(a, b) -> float:
    return float(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b))))


def _classification_and_gaussian_records() -> list[Record]:
    logits, actions, mean, log_std = _normal_arrays(0, (6,), (7,), (7,), (7,))
    label = jax.nn.one_hot(2, 6)
    cross_entropy = losses.categorical_cross_entropy(logits, label)
    printed_cross_entropy = -jnp.sum(label * jnp.log(activations.softmax(logits)))
    covariance = jnp.diag(jnp.exp(2.0 * log_std))
    full_covariance_nll = -multivariate_normal.logpdf(actions, mean, covariance)  # eq. 16.32
    diagonal_nll = losses.gaussian_nll(actions, mean, log_std)  # eq. 16.33
    return [
        *claim(
            "16.3.2 eq. 16.30",
            "L_NLP",
            "-Σ_v y_v log p̂_v with one-hot y",
            "core.losses.categorical_cross_entropy (log space) = -Σ y log softmax(z): "
            f"|difference| {_max_difference(cross_entropy, printed_cross_entropy):.1e}",
            holds=_max_difference(cross_entropy, printed_cross_entropy) < TOLERANCE,
            note="the same loss as eq. 4.10",
        ),
        *claim(
            "16.3.2 eqs. 16.32-16.33",
            "Gaussian NLL, diagonal Σ",
            "½ log|2πΣ| + ½(a - μ)ᵀΣ⁻¹(a - μ) = "
            "(n_a/2) log 2π + Σ_i [log σ_i + (a_i - μ_i)²/(2σ_i²)]",
            f"core.losses.gaussian_nll = {float(diagonal_nll):.10f}, -multivariate_normal.logpdf "
            f"with Σ = diag(σ²) = {float(full_covariance_nll):.10f} (n_a = 7)",
            holds=_max_difference(diagonal_nll, full_covariance_nll) < TOLERANCE,
        ),
    ]


def _mode_averaging_records() -> list[Record]:
    modes = jnp.asarray(GRASP_MODES)
    average = jnp.mean(modes, axis=0)

    def regression_risk(prediction):  # eq. 16.39 over the three demonstrations
        return losses.mean_squared_error(jnp.broadcast_to(prediction, modes.shape), modes)

    gradient_at_average = jax.grad(regression_risk)(average)
    return [
        *check(
            "16.3.3 eq. 16.37",
            "ā = mean of the three grasps (x, y, z)",
            ["0", "0", "-3"],
            average[:3],
        ),
        *ambiguous(
            "16.3.3 eq. 16.37",
            "ā's θ",
            "0°",
            f"{float(average[3]):g}° if mode 3's θ is 0°",
            "mode 3 prints no angle ('approach vertical'); ā_θ = (30° - 30° + θ_3)/3 is 0° only "
            "if θ_3 = 0°",
        ),
        *claim(
            "16.3.3 eq. 16.39",
            "MSE regression target",
            "minimizing E||a - μ(o)||² over multimodal demonstrations gives their mean",
            f"jax.grad of core.losses.mean_squared_error at ā = {average.tolist()} is "
            f"{gradient_at_average.tolist()}",
            holds=_max_difference(gradient_at_average, 0.0) < TOLERANCE,
        ),
    ]


def _action_chunks() -> tuple[jax.Array, jax.Array]:
    """A true chunk A and a prediction Â (or decoder mean μ), both [k, D]."""
    chunk, predicted = _normal_arrays(1, (CHUNK_LENGTH, ACTION_DIM), (CHUNK_LENGTH, ACTION_DIM))
    return chunk, predicted


def _normalized_mse(predicted: jax.Array, chunk: jax.Array) -> jax.Array:
    """Eq. 17.15: (1/kD)||A - μ||_F², the mean over the chunk's entries."""
    return jnp.mean(losses.squared_error(predicted, chunk))


def _summed_squared_error(predicted: jax.Array, chunk: jax.Array) -> jax.Array:
    """Eq. 17.71's ||A - Â||² (and the 17.9 pseudo-code's): the sum over the chunk's entries."""
    return losses.sum_squared_error(predicted.reshape(-1), chunk.reshape(-1))


def _reconstruction_records() -> list[Record]:
    chunk, predicted = _action_chunks()
    unit_log_std = jnp.zeros(chunk.size)
    count = CHUNK_LENGTH * ACTION_DIM
    constant = 0.5 * count * np.log(2.0 * np.pi)

    def chunk_nll(mean):  # eqs. 17.12-17.13 over the whole chunk, σ = 1
        return losses.gaussian_nll(chunk.reshape(-1), mean.reshape(-1), unit_log_std)

    def normalized_mse(mean):
        return _normalized_mse(mean, chunk)

    def summed_squared_error(mean):
        return _summed_squared_error(mean, chunk)

    nll_at_target = chunk_nll(chunk)  # every term of eq. 17.14 vanishes here
    nll, mse = chunk_nll(predicted), normalized_mse(predicted)
    affine_gap = abs(float(nll - (0.5 * count * mse + constant)))
    residual = predicted - chunk
    gradient_of_mean = jax.grad(normalized_mse)(predicted)
    gradient_of_sum = jax.grad(summed_squared_error)(predicted)
    return [
        *claim(
            "17.3.3 eqs. 17.13-17.14",
            "NLL of a chunk with A = μ, σ = 1",
            "½ log|2π diag(σ²)| + ½||σ⁻¹(A - μ)||² = Σ log σ_ij + ½ Σ (A_ij - μ_ij)²/σ_ij²",
            f"core.losses.gaussian_nll = {float(nll_at_target):.4f} = (kD/2) log 2π for "
            f"k = {CHUNK_LENGTH}, D = {ACTION_DIM}, where eq. 17.14 gives 0",
            holds=abs(float(nll_at_target)) < TOLERANCE,
            why="eq. 17.14 drops the constant (kD/2) log 2π of eq. 17.13 (½ log|2π diag σ²| = "
            "(kD/2) log 2π + Σ log σ_ij); harmless for gradients, but '=' is wrong",
        ),
        *claim(
            "17.3.3 eq. 17.15",
            "σ = 1 reconstruction loss",
            "fixing σ = 1 the NLL becomes L_rec = (1/kD)||A - μ||_F²",
            f"NLL(σ = 1) = ½||A - μ||_F² + (kD/2) log 2π = (kD/2)·L_17.15 + {constant:.2f}: "
            f"here {float(nll):.4f} vs L_17.15 = {float(mse):.6f}",
            holds=abs(float(nll - mse)) < TOLERANCE,
            why=f"equal only up to the dropped constant (kD/2) log 2π = {constant:.2f} and the "
            f"factor kD/2 = {count // 2} (checked to {affine_gap:.1e}): same minimizer, but "
            "17.15's gradient is 2/(kD) times the NLL's; also σ = 1 is a fixed, not a "
            "'learned', variance",
        ),
        *claim(
            "17.6.2 eq. 17.53",
            "∂L_rec/∂Â vs eq. 17.15",
            "∂L_rec/∂Â = 2(Â - A_true)",
            f"jax.grad of 17.15's (1/kD)||Â - A||² is 2(Â - A)/(kD), kD = {count}: max "
            f"|difference from 2(Â - A)| {_max_difference(gradient_of_mean, 2.0 * residual):.3g}",
            holds=_max_difference(gradient_of_mean, 2.0 * residual) < TOLERANCE,
            why="2(Â - A) is the gradient of the un-normalized ||Â - A||² (eq. 17.71, the 17.9 "
            "pseudo-code), not of 17.15's L_rec = (1/kD)||Â - A||², whose gradient is "
            "2(Â - A)/(kD); over a batch mean also divide by B",
        ),
        *claim(
            "17.6.2 eq. 17.53",
            "∂L_rec/∂Â vs eq. 17.71",
            "∂L_rec/∂Â = 2(Â - A_true)",
            f"jax.grad of core.losses.sum_squared_error (17.71's ||A - Â||²) vs 2(Â - A): max "
            f"|difference| {_max_difference(gradient_of_sum, 2.0 * residual):.1e}",
            holds=_max_difference(gradient_of_sum, 2.0 * residual) < TOLERANCE,
        ),
    ]


def _total_loss_records() -> list[Record]:
    chunk, predicted = _action_chunks()
    summed = _summed_squared_error(predicted, chunk)
    averaged = _normalized_mse(predicted, chunk)
    return ambiguous(
        "17.11 eq. 17.71",
        "scale of L_rec in L_total",
        "||A - Â||²",
        f"{float(summed):.2f} vs 17.15's {float(averaged):.6f} "
        f"(ratio {float(summed / averaged):g})",
        f"17.71 (and the 17.9 pseudo-code) sum the squared errors, 17.15 averages them: the two "
        f"L_rec differ by kD = {chunk.size} for k = {CHUNK_LENGTH}, D = {ACTION_DIM}, so the "
        "same β weighs the KL term kD times more under 17.15",
    )


def _gauss_hermite_kl(mean: jax.Array, variance: jax.Array) -> jax.Array:
    """KL(N(μ, σ²) || N(0, 1)) per dimension, E_q[log q - log p] by Gauss-Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(GAUSS_HERMITE_NODES)
    weights = weights / np.sqrt(2.0 * np.pi)  # the probabilists' weight e^{-x²/2} normalized
    std = jnp.sqrt(variance)
    samples = mean[:, None] + std[:, None] * nodes[None, :]
    log_ratio = norm.logpdf(samples, mean[:, None], std[:, None]) - norm.logpdf(samples)
    return jnp.sum(log_ratio * weights[None, :], axis=-1)


def _kl_records() -> list[Record]:
    mean, variance = jnp.asarray(LATENT_MEAN), jnp.asarray(LATENT_VARIANCE)
    closed_form = losses.kl_to_standard_normal(mean, jnp.log(variance))
    quadrature = jnp.sum(_gauss_hermite_kl(mean, variance))
    at_prior = losses.kl_to_standard_normal(jnp.zeros(4), jnp.zeros(4))
    grad_mean, grad_variance = jax.grad(
        lambda m, v: losses.kl_to_standard_normal(m, jnp.log(v)), argnums=(0, 1)
    )(mean, variance)
    return [
        *claim(
            "17.3.3 eqs. 17.18, 17.55",
            "KL(q || N(0, I)) closed form",
            "½ Σ_j (μ_j² + σ_j² - log σ_j² - 1)",
            f"core.losses.kl_to_standard_normal = {float(closed_form):.12f}; Gauss-Hermite "
            f"E_q[log q - log p] with jax.scipy.stats.norm = {float(quadrature):.12f}",
            holds=abs(float(closed_form - quadrature)) < TOLERANCE,
            note="17.55 repeats 17.18",
        ),
        *claim(
            "17.3.3",
            "KL at the prior",
            "μ = 0, σ = 1 gives D_KL = 0",
            f"core.losses.kl_to_standard_normal(0, log 1) = {float(at_prior)}",
            holds=float(at_prior) == 0.0,
        ),
        *claim(
            "17.6.2 eq. 17.56",
            "∂L_KL/∂μ_j",
            "∂L_KL/∂μ_j = μ_j",
            f"jax.grad = {grad_mean.tolist()}",
            holds=_max_difference(grad_mean, mean) < TOLERANCE,
        ),
        *claim(
            "17.6.2 eq. 17.57",
            "∂L_KL/∂σ_j²",
            "∂L_KL/∂σ_j² = ½(1 - 1/σ_j²)",
            f"jax.grad in σ² = {grad_variance.tolist()}",
            holds=_max_difference(grad_variance, 0.5 * (1.0 - 1.0 / variance)) < TOLERANCE,
        ),
    ]


def records() -> list[Record]:
    return [
        *_classification_and_gaussian_records(),
        *_mode_averaging_records(),
        *_reconstruction_records(),
        *_kl_records(),
        *_total_loss_records(),
    ]
