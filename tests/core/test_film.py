"""FiLM (book eq. 18.6) against explicit broadcasting, and the FiLM layer against its definition
Mish -> Linear -> [γ; β] (the residual-block fixture checks it against LeRobot)."""

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import film

BATCH, STEPS, CHANNELS, CONDITION_DIM = 2, 5, 4, 3
VALUES = st.floats(-10, 10, width=32, allow_subnormal=False)


def _arrays(shape):
    return hnp.arrays(np.float32, shape, elements=VALUES)


@given(
    features=_arrays((BATCH, STEPS, CHANNELS)),
    scale=_arrays((BATCH, CHANNELS)),
    bias=_arrays((BATCH, CHANNELS)),
)
def test_film_scales_and_shifts_every_step_of_each_channel(features, scale, bias):
    modulated = np.asarray(film.film(features, scale, bias))
    shifted = np.asarray(film.film(features, None, bias))
    for b in range(BATCH):
        for t in range(STEPS):
            np.testing.assert_allclose(
                modulated[b, t], scale[b] * features[b, t] + bias[b], rtol=1e-6, atol=1e-5
            )
            np.testing.assert_allclose(shifted[b, t], features[b, t] + bias[b], rtol=1e-6)


def _explicit_mish(x):
    return x * np.tanh(np.log1p(np.exp(x)))


@pytest.mark.parametrize("use_scale", [False, True])
def test_film_layer_is_mish_then_linear_read_as_scale_then_bias(x64, use_scale):
    rng = np.random.default_rng(0)
    features = rng.standard_normal((BATCH, STEPS, CHANNELS))
    condition = rng.standard_normal((BATCH, CONDITION_DIM))
    module = film.FiLM(use_scale=use_scale)
    shapes = jax.eval_shape(module.init, jax.random.key(0), features, condition)
    variables = jax.tree_util.tree_map(lambda leaf: rng.standard_normal(leaf.shape), shapes)
    projection = variables["params"]["projection"]
    assert projection["kernel"].shape == (CONDITION_DIM, CHANNELS * (2 if use_scale else 1))
    output = jax.jit(module.apply)(variables, features, condition)
    modulation = _explicit_mish(condition) @ np.asarray(projection["kernel"]) + np.asarray(
        projection["bias"]
    )
    if use_scale:
        expected = modulation[:, None, :CHANNELS] * features + modulation[:, None, CHANNELS:]
    else:
        expected = features + modulation[:, None, :]
    np.testing.assert_allclose(output, expected, atol=1e-12)


def test_film_rejects_parameters_of_the_wrong_shape():
    features = jnp.zeros((BATCH, STEPS, CHANNELS))
    with pytest.raises(ValueError, match=r"bias must have shape \[B, C\] with C=4"):
        film.film(features, None, jnp.zeros((BATCH, CHANNELS + 1)))
    with pytest.raises(ValueError, match=r"scale must have shape \[B, C\] with B=2"):
        film.film(features, jnp.zeros((BATCH + 1, CHANNELS)), jnp.zeros((BATCH, CHANNELS)))
