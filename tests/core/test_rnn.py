"""The vanilla RNN, hand-written BPTT and its Jacobian products (book 15.2-15.5)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import activations, mlp, optim, rnn

SIZES = (3, 5, 2, 4, 3)  # B, T, dx, dh, dy: one shape, so each static option compiles once
SEEDS = st.integers(0, 2**32 - 1)
TASKS = st.sampled_from(rnn.TASKS)
ACTIVATIONS = st.sampled_from(["tanh", "relu", "linear"])

HEAD = {
    "softmax_cce": mlp.SOFTMAX_CCE,
    "identity_mse": mlp.IDENTITY_MSE,
    "sigmoid_bce": mlp.SIGMOID_BCE,
}
ACTIVATION = {"tanh": rnn.TANH, "relu": rnn.RELU, "linear": rnn.LINEAR}

# The test's own forward pass: explicit loops over time in row-vector form, with jax.nn's
# activations and losses (independent of core.activations, core.losses and core.rnn).
REFERENCE_ACTIVATION = {"tanh": jnp.tanh, "relu": jax.nn.relu, "linear": lambda z: z}
REFERENCE_LOSS = {
    "softmax_cce": lambda logits, y: -jnp.sum(y * jax.nn.log_softmax(logits), axis=-1),
    "identity_mse": lambda outputs, y: jnp.sum((outputs - y) ** 2, axis=-1),
    # -y log σ(z) - (1 - y) log(1 - σ(z)) = softplus(z) - y z
    "sigmoid_bce": lambda logits, y: jnp.sum(jax.nn.softplus(logits) - y * logits, axis=-1),
}
STATIC = ("activation", "head", "task", "window")


def reference_hidden_states(params, inputs, activation, initial_hidden=None):
    """[B, T, dh] h^(t) = σ(W_hh h^(t-1) + W_xh x^(t) + b_h) per sample (eqs. 15.2-15.3)."""
    hidden = jnp.zeros((inputs.shape[0], params.W_hh.shape[0]))
    hidden = hidden if initial_hidden is None else initial_hidden
    states = []
    for t in range(inputs.shape[1]):
        z = hidden @ params.W_hh.T + inputs[:, t] @ params.W_xh.T + params.b_h
        hidden = REFERENCE_ACTIVATION[activation](z)
        states.append(hidden)
    return jnp.stack(states, axis=1)


def reference_loss(
    params, offsets, inputs, targets, initial_hidden, activation, head, task, window
):
    """(1/B) Σ_b Σ_t L^(t) (eq. 15.11) by an explicit loop. `offsets` [B, T, dh] are added to the
    pre-activations, so the gradient at offsets = 0 is δ_h^(t) = ∂L/∂z_h^(t). With `window` τ,
    h^(t) is wrapped in stop_gradient as it enters step t + 1 for every t that is a multiple
    of τ."""
    batch, length, _ = inputs.shape
    hidden = initial_hidden
    total = 0.0
    for t in range(1, length + 1):
        z = hidden @ params.W_hh.T + inputs[:, t - 1] @ params.W_xh.T + params.b_h
        hidden = REFERENCE_ACTIVATION[activation](z + offsets[:, t - 1])
        if task == "many_to_many" or t == length:
            step_targets = targets[:, t - 1] if task == "many_to_many" else targets
            logits = hidden @ params.W_hy.T + params.b_y  # eq. 15.4
            total = total + jnp.sum(REFERENCE_LOSS[head](logits, step_targets))
        if window is not None and t % window == 0:
            hidden = jax.lax.stop_gradient(hidden)
    return total / batch


@functools.partial(jax.jit, static_argnames=STATIC)
def reference_gradients(params, inputs, targets, initial_hidden, activation, head, task, window):
    """(loss, ∂L/∂params, δ_h [B, T, dh]) of `reference_loss` by jax autodiff."""
    offsets = jnp.zeros((*inputs.shape[:2], params.W_hh.shape[0]))
    loss, (gradients, deltas) = jax.value_and_grad(reference_loss, argnums=(0, 1))(
        params, offsets, inputs, targets, initial_hidden, activation, head, task, window
    )
    return loss, gradients, deltas


@functools.partial(jax.jit, static_argnames=STATIC)
def hand_bptt(params, inputs, targets, initial_hidden, activation, head, task, window):
    return rnn.bptt(
        params, inputs, targets, ACTIVATION[activation], HEAD[head], task, initial_hidden, window
    )


def random_problem(seed, head="softmax_cce", task="many_to_many", sizes=SIZES):
    """Random parameters (nonzero biases, ρ(W_hh) = 1.3), inputs [B, T, dx], h^(0) [B, dh] and
    targets for `head` and `task`; drawn with numpy, so no jax.random compilations."""
    batch, length, input_dim, hidden_dim, output_dim = sizes
    rng = np.random.default_rng(seed)
    recurrent = rng.normal(size=(hidden_dim, hidden_dim))
    recurrent *= 1.3 / np.max(np.abs(np.linalg.eigvals(recurrent)))
    params = rnn.RNNParams(
        W_hh=jnp.asarray(recurrent),
        W_xh=jnp.asarray(rng.normal(size=(hidden_dim, input_dim))),
        b_h=jnp.asarray(0.3 * rng.normal(size=hidden_dim)),
        W_hy=jnp.asarray(rng.normal(size=(output_dim, hidden_dim))),
        b_y=jnp.asarray(0.3 * rng.normal(size=output_dim)),
    )
    inputs = jnp.asarray(rng.normal(size=(batch, length, input_dim)))
    initial_hidden = jnp.asarray(0.5 * rng.normal(size=(batch, hidden_dim)))
    target_shape = (batch, length) if task == "many_to_many" else (batch,)
    if head == "softmax_cce":
        targets = np.eye(output_dim)[rng.integers(0, output_dim, size=target_shape)]
    elif head == "sigmoid_bce":
        targets = rng.integers(0, 2, size=(*target_shape, output_dim)).astype(float)
    else:
        targets = rng.normal(size=(*target_shape, output_dim))
    return params, inputs, jnp.asarray(targets), initial_hidden


def assert_trees_close(actual, expected, rtol=1e-6, atol=1e-8):
    for name, a, e in zip(actual._fields, actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=name)


@given(seed=SEEDS, activation=ACTIVATIONS)
def test_forward_is_eqs_15_2_to_15_4(x64, seed, activation):
    params, inputs, _, initial = random_problem(seed)
    expected = jax.jit(reference_hidden_states, static_argnums=2)(
        params, inputs, activation, initial
    )
    hidden = jax.jit(rnn.forward, static_argnums=2)(params, inputs, ACTIVATION[activation], initial)
    np.testing.assert_allclose(hidden, expected, rtol=1e-12, atol=1e-12)
    logits = rnn.output_logits(params, hidden)
    # atol: a logit that is a near-cancelling sum of O(1) terms keeps only absolute precision
    np.testing.assert_allclose(
        logits, expected @ params.W_hy.T + params.b_y, rtol=1e-12, atol=1e-12
    )


@given(seed=SEEDS, activation=ACTIVATIONS, task=TASKS)
def test_hand_bptt_equals_jax_grad_with_its_deltas(x64, seed, activation, task):
    """Loss, parameter gradients (15.17-15.22) and δ_h^(t) = ∂L/∂z_h^(t) (15.16) against autodiff
    of the explicit loop, from a nonzero h^(0) (which enters ∂L/∂W_hh at t = 1)."""
    params, inputs, targets, initial = random_problem(seed, "softmax_cce", task)
    static = dict(activation=activation, head="softmax_cce", task=task, window=None)
    loss, gradients, deltas = reference_gradients(params, inputs, targets, initial, **static)
    result = hand_bptt(params, inputs, targets, initial, **static)
    np.testing.assert_allclose(result.loss, loss, rtol=1e-12)
    assert_trees_close(result.gradients, gradients)
    np.testing.assert_allclose(result.hidden_deltas, deltas, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("head", ["identity_mse", "sigmoid_bce"])
def test_hand_bptt_equals_jax_grad_for_the_other_heads(x64, head):
    params, inputs, targets, initial = random_problem(7, head)
    static = dict(activation="tanh", head=head, task="many_to_many", window=None)
    loss, gradients, _ = reference_gradients(params, inputs, targets, initial, **static)
    result = hand_bptt(params, inputs, targets, initial, **static)
    np.testing.assert_allclose(result.loss, loss, rtol=1e-12)
    library_loss = rnn.sequence_loss(
        params, inputs, targets, head=HEAD[head], initial_hidden=initial
    )
    np.testing.assert_allclose(library_loss, loss, rtol=1e-12)
    assert_trees_close(result.gradients, gradients)


@pytest.mark.parametrize("task", rnn.TASKS)
def test_column_stacked_and_batch_first_conventions_agree(x64, task):
    """Eqs. 15.6-15.9 on H^(t) ∈ R^{dh×m} give the transposed batch-first results."""
    params, inputs, targets, initial = random_problem(8, "softmax_cce", task)
    column_targets = rnn.to_columns(targets) if task == "many_to_many" else targets.T
    columns = rnn.bptt_columns(
        params,
        rnn.to_columns(inputs),
        column_targets,
        rnn.TANH,
        task=task,
        initial_hidden=initial.T,
    )
    batch_first = rnn.bptt(params, inputs, targets, rnn.TANH, task=task, initial_hidden=initial)
    assert_trees_close(columns.gradients, batch_first.gradients, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rnn.to_batch_first(columns.hidden_deltas), batch_first.hidden_deltas)
    cache = rnn.forward_columns(params, rnn.to_columns(inputs), rnn.TANH, initial.T)
    np.testing.assert_allclose(
        cache.hidden, rnn.to_columns(rnn.forward(params, inputs, rnn.TANH, initial))
    )
    np.testing.assert_array_equal(cache.initial_hidden, initial.T)
    loss = rnn.sequence_loss_columns(
        params, rnn.to_columns(inputs), column_targets, task=task, initial_hidden=initial.T
    )
    np.testing.assert_allclose(loss, batch_first.loss, rtol=1e-12)


@given(seed=SEEDS, window=st.sampled_from([2, 3]))
def test_truncated_bptt_is_grad_with_stop_gradient_every_tau_steps(x64, seed, window):
    """Many-to-many with T = 5: every window has losses of its own (many-to-one: next test)."""
    params, inputs, targets, initial = random_problem(seed)
    static = dict(activation="tanh", head="softmax_cce", task="many_to_many", window=window)
    _, gradients, deltas = reference_gradients(params, inputs, targets, initial, **static)
    result = hand_bptt(params, inputs, targets, initial, **static)
    assert_trees_close(result.gradients, gradients)
    np.testing.assert_allclose(result.hidden_deltas, deltas, rtol=1e-6, atol=1e-10)


def test_truncation_drops_exactly_the_deltas_before_the_last_window(x64):
    """Many-to-one, T = 5, τ = 2: the windows are t = 1..2, 3..4, 5. Only the last window gets
    gradient: δ_h^(5) equals full BPTT's, δ_h^(1..4) are 0 (full BPTT's are not)."""
    params, inputs, targets, initial = random_problem(0, "softmax_cce", "many_to_one")
    static = dict(activation="tanh", head="softmax_cce", task="many_to_one")
    full = hand_bptt(params, inputs, targets, initial, **static, window=None)
    truncated = hand_bptt(params, inputs, targets, initial, **static, window=2)
    np.testing.assert_array_equal(truncated.hidden_deltas[:, 4:], full.hidden_deltas[:, 4:])
    np.testing.assert_array_equal(truncated.hidden_deltas[:, :4], 0.0)
    assert np.all(np.abs(full.hidden_deltas[:, :4]) > 0)
    np.testing.assert_array_equal(truncated.loss, full.loss)  # the forward pass is not cut
    as_long_as_the_sequence = hand_bptt(params, inputs, targets, initial, **static, window=5)
    assert_trees_close(as_long_as_the_sequence.gradients, full.gradients, rtol=1e-14, atol=1e-15)


def test_truncated_bptt_equals_streaming_the_windows_one_after_another(x64):
    """Many-to-many, T = 5, τ = 2: the sum of full-BPTT gradients of the windows t = 1..2, 3..4,
    5, each started from the state the previous one ended in (only τ states in memory)."""
    params, inputs, targets, initial = random_problem(5)
    static = dict(activation="tanh", head="softmax_cce", task="many_to_many")
    truncated = hand_bptt(params, inputs, targets, initial, **static, window=2)
    start, streamed = initial, []
    for window in (slice(0, 2), slice(2, 4), slice(4, 5)):
        streamed.append(
            hand_bptt(params, inputs[:, window], targets[:, window], start, **static, window=None)
        )
        start = rnn.forward(params, inputs[:, window], rnn.TANH, start)[:, -1]
    summed = jax.tree.map(lambda *grads: sum(grads), *(result.gradients for result in streamed))
    assert_trees_close(truncated.gradients, summed, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(truncated.loss, sum(result.loss for result in streamed))


def test_window_of_one_keeps_only_each_steps_own_output_gradient(x64):
    """τ = 1 drops every W_hhᵀ δ_h^(t+1): δ_h^(t) = (W_hyᵀ δ_y^(t)) ⊙ σ'(z^(t)) (eq. 15.16)."""
    params, inputs, targets, initial = random_problem(1, "identity_mse")
    result = rnn.bptt(
        params,
        inputs,
        targets,
        rnn.TANH,
        mlp.IDENTITY_MSE,
        initial_hidden=initial,
        truncation_window=1,
    )
    hidden = reference_hidden_states(params, inputs, "tanh", initial)
    output_delta = 2.0 * (hidden @ params.W_hy.T + params.b_y - targets) / inputs.shape[0]
    expected = (output_delta @ params.W_hy) * (1.0 - hidden**2)
    np.testing.assert_allclose(result.hidden_deltas, expected, rtol=1e-12, atol=1e-14)


