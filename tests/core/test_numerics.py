"""Stable softmax / log-sum-exp (book 11.1): exact where the naive forms overflow."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from core import numerics

SHAPE = (3, 4)
wide_logits = hnp.arrays(
    np.float32, SHAPE, elements=st.floats(-1e4, 1e4, width=32, allow_subnormal=False)
)
axes = st.sampled_from([0, 1, -1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_naive_forms_overflow_at_logit_1000_in_float32_and_float64(dtype):
    with jax.enable_x64(dtype == "float64"):
        logits = jnp.array([1000.0, 0.0], dtype=dtype)
        assert logits.dtype == dtype
        assert np.isnan(numerics.naive_softmax(logits)[0])  # inf / inf
        assert np.isposinf(numerics.naive_logsumexp(logits))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_stable_forms_are_exact_at_logit_1000(dtype):
    with jax.enable_x64(dtype == "float64"):
        logits = jnp.array([1000.0, 0.0, -1000.0], dtype=dtype)
        # softmax = [1, e^-1000, e^-2000]; both tails underflow to exactly 0, the top is 1.
        np.testing.assert_array_equal(numerics.softmax(logits), [1.0, 0.0, 0.0])
        # logsumexp = 1000 + log(1 + e^-1000 + e^-2000) = 1000 to every representable digit.
        assert numerics.logsumexp(logits) == 1000.0
        np.testing.assert_array_equal(numerics.log_softmax(logits), [0.0, -1000.0, -2000.0])


@given(logits=wide_logits, axis=axes)
def test_stable_forms_agree_with_jax_nn(logits, axis):
    np.testing.assert_allclose(
        numerics.softmax(logits, axis), jax.nn.softmax(logits, axis=axis), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(
        numerics.logsumexp(logits, axis), jax.nn.logsumexp(logits, axis=axis), rtol=1e-6
    )
    np.testing.assert_allclose(
        numerics.log_softmax(logits, axis),
        jax.nn.log_softmax(logits, axis=axis),
        rtol=1e-6,
        atol=1e-3,  # |log p| reaches 2e4 here; float32 resolves it to ~1e-3
    )


@given(
    logits=hnp.arrays(np.float64, SHAPE, elements=st.floats(-30, 30)),
    shift=st.floats(-500, 500),
)
def test_softmax_is_invariant_to_a_constant_shift_eq_11_3(logits, shift):
    with jax.enable_x64(True):
        np.testing.assert_allclose(
            numerics.softmax(logits + shift), numerics.naive_softmax(logits), rtol=1e-12
        )


@given(logits=hnp.arrays(np.float64, SHAPE, elements=st.floats(-30, 30)))
def test_stable_forms_equal_naive_forms_where_those_are_finite(logits):
    with jax.enable_x64(True):
        naive_probs = numerics.naive_softmax(logits)
        np.testing.assert_allclose(numerics.softmax(logits), naive_probs, rtol=1e-12)
        # log of a sum near 1 is near 0: its error is absolute (a few ulps of 1), not relative.
        np.testing.assert_allclose(
            numerics.logsumexp(logits), numerics.naive_logsumexp(logits), rtol=1e-12, atol=1e-14
        )
        np.testing.assert_allclose(
            numerics.log_softmax(logits), jnp.log(naive_probs), rtol=1e-12, atol=1e-12
        )


@given(logits=hnp.arrays(np.float64, (5,), elements=st.floats(-800, 800)))
def test_logsumexp_gradient_is_softmax(logits):
    with jax.enable_x64(True):
        gradient = jax.grad(numerics.logsumexp)(logits)
        np.testing.assert_allclose(gradient, jax.nn.softmax(logits), rtol=1e-12, atol=1e-300)


def test_fully_masked_slice_gives_minus_inf_like_jax_nn():
    logits = jnp.array([[-jnp.inf, -jnp.inf], [0.0, -jnp.inf]])
    np.testing.assert_array_equal(numerics.logsumexp(logits), jax.nn.logsumexp(logits, axis=-1))
    np.testing.assert_array_equal(numerics.softmax(logits)[1], [1.0, 0.0])


def test_missing_axis_raises_value_error_naming_logits():
    with pytest.raises(ValueError, match=r"logits must have an axis 2 .* got shape \[3, 4\]"):
        numerics.softmax(jnp.zeros((3, 4)), axis=2)
    with pytest.raises(ValueError, match=r"logits must have an axis -1 .* got shape \[\]"):
        numerics.logsumexp(jnp.zeros(()))
