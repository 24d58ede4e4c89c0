"""Golden outputs of diffusers' DDPMScheduler and DDIMScheduler (book ch. 18).

Covers, in float32: β and ᾱ of the three beta schedules at K = 100 and 1000, `add_noise`, single
`step` outputs (prev_sample, pred_original_sample) for every prediction type, with and without
clipping, at several timesteps, the inference timesteps of every spacing, and two short loops
with a toy linear denoiser: DDIM (η = 0, deterministic) and DDPM (stochastic).

`our_schedule_outputs` and `our_sampler_outputs` compute the same cases, under the same keys,
with core.diffusion_schedules and core.diffusion_samplers; the fixture test and the live test
compare them with `scaled_errors` (tolerance 1e-6).

Randomness is injected, never drawn by torch: the inputs and the DDIM `variance_noise` come
from `seeded_array`; DDPM's step noise (which diffusers draws with `randn_tensor`) is replaced
by our noise, `seeded_array` for single steps and, in the DDPM loop, the noise our sampling loop
draws from its key (`core.diffusion_samplers.step_noise`), so the JAX loop can be compared
end to end.
"""

from __future__ import annotations

import contextlib
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from core import diffusion_samplers, diffusion_schedules
from experiments.parity.common import seeded_array

SAMPLE_SHAPE = (2, 8, 3)  # [B, T_a, D]: a batch of two 8-step chunks of 3-dim actions
SCHEDULE_CASES = tuple(
    itertools.product(("linear", "scaled_linear", "squaredcos_cap_v2"), (100, 1000))
)
ADD_NOISE_TIMESTEPS = (0, 17, 50, 99)
STEP_K, DDIM_STEP_S = 100, 10  # single steps: cosine schedule, K = 100; DDIM t' = t - 10
STEP_TIMESTEPS = (99, 50, 1, 0)
DDIM_STEP_TIMESTEPS = (90, 50, 0)
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
DDPM_VARIANCES = ("fixed_small", "fixed_large")
DDIM_ETAS = (0.0, 0.5)
SPACING_CASES = [  # (K, S, spacing, steps_offset)
    (1000, 50, "leading", 1),
    (1000, 50, "trailing", 0),
    (1000, 50, "linspace", 0),
    (100, 10, "leading", 0),
    (100, 10, "trailing", 0),
    (100, 3, "linspace", 0),
    (100, 7, "trailing", 0),
]
EXTRA_STEP_CASE = (100, 29, "trailing", 0)  # diffusers returns S + 1 timesteps, the last −1
LOOP_KEY_SEED = 0
LOOP_DDPM_STEPS, LOOP_DDIM_STEPS, LOOP_DDIM_K = 20, 10, 100  # DDPM loop: S = K = 20


def step_inputs(case: str) -> dict[str, np.ndarray]:
    """Model output, sample and noise of one single-step case, by name."""
    return {
        role: seeded_array(f"diffusion/{case}/{role}", SAMPLE_SHAPE, scale)
        for role, scale in (("model_output", 1.0), ("sample", 1.5), ("noise", 1.0))
    }


def toy_denoiser_weights() -> tuple[np.ndarray, np.ndarray]:
    """W [D, D] and b [D] of the toy denoiser out = x W + (t / K) b, shared by torch and jax."""
    dim = SAMPLE_SHAPE[-1]
    return (
        seeded_array("diffusion/toy/weight", (dim, dim), 0.3),
        seeded_array("diffusion/toy/bias", (dim,), 1.0),
    )


def loop_initial_sample() -> np.ndarray:
    return seeded_array("diffusion/loop/initial_sample", SAMPLE_SHAPE)


def toy_denoiser(num_train_timesteps: int) -> diffusion_samplers.DenoiseFn:
    """The toy denoiser in JAX: x W + (t / K) b, t [B] int32."""
    weight, bias = toy_denoiser_weights()

    def denoise_fn(sample: jax.Array, timesteps: jax.Array) -> jax.Array:
        time_fraction = (timesteps / num_train_timesteps).astype(sample.dtype)
        return sample @ weight + time_fraction[:, None, None] * bias

    return denoise_fn


