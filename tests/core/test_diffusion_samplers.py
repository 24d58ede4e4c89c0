"""Tests of core.diffusion_samplers: diffusers' DDPM/DDIM steps and loops (golden fixture), the
book's eq. 18.4 mean, the identity DDIM(η = 1) = DDPM, the scan loop against a Python loop, and
sampling a Gaussian with its exact denoiser."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import diffusion_samplers, diffusion_schedules
from core.diffusion_samplers import DDIMSampler, DDPMSampler
from experiments.parity import diffusion_schedules as parity

FIXTURE = "tests/fixtures/parity/diffusion_schedules.npz"
TOLERANCE = 1e-6  # relative to each array's scale, absolute below 1 (parity.scaled_errors)
COSINE = diffusion_schedules.make_noise_schedule("squaredcos_cap_v2", 100)
ddpm_step = jax.jit(diffusion_samplers.ddpm_step, static_argnums=1)
ddim_step = jax.jit(diffusion_samplers.ddim_step, static_argnums=1)


def _float64(schedule):
    """The schedule's float32 constants as float64 (under the x64 fixture)."""
    return jax.tree.map(lambda values: jnp.asarray(values, jnp.float64), schedule)


def test_steps_and_loops_equal_diffusers_within_1e_minus_6():
    reference = dict(np.load(FIXTURE))
    errors = parity.scaled_errors(parity.our_sampler_outputs(), reference)
    sampler_keys = [k for k in reference if k.split("/")[0] in ("ddpm", "ddim", "loop")]
    assert sorted(errors) == sorted(sampler_keys)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOLERANCE, (worst, errors[worst])


def _random_step_inputs(seed: int, shape=(3, 4, 2)) -> np.ndarray:
    """model_output, sample and noise: [3, *shape] standard normal (float64)."""
    return np.random.default_rng(seed).standard_normal((3, *shape))


@given(timestep=st.sampled_from([1, 2, 10, 50, 98, 99]), seed=st.integers(0, 2**16))
def test_ddpm_mean_without_clipping_is_eq_18_4(x64, timestep, seed):
    """μ = (x_k − β_k/√(1 − ᾱ_k) ε̂)/√α_k when stepping from t to t − 1, noise switched off."""
    schedule = _float64(COSINE)
    model_output, sample, _ = _random_step_inputs(seed)
    sampler = DDPMSampler(num_inference_steps=100, clip_sample=False)
    result = ddpm_step(
        schedule, sampler, model_output, timestep, timestep - 1, sample, np.zeros_like(sample)
    )
    alpha_bar = np.asarray(schedule.alphas_cumprod)
    alpha = alpha_bar[timestep] / alpha_bar[timestep - 1]
    beta = 1 - alpha
    mean = (sample - beta / np.sqrt(1 - alpha_bar[timestep]) * model_output) / np.sqrt(alpha)
    np.testing.assert_allclose(result.prev_sample, mean, rtol=1e-9, atol=1e-9)


@given(
    timestep=st.sampled_from([1, 5, 50, 99]),
    prediction_type=st.sampled_from(["epsilon", "sample", "v_prediction"]),
    seed=st.integers(0, 2**16),
)
def test_ddim_with_eta_one_is_the_ddpm_posterior_step(x64, timestep, prediction_type, seed):
    """σ² = η² β̃ with η = 1 turns eq. 18.8 into q(x_{t−1} | x_t, x̂_0): the same draw."""
    schedule = _float64(COSINE)
    model_output, sample, noise = _random_step_inputs(seed)
    settings = {"num_inference_steps": 100, "prediction_type": prediction_type}
    ddpm = DDPMSampler(clip_sample=False, **settings)
    ddim = DDIMSampler(clip_sample=False, eta=1.0, **settings)
    args = (model_output, timestep, timestep - 1, sample, noise)
    expected = ddpm_step(schedule, ddpm, *args)
    result = ddim_step(schedule, ddim, *args)
    np.testing.assert_allclose(result.prev_sample, expected.prev_sample, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        result.pred_original_sample, expected.pred_original_sample, rtol=1e-9, atol=1e-9
    )


@given(clip_range=st.sampled_from([0.5, 1.0, 3.0]), seed=st.integers(0, 2**16))
def test_clipping_keeps_the_predicted_clean_sample_in_range(clip_range, seed):
    model_output, sample, noise = _random_step_inputs(seed)
    sampler = DDPMSampler(num_inference_steps=100, clip_sample_range=clip_range)
    result = ddpm_step(COSINE, sampler, model_output, 80, 79, sample, noise)
    assert np.abs(result.pred_original_sample).max() <= np.float32(clip_range)


def _toy_denoiser(sample, timesteps):
    return 0.5 * sample + 0.01 * timesteps[:, None, None]


