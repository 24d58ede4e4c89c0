"""Execution controllers (book 17.2.2, 17.7, 18.7 line 8) against explicit loops: which chunk row
runs at each step, how often the policy is queried, the temporal-ensembling average computed by
hand in both conventions, and the observation window's start-of-episode padding."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core import controllers
from core import temporal_ensembling as te

BATCH, ACTION_DIM = 3, 2


def _chunk_predicted_at(t: int, chunk_length: int) -> np.ndarray:
    """[B, k, D] a chunk whose entries encode (query step, row, episode, dim): all distinct."""
    b, i, d = np.meshgrid(
        np.arange(BATCH), np.arange(chunk_length), np.arange(ACTION_DIM), indexing="ij"
    )
    return (1000.0 * t + 10.0 * i + b + 0.1 * d).astype(np.float32)


def _run(controller, chunk_length: int, num_steps: int):
    """Drives a controller as the rollout does -> (query steps, actions [T, B, D])."""
    state = controller.init(BATCH, (chunk_length, ACTION_DIM))
    needs_query, update, action = (
        jax.jit(method) for method in (controller.needs_query, controller.update, controller.action)
    )
    query_steps, actions = [], []
    for t in range(num_steps):
        step = jnp.asarray(t, jnp.int32)
        if needs_query(state, step):
            query_steps.append(t)
            state = update(state, jnp.asarray(_chunk_predicted_at(t, chunk_length)), step)
        actions.append(np.asarray(action(state, step)))
    return query_steps, np.stack(actions)


def test_chunked_with_query_every_k_runs_rows_0_to_k_minus_1_in_order_and_queries_every_k():
    chunk_length, num_steps = 4, 10
    query_steps, actions = _run(controllers.ChunkedController(4), chunk_length, num_steps)
    assert query_steps == [0, 4, 8]  # ceil(10 / 4) policy calls
    for t in range(num_steps):
        query_step = 4 * (t // 4)
        expected = _chunk_predicted_at(query_step, chunk_length)[:, t - query_step]
        np.testing.assert_array_equal(actions[t], expected)


def test_receding_horizon_runs_the_first_n_rows_of_each_chunk_then_replans():
    chunk_length, query_every, num_steps = 5, 2, 7
    query_steps, actions = _run(controllers.ChunkedController(query_every), chunk_length, num_steps)
    assert query_steps == [0, 2, 4, 6]
    rows = [t - query_steps[t // query_every] for t in range(num_steps)]
    assert rows == [0, 1, 0, 1, 0, 1, 0]  # rows 2..4 of every chunk are never executed
    for t, row in enumerate(rows):
        expected = _chunk_predicted_at(t - row, chunk_length)[:, row]
        np.testing.assert_array_equal(actions[t], expected)


def _hand_ensembled(t: int, chunk_length: int, decay: float, convention: str) -> np.ndarray:
    """Eq. 17.60 written out: the predictions of a_t by the chunks of steps t - τ, τ <= t."""
    ages = range(min(t, chunk_length - 1) + 1)
    predictions = [_chunk_predicted_at(t - age, chunk_length)[:, age] for age in ages]
    count = len(predictions)
    if convention == "book":  # eq. 17.61: w_τ = exp(-λ τ)
        weights = [math.exp(-decay * age) for age in ages]
    else:  # ACT: w_i = exp(-m i), i counted from the oldest prediction
        weights = [math.exp(-decay * (count - 1 - age)) for age in ages]
    total = sum(weights)
    return sum(w * p for w, p in zip(weights, predictions, strict=True)) / total


@pytest.mark.parametrize(
    ("chunk_length", "decay", "convention"),
    [
        (1, te.BOOK_DECAY, "book"),
        (4, te.BOOK_DECAY, "book"),
        (4, te.ACT_DECAY, "act"),
        (3, 0.7, "act"),
        (3, 0.0, "book"),
    ],
)
def test_temporal_ensembling_is_the_weighted_average_of_the_available_predictions(
    chunk_length, decay, convention
):
    """At t < k - 1 only t + 1 chunks exist (the start of the episode); from t = k - 1 on, k."""
    controller = controllers.TemporalEnsemblingController(decay, convention)
    num_steps = chunk_length + 3
    query_steps, actions = _run(controller, chunk_length, num_steps)
    assert query_steps == list(range(num_steps))  # a query at every step
    for t in range(num_steps):
        expected = _hand_ensembled(t, chunk_length, decay, convention)
        # entries up to ~7000 in float32: relative error ~1e-7
        np.testing.assert_allclose(actions[t], expected, rtol=2e-6)


def test_temporal_ensembling_equals_core_ensemble_on_the_stacked_predictions():
    chunk_length, t = 4, 5
    controller = controllers.TemporalEnsemblingController(0.3, "act")
    _, actions = _run(controller, chunk_length, t + 1)
    predictions = np.stack(
        [_chunk_predicted_at(t - age, chunk_length)[:, age] for age in range(chunk_length)], axis=1
    )
    valid = te.available_predictions(jnp.asarray(t), chunk_length)
    for episode in range(BATCH):
        expected = te.ensemble(predictions[episode], valid, 0.3, "act")
        np.testing.assert_allclose(actions[t, episode], expected, rtol=1e-6)


def test_controllers_run_inside_scan_and_cond_skips_the_policy_between_queries():
    """The policy call sits in lax.cond: count the calls through the scan's output."""
    chunk_length, query_every, num_steps = 6, 4, 13
    controller = controllers.ChunkedController(query_every)
    chunk = jnp.asarray(_chunk_predicted_at(0, chunk_length))

    def control_step(state, t):
        queried = controller.needs_query(state, t)
        state = jax.lax.cond(
            queried, lambda s: controller.update(s, chunk + 1000.0 * t, t), lambda s: s, state
        )
        return state, (queried, controller.action(state, t))

    start = controller.init(BATCH, (chunk_length, ACTION_DIM))
    _, (queried, actions) = jax.jit(lambda s: jax.lax.scan(control_step, s, jnp.arange(13)))(start)
    assert int(queried.sum()) == math.ceil(num_steps / query_every)
    _, eager_actions = _run(controller, chunk_length, num_steps)
    np.testing.assert_array_equal(actions, eager_actions)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"name": "open_loop"}, "controller name must be one of"),
        ({"name": "chunked"}, r"needs the field\(s\) \['query_every'\]"),
        ({"name": "chunked", "query_every": 0}, "query_every must be a positive int"),
        ({"name": "temporal_ensembling", "decay": 0.1, "convention": "lerobot"}, "convention"),
        ({"name": "temporal_ensembling", "decay": -1.0, "convention": "book"}, "decay"),
    ],
)
def test_make_controller_rejects_unknown_names_and_bad_fields(config, message):
    with pytest.raises(ValueError, match=message):
        controllers.make_controller(config)


