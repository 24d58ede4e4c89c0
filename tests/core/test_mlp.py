"""The column-stacked feedforward network and hand-written backprop (book ch. 3, 5, 6)."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import mlp, optim

# x64 is a function-scoped fixture; it holds for every example of a property, as intended.
x64_property = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

ARCHITECTURES = st.sampled_from([(3, 4, 2), (2, 5, 3, 1), (4, 3, 3, 3, 2)])
HIDDEN = st.sampled_from([mlp.RELU, mlp.SIGMOID, mlp.TANH])
HEADS = st.sampled_from(["sigmoid_bce", "softmax_cce", "identity_mse"])
SEEDS = st.integers(0, 2**32 - 1)
BATCH = 5

HEAD = {
    "sigmoid_bce": mlp.SIGMOID_BCE,
    "softmax_cce": mlp.SOFTMAX_CCE,
    "identity_mse": mlp.IDENTITY_MSE,
}


def random_problem(seed: int, sizes, head_name: str, batch: int = BATCH):
    """Random layers (He-scaled weights, nonzero biases), inputs X [n_0, m], targets Y [n_L, m].

    Drawn with numpy: jax.random would compile anew for every shape.
    """
    rng = np.random.default_rng(seed)
    params = [
        mlp.Layer(
            W=jnp.asarray(rng.normal(size=(width, fan_in)) * np.sqrt(2 / fan_in)),
            b=jnp.asarray(0.1 * rng.normal(size=width)),
        )
        for fan_in, width in itertools.pairwise(sizes)
    ]
    inputs = jnp.asarray(rng.normal(size=(sizes[0], batch)))
    outputs = sizes[-1]
    if head_name == "sigmoid_bce":
        targets = rng.integers(0, 2, size=(outputs, batch)).astype(float)
    elif head_name == "softmax_cce":
        targets = np.eye(outputs)[:, rng.integers(0, outputs, size=batch)]
    else:
        targets = rng.normal(size=(outputs, batch))
    return params, inputs, jnp.asarray(targets)


def book_chapter6_network():
    """The 2 -> 3 -> 1 network and the four samples of book eqs. 6.2-6.4."""
    params = [
        mlp.Layer(
            W=jnp.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]), b=jnp.array([0.01, 0.02, 0.03])
        ),
        mlp.Layer(W=jnp.array([[0.7, 0.8, 0.9]]), b=jnp.array([0.1])),
    ]
    inputs = jnp.array([[0.5, 0.2], [0.9, 0.8], [0.1, 0.3], [0.8, 0.9]]).T
    targets = jnp.array([[0.0, 1.0, 0.0, 1.0]])
    return params, inputs, targets


def assert_layers_close(actual, expected, **tolerances):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        np.testing.assert_allclose(got.W, want.W, **tolerances)
        np.testing.assert_allclose(got.b, want.b, **tolerances)


@x64_property
@given(sizes=ARCHITECTURES, hidden=HIDDEN, head_name=HEADS, seed=SEEDS)
def test_hand_backward_equals_jax_grad_of_batch_mean_loss(x64, sizes, hidden, head_name, seed):
    head = HEAD[head_name]
    params, inputs, targets = random_problem(seed, sizes, head_name)
    cache = mlp.forward(params, inputs, hidden, head)
    hand = mlp.backward(params, cache, targets, hidden, head)
    autodiff = jax.grad(mlp.batch_loss)(params, inputs, targets, hidden, head)
    assert_layers_close(hand, autodiff, rtol=1e-6, atol=1e-10)


@x64_property
@given(sizes=ARCHITECTURES, hidden=HIDDEN, head_name=HEADS, seed=SEEDS)
def test_per_sample_gradients_are_single_sample_grads_and_average_to_batch_gradient(
    x64, sizes, hidden, head_name, seed
):
    head = HEAD[head_name]
    params, inputs, targets = random_problem(seed, sizes, head_name)
    cache = mlp.forward(params, inputs, hidden, head)
    deltas = mlp.backpropagate(params, cache, head.output_delta(cache.A[-1], targets), hidden)
    per_sample = mlp.per_sample_gradients(deltas, cache)
    for i in range(BATCH):  # book eqs. 5.10-5.12 against autodiff of L^(i) alone
        single = jax.grad(mlp.batch_loss)(
            params, inputs[:, i : i + 1], targets[:, i : i + 1], hidden, head
        )
        sample_i = [mlp.Layer(layer.W[i], layer.b[i]) for layer in per_sample]
        assert_layers_close(sample_i, single, rtol=1e-6, atol=1e-10)
    averaged = [mlp.Layer(layer.W.mean(axis=0), layer.b.mean(axis=0)) for layer in per_sample]
    assert_layers_close(averaged, mlp.backward(params, cache, targets, hidden, head), rtol=1e-10)


@x64_property
@given(head_name=HEADS, seed=SEEDS)
def test_output_delta_is_gradient_of_summed_loss_and_m_times_that_of_mean_loss(
    x64, head_name, seed
):
    head = HEAD[head_name]
    params, inputs, targets = random_problem(seed, (3, 4, 2), head_name)
    logits = mlp.forward(params, inputs, mlp.TANH, head).Z[-1]
    summed = jax.grad(lambda z: jnp.sum(head.per_sample_loss(z, targets)))(logits)
    mean = jax.grad(lambda z: jnp.mean(head.per_sample_loss(z, targets)))(logits)
    delta = head.output_delta(head.activation(logits), targets)  # book eqs. 5.23-5.24
    np.testing.assert_allclose(delta, summed, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(delta / BATCH, mean, rtol=1e-10, atol=1e-12)  # eq. 5.17's Δ


def test_book_definition_of_delta_with_eq_5_20_divides_by_m_twice(x64):
    params, inputs, targets = book_chapter6_network()
    cache = mlp.forward(params, inputs)
    batch_size = inputs.shape[1]
    mean_loss_delta = jax.grad(lambda z: jnp.mean(mlp.SIGMOID_BCE.per_sample_loss(z, targets)))(
        cache.Z[-1]
    )  # Δ^(L) as eq. 5.17 defines it
    twice_divided = mlp.gradients_from_deltas(
        mlp.backpropagate(params, cache, mean_loss_delta), cache
    )
    correct = jax.grad(mlp.batch_loss)(params, inputs, targets)
    scaled = [mlp.Layer(g.W * batch_size, g.b * batch_size) for g in twice_divided]
    assert_layers_close(scaled, correct, rtol=1e-12)


@given(sizes=ARCHITECTURES, seed=SEEDS)
def test_linear_network_collapses_to_one_affine_map(sizes, seed):
    params, inputs, _ = random_problem(seed, sizes, "identity_mse")
    outputs = mlp.forward(params, inputs, mlp.IDENTITY, mlp.IDENTITY_MSE).A[-1]
    effective = mlp.collapse_linear(params)
    np.testing.assert_allclose(
        outputs, effective.W @ inputs + effective.b[:, None], rtol=1e-4, atol=1e-5
    )
    product = np.linalg.multi_dot([np.asarray(layer.W) for layer in params[::-1]])
    np.testing.assert_allclose(effective.W, product, rtol=1e-4, atol=1e-6)  # book eq. 3.13


@given(sizes=ARCHITECTURES, hidden=HIDDEN, seed=SEEDS)
def test_vectorized_forward_equals_forward_of_each_column(sizes, hidden, seed):
    params, inputs, _ = random_problem(seed, sizes, "softmax_cce")
    batched = mlp.forward(params, inputs, hidden, mlp.SOFTMAX_CCE).A[-1]
    for i in range(BATCH):  # book 7.6: Z = W X + b 1ᵀ is the per-sample map on every column
        single = mlp.forward(params, inputs[:, i : i + 1], hidden, mlp.SOFTMAX_CCE).A[-1]
        np.testing.assert_allclose(batched[:, i : i + 1], single, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batched.sum(axis=0), 1.0, rtol=1e-5)  # softmax down columns


@given(sizes=ARCHITECTURES, seed=SEEDS)
def test_forward_equals_flax_dense_layers_on_transposed_batch(sizes, seed):
    params, inputs, _ = random_problem(seed, sizes, "sigmoid_bce")
    rows = inputs.T  # flax is batch-first with kernel [in, out] = Wᵀ
    for index, layer in enumerate(params):
        dense = nn.Dense(layer.W.shape[0])
        rows = dense.apply({"params": {"kernel": layer.W.T, "bias": layer.b}}, rows)
        rows = jax.nn.sigmoid(rows) if index == len(params) - 1 else jax.nn.relu(rows)
    outputs = mlp.forward(params, inputs, mlp.RELU, mlp.SIGMOID_BCE).A[-1]
    np.testing.assert_allclose(outputs, rows.T, rtol=1e-5, atol=1e-6)


@given(sizes=st.lists(st.integers(1, 50), min_size=2, max_size=6))
def test_parameter_count_formula_counts_every_initialized_parameter(sizes):
    params = jax.eval_shape(lambda key: mlp.init(key, sizes), jax.random.key(0))  # no compiles
    assert mlp.parameter_count(sizes) == sum(leaf.size for leaf in jax.tree.leaves(params))
    assert mlp.layer_sizes(params) == tuple(sizes)


def test_parameter_counts_of_the_book_networks():
    assert mlp.parameter_count((2, 2, 1)) == 2 * 2 + 2 + 2 * 1 + 1  # book 3.4: 9
    assert mlp.parameter_count((2, 3, 1)) == 3 * 2 + 3 + 3 * 1 + 1  # book ch. 6: 13


@pytest.mark.parametrize(
    ("weight_init", "variance"),
    [(mlp.HE_NORMAL, 2 / 512), (mlp.XAVIER_NORMAL, 2 / (512 + 256))],
    ids=["he", "xavier"],
)
def test_init_weight_variance_uses_fan_in_of_the_book_layout_and_biases_are_zero(
    weight_init, variance
):
    [layer] = mlp.init(jax.random.key(1), (512, 256), weight_init)
    assert layer.W.shape == (256, 512)  # [n_1, n_0]: fan_in = 512
    # 131072 draws: the sample variance has relative std sqrt(2/n) = 0.4%, so 3% is 7 sigma.
    np.testing.assert_allclose(np.var(layer.W), variance, rtol=0.03)
    assert abs(float(np.mean(layer.W))) < 5 * np.sqrt(variance / layer.W.size)
    np.testing.assert_array_equal(layer.b, 0.0)


def test_init_is_a_function_of_the_key():
    first = mlp.init(jax.random.key(3), (4, 5, 2))
    assert_layers_close(first, mlp.init(jax.random.key(3), (4, 5, 2)), rtol=0)
    other = mlp.init(jax.random.key(4), (4, 5, 2))
    assert not np.allclose(first[0].W, other[0].W)


def test_full_batch_training_equals_optax_sgd_with_autodiff_gradients(x64):
    params, inputs, targets = random_problem(7, (3, 4, 2), "softmax_cce", batch=6)
    trained, losses = mlp.train_full_batch(
        params, inputs, targets, optim.sgd(0.3), 4, mlp.TANH, mlp.SOFTMAX_CCE
    )
    reference, reference_losses = params, []
    optimizer = optax.sgd(0.3)
    state = optimizer.init(reference)
    for _ in range(4):
        loss, grads = jax.value_and_grad(mlp.batch_loss)(
            reference, inputs, targets, mlp.TANH, mlp.SOFTMAX_CCE
        )
        updates, state = optimizer.update(grads, state)
        reference = optax.apply_updates(reference, updates)
        reference_losses.append(loss)
    reference_losses.append(mlp.batch_loss(reference, inputs, targets, mlp.TANH, mlp.SOFTMAX_CCE))
    np.testing.assert_allclose(losses, reference_losses, rtol=1e-12)
    assert_layers_close(trained, reference, rtol=1e-12)
    assert losses[-1] < losses[0]


def test_book_chapter6_forward_loss_and_gradients_at_correct_values(x64):
    params, inputs, targets = book_chapter6_network()
    cache = mlp.forward(params, inputs)
    z2 = np.array([0.73, 1.634, 0.526, 1.658])  # W2 (W1 x + b1) + b2 by hand, all ReLUs active
    np.testing.assert_allclose(cache.Z[-1][0], z2, rtol=1e-12)
    y_hat = 1 / (1 + np.exp(-z2))
    np.testing.assert_allclose(cache.A[-1][0], y_hat, rtol=1e-12)
    losses = mlp.per_sample_losses(params, inputs, targets)
    expected = -np.log(np.where(targets[0] == 1, y_hat, 1 - y_hat))
    np.testing.assert_allclose(losses, expected, rtol=1e-12)
    assert float(losses[0]) == pytest.approx(1.123331, abs=1e-6)  # book eq. 6.23 prints 1.1223
    assert float(jnp.mean(losses)) == pytest.approx(0.616583, abs=1e-6)  # book 6.36: 0.6163
    grads = mlp.backward(params, cache, targets)
    hidden = np.asarray(cache.A[1])
    np.testing.assert_allclose(grads[1].W[0], hidden @ (y_hat - targets[0]) / 4, rtol=1e-12)
    # Book eq. 6.56 prints [0.0289, 0.0425, 0.0568].
    np.testing.assert_allclose(grads[1].W[0], [0.008026, 0.019183, 0.030341], atol=1e-6)


@pytest.mark.parametrize(
    ("make_call", "message"),
    [
        (lambda p, x, y: mlp.forward(p, x[:1]), r"params\[0\].W must have shape"),
        (lambda p, x, y: mlp.forward(p, x[0]), "inputs must have shape"),
        (
            lambda p, x, y: mlp.forward([p[0], mlp.Layer(p[1].W[:, :2], p[1].b)], x),
            r"params\[1\].W must have shape",
        ),
        (
            lambda p, x, y: mlp.forward([p[0], mlp.Layer(p[1].W, jnp.zeros(2))], x),
            r"params\[1\].b must have shape",
        ),
        (lambda p, x, y: mlp.forward([], x), "at least one layer"),
        (lambda p, x, y: mlp.batch_loss(p, x, y[:, :3]), "targets must have shape"),
        (
            lambda p, x, y: mlp.backward(p, mlp.forward(p, x), y.T),
            "targets must have shape",
        ),
        (
            lambda p, x, y: mlp.backpropagate(p, mlp.forward(p, x), jnp.zeros((2, 4))),
            "output_delta must have the same shape",
        ),
        (lambda p, x, y: mlp.init(jax.random.key(0), (3,)), "layer sizes"),
        (lambda p, x, y: mlp.init(jax.random.key(0), (3, 0, 1)), "layer sizes"),
        (lambda p, x, y: mlp.parameter_count((2, 2.5, 1)), "layer sizes"),
    ],
)
def test_bad_shapes_and_arguments_raise_value_error(make_call, message):
    params, inputs, targets = book_chapter6_network()
    with pytest.raises(ValueError, match=message):
        make_call(params, inputs, targets)
