"""The jitted train and validation steps, against a step written out by hand with optax."""

import jax
import numpy as np
import optax
import pytest

from core.data.stats import array_statistics, make_normalizers, prepare_batch
from core.training import sharding
from core.training.optimizer import learning_rate_schedule, make_optimizer
from core.training.state import create_train_state
from core.training.step import eval_step, jit_train_step, non_finite_problem
from tests.core.training.toys import ACTION_DIM, STATE_DIM, TanhPolicy, toy_config

BATCH_SIZE = 8
RNG = jax.random.key(3)


def _batch(seed: int, nan_action: bool = False) -> dict[str, np.ndarray]:
    generator = np.random.default_rng(seed)
    action = generator.standard_normal((BATCH_SIZE, 3, ACTION_DIM)).astype(np.float32)
    if nan_action:
        action[0, 0, 0] = np.nan
    return {
        "observation.state": generator.standard_normal((BATCH_SIZE, 2, STATE_DIM)).astype(
            np.float32
        ),
        "action": action,
        "action_is_pad": generator.random((BATCH_SIZE, 3)) < 0.25,
    }


@pytest.fixture(scope="module")
def setup():
    """(config, policy, normalizers, optimizer, schedule, mesh) shared by the tests."""
    config = toy_config("unused")
    config.optim.grad_clip_norm = 0.5
    generator = np.random.default_rng(0)
    stats = {
        "observation.state": array_statistics(generator.normal(1.0, 2.0, (64, STATE_DIM))),
        "action": array_statistics(generator.normal(0.0, 3.0, (64, ACTION_DIM))),
    }
    normalizers = make_normalizers(stats, dict(config.data.normalization))
    optimizer = make_optimizer(config.optim)
    schedule = learning_rate_schedule(config.optim, config.train.num_steps)
    return config, TanhPolicy(), normalizers, optimizer, schedule, sharding.data_parallel_mesh()


def _state(setup, *, ema=False, dynamic_loss_scale=False):
    _, policy, normalizers, optimizer, _, _ = setup
    example = prepare_batch(_batch(0), normalizers)
    return create_train_state(
        policy,
        optimizer,
        jax.random.key(0),
        example,
        ema=ema,
        dynamic_loss_scale=dynamic_loss_scale,
    )


def _step(setup, **options):
    _, policy, normalizers, optimizer, schedule, mesh = setup
    return jit_train_step(policy, optimizer, schedule, normalizers, mesh, **options)


@pytest.fixture(scope="module")
def train_step(setup):
    return _step(setup)


def test_train_step_equals_value_and_grad_then_optax_clip_and_adamw(setup, train_step):
    """Two steps: normalized batch, loss with key fold_in(rng, t), ∇ by jax.grad, clipping at
    0.5 and AdamW (ε outside the root) from optax; constants untouched."""
    config, policy, normalizers, *_ = setup
    state = _state(setup)
    reference = optax.chain(
        optax.clip_by_global_norm(0.5),
        optax.adamw(config.optim.learning_rate, eps=1e-8, weight_decay=1e-4),
    )
    params, constants = jax.device_get((state.params, state.constants))  # the state is donated
    reference_state = reference.init(params)

    @jax.jit
    def reference_step(params, reference_state, batch, t):
        def loss(p):
            variables = {"params": p, **constants}
            prepared = prepare_batch(batch, normalizers)
            return policy.loss(variables, prepared, jax.random.fold_in(RNG, t), t)[0]

        value, grads = jax.value_and_grad(loss)(params)
        updates, reference_state = reference.update(grads, reference_state, params)
        return optax.apply_updates(params, updates), reference_state, value, optax.tree.norm(grads)

    for t in range(2):
        batch = _batch(t + 1)
        params, reference_state, expected_loss, expected_norm = reference_step(
            params, reference_state, batch, t
        )
        state, metrics = train_step(state, batch, RNG)
        np.testing.assert_allclose(metrics["loss"], expected_loss, rtol=1e-6)
        np.testing.assert_allclose(metrics["grad_norm"], expected_norm, rtol=1e-6)
        np.testing.assert_allclose(metrics["learning_rate"], config.optim.learning_rate)
    assert int(state.step) == 2
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), state.params, params
    )
    jax.tree.map(np.testing.assert_array_equal, state.constants, constants)


def test_train_step_donates_the_state(setup, train_step):
    state = _state(setup)
    kernel = state.params["head"]["kernel"]
    train_step(state, _batch(1), RNG)
    assert kernel.is_deleted()


def test_ema_in_the_step_is_the_bias_corrected_average_of_the_iterates(setup):
    decay = 0.5
    step = _step(setup, ema_decay=decay)
    state = _state(setup, ema=True)
    iterates = []
    for t in range(3):
        state, _ = step(state, _batch(t + 1), RNG)
        iterates.append(jax.device_get(state.params))  # the next step donates the state
    weights = (1 - decay) * decay ** np.arange(2, -1, -1) / (1 - decay**3)
    expected = jax.tree.map(
        lambda *p: sum(w * x for w, x in zip(weights, p, strict=True)), *iterates
    )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        state.ema_params,
        expected,
    )


def test_non_finite_loss_is_reported_naming_the_step_and_metric(train_step, setup):
    state, metrics = train_step(_state(setup), _batch(1, nan_action=True), RNG)
    problem = non_finite_problem(7, jax.device_get(metrics))
    assert problem.startswith("non-finite loss at step 7 (loss = nan, mse = nan, grad_norm = nan)")
    assert np.isnan(state.params["head"]["bias"]).all()  # the update went through: stop the run


def test_dynamic_loss_scaling_skips_a_non_finite_step_and_halves_the_scale(setup, train_step):
    state = _state(setup, dynamic_loss_scale=True)
    params = jax.tree.map(np.asarray, state.params)
    opt_state = jax.tree.map(np.asarray, state.opt_state)
    scale = float(state.loss_scale.scale)
    state, metrics = train_step(state, _batch(1, nan_action=True), RNG)
    metrics = jax.device_get(metrics)
    assert metrics["skipped"] == 1 and metrics["loss_scale"] == scale
    assert float(state.loss_scale.scale) == scale / 2
    jax.tree.map(np.testing.assert_array_equal, state.params, params)
    jax.tree.map(np.testing.assert_array_equal, state.opt_state.inner_state, opt_state.inner_state)
    assert non_finite_problem(1, metrics) is None  # skipping is the mechanism working
    metrics["loss_scale"] = 1.0
    assert "even at the minimum loss scale 1.0" in non_finite_problem(1, metrics)


def test_dynamic_loss_scaling_leaves_a_finite_float32_step_unchanged(setup, train_step):
    """A power-of-two scale multiplies and divides float32 values exactly (no overflow)."""
    plain, _ = train_step(_state(setup), _batch(1), RNG)
    scaled, metrics = train_step(_state(setup, dynamic_loss_scale=True), _batch(1), RNG)
    assert metrics["skipped"] == 0
    jax.tree.map(np.testing.assert_array_equal, scaled.params, plain.params)


def test_eval_step_reports_the_loss_of_the_ema_weights(setup):
    _, policy, normalizers, *_ = setup
    state = _state(setup, ema=True)
    state = state.replace(ema_params=jax.tree.map(lambda p: 0.5 * p, state.params))
    batch = _batch(4)
    metrics = eval_step(state, batch, RNG, policy=policy, normalizers=normalizers)
    variables = {"params": state.ema_params, **state.constants}
    expected, _ = policy.loss(variables, prepare_batch(batch, normalizers), RNG, state.step)
    np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-6)
