"""Position encodings (book 16.4.2, 17.4.1, 18.5.2) against LeRobot and closed forms.

References: golden outputs of LeRobot's create_sinusoidal_pos_embedding,
ACTSinusoidalPositionEmbedding2d and DiffusionSinusoidalPosEmb
(tests/fixtures/parity/position_encoding.npz, from
`python -m experiments.parity --only position_encoding`); sin/cos identities in float64.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import position_encoding
from experiments.parity import position_encoding as reference
from experiments.parity.common import FIXTURE_DIR

FIXTURE = np.load(f"{FIXTURE_DIR}/position_encoding.npz")
PARITY_TOLERANCE = 1e-6  # float32 position encodings against LeRobot


@pytest.mark.parametrize("case", list(reference.TABLE_CASES))
def test_sinusoidal_table_equals_acts_create_sinusoidal_pos_embedding(case):
    table = position_encoding.sinusoidal_table(*reference.TABLE_CASES[case])
    np.testing.assert_allclose(table, FIXTURE[case], atol=PARITY_TOLERANCE)


@pytest.mark.parametrize("case", list(reference.GRID_CASES))
def test_2d_sine_embedding_equals_acts_sinusoidal_position_embedding_2d(case):
    embedding = position_encoding.sine_position_embedding_2d(*reference.GRID_CASES[case])
    np.testing.assert_allclose(embedding, FIXTURE[case], atol=PARITY_TOLERANCE)


def test_timestep_embedding_equals_diffusion_policys_sinusoidal_pos_emb():
    embedding = position_encoding.sinusoidal_timestep_embedding(
        reference.TIMESTEPS, reference.TIMESTEP_DIM
    )
    # Both sides round the angle t·ω (up to 99) to float32; its spacing there, 7.6e-6, bounds
    # the difference of two correctly rounded evaluations (measured: 1.8e-6).
    tolerance = np.spacing(np.float32(reference.TIMESTEPS.max()))
    np.testing.assert_allclose(embedding, FIXTURE["timestep_embedding"], atol=tolerance)


@given(num_positions=st.sampled_from([1, 7, 102]), dim=st.sampled_from([2, 16, 512]))
def test_sinusoidal_rows_have_squared_norm_d_over_2_and_shift_invariant_dot_products(
    num_positions, dim
):
    table = np.asarray(position_encoding.sinusoidal_table(num_positions, dim), np.float64)
    np.testing.assert_allclose(np.sum(table**2, axis=1), dim / 2, rtol=1e-6)  # sin² + cos² = 1
    frequencies = 10000.0 ** (-2 * np.arange(dim // 2) / dim)
    offset = num_positions // 2
    # PE[p]·PE[p + k] = Σ_i cos(k ω_i): it depends on the offset k only.
    expected = np.sum(np.cos(offset * frequencies))
    dots = np.sum(table[: num_positions - offset] * table[offset:], axis=1)
    np.testing.assert_allclose(dots, expected, atol=1e-4)


def test_2d_embedding_rows_half_depends_on_the_row_and_columns_half_on_the_column():
    height, width, dim = 3, 4, 16
    embedding = np.asarray(position_encoding.sine_position_embedding_2d(height, width, dim))
    rows, columns = embedding[..., : dim // 2], embedding[..., dim // 2 :]
    np.testing.assert_array_equal(rows, np.broadcast_to(rows[:, :1], rows.shape))
    np.testing.assert_array_equal(columns, np.broadcast_to(columns[:1], columns.shape))
    # Channel 2j is sin and 2j+1 cos of the same angle 2π i/(H + ε) / 10000^{2j/(d/2)}.
    angle = 2 * math.pi * 2 / (height + 1e-6) / 10000.0 ** (2 * 1 / (dim // 2))
    np.testing.assert_allclose(embedding[1, 0, [2, 3]], [math.sin(angle), math.cos(angle)], 1e-6)
    unnormalized = position_encoding.sine_position_embedding_2d(3, 4, 16, normalize=False)
    np.testing.assert_allclose(
        unnormalized[2, 3, [0, 1, 8, 9]],
        [np.sin(3), np.cos(3), np.sin(4), np.cos(4)],
        rtol=1e-6,
    )


def test_timestep_embedding_is_sines_then_cosines_from_frequency_1_down_to_1e_minus_4():
    timesteps = jnp.array([0.0, 3.0, 50.0])
    embedding = position_encoding.sinusoidal_timestep_embedding(timesteps, 8)
    frequencies = np.array([1.0, 10000 ** (-1 / 3), 10000 ** (-2 / 3), 1e-4])
    angles = np.asarray(timesteps)[:, None] * frequencies
    np.testing.assert_allclose(embedding, np.hstack([np.sin(angles), np.cos(angles)]), atol=1e-6)


def test_learned_embedding_is_an_n01_table_loaded_from_a_torch_embedding():
    module = position_encoding.LearnedPositionEmbedding(num_positions=100, features=512)
    params = jax.jit(module.init)(jax.random.key(0))
    table = module.apply(params)
    assert table.shape == (100, 512)
    # 51200 N(0, 1) draws: the sample std is within 1 % of 1 (its standard error is 0.3 %).
    np.testing.assert_allclose(np.std(table), 1.0, rtol=0.01)
    weight = np.arange(100 * 512, dtype=np.float32).reshape(100, 512)
    loaded = position_encoding.learned_position_embedding_params_from_torch(
        {"decoder_pos_embed.weight": weight}, module, prefix="decoder_pos_embed."
    )
    np.testing.assert_array_equal(module.apply({"params": loaded}), weight)
    with pytest.raises(ValueError, match=r"weight of torch shape \[99, 512\].*\[100, 512\]"):
        position_encoding.learned_position_embedding_params_from_torch(
            {"weight": weight[:99]}, module
        )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: position_encoding.sine_position_embedding_2d(3, 3, 6), r"multiple of 4 .*got 6"),
        (lambda: position_encoding.sine_position_embedding_2d(0, 3, 8), "height must be positive"),
        (lambda: position_encoding.sinusoidal_table(10, 0), "dim must be positive, got 0"),
        (
            lambda: position_encoding.sinusoidal_timestep_embedding(jnp.zeros(3), 3),
            "dim must be even and at least 4, got 3",
        ),
        (
            lambda: position_encoding.sinusoidal_timestep_embedding(jnp.zeros((3, 1)), 8),
            r"timesteps must have rank 1, got rank 2",
        ),
    ],
)
def test_bad_sizes_are_rejected_naming_the_value(build, message):
    with pytest.raises(ValueError, match=message):
        build()