def test_scan_loop_equals_a_python_loop_over_the_steps():
    sampler = DDPMSampler(num_inference_steps=10, timestep_spacing="trailing")
    initial = jax.random.normal(jax.random.key(1), (2, 5, 3))
    key = jax.random.key(2)
    sample = initial
    timesteps, prev_timesteps = diffusion_samplers.timestep_pairs(100, sampler)
    assert timesteps.tolist() == list(range(99, 0, -10))
    assert prev_timesteps.tolist() == [*range(89, 0, -10), -1]
    for index, (t, prev_t) in enumerate(zip(timesteps, prev_timesteps, strict=True)):
        noise = diffusion_samplers.step_noise(key, index, sample.shape)
        output = _toy_denoiser(sample, jnp.full((2,), t))
        sample = ddpm_step(COSINE, sampler, output, t, prev_t, sample, noise).prev_sample
    looped = jax.jit(diffusion_samplers.denoise, static_argnums=(0, 2))(
        _toy_denoiser, COSINE, sampler, initial, key
    )
    np.testing.assert_allclose(looped, sample, rtol=1e-6, atol=1e-6)


def test_ddim_lands_k_over_s_below_whatever_the_spacing():
    timesteps, prev = diffusion_samplers.timestep_pairs(
        100, DDIMSampler(num_inference_steps=3, timestep_spacing="linspace")
    )
    assert timesteps.tolist() == [99, 50, 0] and prev.tolist() == [66, 17, -33]


def test_sample_draws_x_t_from_its_key_and_ddim_eta_zero_needs_no_other_randomness():
    """`sample` = `denoise` from x_T ~ N(0, I) drawn with the first half of the key; at η = 0
    `denoise` needs no key at all."""
    sampler = DDIMSampler(num_inference_steps=10)
    run = jax.jit(diffusion_samplers.sample, static_argnums=(0, 2, 3))
    first = run(_toy_denoiser, COSINE, sampler, (2, 5, 3), jax.random.key(0))
    again = diffusion_samplers.denoise(
        _toy_denoiser,
        COSINE,
        sampler,
        jax.random.normal(jax.random.split(jax.random.key(0))[0], (2, 5, 3)),
    )
    np.testing.assert_allclose(first, again, rtol=1e-6, atol=1e-6)


def test_ddpm_with_the_exact_denoiser_samples_the_data_gaussian():
    """Data x_0 ~ N(μ, s²): the exact ε̂(x_t) = E[ε | x_t] = √(1 − ᾱ)(x_t − √ᾱ μ)/(ᾱ s² + 1 − ᾱ).
    1000 linear-schedule DDPM steps then give N(μ, s²) up to sampling error: with N = 16384 the
    standard errors are s/√N = 0.004 (mean) and s/√(2N) = 0.003 (std); we allow 4 of them."""
    mean, std, num_samples = 0.3, 0.5, 16384
    schedule = diffusion_schedules.make_noise_schedule("linear", 1000)

    def exact_noise_prediction(sample, timesteps):
        alpha_bar = schedule.alphas_cumprod[timesteps][:, None]
        signal, sigma = jnp.sqrt(alpha_bar), jnp.sqrt(1 - alpha_bar)
        return sigma * (sample - signal * mean) / (alpha_bar * std**2 + sigma**2)

    sampler = DDPMSampler(num_inference_steps=1000, clip_sample=False)
    samples = jax.jit(diffusion_samplers.sample, static_argnums=(0, 2, 3))(
        exact_noise_prediction, schedule, sampler, (num_samples, 1), jax.random.key(0)
    )
    assert abs(float(samples.mean()) - mean) < 4 * std / np.sqrt(num_samples)
    assert abs(float(samples.std()) - std) < 4 * std / np.sqrt(2 * num_samples)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: DDPMSampler(num_inference_steps=10, prediction_type="noise"), "'noise'"),
        (lambda: DDPMSampler(num_inference_steps=10, variance_type="learned"), "'learned'"),
        (lambda: DDIMSampler(num_inference_steps=10, timestep_spacing="even"), "'even'"),
        (lambda: DDIMSampler(num_inference_steps=10, eta=-0.1), "eta"),
        (lambda: DDIMSampler(num_inference_steps=0), "num_inference_steps"),
        (lambda: DDIMSampler(num_inference_steps=10, clip_sample_range=0.0), "clip_sample_range"),
    ],
)
def test_bad_sampler_settings_raise_errors_naming_them(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_calls_raise_errors_naming_the_argument():
    sample = jnp.zeros((2, 5, 3))
    with pytest.raises(ValueError, match=r"num_inference_steps must be in \[1, .*=100\], got 200"):
        diffusion_samplers.denoise(
            _toy_denoiser, COSINE, DDIMSampler(num_inference_steps=200), sample
        )
    with pytest.raises(ValueError, match="pass a key"):
        diffusion_samplers.denoise(
            _toy_denoiser, COSINE, DDPMSampler(num_inference_steps=10), sample
        )
    with pytest.raises(ValueError, match=r"model_output must have the same shape as sample"):
        diffusion_samplers.ddpm_step(
            COSINE, DDPMSampler(num_inference_steps=10), sample[:, :4], 5, 4, sample, sample
        )
    with pytest.raises(ValueError, match="noise is required when eta > 0"):
        diffusion_samplers.ddim_step(
            COSINE, DDIMSampler(num_inference_steps=10, eta=0.5), sample, 5, 4, sample
        )
