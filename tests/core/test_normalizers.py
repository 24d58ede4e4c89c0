"""Data normalizers: numpy formulas, exact inverses, train-only statistics, constant features."""

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import normalizers

DATA = hnp.arrays(np.float64, (12, 3), elements=st.floats(-1e3, 1e3, allow_nan=False))


def _fits():
    return {
        "zscore": normalizers.fit_zscore,
        "minmax01": normalizers.fit_minmax,
        "minmax11": lambda train, **kw: normalizers.fit_minmax(train, target=(-1.0, 1.0), **kw),
        "quantile": normalizers.fit_quantile,
    }


def _train_test(seed=0):
    train_key, test_key = jax.random.split(jax.random.key(seed))
    scale = jnp.array([1.0, 10.0, 0.01])
    train = 3.0 + scale * jax.random.normal(train_key, (200, 3), jnp.float64)
    test = -5.0 + 4.0 * scale * jax.random.normal(test_key, (50, 3), jnp.float64)
    return train, test


def test_zscore_is_eq_14_1_with_the_population_std(x64):
    train, test = _train_test()
    normalizer = normalizers.fit_zscore(train)
    mean, std = np.mean(np.asarray(train), axis=0), np.std(np.asarray(train), axis=0, ddof=0)
    np.testing.assert_allclose(normalizer.normalize(test), (test - mean) / std, rtol=1e-12)
    normalized_train = normalizer.normalize(train)
    np.testing.assert_allclose(np.mean(normalized_train, axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.std(normalized_train, axis=0), 1.0, rtol=1e-12)


@pytest.mark.parametrize("target", [(0.0, 1.0), (-1.0, 1.0)])
def test_minmax_is_eq_14_2_rescaled_to_the_target(x64, target):
    train, test = _train_test()
    normalizer = normalizers.fit_minmax(train, target=target)
    low, high = np.min(np.asarray(train), axis=0), np.max(np.asarray(train), axis=0)
    unit = (np.asarray(test) - low) / (high - low)  # eq. 14.2
    expected = target[0] + (target[1] - target[0]) * unit
    np.testing.assert_allclose(normalizer.normalize(test), expected, rtol=1e-10, atol=1e-12)
    normalized_train = normalizer.normalize(train)
    np.testing.assert_allclose(np.min(normalized_train, axis=0), target[0], atol=1e-12)
    np.testing.assert_allclose(np.max(normalized_train, axis=0), target[1], atol=1e-12)


def test_quantile_maps_q01_q99_to_minus_one_one_and_clips(x64):
    train, test = _train_test()
    normalizer = normalizers.fit_quantile(train)
    low, high = np.quantile(np.asarray(train), [0.01, 0.99], axis=0)
    expected = np.clip(2.0 * (np.asarray(test) - low) / (high - low) - 1.0, -1.0, 1.0)
    np.testing.assert_allclose(normalizer.normalize(test), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(normalizer.normalize(np.stack([low, high])), [[-1.0] * 3, [1.0] * 3])


def test_quantile_keeps_the_resolution_that_an_outlier_takes_from_minmax(x64):
    train = jnp.concatenate([jnp.linspace(0.0, 1.0, 199), jnp.array([1000.0])])[:, None]
    bulk = jnp.array([[0.25], [0.75]])
    minmax_gap = jnp.diff(normalizers.fit_minmax(train, target=(-1.0, 1.0)).normalize(bulk)[:, 0])
    quantile_gap = jnp.diff(normalizers.fit_quantile(train).normalize(bulk)[:, 0])
    assert minmax_gap[0] < 1.1e-3  # the outlier squeezes the bulk into 0.1% of [-1, 1]
    assert quantile_gap[0] > 1.0  # q01..q99 of the bulk span [-1, 1]


@pytest.mark.parametrize("kind", ["zscore", "minmax01", "minmax11", "quantile"])
@given(data=DATA)
def test_unnormalize_inverts_normalize(kind, data):
    with jax.enable_x64(True):
        normalizer = _fits()[kind](jnp.asarray(data))
        normalized = np.asarray(normalizer.normalize(jnp.asarray(data)))
        restored = np.asarray(normalizer.unnormalize(normalized))
        # The quantile normalizer clips: its inverse holds on the open range (-1, 1).
        kept = np.abs(normalized) < 1.0 if kind == "quantile" else np.ones(data.shape, bool)
        np.testing.assert_allclose(restored[kept], data[kept], rtol=1e-9, atol=1e-9)
        grid = jnp.linspace(-1.0, 1.0, 7)[:, None] * jnp.ones(3)
        np.testing.assert_allclose(
            normalizer.normalize(normalizer.unnormalize(grid)), grid, rtol=1e-9, atol=1e-9
        )


@pytest.mark.parametrize("kind", ["zscore", "minmax01", "minmax11", "quantile"])
def test_normalizing_test_data_never_uses_test_statistics(x64, kind):
    train, test = _train_test()
    fitted = _fits()[kind](train)
    normalized = fitted.normalize(test)
    # A normalizer that recomputed statistics on its input would change these rows.
    with_more_test_data = fitted.normalize(jnp.concatenate([test, test + 100.0]))
    np.testing.assert_array_equal(with_more_test_data[: len(test)], normalized)
    assert not np.allclose(normalized, _fits()[kind](test).normalize(test))


@pytest.mark.parametrize(
    ("kind", "center"), [("zscore", 0.0), ("minmax01", 0.5), ("minmax11", 0.0), ("quantile", 0.0)]
)
def test_constant_features_are_centered_and_unscaled_without_inf_or_nan(kind, center):
    train = jnp.stack([jnp.linspace(0.0, 1.0, 20), jnp.full(20, 7.0)], axis=-1)
    normalizer = _fits()[kind](train)
    assert normalizer.scale[1] == 1.0
    normalized = normalizer.normalize(jnp.array([[0.5, 7.0], [0.5, 7.25]]))
    assert np.all(np.isfinite(normalized))
    np.testing.assert_allclose(normalized[:, 1], [center, center + 0.25])
    np.testing.assert_allclose(normalizer.unnormalize(normalized)[:, 1], [7.0, 7.25])


def test_statistics_round_trip_through_plain_numpy_dicts(x64):
    train, _ = _train_test()
    for kind, fit in _fits().items():
        normalizer = fit(train)
        state = normalizer.to_dict()
        assert all(type(value) is np.ndarray for value in state.values()), kind
        loaded = normalizers.AffineNormalizer.from_dict(
            {key: np.array(value) for key, value in state.items()}
        )
        np.testing.assert_array_equal(loaded.normalize(train), normalizer.normalize(train))
        assert loaded.output_clip == normalizer.output_clip


def test_sequence_chunks_share_statistics_over_sample_and_time_axes(x64):
    chunks = jax.random.normal(jax.random.key(3), (30, 5, 2), jnp.float64) * jnp.array([1.0, 9.0])
    normalizer = normalizers.fit_zscore(chunks, axis=(0, 1))
    assert normalizer.offset.shape == (2,)
    flat = np.asarray(chunks).reshape(-1, 2)
    np.testing.assert_allclose(normalizer.scale, np.std(flat, axis=0), rtol=1e-12)
    normalize = jax.jit(lambda normalizer, x: normalizer.normalize(x))
    np.testing.assert_allclose(normalize(normalizer, chunks[0]), normalizer.normalize(chunks[0]))


def test_bad_arguments_raise_value_errors():
    train = jnp.ones((10, 3))
    with pytest.raises(ValueError, match=r"axis must be the leading sample axes"):
        normalizers.fit_zscore(train, axis=1)
    with pytest.raises(ValueError, match=r"axis must be the leading sample axes"):
        normalizers.fit_zscore(train, axis=(0, 1))
    with pytest.raises(ValueError, match=r"axis must be the leading sample axes"):
        normalizers.fit_zscore(train, axis=2)
    with pytest.raises(ValueError, match=r"target must be an interval"):
        normalizers.fit_minmax(train, target=(1.0, -1.0))
    with pytest.raises(ValueError, match=r"min_spread must be >= 0"):
        normalizers.fit_zscore(train, min_spread=-1.0)
    with pytest.raises(ValueError, match=r"quantiles must satisfy"):
        normalizers.fit_quantile(train, quantiles=(0.9, 0.1))
    with pytest.raises(ValueError, match=r"x must have shape \[\.\.\., 3\].*got \[10, 4\]"):
        normalizers.fit_zscore(train).normalize(jnp.ones((10, 4)))