def test_make_controller_builds_the_named_controller_ignoring_unused_fields():
    fields = {"query_every": 5, "decay": 0.01, "convention": "act"}
    chunked = controllers.make_controller({"name": "chunked", **fields})
    ensembling = controllers.make_controller({"name": "temporal_ensembling", **fields})
    assert chunked == controllers.ChunkedController(5)
    assert ensembling == controllers.TemporalEnsemblingController(0.01, "act")


def test_chunked_controller_rejects_query_every_longer_than_the_chunk():
    with pytest.raises(ValueError, match="at most the chunk length k = 4"):
        controllers.ChunkedController(5).init(BATCH, (4, ACTION_DIM))


def test_update_rejects_a_chunk_of_the_wrong_shape():
    controller = controllers.TemporalEnsemblingController(0.1)
    state = controller.init(BATCH, (4, ACTION_DIM))
    with pytest.raises(ValueError, match="chunk must have shape"):
        controller.update(state, jnp.zeros((BATCH, 3, ACTION_DIM)), jnp.asarray(0))


@pytest.mark.parametrize("horizon", [1, 2, 4])
def test_observation_window_pads_with_the_first_frame_like_the_chunk_sampler(horizon):
    """After pushing o_0..o_t the window holds o_max(0, t - To + 1 + j), j = 0..To-1: the
    sampler's rows `max(observation_times, 0)` (core.data.sampler)."""
    frames = np.arange(7 * BATCH * 2, dtype=np.float32).reshape(7, BATCH, 2)
    images = np.arange(7 * BATCH * 4, dtype=np.uint8).reshape(7, BATCH, 2, 2, 1)
    history = controllers.start_observation_history(
        {"state": frames[0], "image": images[0]}, horizon
    )
    for t in range(7):
        history = controllers.push_observation(history, {"state": frames[t], "image": images[t]})
        rows = np.maximum(t - horizon + 1 + np.arange(horizon), 0)
        np.testing.assert_array_equal(history["state"], frames[rows].swapaxes(0, 1))
        np.testing.assert_array_equal(history["image"], images[rows].swapaxes(0, 1))
        assert history["image"].dtype == jnp.uint8


def test_push_observation_rejects_other_keys_or_shapes():
    history = controllers.start_observation_history({"state": np.zeros((BATCH, 2))}, 2)
    with pytest.raises(ValueError, match="history's keys"):
        controllers.push_observation(history, {"pixels": np.zeros((BATCH, 2))})
    with pytest.raises(ValueError, match="state must have shape"):
        controllers.push_observation(history, {"state": np.zeros((BATCH, 3))})
