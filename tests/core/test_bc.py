"""Behavioral-cloning baselines (book 16.8): the losses against explicit formulas and their
closed-form gradients, masking, shapes, and the 16.3.3 point that neither head represents two
modes: trained on targets ±1 for the same observation, MSE predicts the mean 0 and the Gaussian
NLL one wide Gaussian N(0, 1)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import bc

FEATURES = {
    "observation.state": {"dtype": "float32", "shape": [4], "names": None},
    "observation.environment_state": {"dtype": "float32", "shape": [4], "names": None},
    "observation.instruction": {"dtype": "int32", "shape": [5], "names": None},
    "observation.images.top": {"dtype": "image", "shape": [16, 16, 3], "names": None},
    "observation.images.wrist": {"dtype": "image", "shape": [16, 16, 3], "names": None},
    "action": {"dtype": "float32", "shape": [2], "names": None},
}
TINY = {"hidden_sizes": (16,), "conv_channels": (4, 4), "num_keypoints": 3}
mse_loss = jax.jit(bc.bc_mse_loss)
nll_loss = jax.jit(bc.bc_gaussian_nll_loss)


def _chunk_arrays(seed: int, batch: int, horizon: int, action_dim: int):
    """Random predictions, targets, log σ and a padding mask with at least one valid step."""
    rng = np.random.default_rng(seed)
    shape = (batch, horizon, action_dim)
    predictions, targets = rng.normal(size=shape), rng.normal(size=shape)
    log_std = rng.uniform(-1.0, 1.0, size=shape)
    is_pad = rng.random((batch, horizon)) < 0.4
    is_pad[0, 0] = False
    return [np.asarray(a, np.float32) for a in (predictions, targets, log_std)] + [is_pad]


SHAPES = st.sampled_from([(1, 1, 1), (3, 4, 2), (5, 2, 3)])


@given(shape=SHAPES, seed=st.integers(0, 2**16))
def test_mse_loss_is_eq_16_39_over_valid_steps_with_gradient_2_residual_over_count(shape, seed):
    predictions, targets, _, is_pad = _chunk_arrays(seed, *shape)
    valid = ~is_pad
    count = valid.sum()
    expected = sum(
        np.sum((targets[b, j] - predictions[b, j]) ** 2)
        for b in range(shape[0])
        for j in range(shape[1])
        if valid[b, j]
    )
    np.testing.assert_allclose(mse_loss(predictions, targets, is_pad), expected / count, rtol=1e-5)
    gradient = jax.grad(bc.bc_mse_loss)(predictions, targets, is_pad)
    closed_form = 2.0 * (predictions - targets) * valid[..., None] / count  # book eq. 4.4
    np.testing.assert_allclose(gradient, closed_form, rtol=1e-5, atol=1e-7)


@given(shape=SHAPES, seed=st.integers(0, 2**16))
def test_gaussian_nll_is_eq_16_62_with_closed_form_gradients(shape, seed):
    mean, targets, log_std, is_pad = _chunk_arrays(seed, *shape)
    valid = ~is_pad
    count = valid.sum()
    std = np.exp(log_std.astype(np.float64))
    density = np.exp(-((targets - mean) ** 2) / (2 * std**2)) / (std * np.sqrt(2 * np.pi))
    expected = -np.log(density).sum(axis=-1)[valid].sum() / count
    np.testing.assert_allclose(nll_loss(mean, log_std, targets, is_pad), expected, rtol=1e-5)
    mean_gradient, log_std_gradient = jax.grad(bc.bc_gaussian_nll_loss, argnums=(0, 1))(
        mean, log_std, targets, is_pad
    )
    weight = valid[..., None] / count
    np.testing.assert_allclose(
        mean_gradient, (mean - targets) / std**2 * weight, rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        log_std_gradient, (1.0 - (targets - mean) ** 2 / std**2) * weight, rtol=1e-4, atol=1e-6
    )


def _batch(policy: bc.BCPolicy, batch_size: int, seed: int = 0, image_size: int = 16) -> dict:
    rng = np.random.default_rng(seed)
    window = (batch_size, policy.observation_horizon)
    batch = {
        key: rng.normal(size=(*window, FEATURES[key]["shape"][0])).astype(np.float32)
        for key in policy.state_keys
    }
    for key in policy.image_keys:
        batch[key] = rng.random((*window, image_size, image_size, 3)).astype(np.float32)
    batch["action"] = rng.normal(size=(batch_size, policy.action_horizon, 2)).astype(np.float32)
    batch["action_is_pad"] = np.zeros((batch_size, policy.action_horizon), bool)
    return batch


def test_mse_policy_gradient_equals_jax_grad_of_the_book_loss_written_out():
    policy = bc.mlp_policy(FEATURES, head="mse", action_horizon=3, hidden_sizes=(8,))
    batch = _batch(policy, 4)
    batch["action_is_pad"][1, 1:] = True
    variables = policy.init(jax.random.key(0), batch)

    def book_loss(variables):  # eq. 16.39 over the valid steps, written out
        predicted = policy.network.apply(variables, batch)[0]
        per_step = jnp.sum((batch["action"] - predicted) ** 2, axis=-1)
        valid = ~batch["action_is_pad"]
        return jnp.sum(jnp.where(valid, per_step, 0.0)) / valid.sum()

    policy_gradient = jax.grad(lambda v: policy.loss(v, batch, jax.random.key(1), 0)[0])(variables)
    expected = jax.grad(book_loss)(variables)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        policy_gradient,
        expected,
    )


PAD_HEADS = ("mse", "gaussian_nll")


@pytest.fixture(scope="module")
def padded_setups():
    """Per head: the policy (k = 4), its variables, and its jitted loss-and-gradient."""
    setups = {}
    for head in PAD_HEADS:
        policy = bc.mlp_policy(FEATURES, head=head, action_horizon=4, hidden_sizes=(8,))
        variables = policy.init(jax.random.key(0), _batch(policy, 3))
        loss_and_gradient = jax.jit(
            jax.value_and_grad(lambda v, b, p=policy: p.loss(v, b, jax.random.key(0), 0)[0])
        )
        setups[head] = (policy, variables, loss_and_gradient)
    return setups


@given(head=st.sampled_from(PAD_HEADS), seed=st.integers(0, 2**16))
def test_actions_at_padded_steps_change_neither_loss_nor_gradient(padded_setups, head, seed):
    policy, variables, loss_and_gradient = padded_setups[head]
    batch = _batch(policy, 3)
    batch["action_is_pad"] = np.array([[0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 0]], bool)
    garbage = dict(batch)
    noise = np.random.default_rng(seed).normal(scale=100.0, size=batch["action"].shape)
    garbage["action"] = np.where(batch["action_is_pad"][..., None], noise, batch["action"]).astype(
        np.float32
    )
    loss, gradient = loss_and_gradient(variables, batch)
    garbage_loss, garbage_gradient = loss_and_gradient(variables, garbage)
    np.testing.assert_array_equal(loss, garbage_loss)
    jax.tree.map(np.testing.assert_array_equal, gradient, garbage_gradient)


def _bimodal_data(num_observations: int = 4, horizon: int = 2):
    """Each observation appears twice, once with every target +1 and once with -1.

    A few distinct observations (not one) make the network learn to ignore the observation;
    with many, fitting the constant takes far more steps (32 observations: |μ| 0.06 after 1000
    Adam steps), which tests nothing more.
    """
    rng = np.random.default_rng(0)
    state = rng.normal(size=(num_observations, 1, 4)).astype(np.float32)
    signs = np.concatenate([np.ones(num_observations), -np.ones(num_observations)])
    return {
        "observation.state": np.concatenate([state, state]),
        "action": np.broadcast_to(signs[:, None, None], (2 * num_observations, horizon, 2)).astype(
            np.float32
        ),
        "action_is_pad": np.zeros((2 * num_observations, horizon), bool),
    }


def _fit(policy: bc.BCPolicy, batch: dict, steps: int = 400) -> dict:
    """Full-batch Adam on the policy's loss, in one compiled scan."""
    optimizer = optax.adam(1e-2)
    variables = policy.init(jax.random.key(0), batch)

    @jax.jit
    def train(variables):
        def step(carry, _):
            variables, opt_state = carry
            gradient = jax.grad(lambda v: policy.loss(v, batch, jax.random.key(0), 0)[0])(variables)
            updates, opt_state = optimizer.update(gradient, opt_state, variables)
            return (optax.apply_updates(variables, updates), opt_state), None

        (variables, _), _ = jax.lax.scan(step, (variables, optimizer.init(variables)), length=steps)
        return variables

    return train(variables)


