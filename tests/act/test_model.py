"""ACT's network (book 17.4-17.6, 20.2): token layout and shapes traced through the model, the
camera tokens against each camera alone, the key padding of the CVAE encoder, eq. 17.49 and
its gradients (eq. 17.50), bfloat16 matmuls, and the argument checks. Parity with LeRobot's
ACT is in test_convert.py."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from act.model import ACT, ACTConfig, CameraTokens, reparameterize
from core import position_encoding, tracer

TINY = ACTConfig(
    action_dim=3,
    chunk_size=8,
    latent_dim=4,
    model_dim=32,
    num_heads=4,
    ffn_dim=64,
    num_encoder_layers=1,
    num_cvae_encoder_layers=1,
)
BATCH, STATE_DIM, ENVIRONMENT_DIM = 2, 5, 4


def _inputs(seed: int = 0, cameras: int = 2, height: int = 64, width: int = 32) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "images": rng.normal(size=(BATCH, cameras, height, width, 3)).astype(np.float32),
        "state": rng.normal(size=(BATCH, STATE_DIM)).astype(np.float32),
        "environment_state": rng.normal(size=(BATCH, ENVIRONMENT_DIM)).astype(np.float32),
    }


def _chunk(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    actions = rng.normal(size=(BATCH, TINY.chunk_size, TINY.action_dim)).astype(np.float32)
    is_pad = np.zeros((BATCH, TINY.chunk_size), bool)
    is_pad[1, -3:] = True
    return actions, is_pad


def _seeded_variables(config: ACTConfig, inputs: dict, seed: int = 0) -> dict:
    """Variables shaped by `ACT.init` (traced abstractly, no compilation) and filled from a
    seeded generator: kernels N(0, 1/fan_in), scales 1 + N(0, 0.1²), other vectors N(0, 0.1²),
    positive variances."""
    actions, is_pad = _chunk()
    noise = np.zeros((BATCH, config.latent_dim), np.float32)
    init = functools.partial(ACT(config).init, deterministic=True, method=ACT.reconstruct)
    shapes = jax.eval_shape(init, jax.random.key(0), actions, is_pad, noise, **inputs)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        if path[-1].key == "var":
            return np.exp(0.3 * rng.normal(size=leaf.shape)).astype(np.float32)
        if path[-1].key == "scale":
            return (1 + 0.1 * rng.normal(size=leaf.shape)).astype(np.float32)
        scale = 1 / np.sqrt(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 0.1
        return (scale * rng.normal(size=leaf.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def _vector_inputs() -> dict:
    """The image-free observation (state and environment state): a tiny, fast network."""
    inputs = _inputs()
    inputs.pop("images")
    return inputs


@functools.cache
def _vector_variables(config: ACTConfig = TINY) -> dict:
    return _seeded_variables(config, _vector_inputs())


def test_token_counts_and_shapes_at_every_stage_follow_lerobots_layout():
    """[latent, state, environment state, 2 cameras × (64/32)·(32/32) image tokens] = 7 encoder
    tokens; the CVAE encoder reads [CLS, state, k actions] = k + 2; the decoder k queries."""
    actions, is_pad = _chunk()
    noise = np.zeros((BATCH, TINY.latent_dim), np.float32)
    init = functools.partial(ACT(TINY).init, deterministic=True, method=ACT.reconstruct)
    variables = jax.eval_shape(init, jax.random.key(0), actions, is_pad, noise, **_inputs())
    trace = tracer.trace_module(
        ACT(TINY),
        variables,
        actions,
        is_pad,
        noise,
        **_inputs(),
        method=ACT.reconstruct,
        deterministic=True,
    )
    dim, chunk = TINY.model_dim, TINY.chunk_size
    assert trace.stage("cvae_encoder/encoder").input_shapes[0] == (BATCH, chunk + 2, dim)
    assert trace.stage("cvae_encoder/latent_head").output_shapes[0] == (BATCH, 2 * 4)
    assert trace.stage("cvae_decoder/camera_tokens/backbone").output_shapes[0] == (4, 2, 1, 512)
    assert trace.stage("cvae_decoder/camera_tokens").output_shapes == ((BATCH, 4, dim), (4, dim))
    assert trace.stage("cvae_decoder/encoder").input_shapes[0] == (BATCH, 3 + 4, dim)
    assert trace.stage("cvae_decoder/decoder").input_shapes[:2] == (
        (BATCH, chunk, dim),
        (BATCH, 7, dim),
    )
    assert trace.stage("cvae_decoder/action_head").output_shapes[0] == (BATCH, chunk, 3)


def test_camera_tokens_are_camera_major_each_from_its_own_image_with_its_2d_sine_grid():
    """Swapping the two cameras swaps their blocks of tokens (each block depends on its own
    image only); the positions are each camera's 2×1 sine grid (layer4 of 64×32 images)."""
    images = _inputs()["images"]
    variables = _seeded_variables(TINY, _inputs())["params"]["cvae_decoder"]["camera_tokens"]
    batch_stats = _seeded_variables(TINY, _inputs())["batch_stats"]["cvae_decoder"]
    variables = {"params": variables, "batch_stats": batch_stats["camera_tokens"]}
    module = CameraTokens(TINY.model_dim)
    tokens_of = jax.jit(module.apply)
    tokens, positions = tokens_of(variables, images)
    swapped, _ = tokens_of(variables, images[:, ::-1])
    np.testing.assert_allclose(swapped, np.concatenate([tokens[:, 2:], tokens[:, :2]], 1), 1e-6)
    assert np.abs(tokens[:, :2] - tokens[:, 2:]).max() > 1e-3
    grid = position_encoding.sine_position_embedding_2d(2, 1, TINY.model_dim).reshape(2, -1)
    np.testing.assert_array_equal(positions, np.concatenate([grid, grid]))


