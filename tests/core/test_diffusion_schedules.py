"""Tests of core.diffusion_schedules: diffusers' schedules (golden fixture), the closed forms of
eqs. 18.1-18.3 and the v-prediction identity, and the errors for bad options and shapes."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import diffusion_schedules
from experiments.parity import diffusion_schedules as parity

FIXTURE = "tests/fixtures/parity/diffusion_schedules.npz"
TOLERANCE = 1e-6  # relative to each array's scale, absolute below 1 (parity.scaled_errors)


def test_schedules_add_noise_and_timesteps_equal_diffusers_within_1e_minus_6():
    reference = dict(np.load(FIXTURE))
    errors = parity.scaled_errors(parity.our_schedule_outputs(), reference)
    assert len(errors) == 2 * len(parity.SCHEDULE_CASES) + 1 + 2 * len(parity.SPACING_CASES)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOLERANCE, (worst, errors[worst])
    timestep_errors = [error for key, error in errors.items() if key.startswith("timesteps/")]
    assert max(timestep_errors) == 0.0


def test_trailing_spacing_has_s_steps_where_diffusers_adds_a_step_at_minus_one():
    reference = np.load(FIXTURE)
    k, s, spacing, offset = parity.EXTRA_STEP_CASE
    ours = diffusion_schedules.inference_timesteps(k, s, spacing, offset)
    for name in ("ddpm", "ddim"):
        diffusers_timesteps = reference[f"extra_step/{name}/{k}/{s}/{spacing}/{offset}"]
        assert len(diffusers_timesteps) == s + 1 and diffusers_timesteps[-1] == -1
        np.testing.assert_array_equal(ours, diffusers_timesteps[:-1])


def test_linear_schedule_runs_from_beta_start_to_beta_end():
    betas = diffusion_schedules.beta_schedule("linear", 1000, 1e-4, 0.02)
    assert betas.dtype == np.float32
    assert betas[0] == np.float32(1e-4) and betas[-1] == np.float32(0.02)
    np.testing.assert_allclose(np.diff(betas.astype(np.float64)), (0.02 - 1e-4) / 999, rtol=1e-4)


def test_scaled_linear_schedule_is_linear_in_the_square_root_of_beta():
    betas = diffusion_schedules.beta_schedule("scaled_linear", 1000, 0.00085, 0.012)
    roots = np.sqrt(betas.astype(np.float64))
    np.testing.assert_allclose(roots[[0, -1]], [0.00085**0.5, 0.012**0.5], rtol=1e-6)
    np.testing.assert_allclose(np.diff(roots, 2), 0.0, atol=1e-7)


@pytest.mark.parametrize("num_train_timesteps", [100, 1000])
def test_cosine_alphas_cumprod_is_the_squared_cosine_until_the_cap(num_train_timesteps):
    """ᾱ_t = f((t + 1)/K)/f(0), f(s) = cos²((s + 0.008)/1.008 · π/2), where β < 0.999."""
    schedule = diffusion_schedules.make_noise_schedule("squaredcos_cap_v2", num_train_timesteps)
    steps = np.arange(num_train_timesteps + 1) / num_train_timesteps
    f = np.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
    uncapped = np.asarray(schedule.betas) < diffusion_schedules.MAX_BETA
    assert uncapped[:-1].all() and not uncapped[-1]  # only β_K reaches the cap
    expected = f[1:] / f[0]
    np.testing.assert_allclose(
        np.asarray(schedule.alphas_cumprod)[uncapped], expected[uncapped], rtol=2e-6, atol=1e-9
    )


@pytest.mark.parametrize("name", diffusion_schedules.BETA_SCHEDULES)
def test_alphas_cumprod_is_the_running_product_of_one_minus_beta(name):
    schedule = diffusion_schedules.make_noise_schedule(name, 1000)
    betas = np.asarray(schedule.betas, dtype=np.float64)
    running, expected = 1.0, []
    for beta in betas:  # eq. 18.2: ᾱ_k = Π_{s≤k} (1 − β_s), an explicit loop
        running *= 1.0 - beta
        expected.append(running)
    np.testing.assert_allclose(np.asarray(schedule.alphas), 1 - betas, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(np.asarray(schedule.alphas_cumprod), expected, rtol=1e-6)


def test_closed_form_moments_equal_iterating_the_one_step_chain():
    """Iterating eq. 18.1 x_k = √α_k x_{k−1} + √β_k ε_k keeps x_k = m_k x_0 + noise of variance
    v_k with m_k = √α_k m_{k−1}, v_k = α_k v_{k−1} + β_k: exactly eq. 18.2's √ᾱ_k and 1 − ᾱ_k."""
    schedule = diffusion_schedules.make_noise_schedule("linear", 1000)
    mean_scale, variance = 1.0, 0.0
    means, variances = [], []
    for alpha in np.asarray(schedule.alphas, dtype=np.float64):
        mean_scale, variance = math.sqrt(alpha) * mean_scale, alpha * variance + (1 - alpha)
        means.append(mean_scale)
        variances.append(variance)
    alpha_bar = np.asarray(schedule.alphas_cumprod, dtype=np.float64)
    np.testing.assert_allclose(means, np.sqrt(alpha_bar), rtol=1e-6)
    np.testing.assert_allclose(variances, 1 - alpha_bar, rtol=1e-6, atol=1e-7)


