"""Chapter 11.2-11.3: activation scale with depth, He init, clipping, fp16 and loss scaling.

Book 11.2.1-11.2.2 (eq. 11.6) with `core.initializers` (the initializers and the 50-layer ReLU
depth study `relu_second_moments`, width 256, batch 64), 11.2.3 (eq. 11.7) with
`core.optim.clip_by_global_norm`, and 11.3 (eq. 11.8) with `core.precision` (fp16/bf16 format
limits, `scaled_value_and_grad`). The fp16 gradient
experiments construct a loss 1e-4 · (a · w) with activations a = 1e-4 computed in fp16, whose
true gradient 1e-4 · 1e-4 ≈ 1e-8 is below fp16's rounding-to-zero point.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from core import initializers, optim, precision
from experiments.book.records import Record, check, claim

WIDTH, DEPTH, BATCH = 256, 50, 64
NUM_NETWORKS = 8  # independent weight draws, so that statements are not about one lucky draw
SMALL = 1e-4  # activation and loss weight of the fp16 gradient experiment
BOOK_LOSS_SCALE = 2.0**15  # L_scale of 11.3.1


def _depth_study(init: initializers.Initializer) -> initializers.SecondMoments:
    """[NUM_NETWORKS, DEPTH] log10 second moments of independent ReLU networks."""
    inputs = jax.random.normal(jax.random.key(0), (BATCH, WIDTH))
    keys = jax.random.split(jax.random.key(1), NUM_NETWORKS)
    return jax.vmap(lambda key: initializers.relu_second_moments(key, inputs, init, DEPTH))(keys)


def _per_layer_factor(moments: initializers.SecondMoments) -> float:
    """Geometric mean over layers and networks of E[z^(ℓ)²] / E[z^(ℓ-1)²]."""
    return float(10 ** np.mean(np.diff(np.asarray(moments.preactivation), axis=-1)))


def _log10_growth(moments: initializers.SecondMoments) -> np.ndarray:
    """[NUM_NETWORKS] log10 E[z^(L)²] / E[z^(1)²]."""
    return np.asarray(moments.preactivation[:, -1] - moments.preactivation[:, 0])


def _initialization_records() -> list[Record]:
    he = _depth_study(initializers.he_normal())
    halving = _depth_study(initializers.lecun_normal())  # = Xavier on square layers
    unscaled = _depth_study(initializers.normal(1.0))
    he_growth = 10 ** _log10_growth(he)
    halving_growth = float(np.median(_log10_growth(halving)))
    unscaled_growth = float(np.median(_log10_growth(unscaled)))
    float32_max = math.log10(precision.float_format(jnp.float32).largest)
    overflow_layers = np.argmax(np.asarray(unscaled.preactivation) > float32_max, axis=-1) + 1
    he_weights = initializers.he_normal(in_axis=-1, out_axis=-2)(
        jax.random.key(2), (WIDTH, 4 * WIDTH), jnp.float64
    )  # the book's layout W ∈ R^{n_ℓ × n_{ℓ-1}}, n_{ℓ-1} = 1024
    networks = f"{NUM_NETWORKS} ReLU networks of {DEPTH} layers, width {WIDTH}"
    return [
        *claim(
            "11.2.1",
            "activation scale through depth",
            "activations can grow or shrink exponentially layer by layer",
            f"{networks}: from layer 1 to 50, E[z²] changes by 10^{halving_growth:.1f} with "
            f"N(0, 1/n) weights and by 10^{unscaled_growth:.0f} with N(0, 1) weights (medians)",
            holds=halving_growth < -10 and unscaled_growth > 10,
        ),
        *claim(
            "11.2.1",
            "overflow of exploding activations",
            "if |z^(ℓ)| -> ∞ (overflow), parameters become NaN",
            f"with N(0, 1) weights E[z²] passes float32's max 3.4e38 at layer "
            f"{int(overflow_layers.min())}-{int(overflow_layers.max())} of 50 (tracked in log "
            "scale by relu_second_moments), so a float32 network holds inf there; the NaN that "
            "inf arithmetic then produces (inf - inf, 0·inf) is not simulated",
            holds=bool(np.all(np.asarray(unscaled.preactivation)[:, -1] > float32_max)),
        ),
        *check(
            "11.2.2 eq. (11.6)",
            "He variance times n_{ℓ-1} (he_variance)",
            "2",
            initializers.he_variance(4 * WIDTH) * 4 * WIDTH,
            note="he_normal draws N(0, 2/fan_in); fan_in = n_{ℓ-1} is the column count of W",
        ),
        *check(
            "11.2.2 eq. (11.6)",
            "n_{ℓ-1} × sample variance of he_normal, W of shape [256, 1024]",
            "2",
            4 * WIDTH * float(jnp.var(he_weights)),
            rel_tol=0.01,
            note="262144 draws: relative standard error of the variance 0.28%",
        ),
        *claim(
            "11.2.2",
            "He keeps E[|z^(ℓ)|²] ≈ E[|z^(ℓ-1)|²]",
            "He init ensures E[|z^(ℓ)|²] ≈ E[|z^(ℓ-1)|²] (for ReLU)",
            f"{networks}: geometric-mean per-layer ratio {_per_layer_factor(he):.4f}; "
            f"layer 50 / layer 1 median {np.median(he_growth):.2f}, range "
            f"{he_growth.min():.2f}-{he_growth.max():.2f} (exact in expectation; at width n "
            "ln of the ratio fluctuates with variance ≈ 5/n per layer)",
            holds=abs(math.log10(_per_layer_factor(he))) < 0.05,
        ),
        *claim(
            "11.2.2",
            "why He (not Xavier) for ReLU",
            "He initialization for ReLU, Xavier for sigmoid",
            f"Xavier's 2/(n_in + n_out) = 1/n on square ReLU layers: per-layer ratio "
            f"{_per_layer_factor(halving):.3f} (ReLU zeroes half of E[z²]), so E[z²] of layer "
            f"50 is 10^{halving_growth:.1f} of layer 1",
            holds=abs(_per_layer_factor(halving) - 0.5) < 0.05,
        ),
    ]


def _clipping_records() -> list[Record]:
    clip = optim.clip_by_global_norm(1.0)  # C = 1, the book's example threshold
    large = {"w": jnp.array([3.0, 4.0])}  # ‖g‖ = 5
    small = {"w": jnp.array([0.3, 0.4])}  # ‖g‖ = 0.5
    clipped_large, _ = clip.update(large, clip.init(large))
    clipped_small, _ = clip.update(small, clip.init(small))
    large_norm = float(optim.global_norm(clipped_large))
    direction_gap = float(jnp.max(jnp.abs(clipped_large["w"] - large["w"] / 5.0)))
    unchanged = bool(jnp.array_equal(clipped_small["w"], small["w"]))
    return claim(
        "11.2.3 eq. (11.7)",
        "clipping by norm with C = 1 bounds the gradient",
        "g <- g · min(1, C/‖g‖₂) keeps gradients bounded",
        f"core.optim.clip_by_global_norm(1): ‖g‖ = 5 -> {large_norm:.6f} along the same "
        f"direction (max deviation {direction_gap:.1e}); ‖g‖ = 0.5 left unchanged: {unchanged}",
        holds=abs(large_norm - 1.0) < 1e-12 and direction_gap < 1e-12 and unchanged,
        note="same rule as eq. 8.34",
    )


def _small_gradient_loss(weights, activations):
    """1e-4 · (a · w) in the dtype of `activations`; weights: [3], activations: [3]."""
    return SMALL * jnp.dot(activations, weights.astype(activations.dtype))


def _gradient(dtype, loss_scale) -> tuple[float, bool]:
    grad_fn = precision.scaled_value_and_grad(_small_gradient_loss)
    _, grads, grads_finite = grad_fn(
        jnp.float32(loss_scale), jnp.ones(3, jnp.float32), jnp.full(3, SMALL, dtype)
    )
    return float(grads[0]), bool(grads_finite)


def _precision_records() -> list[Record]:
    fp16 = precision.float_format(jnp.float16)
    bf16 = precision.float_format(jnp.bfloat16)
    fp32 = precision.float_format(jnp.float32)
    fp16_of_1e5 = precision.round_to(1e-5, jnp.float16)
    fp16_of_1e3 = precision.round_to(1e-3, jnp.float16)
    grad_of_1e5 = float(
        jax.grad(lambda w, a: jnp.dot(a, w))(
            jnp.ones(1, jnp.float16), jnp.full(1, 1e-5, jnp.float16)
        )[0]
    )
    subnormal = precision.is_subnormal(1e-5, jnp.float16)
    true_gradient = precision.round_to(SMALL, jnp.float16) ** 2
    unscaled_gradient, _ = _gradient(jnp.float16, 1.0)
    scaled_gradient, scaled_finite = _gradient(jnp.float16, BOOK_LOSS_SCALE)
    overflow_gradient, overflow_finite = _gradient(jnp.float16, 2 * BOOK_LOSS_SCALE)
    bf16_gradient, _ = _gradient(jnp.bfloat16, 1.0)
    largest_power_of_two = 2.0 ** math.floor(math.log2(fp16.largest))
    scaled_error = abs(scaled_gradient - true_gradient) / true_gradient
    return [
        *check("11.3", "FP16 width in bits", "16", fp16.bits),
        *check("11.3", "FP32 width in bits", "32", fp32.bits),
        *check(
            "11.3.1 eq. (11.8)",
            "L_scale = 2^15, the largest power of two fp16 holds",
            "32768",
            largest_power_of_two,
            note=f"2^floor(log2 {fp16.largest:.0f}); 2^16 = 65536 overflows fp16",
        ),
        *claim(
            "11.3.1 steps 3-5",
            "scaling the loss by 2^15 keeps a small gradient, downscaling recovers it",
            "backprop through L_scale·L, then divide the gradients by L_scale in FP32",
            f"gradient {true_gradient:.4e} through fp16: {unscaled_gradient:g} with L_scale = 1, "
            f"{scaled_gradient:.4e} with 2^15 (relative error {scaled_error:.1e}, fp16 "
            f"rounding); with 2^16 the scaled cotangent overflows (grads finite: "
            f"{overflow_finite}, gradient {overflow_gradient})",
            holds=unscaled_gradient == 0.0 and scaled_finite and scaled_error < 2 * 2.0**-11,
        ),
        *check(
            "11.3.2",
            "lower end of the FP16 range (smallest normal 2^-14)",
            "6e-5",
            fp16.smallest_normal,
            note=(
                f"smallest NORMAL fp16 {fp16.smallest_normal:.4g}; subnormals continue down to "
                f"2^-24 = {fp16.smallest_subnormal:.3g} with fewer significant bits"
            ),
        ),
        *check(
            "11.3.2",
            "upper end of the FP16 range (largest finite)",
            "6e4",
            fp16.largest,
            rel_tol=0.1,
            note="65504 = 6.55e4: 'roughly 6e4' truncates (7e4 to one significant digit)",
        ),
        *claim(
            "11.3.2",
            "gradients of ~1e-3 to 1e-5 underflow to zero in FP16",
            "typical gradients (~1e-3 to 1e-5) underflow to zero in FP16 without scaling",
            f"fp16(1e-5) = {fp16_of_1e5:.5g} (subnormal: {subnormal}, relative error "
            f"{abs(fp16_of_1e5 - 1e-5) / 1e-5:.1e}); fp16(1e-3) = "
            f"{fp16_of_1e3:.5g} (normal); the gradient of a·w with a = 1e-5 computed in fp16 is "
            f"{grad_of_1e5:.5g}; only magnitudes <= 2^-25 = {fp16.zero_rounding_bound:.3g} "
            "round to 0",
            holds=fp16_of_1e5 == 0.0 or fp16_of_1e3 == 0.0,
            why=(
                "1e-5 is a subnormal fp16 number (stored as 1.0014e-5, ~3 significant digits), "
                "not 0; values round to 0 only at or below 2^-25 ≈ 3e-8, e.g. a backward product "
                "1e-4·1e-4, which is what loss scaling rescues. The book takes the smallest "
                "normal 6.1e-5 for the smallest representable value"
            ),
        ),
        *claim(
            "11.3.2",
            "bf16 needs no loss scaling for the same gradient (context for 11.3)",
            "FP16 underflow is the reason for loss scaling",
            f"bf16 has float32's exponent range (smallest normal {bf16.smallest_normal:.3g} = "
            f"float32's {fp32.smallest_normal:.3g}): the 1e-8 gradient survives unscaled as "
            f"{bf16_gradient:.4e}, with {bf16.significand_bits} significant bits vs fp16's "
            f"{fp16.significand_bits}",
            holds=bf16_gradient != 0.0 and bf16.smallest_normal == fp32.smallest_normal,
        ),
    ]


def records() -> list[Record]:
    return [*_initialization_records(), *_clipping_records(), *_precision_records()]