def test_cvae_encoder_ignores_padded_actions_and_reads_the_valid_ones():
    actions, is_pad = _chunk()
    state = _inputs()["state"]
    posterior = jax.jit(
        functools.partial(
            ACT(TINY).apply, _vector_variables(), method=ACT.posterior, deterministic=True
        )
    )
    latent_parameters = np.concatenate(posterior(actions, is_pad, state), axis=-1)
    changed_padding = actions.copy()
    changed_padding[1, -3:] += 5.0
    changed = np.concatenate(posterior(changed_padding, is_pad, state), axis=-1)
    np.testing.assert_allclose(changed, latent_parameters, atol=1e-6)
    changed_valid = actions.copy()
    changed_valid[1, 0] += 5.0
    changed = np.concatenate(posterior(changed_valid, is_pad, state), axis=-1)
    assert np.abs(changed[1] - latent_parameters[1]).max() > 1e-3


def test_reparameterization_is_eq_17_49_with_the_gradients_of_eq_17_50():
    rng = np.random.default_rng(2)
    mean, log_var, noise = (rng.normal(size=(3, 4)).astype(np.float32) for _ in range(3))
    sigma = np.exp(0.5 * log_var)
    np.testing.assert_allclose(reparameterize(mean, log_var, noise), mean + sigma * noise, 1e-6)
    total = lambda m, lv: jnp.sum(reparameterize(m, lv, noise))  # noqa: E731
    gradient_mean, gradient_log_var = jax.grad(total, argnums=(0, 1))(mean, log_var)
    np.testing.assert_allclose(gradient_mean, np.ones_like(mean))  # ∂z/∂μ = 1
    # ∂z/∂σ = ε (eq. 17.50) and ∂σ/∂log σ² = σ/2
    np.testing.assert_allclose(gradient_log_var, 0.5 * sigma * noise, rtol=1e-6)


