"""Chapter 19: action vocabulary, quantization error, patch counts and weight memory of VLAs.

Book 19.2 (eqs. 19.2-19.4), 19.3 (eq. 19.5) and 19.9 (weight memory), computed with
`vla.action_tokens` (the expected quantization error by Monte Carlo), `core.conv_arithmetic`
and array shapes.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from core import conv_arithmetic
from experiments.book.records import Record, ambiguous, check, claim
from vla import action_tokens

ACTION_DIM, NUM_BINS = 7, 256  # book 19.3
JOINT_LOW, JOINT_HIGH = jnp.array([-math.pi]), jnp.array([math.pi])  # book 19.4, a Panda joint
MONTE_CARLO_SAMPLES = 1_000_000
IMAGE_SIZE, PATCH_SIZE = 224, 16  # book 19.5
PARAMETERS = 7_000_000_000  # book 19.9, a 7B model in float16


def _vocabulary_records() -> list[Record]:
    per_dimension = action_tokens.action_vocabulary_size(ACTION_DIM, NUM_BINS)
    shared = action_tokens.action_vocabulary_size(ACTION_DIM, NUM_BINS, layout="shared")
    joint_states = NUM_BINS**ACTION_DIM  # one token per combination of bins
    return [
        *check(
            "19.2 eq. 19.3",
            "|V_action| = D × N_bins",
            "1792",
            per_dimension,
            note="vla.action_tokens.action_vocabulary_size, per-dimension layout",
        ),
        *ambiguous(
            "19.2 eq. 19.3",
            "action vocabulary of RT-2 (Figure 19.1's model)",
            "1792",
            f"per-dimension tokens: {per_dimension}; shared bins: {shared}",
            "the book gives each dimension its own N_bins tokens; RT-2 shares one set of 256 "
            "bin tokens across the dimensions (the position in the action says which), 256 "
            "tokens; both layouts are in vla.action_tokens",
        ),
        *claim(
            "19.2",
            "tokens per joint combination",
            "one token per combination of joint bins would need 256^7 states",
            f"256^7 = {joint_states:,} ≈ {joint_states:.2e} combinations vs {per_dimension} "
            "per-dimension tokens",
            holds=per_dimension < joint_states,
        ),
    ]


def _quantization_records() -> list[Record]:
    width = action_tokens.bin_width(JOINT_LOW, JOINT_HIGH, NUM_BINS)[0]
    angles = jax.random.uniform(
        jax.random.key(0), (MONTE_CARLO_SAMPLES, 1), minval=-math.pi, maxval=math.pi
    )
    bins = action_tokens.discretize(angles, JOINT_LOW, JOINT_HIGH, NUM_BINS)
    errors = jnp.degrees(
        jnp.abs(action_tokens.bin_centers(bins, JOINT_LOW, JOINT_HIGH, NUM_BINS) - angles)
    )
    mean_error, max_error = float(jnp.mean(errors)), float(jnp.max(errors))
    half_width = float(jnp.degrees(width / 2))
    standard_error = float(jnp.std(errors)) / math.sqrt(MONTE_CARLO_SAMPLES)
    monte_carlo = (
        f"Monte Carlo, {MONTE_CARLO_SAMPLES:,} uniform angles: mean |error| = {mean_error:.4f}° "
        f"(± {standard_error:.4f}), max = {max_error:.4f}°"
    )
    return [
        *check(
            "19.2 eq. 19.4",
            "bin width Δθ = 2π/256 (rad)",
            "0.0245",
            width,
            note="vla.action_tokens.bin_width on [-π, π]",
        ),
        *check("19.2 eq. 19.4", "bin width Δθ (degrees)", "1.4", jnp.degrees(width)),
        *check(
            "19.2",
            "half the bin width (degrees)",
            "0.7",
            half_width,
            note=f"Δθ/2 = {half_width:.4f}°: the MAXIMUM reconstruction error ({monte_carlo})",
        ),
        *claim(
            "19.2",
            "expected quantization error (uniform distribution)",
            "the expected quantization error is half the bin width, ≈ 0.7°",
            monte_carlo,
            holds=abs(mean_error - half_width) < 5 * standard_error,
            why=f"within a bin |x − center| is uniform on [0, Δθ/2], so its mean is Δθ/4 = "
            f"{half_width / 2:.4f}° (≈ 0.35°); half the bin width ({half_width:.4f}°) is the "
            "maximum error",
        ),
    ]


def _patch_records() -> list[Record]:
    return [
        *check(
            "19.3 eq. 19.5",
            "patch grid 224/16 × 224/16",
            ["14", "14"],
            conv_arithmetic.patch_grid(IMAGE_SIZE, IMAGE_SIZE, PATCH_SIZE),
            note="core.conv_arithmetic.patch_grid",
        ),
        *check(
            "19.3 eq. 19.5",
            "number of patches N_p",
            "196",
            conv_arithmetic.num_patches(IMAGE_SIZE, IMAGE_SIZE, PATCH_SIZE),
            note="core.conv_arithmetic.num_patches",
        ),
    ]


def _memory_records() -> list[Record]:
    weights = jax.ShapeDtypeStruct((PARAMETERS,), jnp.float16)
    weight_bytes = weights.size * weights.dtype.itemsize
    return check(
        "19.9",
        "weights of a 7B-parameter model in float16 (GB)",
        "14",
        weight_bytes / 1e9,
        note=f"{weight_bytes:,} bytes (decimal GB; {weight_bytes / 2**30:.2f} GiB)",
    )


def records() -> list[Record]:
    return [
        *_vocabulary_records(),
        *_quantization_records(),
        *_patch_records(),
        *_memory_records(),
    ]