def ddpm_loop_noise(num_steps: int) -> list[np.ndarray]:
    """The z of each step of our DDPM loop driven by jax.random.key(LOOP_KEY_SEED)."""
    key = jax.random.key(LOOP_KEY_SEED)
    return [
        np.asarray(diffusion_samplers.step_noise(key, i, SAMPLE_SHAPE)) for i in range(num_steps)
    ]


@contextlib.contextmanager
def _injected_ddpm_noise(noises: list[np.ndarray]):
    """Makes DDPMScheduler.step use `noises` in order instead of drawing with torch."""
    import torch
    from diffusers.schedulers import scheduling_ddpm

    queue = list(noises)
    original = scheduling_ddpm.randn_tensor

    def next_noise(shape, generator=None, device=None, dtype=None):
        noise = torch.from_numpy(np.array(queue.pop(0)))
        assert tuple(noise.shape) == tuple(shape), (noise.shape, shape)
        return noise.to(dtype)

    scheduling_ddpm.randn_tensor = next_noise
    try:
        yield
    finally:
        scheduling_ddpm.randn_tensor = original


def _schedules() -> dict[str, np.ndarray]:
    from diffusers import DDPMScheduler

    out = {}
    for name, k in SCHEDULE_CASES:
        scheduler = DDPMScheduler(num_train_timesteps=k, beta_schedule=name)
        out[f"schedule/{name}/{k}/betas"] = scheduler.betas.numpy()
        out[f"schedule/{name}/{k}/alphas_cumprod"] = scheduler.alphas_cumprod.numpy()
    return out


def _add_noise() -> dict[str, np.ndarray]:
    import torch
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2")
    shape = (len(ADD_NOISE_TIMESTEPS), *SAMPLE_SHAPE[1:])
    clean = seeded_array("diffusion/add_noise/clean", shape)
    noise = seeded_array("diffusion/add_noise/noise", shape)
    noisy = scheduler.add_noise(
        torch.from_numpy(clean), torch.from_numpy(noise), torch.tensor(ADD_NOISE_TIMESTEPS)
    )
    return {"add_noise/noisy": noisy.numpy()}


def ddpm_cases():
    """(case name, scheduler settings, timestep t) of the single DDPM steps; S = K = 100."""
    for prediction_type in PREDICTION_TYPES:
        for clip in (True, False):
            for variance in DDPM_VARIANCES:
                settings = {
                    "prediction_type": prediction_type,
                    "clip_sample": clip,
                    "variance_type": variance,
                }
                for t in STEP_TIMESTEPS:
                    yield f"ddpm/{prediction_type}/clip{int(clip)}/{variance}/t{t}", settings, t


def ddim_cases():
    """(case name, scheduler settings, η, timestep t) of the single DDIM steps; K = 100, S = 10."""
    for prediction_type in PREDICTION_TYPES:
        for clip in (True, False):
            for set_alpha_to_one in (True, False):
                settings = {
                    "prediction_type": prediction_type,
                    "clip_sample": clip,
                    "set_alpha_to_one": set_alpha_to_one,
                }
                for eta in DDIM_ETAS:
                    for t in DDIM_STEP_TIMESTEPS:
                        name = (
                            f"ddim/{prediction_type}/clip{int(clip)}/one{int(set_alpha_to_one)}/"
                            f"eta{eta}/t{t}"
                        )
                        yield name, settings, eta, t


def _ddpm_steps() -> dict[str, np.ndarray]:
    import torch
    from diffusers import DDPMScheduler

    out = {}
    for case, settings, t in ddpm_cases():
        scheduler = DDPMScheduler(
            num_train_timesteps=STEP_K, beta_schedule="squaredcos_cap_v2", **settings
        )
        scheduler.set_timesteps(STEP_K)
        inputs = step_inputs(case)
        with _injected_ddpm_noise([inputs["noise"]]):
            result = scheduler.step(
                torch.from_numpy(inputs["model_output"]), t, torch.from_numpy(inputs["sample"])
            )
        out[f"{case}/prev_sample"] = result.prev_sample.numpy()
        out[f"{case}/pred_original_sample"] = result.pred_original_sample.numpy()
    return out


