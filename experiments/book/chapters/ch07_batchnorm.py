"""Chapters 7.4 and 8.4.4: batch normalization, the worked neuron and training vs inference.

Book 7.4.2 recomputed with `core.normalization` (`moments`, `batch_norm_train`) on the printed
pre-activations z = [0.10, 0.26, 0.08, 0.22] with ε = 1e-5, γ = 1, β = 0. The section's
equation labels collide: the definitions are (7.11)-(7.14), then the worked variance is
labelled (7.14) again, the normalization (7.14'), and y (7.15), the label of the inputs; (7.12)
and (7.13) are also used by the momentum example of 7.3.2. Records cite the section with the
printed label. Book 8.4.4 restates eqs. 7.11-7.14 as 8.30-8.33 and prints no numbers; its
training-vs-inference statement is checked with `batch_norm_train` and `batch_norm_eval`.
"""

from __future__ import annotations

import jax.numpy as jnp

from core import normalization
from experiments.book.records import Record, check, claim

PRE_ACTIVATIONS = (0.10, 0.26, 0.08, 0.22)  # z_1^(i), i = 1..4, book eq. (7.15)
EPSILON = 1e-5
GAMMA, BETA = 1.0, 0.0


def _worked_neuron_records() -> list[Record]:
    z = jnp.asarray(PRE_ACTIVATIONS).reshape(4, 1)  # [m_B, 1]: one neuron
    mean, var = normalization.moments(z, normalization.batch_axes(z.ndim))
    deviations = z - mean
    y, _ = normalization.batch_norm_train(
        z,
        jnp.full(1, GAMMA),
        jnp.full(1, BETA),
        normalization.init_running_stats(1, z.dtype),
        epsilon=EPSILON,
    )
    z_hat = normalization.standardize(z, mean, var, EPSILON)
    denominator = deviations / z_hat  # sqrt(σ² + ε), read off the standardization
    sample_1 = (0, 0)
    z_hat_1 = float(z_hat[sample_1])
    return [
        *check(
            "7.4.2 eq. (7.16)",
            "Σ z_1^(i), numerator of μ_B,1",
            "0.66",
            float(mean[0, 0]) * z.shape[0],
            note="μ_B times m_B = 4",
        ),
        *check(
            "7.4.2 eq. (7.16)", "μ_B,1, batch mean", "0.165", mean[0, 0], note="moments, eq. 7.11"
        ),
        *check(
            "7.4.2 eq. (7.14) [variance]",
            "(z_1^(i) - μ_B,1)², squared deviations",
            ["0.004225", "0.009025", "0.007225", "0.003025"],
            jnp.square(deviations[:, 0]),
        ),
        *check(
            "7.4.2 eq. (7.14) [variance]",
            "Σ (z_1^(i) - μ_B,1)²",
            "0.02350",
            float(var[0, 0]) * z.shape[0],
            note="m_B σ²",
        ),
        *check(
            "7.4.2 eq. (7.14) [variance]",
            "σ²_B,1, biased batch variance (1/m_B)",
            "0.005875",
            var[0, 0],
            note="moments, eq. 7.12 (divide by m_B = 4, not m_B - 1)",
        ),
        *check(
            "7.4.2 eq. (7.14')",
            "σ²_B,1 + ε",
            "0.005885",
            float(var[0, 0]) + EPSILON,
        ),
        *check(
            "7.4.2 eq. (7.14')",
            "z_1^(1) - μ_B,1",
            "-0.065",
            deviations[sample_1],
        ),
        *check(
            "7.4.2 eq. (7.14')",
            "sqrt(σ²_B,1 + ε)",
            "0.0767",
            denominator[sample_1],
            note="0.076714 to 5 significant digits",
        ),
        *check(
            "7.4.2 eq. (7.14')",
            "ẑ_1^(1), normalized sample 1",
            "-0.848",
            z_hat_1,
            note=(
                f"standardize gives {z_hat_1:.5f}, i.e. -0.847 to 3 decimals (also -0.065/0.0767 "
                "= -0.84746): the printed -0.848 is within one unit of its last digit"
            ),
        ),
        *check(
            "7.4.2 eq. (7.15) [output]",
            "y_1^(1) = γ ẑ + β with γ = 1, β = 0",
            "-0.848",
            y[sample_1],
            note=(
                f"batch_norm_train gives {float(y[sample_1]):.5f} (-0.847 to 3 decimals), equal "
                "to ẑ since γ = 1, β = 0"
            ),
        ),
    ]


def _training_vs_inference_records() -> list[Record]:
    z = jnp.asarray(PRE_ACTIVATIONS).reshape(4, 1)
    other_batch = z.at[1:].set(jnp.array([[1.0], [-2.0], [5.0]]))  # same sample 1, new others
    scale, bias = jnp.full(1, GAMMA), jnp.full(1, BETA)
    running = normalization.RunningStats(jnp.full(1, 0.15), jnp.full(1, 0.006))
    trained = [
        float(normalization.batch_norm_train(batch, scale, bias, running)[0][0, 0])
        for batch in (z, other_batch)
    ]
    evaluated = [
        float(normalization.batch_norm_eval(batch, scale, bias, running)[0, 0])
        for batch in (z, other_batch)
    ]
    return claim(
        "8.4.4",
        "training vs inference statistics",
        "training uses mini-batch statistics; inference uses running averages, avoiding "
        "dependence on the test-time batch composition",
        f"sample z = 0.10 with three other samples changed: training-mode output "
        f"{trained[0]:.4f} -> {trained[1]:.4f}; eval-mode output (μ_run = 0.15, σ²_run = 0.006) "
        f"{evaluated[0]:.4f} -> {evaluated[1]:.4f}",
        holds=evaluated[0] == evaluated[1] and abs(trained[0] - trained[1]) > 0.1,
    )


def records() -> list[Record]:
    return [*_worked_neuron_records(), *_training_vs_inference_records()]