@given(z=st.floats(-20, 20, allow_nan=False, allow_subnormal=False))
def test_derivative_from_output_equals_derivative_at_preactivation(x64, z):
    z = jnp.asarray(z)
    np.testing.assert_allclose(
        rnn.TANH.derivative_from_output(jnp.tanh(z)), activations.tanh_derivative(z), atol=1e-15
    )
    relu_from_output = rnn.RELU.derivative_from_output(activations.relu(z))
    np.testing.assert_array_equal(relu_from_output, activations.relu_derivative(z))


def test_init_draws_W_hh_as_rho_times_an_orthogonal_matrix(x64):
    params = rnn.init(jax.random.key(0), 3, 5, 2, spectral_radius=1.1)
    np.testing.assert_allclose(params.W_hh @ params.W_hh.T, 1.21 * np.eye(5), atol=1e-12)
    np.testing.assert_allclose(np.abs(np.linalg.eigvals(params.W_hh)), 1.1, rtol=1e-10)
    assert [p.shape for p in params] == [(5, 5), (5, 3), (5,), (2, 5), (2,)]


def test_train_step_is_the_clipped_sgd_update_of_the_bptt_gradient(x64):
    """One step of `train` with clip τ and SGD η: θ₁ = θ₀ - η g min(1, τ/‖g‖) (eq. 8.34)."""
    params, inputs, targets, _ = random_problem(4, "identity_mse")
    rate, max_norm = 0.05, 0.5
    optimizer = optax.chain(optim.clip_by_global_norm(max_norm), optim.sgd(rate))
    run = rnn.train(
        params,
        optimizer,
        lambda key: (inputs, targets),
        jax.random.key(0),
        2,
        rnn.TANH,
        mlp.IDENTITY_MSE,
    )
    first = rnn.bptt(params, inputs, targets, rnn.TANH, mlp.IDENTITY_MSE)
    norm = np.sqrt(sum(np.sum(np.square(g)) for g in first.gradients))
    assert norm > max_norm  # the clip is active
    stepped = jax.tree.map(lambda p, g: p - rate * max_norm / norm * g, params, first.gradients)
    second = rnn.bptt(stepped, inputs, targets, rnn.TANH, mlp.IDENTITY_MSE)
    np.testing.assert_allclose(run.losses, [first.loss, second.loss], rtol=1e-12)
    np.testing.assert_allclose(run.gradient_norms[0], norm, rtol=1e-12)