def _ddim_steps() -> dict[str, np.ndarray]:
    import torch
    from diffusers import DDIMScheduler

    out = {}
    for case, settings, eta, t in ddim_cases():
        scheduler = DDIMScheduler(
            num_train_timesteps=STEP_K, beta_schedule="squaredcos_cap_v2", **settings
        )
        scheduler.set_timesteps(DDIM_STEP_S)
        inputs = step_inputs(case)
        result = scheduler.step(
            torch.from_numpy(inputs["model_output"]),
            t,
            torch.from_numpy(inputs["sample"]),
            eta=eta,
            variance_noise=torch.from_numpy(inputs["noise"]) if eta else None,
        )
        out[f"{case}/prev_sample"] = result.prev_sample.numpy()
        out[f"{case}/pred_original_sample"] = result.pred_original_sample.numpy()
    return out


def _timesteps() -> dict[str, np.ndarray]:
    from diffusers import DDIMScheduler, DDPMScheduler

    out = {}
    for k, s, spacing, offset in (*SPACING_CASES, EXTRA_STEP_CASE):
        for name, scheduler_class in (("ddpm", DDPMScheduler), ("ddim", DDIMScheduler)):
            scheduler = scheduler_class(
                num_train_timesteps=k, timestep_spacing=spacing, steps_offset=offset
            )
            scheduler.set_timesteps(s)
            group = "timesteps" if (k, s, spacing, offset) in SPACING_CASES else "extra_step"
            out[f"{group}/{name}/{k}/{s}/{spacing}/{offset}"] = scheduler.timesteps.numpy()
    return out


def _torch_toy_denoiser(sample, timestep: int, num_train_timesteps: int):
    import torch

    weight, bias = (torch.from_numpy(a) for a in toy_denoiser_weights())
    return sample @ weight + (timestep / num_train_timesteps) * bias


def _loops() -> dict[str, np.ndarray]:
    import torch
    from diffusers import DDIMScheduler, DDPMScheduler

    out = {}
    ddim = DDIMScheduler(num_train_timesteps=LOOP_DDIM_K, beta_schedule="squaredcos_cap_v2")
    ddim.set_timesteps(LOOP_DDIM_STEPS)
    sample = torch.from_numpy(loop_initial_sample())
    for t in ddim.timesteps:
        output = _torch_toy_denoiser(sample, int(t), LOOP_DDIM_K)
        sample = ddim.step(output, t, sample).prev_sample
    out["loop/ddim"] = sample.numpy()

    ddpm = DDPMScheduler(num_train_timesteps=LOOP_DDPM_STEPS, beta_schedule="squaredcos_cap_v2")
    ddpm.set_timesteps(LOOP_DDPM_STEPS)
    sample = torch.from_numpy(loop_initial_sample())
    with _injected_ddpm_noise(ddpm_loop_noise(LOOP_DDPM_STEPS)):
        for t in ddpm.timesteps:
            output = _torch_toy_denoiser(sample, int(t), LOOP_DDPM_STEPS)
            sample = ddpm.step(output, t, sample).prev_sample
    out["loop/ddpm"] = sample.numpy()
    return out


def generate() -> dict[str, np.ndarray]:
    """The reference outputs (needs torch and diffusers)."""
    return {
        **_schedules(),
        **_add_noise(),
        **_ddpm_steps(),
        **_ddim_steps(),
        **_timesteps(),
        **_loops(),
    }


def _our_steps(schedule: diffusion_schedules.NoiseSchedule) -> dict[str, jax.Array]:
    """Every single-step case through ddpm_step and ddim_step (run eagerly: one jit per sampler
    setting would cost more compile time than it saves)."""
    out = {}
    for case, settings, t in ddpm_cases():
        sampler = diffusion_samplers.DDPMSampler(num_inference_steps=STEP_K, **settings)
        inputs = step_inputs(case)
        out[case] = diffusion_samplers.ddpm_step(
            schedule, sampler, inputs["model_output"], t, t - 1, inputs["sample"], inputs["noise"]
        )
    for case, settings, eta, t in ddim_cases():
        sampler = diffusion_samplers.DDIMSampler(
            num_inference_steps=DDIM_STEP_S, eta=eta, **settings
        )
        inputs = step_inputs(case)
        noise = inputs["noise"] if eta else None
        prev_t = t - STEP_K // DDIM_STEP_S
        out[case] = diffusion_samplers.ddim_step(
            schedule, sampler, inputs["model_output"], t, prev_t, inputs["sample"], noise
        )
    return {
        f"{case}/{field}": value
        for case, result in out.items()
        for field, value in result._asdict().items()
    }


