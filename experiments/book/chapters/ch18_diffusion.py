"""Chapter 18 (Diffusion Policy): the forward process, the reverse mean and DDIM, checked by code.

Book 18.2 (eqs. 18.1-18.3), 18.3 (eq. 18.4), 18.4 (eq. 18.5) and 18.6 (eqs. 18.7-18.8) with
`core.diffusion_schedules` and `core.diffusion_samplers` (which equal diffusers' schedulers to
float32 rounding, tests/core/test_diffusion_*.py). Chapter 18 prints no worked numbers; its
statements are checked instead: the closed form against the iterated chain (exact moments and a
Monte Carlo run), "ᾱ_K ≈ 0" for the three schedules at K = 100 and 1000, eq. 18.4 and eqs.
18.7-18.8 as printed against the samplers, the determinism of σ = 0, and the timestep indexing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from core import diffusion_samplers, diffusion_schedules
from experiments.book.records import Record, ambiguous, claim

SIGNAL_THRESHOLD = 0.01  # "x_K is noise": √ᾱ_K, the amplitude of x_0 left in x_K, below 1 %
MONTE_CARLO_CHAINS, MONTE_CARLO_STEPS = 20_000, 100
CLEAN_VALUE = 1.5  # the x_0 every Monte Carlo chain starts from


def _float64_schedule(name: str, num_train_timesteps: int) -> dict[str, np.ndarray]:
    schedule = diffusion_schedules.make_noise_schedule(name, num_train_timesteps)
    return {
        field: np.asarray(getattr(schedule, field), np.float64)
        for field in ("alphas", "alphas_cumprod")
    }


def _closed_form_records() -> list[Record]:
    """Eq. 18.2 from eq. 18.1: exact moments of the iterated chain, and a Monte Carlo run."""
    schedule = diffusion_schedules.make_noise_schedule("linear", 1000)
    alphas = np.asarray(schedule.alphas, np.float64)
    alpha_bar = np.asarray(schedule.alphas_cumprod, np.float64)
    mean_scale, variance, worst = 1.0, 0.0, 0.0
    for alpha, expected in zip(alphas, alpha_bar, strict=True):
        # x_k = √α_k x_{k−1} + √β_k ε_k: mean coefficient and variance of x_k given x_0
        mean_scale, variance = np.sqrt(alpha) * mean_scale, alpha * variance + (1 - alpha)
        worst = max(worst, abs(mean_scale - np.sqrt(expected)), abs(variance - (1 - expected)))

    cosine = diffusion_schedules.make_noise_schedule("squaredcos_cap_v2", MONTE_CARLO_STEPS)

    def one_step(sample, step_inputs):  # book eq. 18.1
        alpha, key = step_inputs
        noise = jax.random.normal(key, sample.shape, sample.dtype)
        return jnp.sqrt(alpha) * sample + jnp.sqrt(1 - alpha) * noise, None

    keys = jax.random.split(jax.random.key(0), MONTE_CARLO_STEPS)
    start = jnp.full((MONTE_CARLO_CHAINS,), CLEAN_VALUE, jnp.float32)
    middle = MONTE_CARLO_STEPS // 2
    chains, _ = jax.lax.scan(one_step, start, (cosine.alphas[:middle], keys[:middle]))
    alpha_bar_middle = float(cosine.alphas_cumprod[middle - 1])
    expected_mean = np.sqrt(alpha_bar_middle) * CLEAN_VALUE
    expected_std = np.sqrt(1 - alpha_bar_middle)
    mean_error = abs(float(chains.mean()) - expected_mean) / (
        expected_std / np.sqrt(MONTE_CARLO_CHAINS)
    )
    std_error = abs(float(chains.std()) - expected_std) / (
        expected_std / np.sqrt(2 * MONTE_CARLO_CHAINS)
    )
    return claim(
        "18.2 eqs. 18.1-18.3",
        "closed form q(x_k | x_0) = iterated one-step chain",
        "q(x_k | x_0) = N(√ᾱ_k x_0, (1 − ᾱ_k) I) with ᾱ_k = Π_{s≤k} α_s",
        f"exact moments of the iterated eq. 18.1 (linear, K = 1000): max deviation {worst:.1e}; "
        f"{MONTE_CARLO_CHAINS:,} chains from x_0 = {CLEAN_VALUE}, {middle} cosine steps: mean and "
        f"std within {mean_error:.1f} and {std_error:.1f} standard errors of √ᾱ x_0 = "
        f"{expected_mean:.4f}, √(1 − ᾱ) = {expected_std:.4f}",
        holds=worst < 1e-6 and mean_error < 4 and std_error < 4,
        note="float32 schedule, moments iterated in float64; Monte Carlo tolerance 4 standard "
        "errors",
    )


def _terminal_noise_records() -> list[Record]:
    """ "As k → K, ᾱ_K ≈ 0": the signal √ᾱ_K left in x_K for each schedule and K."""
    terminal = {
        (name, num_steps): float(_float64_schedule(name, num_steps)["alphas_cumprod"][-1])
        for name in diffusion_schedules.BETA_SCHEDULES
        for num_steps in (100, 1000)
    }
    policy_default = terminal[("squaredcos_cap_v2", 100)]
    out = []
    for (name, num_steps), alpha_bar in terminal.items():
        signal = np.sqrt(alpha_bar)
        betas = "" if name == "squaredcos_cap_v2" else " (β from 1e-4 to 0.02)"
        out += claim(
            "18.2",
            f"ᾱ_K ≈ 0 for {name}, K = {num_steps}",
            "as k → K, ᾱ_K ≈ 0, so x_K ≈ N(0, I)",
            f"ᾱ_K = {alpha_bar:.3g}: x_K keeps √ᾱ_K = {signal:.3g} of x_0",
            holds=signal < SIGNAL_THRESHOLD,
            note=f"criterion √ᾱ_K < {SIGNAL_THRESHOLD}",
            why=f"{name}{betas} at K = {num_steps} leaves {100 * signal:.2g}% of x_0's "
            "amplitude in x_K, so sampling from N(0, I) starts off the training distribution; "
            f"Diffusion Policy uses squaredcos_cap_v2 at K = 100 (ᾱ_K = {policy_default:.2g})",
        )
    return out


def _reverse_mean_records() -> list[Record]:
    """Eq. 18.4 as printed against the DDPM step (no clipping, no noise), every k."""
    schedule = diffusion_schedules.make_noise_schedule("squaredcos_cap_v2", 100)
    schedule64 = jax.tree.map(lambda values: jnp.asarray(values, jnp.float64), schedule)
    sampler = diffusion_samplers.DDPMSampler(num_inference_steps=100, clip_sample=False)
    generator = np.random.default_rng(0)
    sample, predicted_noise = generator.standard_normal((2, 4, 8, 3))
    alpha_bar = np.asarray(schedule64.alphas_cumprod)
    timesteps = np.arange(1, 100)
    no_noise = np.zeros_like(sample)

    def step_mean(t):
        return diffusion_samplers.ddpm_step(
            schedule64, sampler, predicted_noise, t, t - 1, sample, no_noise
        ).prev_sample

    ours = np.asarray(jax.jit(jax.vmap(step_mean))(timesteps))  # [K − 1, ...] one per k
    alpha = (alpha_bar[1:] / alpha_bar[:-1])[:, None, None, None]  # α_k of ᾱ_k = Π α_s
    beta = 1 - alpha
    noise_scale = beta / np.sqrt(1 - alpha_bar[timesteps])[:, None, None, None]
    printed = (sample - noise_scale * predicted_noise) / np.sqrt(alpha)  # book eq. 18.4
    worst = float(np.abs(ours - printed).max())
    return claim(
        "18.3 eq. 18.4",
        "reverse mean μ_θ(x_k, k)",
        "μ_θ = (x_k − β_k/√(1 − ᾱ_k) ε_θ)/√α_k",
        f"equals the DDPM step's mean (diffusers' posterior form via x̂_0) for every k = 1..99 "
        f"to {worst:.1e} (float64)",
        holds=worst < 1e-10,
        note="α_k = ᾱ_k/ᾱ_(k−1) (the float32 tables of α and ᾱ are rounded separately, 1e-8 "
        "apart); without clipping: with clip_sample (Diffusion Policy's default) x̂_0 is clipped "
        "to [−1, 1] first and the mean is no longer eq. 18.4",
    )


def _ddim_records() -> list[Record]:
    """Eqs. 18.7-18.8 as printed against the DDIM step, and σ = 0 making sampling deterministic."""
    schedule = diffusion_schedules.make_noise_schedule("squaredcos_cap_v2", 100)
    alpha_bar = np.asarray(schedule.alphas_cumprod, np.float64)
    generator = np.random.default_rng(1)
    sample, predicted_noise = generator.standard_normal((2, 4, 8, 3))
    t, t_prev = 60, 50
    deterministic = diffusion_samplers.DDIMSampler(num_inference_steps=10, clip_sample=False)
    ours = diffusion_samplers.ddim_step(
        jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), schedule),
        deterministic,
        predicted_noise,
        t,
        t_prev,
        sample,
    )
    clean = (sample - np.sqrt(1 - alpha_bar[t]) * predicted_noise) / np.sqrt(alpha_bar[t])  # 18.7
    printed = np.sqrt(alpha_bar[t_prev]) * clean + np.sqrt(1 - alpha_bar[t_prev]) * predicted_noise
    step_error = float(np.abs(np.asarray(ours.prev_sample) - printed).max())

    def denoiser(noisy, timesteps):
        return 0.5 * noisy + 0.01 * timesteps[:, None, None]

    initial = jnp.asarray(generator.standard_normal((2, 8, 3)), jnp.float32)
    run = jax.jit(diffusion_samplers.denoise, static_argnums=(0, 2))
    spreads = {}
    for eta in (0.0, 1.0):
        sampler = diffusion_samplers.DDIMSampler(num_inference_steps=10, eta=eta)
        first, second = (
            run(denoiser, schedule, sampler, initial, jax.random.key(seed)) for seed in (0, 1)
        )
        spreads[eta] = float(jnp.abs(first - second).max())
    return [
        *claim(
            "18.6 eqs. 18.7-18.8",
            "DDIM update with σ = 0",
            "x_k' = √ᾱ_k' x̂_0 + √(1 − ᾱ_k' − σ²) ε_θ + σ ε', x̂_0 from eq. 18.7",
            f"equals core.diffusion_samplers.ddim_step (η = 0, k = {t} -> {t_prev}) to "
            f"{step_error:.1e} (float64)",
            holds=step_error < 1e-10,
        ),
        *claim(
            "18.6",
            "σ = 0 gives a deterministic sampler",
            "setting σ_k' = 0 yields a deterministic sampling process",
            f"10 DDIM steps from the same x_K with two noise keys: max difference "
            f"{spreads[0.0]:.1e} at η = 0, {spreads[1.0]:.2g} at η = 1",
            holds=spreads[0.0] == 0.0 and spreads[1.0] > 0.0,
        ),
    ]


def _indexing_records() -> list[Record]:
    """Eq. 18.5 and Algorithm 1 draw k ~ U{1..K}; the implementations index from 0."""
    alpha_bar_first = float(_float64_schedule("squaredcos_cap_v2", 100)["alphas_cumprod"][0])
    return ambiguous(
        "18.4 eq. 18.5",
        "training timestep distribution",
        "k ~ U{1, ..., K}",
        f"t ~ U{{0, ..., K − 1}}, ᾱ[t] = ᾱ_(t+1) (ᾱ[0] = {alpha_bar_first:.6f} < 1)",
        "diffusers and LeRobot draw t = k − 1 from {0, ..., K − 1} and store ᾱ_k at index "
        "k − 1: the same K noise levels; code that draws from {1, ..., K} with 0-based arrays "
        "skips the least noisy level and reads past the last",
    )


def records() -> list[Record]:
    return [
        *_closed_form_records(),
        *_terminal_noise_records(),
        *_reverse_mean_records(),
        *_ddim_records(),
        *_indexing_records(),
    ]