SCHEDULE = diffusion_schedules.make_noise_schedule("squaredcos_cap_v2", 100)


@given(
    timesteps=st.lists(st.integers(0, 99), min_size=3, max_size=3),
    seed=st.integers(0, 2**16),
    prediction_type=st.sampled_from(diffusion_schedules.PREDICTION_TYPES),
)
def test_add_noise_and_targets_follow_eq_18_3_per_example(timesteps, seed, prediction_type):
    generator = np.random.default_rng(seed)
    clean = generator.standard_normal((3, 4, 2)).astype(np.float32)
    noise = generator.standard_normal((3, 4, 2)).astype(np.float32)
    timesteps = jnp.asarray(timesteps)
    noisy = diffusion_schedules.add_noise(SCHEDULE, clean, noise, timesteps)
    target = diffusion_schedules.prediction_target(
        SCHEDULE, prediction_type, clean, noise, timesteps
    )
    alpha_bar = np.asarray(SCHEDULE.alphas_cumprod, dtype=np.float64)[np.asarray(timesteps)]
    signal, sigma = np.sqrt(alpha_bar)[:, None, None], np.sqrt(1 - alpha_bar)[:, None, None]
    np.testing.assert_allclose(noisy, signal * clean + sigma * noise, atol=1e-6)
    expected_target = {
        "epsilon": noise,
        "sample": clean,
        "v_prediction": signal * noise - sigma * clean,
    }[prediction_type]
    np.testing.assert_allclose(target, expected_target, atol=1e-6)


def test_v_target_recovers_clean_and_noise_from_the_noisy_sample():
    """x_0 = √ᾱ x_t − √(1 − ᾱ) v and ε = √ᾱ v + √(1 − ᾱ) x_t (a rotation of (x_0, ε))."""
    generator = np.random.default_rng(0)
    clean, noise = generator.standard_normal((2, 4, 5, 3)).astype(np.float32)
    timesteps = jnp.array([3, 7, 60, 99])
    noisy = diffusion_schedules.add_noise(SCHEDULE, clean, noise, timesteps)
    velocity = diffusion_schedules.prediction_target(
        SCHEDULE, "v_prediction", clean, noise, timesteps
    )
    alpha_bar = SCHEDULE.alphas_cumprod[timesteps][:, None, None]
    np.testing.assert_allclose(
        jnp.sqrt(alpha_bar) * noisy - jnp.sqrt(1 - alpha_bar) * velocity, clean, atol=2e-6
    )
    np.testing.assert_allclose(
        jnp.sqrt(alpha_bar) * velocity + jnp.sqrt(1 - alpha_bar) * noisy, noise, atol=2e-6
    )


def test_inference_timesteps_match_hand_computed_spacings():
    timesteps = diffusion_schedules.inference_timesteps
    assert timesteps(1000, 50, "leading", 1).tolist() == list(range(981, 0, -20))
    assert timesteps(1000, 50, "trailing").tolist() == list(range(999, 0, -20))
    assert timesteps(100, 3, "linspace").tolist() == [99, 50, 0]  # round(49.5) = 50 (half-even)
    assert timesteps(100, 100, "leading").tolist() == list(range(99, -1, -1))


@given(
    num_train_timesteps=st.sampled_from([10, 100, 1000]),
    fraction=st.floats(0.001, 1.0),
    spacing=st.sampled_from(diffusion_schedules.TIMESTEP_SPACINGS),
)
def test_inference_timesteps_are_s_distinct_decreasing_timesteps(
    num_train_timesteps, fraction, spacing
):
    num_steps = max(1, round(fraction * num_train_timesteps))
    timesteps = diffusion_schedules.inference_timesteps(num_train_timesteps, num_steps, spacing)
    assert len(timesteps) == num_steps
    assert (np.diff(timesteps) < 0).all()
    assert timesteps.min() >= 0 and timesteps.max() <= num_train_timesteps - 1


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: diffusion_schedules.beta_schedule("cosine", 100), "beta schedule 'cosine'"),
        (lambda: diffusion_schedules.beta_schedule("linear", 1), "num_train_timesteps"),
        (lambda: diffusion_schedules.beta_schedule("linear", 10, 0.1, 0.01), "beta_start"),
        (lambda: diffusion_schedules.inference_timesteps(100, 101), "num_inference_steps"),
        (lambda: diffusion_schedules.inference_timesteps(100, 10, "uniform"), "'uniform'"),
        (lambda: diffusion_schedules.inference_timesteps(100, 100, "leading", 1), "steps_offset"),
        (
            lambda: diffusion_schedules.prediction_target(
                SCHEDULE, "noise", jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.zeros(2, int)
            ),
            "prediction type 'noise'",
        ),
        (
            lambda: diffusion_schedules.add_noise(
                SCHEDULE, jnp.zeros((2, 3)), jnp.zeros((2, 4)), jnp.zeros(2, int)
            ),
            r"noise must have the same shape as clean \[2, 3\], got \[2, 4\]",
        ),
        (
            lambda: diffusion_schedules.add_noise(
                SCHEDULE, jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.zeros(3, int)
            ),
            r"timesteps must have shape \[B\] with B=2",
        ),
    ],
)
def test_bad_options_and_shapes_raise_errors_naming_them(call, message):
    with pytest.raises(ValueError, match=message):
        call()