def our_schedule_outputs() -> dict[str, np.ndarray]:
    """Schedules, add_noise and inference timesteps through core.diffusion_schedules."""
    out = {}
    for name, k in SCHEDULE_CASES:
        schedule = diffusion_schedules.make_noise_schedule(name, k)
        out[f"schedule/{name}/{k}/betas"] = schedule.betas
        out[f"schedule/{name}/{k}/alphas_cumprod"] = schedule.alphas_cumprod
    cosine = diffusion_schedules.make_noise_schedule("squaredcos_cap_v2", STEP_K)
    shape = (len(ADD_NOISE_TIMESTEPS), *SAMPLE_SHAPE[1:])
    out["add_noise/noisy"] = diffusion_schedules.add_noise(
        cosine,
        seeded_array("diffusion/add_noise/clean", shape),
        seeded_array("diffusion/add_noise/noise", shape),
        jnp.asarray(ADD_NOISE_TIMESTEPS),
    )
    for k, s, spacing, offset in SPACING_CASES:
        timesteps = diffusion_schedules.inference_timesteps(k, s, spacing, offset)
        for name in ("ddpm", "ddim"):
            out[f"timesteps/{name}/{k}/{s}/{spacing}/{offset}"] = timesteps
    return {key: np.asarray(value) for key, value in out.items()}


def our_sampler_outputs() -> dict[str, np.ndarray]:
    """Single steps and the two loops through core.diffusion_samplers."""
    cosine = diffusion_schedules.make_noise_schedule("squaredcos_cap_v2", STEP_K)
    out = _our_steps(cosine)
    initial_sample = loop_initial_sample()
    ddim = diffusion_samplers.DDIMSampler(num_inference_steps=LOOP_DDIM_STEPS)
    ddim_schedule = diffusion_schedules.make_noise_schedule("squaredcos_cap_v2", LOOP_DDIM_K)
    out["loop/ddim"] = diffusion_samplers.denoise(
        toy_denoiser(LOOP_DDIM_K), ddim_schedule, ddim, initial_sample
    )
    ddpm = diffusion_samplers.DDPMSampler(num_inference_steps=LOOP_DDPM_STEPS)
    ddpm_schedule = diffusion_schedules.make_noise_schedule("squaredcos_cap_v2", LOOP_DDPM_STEPS)
    out["loop/ddpm"] = diffusion_samplers.denoise(
        toy_denoiser(LOOP_DDPM_STEPS),
        ddpm_schedule,
        ddpm,
        initial_sample,
        jax.random.key(LOOP_KEY_SEED),
    )
    return {key: np.asarray(value) for key, value in out.items()}


def scaled_errors(
    ours: dict[str, np.ndarray], reference: dict[str, np.ndarray]
) -> dict[str, float]:
    """max |ours − reference| / max(1, max |reference|) per key of `ours`.

    The error is relative to the array's scale, absolute below 1: x̂_0 = (x_t − √(1 − ᾱ) ε̂)/√ᾱ
    reaches 10^4 at t = K − 1 (√ᾱ ≈ 10^-4), where float32 rounding of the inputs alone moves
    it by ~10^-3, and cancellation can leave a small entry among large ones.
    """
    errors = {}
    for key, value in ours.items():
        expected = np.asarray(reference[key], dtype=np.float64)
        if np.shape(value) != expected.shape:
            raise ValueError(f"{key}: shape {np.shape(value)} vs reference {expected.shape}")
        scale = max(1.0, float(np.abs(expected).max()))
        errors[key] = float(np.abs(np.asarray(value, dtype=np.float64) - expected).max()) / scale
    return errors