def test_mse_bc_on_two_modes_predicts_their_mean():
    # book 16.3.3: regression to the mean puts μ(o) in the gap between the modes ±1
    batch = _bimodal_data()
    policy = bc.mlp_policy(
        FEATURES, state_keys=["observation.state"], head="mse", action_horizon=2, hidden_sizes=(16,)
    )
    variables = _fit(policy, batch)
    prediction = policy.predict_chunk(variables, batch, jax.random.key(1))
    assert prediction.shape == (8, 2, 2)
    np.testing.assert_allclose(prediction, 0.0, atol=1e-3)  # |μ| max 1e-7 measured
    loss, _ = policy.loss(variables, batch, jax.random.key(1), 0)
    np.testing.assert_allclose(loss, 2.0, atol=0.01)  # E||a - 0||² = Da = 2


def test_gaussian_nll_bc_on_two_modes_fits_one_wide_gaussian_not_two_modes():
    batch = _bimodal_data()
    policy = bc.mlp_policy(
        FEATURES,
        state_keys=["observation.state"],
        head="gaussian_nll",
        action_horizon=2,
        hidden_sizes=(16,),
        sample_actions=True,
    )
    variables = _fit(policy, batch)
    mean, std = policy.action_distribution(variables, batch)
    # the NLL optimum is the data's moments: μ = 0, σ² = E(a - μ)² = 1
    np.testing.assert_allclose(mean, 0.0, atol=1e-2)  # |μ| max 5e-5 measured
    np.testing.assert_allclose(std, 1.0, atol=1e-2)  # |σ - 1| max 4e-4 measured
    # Sampling draws from that one Gaussian: more samples near the gap 0 than near a mode ±1.
    # Under N(0, 1): P(|a| < 0.25) = 0.197, P(|a ∓ 1| < 0.25) = 0.121 each; the demonstrations
    # put 0 near 0 and 0.5 near each mode. 512 observations · k 2 · Da 2 = 2048 independent
    # draws, so the shares' standard errors are ≤ 0.009 (tolerance 0.04 ≈ 4.5 of them).
    repeated = {"observation.state": np.repeat(batch["observation.state"], 64, axis=0)}
    samples = np.ravel(policy.predict_chunk(variables, repeated, jax.random.key(2)))
    near_gap = np.mean(np.abs(samples) < 0.25)
    near_modes = [np.mean(np.abs(samples - mode) < 0.25) for mode in (-1.0, 1.0)]
    np.testing.assert_allclose(near_gap, 0.197, atol=0.04)
    np.testing.assert_allclose(near_modes, [0.121, 0.121], atol=0.04)
    assert near_gap > max(near_modes)


