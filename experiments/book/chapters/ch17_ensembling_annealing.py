"""Chapter 17 (ACT): temporal-ensembling weights and KL-weight annealing.

Book 17.2.2 and 17.7 (eqs. 17.60-17.62) with `core.temporal_ensembling`; 17.3.3 (eq. 17.19) and
17.9.3 (eq. 17.69) with `core.schedules.kl_weight_annealing`.
"""

from __future__ import annotations

import jax.numpy as jnp

from core import schedules
from core import temporal_ensembling as te
from experiments.book.records import Record, ambiguous, check, claim

CHUNK_SIZE = 100  # k of 17.2.2 and 17.7.1


def _weight_records() -> list[Record]:
    raw = te.temporal_ensemble_weights(CHUNK_SIZE, te.BOOK_DECAY, "book", normalize=False)
    normalized = te.temporal_ensemble_weights(CHUNK_SIZE, te.BOOK_DECAY, "book")
    act = te.temporal_ensemble_weights(CHUNK_SIZE, te.ACT_DECAY, "act")
    oldest_raw = float(raw[CHUNK_SIZE - 1])
    return [
        *check("17.7.2 eq. 17.61", "w_0 (τ = 0, λ = 0.1)", "1", float(raw[0])),
        *check(
            "17.7.2 eq. 17.61",
            "w_1 = e^−0.1",
            "0.905",
            float(raw[1]),
            note=f"e^−0.1 = {float(raw[1]):.6f}",
        ),
        *claim(
            "17.7.2 eq. 17.61",
            "w_99 (τ = 99, λ = 0.1)",
            "w_99 ≈ 0",
            f"w_99 = e^−9.9 = {oldest_raw:.2e} (raw); normalized over k = 100 predictions "
            f"{float(normalized[CHUNK_SIZE - 1]):.2e} vs {float(normalized[0]):.4f} for τ = 0",
            holds=oldest_raw < 1e-4 * float(raw[0]),
            note="negligible: below 1e-4 of the newest prediction's weight",
        ),
        *ambiguous(
            "17.7.2 / 17.2.2",
            "which prediction weighs most (k = 100)",
            "recent predictions dominate (w_τ = e^−λτ, τ = age)",
            f"book λ = 0.1: newest {float(normalized[0]):.4f}, oldest "
            f"{float(normalized[-1]):.2e}; original ACT m = 0.01: newest {float(act[0]):.4f}, "
            f"oldest {float(act[-1]):.4f}",
            "The book's 17.61 indexes by age so the newest weighs most; the original ACT code "
            "uses w_i = exp(−m i) with w_0 the OLDEST prediction (m = 0.01), so the oldest weighs "
            "most. core.temporal_ensembling implements both (convention='book' / 'act').",
        ),
    ]


def _overlap_records() -> list[Record]:
    counts = {
        step: int(jnp.sum(te.available_predictions(jnp.asarray(step), CHUNK_SIZE)))
        for step in (0, 1, 2, CHUNK_SIZE - 1, 5 * CHUNK_SIZE)
    }
    return [
        *claim(
            "17.7.1 (and 17.2.2)",
            "predictions of a_1 with k = 100, chunks at t = 0, 1, 2, ...",
            "â_1 is predicted twice (by the chunks from t = 0 and t = 1)",
            f"a_1 is predicted by {counts[1]} chunks (a_0 by {counts[0]}, a_2 by {counts[2]})",
            holds=counts[1] == 2,
        ),
        *claim(
            "17.7.2 eq. 17.60",
            "predictions per action at steady state",
            "the sum over τ = 0..k−1 has k terms",
            f"a_i is predicted by min(i + 1, k) chunks: a_99 by {counts[CHUNK_SIZE - 1]}, "
            f"a_500 by {counts[5 * CHUNK_SIZE]} = k",
            holds=counts[CHUNK_SIZE - 1] == CHUNK_SIZE == counts[5 * CHUNK_SIZE],
        ),
    ]


def _kl_step_annealing_records() -> list[Record]:
    target, anneal_steps = 10.0, 10000  # the example of 17.19
    beta = schedules.kl_weight_annealing(target, anneal_steps)
    steps = (0, 2500, 5000, 10000, 20000)
    values = [float(beta(t)) for t in steps]
    return claim(
        "17.3.3 eq. 17.19",
        "KL annealing, β_target = 10, t_anneal = 10000",
        "β increases linearly from 0 to β_target over t_anneal steps, then stays",
        f"β at t = {list(steps)}: {values}",
        holds=values == [0.0, 2.5, 5.0, 10.0, 10.0],
    )


def _kl_epoch_annealing_records() -> list[Record]:
    target, warmup_epochs = 10.0, 20  # the example of 17.9.3
    beta = schedules.kl_weight_annealing(target, warmup_epochs)
    text_reading = schedules.kl_weight_annealing(target, warmup_epochs - 1, initial_weight=0.1)
    late = [float(beta(e)) for e in range(21, 101)]
    return [
        *check(
            "17.9.3 eq. 17.69",
            "β at epoch 1 (e_warmup = 20, β_target = 10)",
            "0.1",
            float(beta(1)),
            why=(
                f"the printed formula min(1, e/e_warmup)·β_target gives "
                f"{float(beta(1))} at e = 1 (β(e) = e/2); the text's 'from 0.1 to 10' and the "
                f"recommendation 'start with β = 0.1' need another formula, e.g. "
                f"0.1 + 9.9 (e − 1)/19, which gives {float(text_reading(0))} at e = 1 and "
                f"{float(text_reading(warmup_epochs - 1))} at e = 20: text and formula disagree"
            ),
        ),
        *check(
            "17.9.3 eq. 17.69",
            "β at epoch 20",
            "10",
            float(beta(warmup_epochs)),
            note="the formula reaches β_target at e = e_warmup, as the text says",
        ),
        *claim(
            "17.9.3 eq. 17.69",
            "β on epochs 21-100",
            "β = 10 (constant)",
            f"β(21..100) ∈ {sorted(set(late))}",
            holds=set(late) == {target},
        ),
    ]


def records() -> list[Record]:
    return [
        *_weight_records(),
        *_overlap_records(),
        *_kl_step_annealing_records(),
        *_kl_epoch_annealing_records(),
    ]
