"""Reverse diffusion: the DDPM and DDIM steps and whole sampling loops under `lax.scan`.

Book 18.3 and 18.6-18.7 (eqs. 18.4, 18.7-18.8, Algorithm 2): from the denoiser's output at step
t, the predicted clean sample x̂_0 (eq. 18.7, optionally clipped), then either the DDPM posterior
q(x_{t'} | x_t, x̂_0) with its `fixed_small` (posterior) or `fixed_large` (β) variance, whose mean
equals eq. 18.4 when t' = t − 1 and nothing is clipped, or the DDIM update (eq. 18.8) with
σ = η·√(posterior variance), deterministic at η = 0.

The arithmetic follows diffusers' `DDPMScheduler.step` and `DDIMScheduler.step` operation by
operation (float32), including their conventions: DDPM adds noise only when t > 0, goes from t to
the next visited timestep t' (ᾱ_{−1} = 1), and clamps the posterior variance at 1e-20; DDIM goes
from t to t' = t − ⌊K/S⌋ whatever the spacing, with ᾱ_{t'<0} = 1 (`set_alpha_to_one`) or ᾱ_0.

A sampler's settings are a frozen dataclass (hashable, so it can be a static jit argument); the
schedule is a pytree of arrays; `denoise` runs every step inside one `lax.scan`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from core.checks import check_rank, check_same_shape
from core.diffusion_schedules import (
    PREDICTION_TYPES,
    TIMESTEP_SPACINGS,
    NoiseSchedule,
    check_option,
    inference_timesteps,
)

VARIANCE_TYPES = ("fixed_small", "fixed_large")
MIN_POSTERIOR_VARIANCE = 1e-20  # diffusers' clamp of the DDPM posterior variance

DenoiseFn = Callable[[jax.Array, jax.Array], jax.Array]
"""model_output = denoise_fn(noisy_sample [B, ...], timesteps [B] int32), same shape as the
sample: ε̂, x̂_0 or v̂ according to the prediction type. Close over params and conditioning."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class _ReverseProcess:
    """Settings shared by DDPM and DDIM (diffusers' scheduler config of the same names).

    num_inference_steps: S, the number of denoiser calls (1 ≤ S ≤ K).
    prediction_type: what the denoiser outputs: `epsilon`, `sample` or `v_prediction`.
    clip_sample: clip x̂_0 to [−clip_sample_range, clip_sample_range] (actions normalized to
      [−1, 1] stay in range).
    timestep_spacing: `leading`, `trailing` or `linspace` (see `inference_timesteps`).
    steps_offset: added to `leading` timesteps.
    """

    num_inference_steps: int
    prediction_type: str = "epsilon"
    clip_sample: bool = True
    clip_sample_range: float = 1.0
    timestep_spacing: str = "leading"
    steps_offset: int = 0

    def __post_init__(self):
        check_option("prediction type", self.prediction_type, PREDICTION_TYPES)
        check_option("timestep spacing", self.timestep_spacing, TIMESTEP_SPACINGS)
        if self.num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {self.num_inference_steps}")
        if not self.clip_sample_range > 0:
            raise ValueError(f"clip_sample_range must be positive, got {self.clip_sample_range}")
        if self.steps_offset < 0:
            raise ValueError(f"steps_offset must be non-negative, got {self.steps_offset}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DDPMSampler(_ReverseProcess):
    """Ancestral DDPM sampling (Ho et al. 2020); LeRobot's Diffusion Policy default with S = K.

    variance_type: `fixed_small` (σ² = posterior variance β̃, the default) or `fixed_large`
      (σ² = 1 − ᾱ_t/ᾱ_{t'}, i.e. β_t when t' = t − 1).
    """

    variance_type: str = "fixed_small"

    def __post_init__(self):
        super().__post_init__()
        check_option("variance type", self.variance_type, VARIANCE_TYPES)

    @property
    def is_stochastic(self) -> bool:
        return True


@dataclasses.dataclass(frozen=True, kw_only=True)
class DDIMSampler(_ReverseProcess):
    """DDIM sampling (Song et al. 2021), book 18.6.

    eta: η ≥ 0 scales σ_{t'} = η √((1 − ᾱ_{t'})/(1 − ᾱ_t) (1 − ᾱ_t/ᾱ_{t'})); 0 is deterministic.
    set_alpha_to_one: ᾱ before the first timestep is 1 (True) or ᾱ_0 (False).
    """

    eta: float = 0.0
    set_alpha_to_one: bool = True

    def __post_init__(self):
        super().__post_init__()
        if not self.eta >= 0:
            raise ValueError(f"eta must be non-negative, got {self.eta}")

    @property
    def is_stochastic(self) -> bool:
        return self.eta > 0


Sampler = DDPMSampler | DDIMSampler


class StepOutput(NamedTuple):
    """One reverse step: prev_sample [B, ...] x_{t'} and pred_original_sample [B, ...] x̂_0."""

    prev_sample: jax.Array
    pred_original_sample: jax.Array


def predict_clean_and_noise(
    prediction_type: str, model_output: jax.Array, sample: jax.Array, alpha_bar: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(x̂_0, ε̂) from the denoiser's output at x_t with ᾱ_t = `alpha_bar` (book eq. 18.7).

    epsilon: x̂_0 = (x_t − √(1 − ᾱ) ε̂)/√ᾱ; sample: ε̂ = (x_t − √ᾱ x̂_0)/√(1 − ᾱ);
    v_prediction: x̂_0 = √ᾱ x_t − √(1 − ᾱ) v̂, ε̂ = √ᾱ v̂ + √(1 − ᾱ) x_t.
    """
    check_option("prediction type", prediction_type, PREDICTION_TYPES)
    one_minus_alpha_bar = 1 - alpha_bar
    if prediction_type == "epsilon":
        clean = (sample - one_minus_alpha_bar**0.5 * model_output) / alpha_bar**0.5
        return clean, model_output
    if prediction_type == "sample":
        noise = (sample - alpha_bar**0.5 * model_output) / one_minus_alpha_bar**0.5
        return model_output, noise
    clean = alpha_bar**0.5 * sample - one_minus_alpha_bar**0.5 * model_output
    noise = alpha_bar**0.5 * model_output + one_minus_alpha_bar**0.5 * sample
    return clean, noise


def _clip(sampler: Sampler, clean: jax.Array) -> jax.Array:
    if not sampler.clip_sample:
        return clean
    return jnp.clip(clean, -sampler.clip_sample_range, sampler.clip_sample_range)


def _alpha_bar_before(
    schedule: NoiseSchedule, timestep: jax.Array, alpha_bar_at_minus_one: jax.Array
) -> jax.Array:
    """ᾱ at a traced timestep that may be −1 (before the first step)."""
    alpha_bar = schedule.alphas_cumprod[jnp.maximum(timestep, 0)]
    return jnp.where(timestep >= 0, alpha_bar, alpha_bar_at_minus_one)


def _check_step_arrays(model_output: jax.Array, sample: jax.Array, noise) -> None:
    check_rank("sample", sample, range(1, 8))
    check_same_shape(sample=sample, model_output=model_output)
    if noise is not None:
        check_same_shape(sample=sample, noise=noise)


def ddpm_step(
    schedule: NoiseSchedule,
    sampler: DDPMSampler,
    model_output: jax.Array,
    timestep: jax.Array,
    prev_timestep: jax.Array,
    sample: jax.Array,
    noise: jax.Array,
) -> StepOutput:
    """One ancestral step x_t -> x_{t'} ~ q(x_{t'} | x_t, x̂_0) (book eqs. 18.4, 18.7).

    Mean: ᾱ_{t'}^½ β_t/(1 − ᾱ_t) x̂_0 + α_t^½ (1 − ᾱ_{t'})/(1 − ᾱ_t) x_t, with α_t = ᾱ_t/ᾱ_{t'}
    and β_t = 1 − α_t; for t' = t − 1 and unclipped x̂_0 it is eq. 18.4's
    (x_t − β_t/√(1 − ᾱ_t) ε̂)/√α_t. Noise σ_t z is added only when t > 0.

    Args:
      schedule: the noise schedule the denoiser was trained with.
      sampler: DDPM settings.
      model_output: [B, ...] the denoiser's output at (sample, timestep).
      timestep: int scalar t ∈ {0, ..., K−1}.
      prev_timestep: int scalar t' < t, or −1 after the last step.
      sample: [B, ...] x_t.
      noise: [B, ...] standard normal z (multiplied by 0 at t = 0).
    """
    if noise is None:
        raise ValueError("noise is required: DDPM adds σ_t z at every step with t > 0")
    _check_step_arrays(model_output, sample, noise)
    alpha_bar = schedule.alphas_cumprod[timestep]
    alpha_bar_prev = _alpha_bar_before(schedule, prev_timestep, jnp.float32(1.0))
    beta_bar, beta_bar_prev = 1 - alpha_bar, 1 - alpha_bar_prev
    alpha = alpha_bar / alpha_bar_prev
    beta = 1 - alpha
    clean, _ = predict_clean_and_noise(sampler.prediction_type, model_output, sample, alpha_bar)
    clean = _clip(sampler, clean)
    clean_coefficient = (alpha_bar_prev**0.5 * beta) / beta_bar
    sample_coefficient = alpha**0.5 * beta_bar_prev / beta_bar
    mean = clean_coefficient * clean + sample_coefficient * sample
    if sampler.variance_type == "fixed_small":
        posterior_variance = beta_bar_prev / beta_bar * beta
        variance = jnp.maximum(posterior_variance, MIN_POSTERIOR_VARIANCE)
    else:
        variance = beta
    prev_sample = mean + jnp.where(timestep > 0, variance**0.5 * noise, 0.0)
    return StepOutput(prev_sample.astype(sample.dtype), clean.astype(sample.dtype))


def ddim_step(
    schedule: NoiseSchedule,
    sampler: DDIMSampler,
    model_output: jax.Array,
    timestep: jax.Array,
    prev_timestep: jax.Array,
    sample: jax.Array,
    noise: jax.Array | None = None,
) -> StepOutput:
    """One DDIM step x_t -> x_{t'} (book eqs. 18.7-18.8).

    x_{t'} = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'} − σ²) ε̂ + σ z with σ = η √((1 − ᾱ_{t'})/(1 − ᾱ_t)
    (1 − ᾱ_t/ᾱ_{t'})); ε̂ is the model's (or derived from its x̂_0 / v̂), taken before clipping
    x̂_0, as in diffusers.

    Args:
      schedule, sampler, model_output, timestep, sample: as in `ddpm_step`.
      prev_timestep: int scalar t' (negative after the last step: ᾱ_{t'} = 1 or ᾱ_0).
      noise: [B, ...] standard normal z; required when η > 0, ignored otherwise.
    """
    if sampler.is_stochastic and noise is None:
        raise ValueError(f"noise is required when eta > 0 (eta={sampler.eta})")
    _check_step_arrays(model_output, sample, noise)
    final_alpha_bar = jnp.float32(1.0) if sampler.set_alpha_to_one else schedule.alphas_cumprod[0]
    alpha_bar = schedule.alphas_cumprod[timestep]
    alpha_bar_prev = _alpha_bar_before(schedule, prev_timestep, final_alpha_bar)
    clean, predicted_noise = predict_clean_and_noise(
        sampler.prediction_type, model_output, sample, alpha_bar
    )
    clean = _clip(sampler, clean)
    variance = ((1 - alpha_bar_prev) / (1 - alpha_bar)) * (1 - alpha_bar / alpha_bar_prev)
    std = sampler.eta * variance**0.5
    direction = (1 - alpha_bar_prev - std**2) ** 0.5 * predicted_noise
    prev_sample = alpha_bar_prev**0.5 * clean + direction
    if sampler.is_stochastic:
        prev_sample = prev_sample + std * noise
    return StepOutput(prev_sample.astype(sample.dtype), clean.astype(sample.dtype))


def timestep_pairs(num_train_timesteps: int, sampler: Sampler) -> tuple[np.ndarray, np.ndarray]:
    """The (t, t') pairs of the S steps: [S] visited timesteps and [S] where each step lands.

    DDPM lands on the next visited timestep (−1 after the last); DDIM on t − ⌊K/S⌋, diffusers'
    rule for every spacing (with `trailing` or `linspace` it need not be a visited timestep).
    """
    timesteps = inference_timesteps(
        num_train_timesteps,
        sampler.num_inference_steps,
        sampler.timestep_spacing,
        sampler.steps_offset,
    )
    if isinstance(sampler, DDIMSampler):
        prev_timesteps = timesteps - num_train_timesteps // sampler.num_inference_steps
    else:
        prev_timesteps = np.append(timesteps[1:], -1)
    return timesteps, prev_timesteps.astype(np.int32)


def step_noise(key: jax.Array, step_index: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    """The standard normal z of step `step_index` of a loop driven by `key` (fold_in(key, i))."""
    return jax.random.normal(jax.random.fold_in(key, step_index), shape, dtype)


def denoise(
    denoise_fn: DenoiseFn,
    schedule: NoiseSchedule,
    sampler: Sampler,
    initial_sample: jax.Array,
    key: jax.Array | None = None,
) -> jax.Array:
    """Runs the S reverse steps from x_T = `initial_sample` inside one `lax.scan` (Algorithm 2).

    Args:
      denoise_fn: the denoiser, `denoise_fn(x_t [B, ...], t [B] int32) -> [B, ...]`.
      schedule: the noise schedule it was trained with (K = schedule.num_train_timesteps).
      sampler: `DDPMSampler` or `DDIMSampler` settings (static).
      initial_sample: [B, ...] x_T, usually standard normal.
      key: PRNG key of the steps' noise (step i uses `step_noise(key, i, ...)`); required for
        DDPM and DDIM with η > 0, unused otherwise.

    Returns:
      [B, ...] the final sample x_0.
    """
    if not isinstance(sampler, DDPMSampler | DDIMSampler):
        raise ValueError(f"sampler must be a DDPMSampler or DDIMSampler, got {sampler!r}")
    if sampler.is_stochastic and key is None:
        raise ValueError(f"{type(sampler).__name__} draws noise at every step: pass a key")
    check_rank("initial_sample", initial_sample, range(1, 8))
    step = ddim_step if isinstance(sampler, DDIMSampler) else ddpm_step
    timesteps, prev_timesteps = timestep_pairs(schedule.num_train_timesteps, sampler)
    batch_size = initial_sample.shape[0]

    def reverse_step(sample, step_inputs):
        step_index, timestep, prev_timestep = step_inputs
        model_output = denoise_fn(sample, jnp.full((batch_size,), timestep))
        noise = None
        if sampler.is_stochastic:
            noise = step_noise(key, step_index, sample.shape, sample.dtype)
        output = step(schedule, sampler, model_output, timestep, prev_timestep, sample, noise)
        return output.prev_sample, None

    step_inputs = (jnp.arange(len(timesteps)), jnp.asarray(timesteps), jnp.asarray(prev_timesteps))
    final_sample, _ = jax.lax.scan(reverse_step, initial_sample, step_inputs)
    return final_sample


def sample(
    denoise_fn: DenoiseFn,
    schedule: NoiseSchedule,
    sampler: Sampler,
    shape: tuple[int, ...],
    key: jax.Array,
    dtype=jnp.float32,
) -> jax.Array:
    """Draws x_T ~ N(0, I) of `shape` [B, ...] and denoises it (Algorithm 2); returns [B, ...]."""
    initial_key, steps_key = jax.random.split(key)
    initial_sample = jax.random.normal(initial_key, shape, dtype)
    return denoise(denoise_fn, schedule, sampler, initial_sample, steps_key)