@pytest.mark.parametrize(
    ("cameras", "observation_horizon", "action_horizon"),
    [(("top",), 1, 1), (("top", "wrist"), 2, 3)],
)
def test_cnn_policy_maps_image_windows_of_one_or_two_cameras_to_action_chunks(
    cameras, observation_horizon, action_horizon
):
    policy = bc.cnn_policy(
        FEATURES,
        cameras=cameras,
        head="gaussian_nll",
        observation_horizon=observation_horizon,
        action_horizon=action_horizon,
        **TINY,
    )
    assert policy.observation_keys == (
        "observation.state",
        *(f"observation.images.{camera}" for camera in cameras),
    )
    batch = _batch(policy, 2)
    variables = policy.init(jax.random.key(0), batch)
    # one encoder shared by every camera and window step: To · cameras · 2K keypoint inputs
    params = variables["params"]
    assert set(params) == {"image_encoder", "hidden0", "mean", "std_logit"}
    keypoint_inputs = observation_horizon * len(cameras) * 2 * TINY["num_keypoints"]
    state_inputs = observation_horizon * 4
    assert params["hidden0"]["kernel"].shape == (keypoint_inputs + state_inputs, 16)
    chunk = policy.predict_chunk(variables, batch, jax.random.key(1))
    assert chunk.shape == (2, action_horizon, 2)
    # the images matter: another image of the last camera changes the prediction
    other = dict(batch)
    other[policy.image_keys[-1]] = batch[policy.image_keys[-1]][::-1]
    assert not np.allclose(policy.predict_chunk(variables, other, jax.random.key(1)), chunk)
    loss, metrics = policy.loss(variables, batch, jax.random.key(1), 0)
    assert set(metrics) == {"nll", "mse", "std"}
    assert np.isfinite(loss) and loss == metrics["nll"]