PARAMS, INPUTS, TARGETS, _ = random_problem(0, "identity_mse", sizes=(2, 4, 3, 5, 2))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: rnn.forward(PARAMS, INPUTS[..., :2]), r"inputs must have shape \[B, T, 3\]"),
        (lambda: rnn.forward(PARAMS, INPUTS[0]), r"inputs must have shape .* \(rank 3\)"),
        (lambda: rnn.forward(PARAMS, INPUTS, rnn.TANH, jnp.zeros((2, 4))), "initial_hidden"),
        (lambda: rnn.forward(PARAMS, INPUTS, rnn.TANH, jnp.zeros((3, 5))), "initial_hidden"),
        (lambda: rnn.forward(PARAMS._replace(W_hh=jnp.zeros((5, 4))), INPUTS), "W_hh"),
        (lambda: rnn.forward(PARAMS._replace(b_y=jnp.zeros(3)), INPUTS), "b_y"),
        (lambda: rnn.forward_columns(PARAMS, INPUTS), r"inputs must have shape \[T, 3, m\]"),
        (lambda: rnn.forward_columns(PARAMS, jnp.zeros((0, 3, 2))), "at least one time step"),
        (lambda: rnn.bptt(PARAMS, INPUTS, TARGETS[:, 0]), r"targets must have shape \[B, T, 2\]"),
        (
            lambda: rnn.bptt(PARAMS, INPUTS, TARGETS, task="many_to_one"),
            r"targets must have shape \[B, 2\]",
        ),
        (lambda: rnn.bptt(PARAMS, INPUTS, TARGETS, task="one_to_many"), "'one_to_many'"),
        (lambda: rnn.bptt(PARAMS, INPUTS, TARGETS, truncation_window=0), "truncation_window"),
        (lambda: rnn.bptt(PARAMS, INPUTS, TARGETS, truncation_window=2.0), "truncation_window"),
        (lambda: rnn.sequence_loss(PARAMS, INPUTS, TARGETS[:1]), "targets"),
        (lambda: rnn.init(jax.random.key(0), 0, 4, 2), "input_dim must be >= 1, got 0"),
        (lambda: rnn.init(jax.random.key(0), 2, 4, 2, spectral_radius=-1.0), "spectral_radius"),
        (lambda: rnn.train(PARAMS, optim.sgd(0.1), None, jax.random.key(0), 0), "num_steps"),
    ],
)
def test_bad_shapes_and_options_raise_value_errors_naming_them(call, message):
    with pytest.raises(ValueError, match=message):
        call()
