"""Chapter 11.1: softmax overflow at z = 1000 and the max-subtraction (log-sum-exp) fix.

Book 11.1.1-11.1.3 (eqs. 11.1-11.5): the naive softmax and log-sum-exp against the stable forms
of `core.numerics`, in float32 and float64, and the cross-entropy of eq. 11.5 from
`core.losses`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from core import losses, numerics
from experiments.book.records import Record, claim

LARGE_LOGITS = (1000.0, 999.0, 0.0)  # the book's z_i = 1000, with a runner-up and a small one
TRUE_CLASS = 1
TOLERANCE = 1e-12


def _naive_overflow_records() -> list[Record]:
    out = []
    for dtype in (jnp.float32, jnp.float64):
        logits = jnp.asarray(LARGE_LOGITS, dtype=dtype)
        naive = numerics.naive_softmax(logits)
        largest_exponent = float(np.log(np.finfo(dtype).max))
        out += claim(
            "11.1.1",
            f"naive softmax at z = 1000 ({jnp.dtype(dtype).name})",
            "e^{z_i} exceeds the floating-point range at z_i = 1000, so the naive softmax fails",
            f"e^1000 = {float(jnp.exp(logits[0]))}; naive softmax = {naive.tolist()} "
            f"(e^z overflows once z > {largest_exponent:.2f})",
            holds=bool(jnp.isinf(jnp.exp(logits[0])) and jnp.isnan(naive[0])),
        )
    return out


def _stable_softmax_records() -> list[Record]:
    out = []
    for dtype in (jnp.float32, jnp.float64):
        logits = jnp.asarray(LARGE_LOGITS, dtype=dtype)
        shifted = logits - jnp.max(logits)  # eq. 11.1
        stable = numerics.softmax(logits)
        reference = jax.nn.softmax(logits)
        relative_tolerance = 4 * float(jnp.finfo(dtype).eps)
        name = jnp.dtype(dtype).name
        out += claim(
            "11.1.2 eqs. 11.1-11.3",
            f"stable softmax at z = 1000 ({name})",
            "with z' = z - max z every e^{z'_i} ∈ (0, 1]: no overflow, same probabilities",
            f"core.numerics.softmax = {stable.tolist()}, the largest e^{{z'}} is exactly 1, "
            f"equal to jax.nn.softmax within {relative_tolerance:.1e} relative",
            holds=bool(
                jnp.all(jnp.isfinite(stable))
                and jnp.max(jnp.exp(shifted)) == 1.0
                and jnp.allclose(stable, reference, rtol=relative_tolerance, atol=0.0)
            ),
        )
    return out


def _log_domain_records() -> list[Record]:
    logits = jnp.asarray(LARGE_LOGITS, dtype=jnp.float64)
    label = jax.nn.one_hot(TRUE_CLASS, len(LARGE_LOGITS), dtype=jnp.float64)
    log_probs = numerics.log_softmax(logits)
    naive_log_probs = jnp.log(numerics.naive_softmax(logits))
    lse_gap = abs(float(numerics.logsumexp(logits) - jax.nn.logsumexp(logits)))
    cross_entropy = losses.categorical_cross_entropy(logits, label)
    exact_cross_entropy = float(np.log1p(np.exp(-1.0) + np.exp(-1000.0)) + 1.0)
    return [
        *claim(
            "11.1.3 eq. 11.4",
            "log p at z = 1000",
            "log p_i = z'_i - logsumexp(z') stays finite",
            f"core.numerics.log_softmax = {log_probs.tolist()}; the naive log(softmax) = "
            f"{naive_log_probs.tolist()}; logsumexp = 1000 + log(1 + e^-1 + e^-1000) agrees with "
            f"jax.nn.logsumexp within {lse_gap:.1e}",
            holds=bool(jnp.all(jnp.isfinite(log_probs))) and lse_gap < TOLERANCE,
        ),
        *claim(
            "11.1.3 eq. 11.5",
            "cross-entropy at z = 1000",
            "CCE = -Σ_k y_k (z'_k - logsumexp(z')) is computable at z = 1000",
            f"core.losses.categorical_cross_entropy(z = [1000, 999, 0], y = e_2) = "
            f"{float(cross_entropy):.12f}; exact 1 + log(1 + e^-1 + e^-1000) = "
            f"{exact_cross_entropy:.12f}",
            holds=abs(float(cross_entropy) - exact_cross_entropy) < TOLERANCE,
        ),
    ]


def records() -> list[Record]:
    return [*_naive_overflow_records(), *_stable_softmax_records(), *_log_domain_records()]