def test_reconstruct_decodes_the_reparameterized_posterior_sample():
    """reconstruct = decode(μ + σ ε) with (μ, log σ²) from the posterior: the training pass is
    the composition of the two inference methods."""
    actions, is_pad = _chunk()
    inputs = _vector_inputs()
    noise = np.random.default_rng(4).normal(size=(BATCH, TINY.latent_dim)).astype(np.float32)
    apply = functools.partial(ACT(TINY).apply, _vector_variables(), deterministic=True)
    predicted, mean, log_var = apply(actions, is_pad, noise, **inputs, method=ACT.reconstruct)
    np.testing.assert_allclose(
        (mean, log_var), apply(actions, is_pad, inputs["state"], method=ACT.posterior)
    )
    decoded = apply(reparameterize(mean, log_var, noise), **inputs)
    np.testing.assert_allclose(predicted, decoded, atol=1e-6)
    assert np.abs(apply(0 * noise, **inputs) - decoded).max() > 1e-3  # z reaches the chunk


def test_bfloat16_matmuls_match_float32_to_bfloat16_resolution():
    config = ACTConfig(**{**TINY.__dict__, "compute_dtype": "bfloat16"})
    latent = np.random.default_rng(3).normal(size=(BATCH, TINY.latent_dim)).astype(np.float32)
    variables, inputs = _vector_variables(), _vector_inputs()
    full = ACT(TINY).apply(variables, latent, **inputs, deterministic=True)
    half = ACT(config).apply(variables, latent, **inputs, deterministic=True)
    assert half.dtype == jnp.float32
    # 8 bits of mantissa through 3 transformer layers: a few 1e-2 of the outputs' scale
    assert np.abs(half - full).max() < 0.05 * np.abs(full).max()
    assert np.abs(half - full).max() > 0  # the matmuls did run in bfloat16


def test_act_without_cvae_has_no_encoder_and_decodes_from_the_zero_latent():
    config = ACTConfig(**{**TINY.__dict__, "use_cvae": False})
    actions, is_pad = _chunk()
    inputs = {"environment_state": _inputs()["environment_state"]}
    variables = _seeded_variables(config, inputs)
    assert set(variables) == {"params"} and set(variables["params"]) == {"cvae_decoder"}
    noise = np.ones((BATCH, TINY.latent_dim), np.float32)
    apply = functools.partial(ACT(config).apply, variables, deterministic=True)
    predicted, mean, log_var = apply(actions, is_pad, noise, **inputs, method=ACT.reconstruct)
    assert mean is None and log_var is None
    np.testing.assert_allclose(predicted, apply(0 * noise, **inputs), atol=1e-6)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"chunk_size": 0}, "chunk_size must be a positive int"),
        ({"num_heads": 5}, "num_heads must be a positive divisor"),
        ({"vision_backbone": "vit"}, "vision_backbone must be one of"),
        ({"compute_dtype": "float16"}, "compute_dtype must be one of"),
        ({"activation": "glu"}, "activation must be one of"),
        ({"dropout_rate": 1.0}, r"dropout_rate must be in \[0, 1\)"),
    ],
)
def test_config_rejects_bad_values_naming_them(override, message):
    with pytest.raises(ValueError, match=message):
        ACTConfig(**{**TINY.__dict__, **override})


def test_bad_inputs_raise_errors_naming_the_argument():
    decode = functools.partial(ACT(TINY).apply, _vector_variables(), deterministic=True)
    latent = np.zeros((BATCH, TINY.latent_dim), np.float32)
    with pytest.raises(ValueError, match="at least one of images, state, environment_state"):
        decode(latent)
    with pytest.raises(ValueError, match=r"latent must have shape \[B, 4\]"):
        decode(np.zeros((BATCH, 5), np.float32), **_vector_inputs())
    with pytest.raises(ValueError, match="state must have shape"):
        decode(latent, state=np.zeros((BATCH + 1, STATE_DIM), np.float32))
    actions, is_pad = _chunk()
    with pytest.raises(ValueError, match=r"actions must have shape \[B, 8, 3\]"):
        ACT(TINY).apply(
            _vector_variables(), actions[:, :4], is_pad, method=ACT.posterior, deterministic=True
        )
