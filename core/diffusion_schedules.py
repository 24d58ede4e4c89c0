"""Diffusion noise schedules and the forward (noising) process.

Book 18.2 and 18.4 (eqs. 18.1-18.3, 18.5): the variance schedule β_k, α_k = 1 − β_k, the
cumulative products ᾱ_k, the closed-form noising q(x_k | x_0) and the regression targets of the
training objective; and the inference timesteps a sampler visits. The reverse steps (DDPM, DDIM)
and the sampling loops are in `core.diffusion_samplers`.

Conventions are those of Hugging Face diffusers (`DDPMScheduler`, `DDIMScheduler`), which
Diffusion Policy and LeRobot train with, so that a schedule built here equals theirs to float32
rounding and a denoiser trained there can be sampled here:

  * Timesteps are 0-based: index t = 0 .. K−1 holds the book's step k = t + 1, so
    `alphas_cumprod[t]` is the book's ᾱ_{t+1} and training draws t ~ U{0, ..., K−1} where the
    book writes k ~ U{1, ..., K} (eq. 18.5): the same distribution over the same K noise levels.
  * `linear` and `scaled_linear` are float32 linspaces (of β, or of √β then squared);
    `squaredcos_cap_v2` discretizes the cosine ᾱ(s) = cos²((s + 0.008)/1.008 · π/2) of Nichol
    and Dhariwal in float64, caps β at 0.999, and rounds to float32.
  * ᾱ is accumulated in float64 and rounded to float32 per entry (as PyTorch's CPU cumprod does),
    so the 1000-step product does not drift by float32 rounding.

Schedules are computed once in numpy (they are constants of a trained model) and held in a
`NoiseSchedule` pytree of jax arrays, which jitted code takes as an ordinary argument.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from core.checks import check_rank, check_same_shape, check_shapes

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
MAX_BETA = 0.999  # the cap of squaredcos_cap_v2 ("v2"), which keeps β_K < 1
COSINE_OFFSET = 0.008  # s of ᾱ(s) = cos²((s + 0.008)/1.008 · π/2), Nichol & Dhariwal (2021)


def check_option(name: str, value: str, options: tuple[str, ...]) -> None:
    """Raises ValueError naming the option when `value` is not one of `options`."""
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; expected one of {options}")


def _cosine_alpha_bar(fraction: np.ndarray) -> np.ndarray:
    """ᾱ(s) = cos²((s + 0.008)/1.008 · π/2) for s = t/K ∈ [0, 1], in float64."""
    return np.cos((fraction + COSINE_OFFSET) / (1 + COSINE_OFFSET) * np.pi / 2) ** 2


def beta_schedule(
    name: str, num_train_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02
) -> np.ndarray:
    """The variance schedule β_1..β_K of the forward chain (book eq. 18.1), as float32 [K].

    Args:
      name: `linear` (β from beta_start to beta_end, the DDPM paper's schedule), `scaled_linear`
        (√β linear, Stable Diffusion's), or `squaredcos_cap_v2` (the cosine schedule; ignores
        beta_start/beta_end; Diffusion Policy's default).
      num_train_timesteps: K ≥ 2.
      beta_start, beta_end: β_1 and β_K of the linear schedules, 0 < beta_start ≤ beta_end < 1.
    """
    check_option("beta schedule", name, BETA_SCHEDULES)
    if num_train_timesteps < 2:
        raise ValueError(f"num_train_timesteps must be at least 2, got {num_train_timesteps}")
    if not 0 < beta_start <= beta_end < 1:
        raise ValueError(
            f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}"
        )
    if name == "linear":
        return np.linspace(beta_start, beta_end, num_train_timesteps).astype(np.float32)
    if name == "scaled_linear":
        roots = np.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps)
        return np.square(roots.astype(np.float32))
    fractions = np.arange(num_train_timesteps + 1) / num_train_timesteps
    alpha_bar = _cosine_alpha_bar(fractions)
    betas = np.minimum(1 - alpha_bar[1:] / alpha_bar[:-1], MAX_BETA)
    return betas.astype(np.float32)


@flax.struct.dataclass
class NoiseSchedule:
    """The constants of a diffusion model's forward process, indexed by timestep t = 0..K−1.

    betas: [K] β (eq. 18.1).
    alphas: [K] α = 1 − β.
    alphas_cumprod: [K] ᾱ, the running product of α (eq. 18.2).
    """

    betas: jax.Array
    alphas: jax.Array
    alphas_cumprod: jax.Array

    @property
    def num_train_timesteps(self) -> int:
        """K, static under jit (it is an array length)."""
        return self.betas.shape[0]


def make_noise_schedule(
    name: str = "squaredcos_cap_v2",
    num_train_timesteps: int = 100,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
) -> NoiseSchedule:
    """β, α = 1 − β and ᾱ_t = Π_{s≤t} α_s (eqs. 18.1-18.2); see `beta_schedule` for the args.

    The defaults are Diffusion Policy's (LeRobot's `DiffusionConfig`): cosine schedule, K = 100.
    """
    betas = beta_schedule(name, num_train_timesteps, beta_start, beta_end)
    alphas = np.float32(1.0) - betas
    alphas_cumprod = np.cumprod(alphas.astype(np.float64)).astype(np.float32)
    return NoiseSchedule(jnp.asarray(betas), jnp.asarray(alphas), jnp.asarray(alphas_cumprod))


def _per_example(values: jax.Array, like: jax.Array) -> jax.Array:
    """[B] -> [B, 1, ..., 1], broadcastable against `like` [B, ...]."""
    return jnp.reshape(values, values.shape + (1,) * (like.ndim - 1))


def _signal_and_noise_scales(
    schedule: NoiseSchedule, timesteps: jax.Array, like: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """√ᾱ_t and √(1 − ᾱ_t) per example, shaped to broadcast against `like` [B, ...]."""
    alpha_bar = _per_example(schedule.alphas_cumprod[timesteps], like).astype(like.dtype)
    return alpha_bar**0.5, (1 - alpha_bar) ** 0.5


def _check_batch(clean: jax.Array, noise: jax.Array, timesteps: jax.Array) -> None:
    check_rank("clean", clean, range(1, 8))
    check_same_shape(clean=clean, noise=noise)
    check_shapes(clean=(clean, ("B", *([None] * (clean.ndim - 1)))), timesteps=(timesteps, ("B",)))


def add_noise(
    schedule: NoiseSchedule, clean: jax.Array, noise: jax.Array, timesteps: jax.Array
) -> jax.Array:
    """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε, a draw from q(x_t | x_0) (book eqs. 18.2-18.3).

    Args:
      schedule: the noise schedule.
      clean: [B, ...] clean samples x_0 (e.g. [B, T_a, D] normalized action chunks).
      noise: [B, ...] standard normal ε, same shape as `clean`.
      timesteps: [B] integer timesteps t ∈ {0, ..., K−1} (the book's k = t + 1).

    Returns:
      [B, ...] the noisy samples, in the dtype of `clean`.
    """
    _check_batch(clean, noise, timesteps)
    signal_scale, noise_scale = _signal_and_noise_scales(schedule, timesteps, clean)
    return signal_scale * clean + noise_scale * noise


def prediction_target(
    schedule: NoiseSchedule,
    prediction_type: str,
    clean: jax.Array,
    noise: jax.Array,
    timesteps: jax.Array,
) -> jax.Array:
    """What the denoiser regresses on x_t in the training objective (book eq. 18.5).

    `epsilon`: the noise ε (the book's objective); `sample`: the clean x_0 (Diffusion Policy's
    alternative); `v_prediction`: v = √ᾱ_t ε − √(1 − ᾱ_t) x_0 (Salimans & Ho). Shapes as in
    `add_noise`; returns [B, ...].
    """
    check_option("prediction type", prediction_type, PREDICTION_TYPES)
    _check_batch(clean, noise, timesteps)
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "sample":
        return clean
    signal_scale, noise_scale = _signal_and_noise_scales(schedule, timesteps, clean)
    return signal_scale * noise - noise_scale * clean


def inference_timesteps(
    num_train_timesteps: int,
    num_inference_steps: int,
    spacing: str = "leading",
    steps_offset: int = 0,
) -> np.ndarray:
    """The S timesteps a sampler visits, in decreasing order (diffusers' `set_timesteps`).

    `leading`: (0, r, 2r, ..., (S−1)r) + steps_offset with r = ⌊K/S⌋, reversed (never visits
    K−1 unless S = K); `trailing`: round(K − i·K/S) − 1 for i = 0..S−1, which starts at K−1;
    `linspace`: round(linspace(0, K−1, S)), reversed. `steps_offset` applies to `leading` only,
    as in diffusers. (diffusers builds `trailing` with a float `np.arange(K, 0, −K/S)`, which
    for some (K, S), e.g. (100, 29) or (1000, 941), returns S + 1 timesteps ending in −1; we
    return its first S.)

    Returns:
      [S] int32 timesteps, all in {0, ..., K−1}.
    """
    check_option("timestep spacing", spacing, TIMESTEP_SPACINGS)
    if not 1 <= num_inference_steps <= num_train_timesteps:
        raise ValueError(
            f"num_inference_steps must be in [1, num_train_timesteps={num_train_timesteps}], "
            f"got {num_inference_steps}"
        )
    if spacing == "leading":
        ratio = num_train_timesteps // num_inference_steps
        timesteps = np.arange(num_inference_steps)[::-1] * ratio + steps_offset
    elif spacing == "trailing":
        ratio = num_train_timesteps / num_inference_steps
        timesteps = np.round(num_train_timesteps - np.arange(num_inference_steps) * ratio) - 1
    else:
        timesteps = np.linspace(0, num_train_timesteps - 1, num_inference_steps).round()[::-1]
    timesteps = timesteps.astype(np.int32)
    if timesteps.max() >= num_train_timesteps or timesteps.min() < 0:
        raise ValueError(
            f"timesteps {timesteps.tolist()} leave [0, {num_train_timesteps - 1}]: "
            f"steps_offset={steps_offset} is too large for {num_inference_steps} steps"
        )
    return timesteps