def test_mlp_policy_reads_every_float_state_feature_and_no_images():
    policy = bc.mlp_policy(FEATURES)
    assert policy.observation_keys == ("observation.state", "observation.environment_state")
    assert policy.image_keys == () and policy.action_dim == 2
    batch = _batch(policy, 3)
    variables = policy.init(jax.random.key(0), batch)
    assert variables["params"]["hidden0"]["kernel"].shape == (8, 256)
    assert policy.predict_chunk(variables, batch, jax.random.key(0)).shape == (3, 1, 2)
    loss, metrics = policy.loss(variables, batch, jax.random.key(0), 0)
    assert set(metrics) == {"mse"} and loss == metrics["mse"]


def test_mean_prediction_ignores_the_key_and_sampling_follows_it():
    policy = bc.mlp_policy(FEATURES, head="gaussian_nll", hidden_sizes=(8,))
    batch = _batch(policy, 2)
    variables = policy.init(jax.random.key(0), batch)
    mean, _ = policy.action_distribution(variables, batch)
    for key in (1, 2):
        np.testing.assert_array_equal(
            policy.predict_chunk(variables, batch, jax.random.key(key)), mean
        )
    sampler = bc.BCPolicy(**{**vars(policy), "sample_actions": True})
    first = sampler.predict_chunk(variables, batch, jax.random.key(1))
    np.testing.assert_array_equal(first, sampler.predict_chunk(variables, batch, jax.random.key(1)))
    assert not np.allclose(first, sampler.predict_chunk(variables, batch, jax.random.key(2)))


def test_std_is_at_least_min_std_and_softplus_above_it():
    logits = jnp.array([-1e4, -3.0, 0.0, 5.0])
    std = bc.std_from_logit(logits, 0.01)
    np.testing.assert_allclose(std, 0.01 + np.log1p(np.exp([-1e4, -3.0, 0.0, 5.0])), rtol=1e-6)
    assert std[0] == pytest.approx(0.01)


def test_policies_are_hashable_and_equal_by_value_for_jit():
    first = bc.mlp_policy(FEATURES, hidden_sizes=[8, 8])  # lists, as from a JSON config
    second = bc.mlp_policy(FEATURES, hidden_sizes=(8, 8))
    assert first == second and hash(first) == hash(second)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: bc.mlp_policy(FEATURES, head="l1"), "head must be one of"),
        (lambda: bc.mlp_policy(FEATURES, sample_actions=True), "sample_actions needs"),
        (lambda: bc.mlp_policy(FEATURES, conv_channels=(4,)), r"no option\(s\) \['conv_channels'"),
        (lambda: bc.mlp_policy(FEATURES, action_horizon=0), "action_horizon must be positive"),
        (lambda: bc.mlp_policy(FEATURES, min_std=0.0), "min_std must be positive"),
        (lambda: bc.mlp_policy(FEATURES, state_keys=["observation.joints"]), "not dataset"),
        (lambda: bc.cnn_policy(FEATURES, cameras=["side"]), r"observation\.images\.side"),
        (lambda: bc.cnn_policy({"action": FEATURES["action"]}), "needs camera images"),
        (lambda: bc.mlp_policy({}), "features lack 'action'"),
    ],
)
def test_bad_options_are_rejected_naming_the_value(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_wrong_observation_shapes_are_rejected_naming_the_key():
    policy = bc.cnn_policy(FEATURES, cameras=["top"], observation_horizon=2, **TINY)
    batch = _batch(policy, 2)
    variables = policy.init(jax.random.key(0), batch)
    short_window = {**batch, "observation.state": batch["observation.state"][:, :1]}
    with pytest.raises(ValueError, match=r"observation\.state must have shape"):
        policy.predict_chunk(variables, short_window, jax.random.key(0))
    grey = {**batch, "observation.images.top": batch["observation.images.top"][..., :1]}
    with pytest.raises(ValueError, match=r"observation\.images\.top must have shape"):
        policy.predict_chunk(variables, grey, jax.random.key(0))
    with pytest.raises(ValueError, match="observation lacks"):
        policy.predict_chunk(variables, {"observation.state": batch["observation.state"]}, None)
    long_chunk = {**batch, "action": np.zeros((2, 2, 2), np.float32)}
    with pytest.raises(ValueError, match="action must have shape"):
        policy.loss(variables, long_chunk, jax.random.key(0), 0)
