"""The graph autodiff against JAX: values, adjoints, tangents and Jacobians on random DAGs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core import autodiff as ad

# The x64 fixture is entered once per test function; examples do not share mutable state.
x64_settings = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

SCALE = ad.scale(0.7)
CUBE = ad.power(3.0)
UNARY = [ad.IDENTITY, ad.NEG, ad.EXP, ad.LOG, ad.SIN, ad.TANH, ad.SIGMOID, ad.SQUARE, SCALE, CUBE]
BINARY = [ad.ADD, ad.SUB, ad.MUL, ad.DOT]
SHAPES = [(), (3,)]

# Independent reference semantics of each primitive, written with jnp / jax.nn.
REFERENCE = {
    "identity": lambda x: x,
    "neg": lambda x: -x,
    "exp": jnp.exp,
    "log": jnp.log,
    "sin": jnp.sin,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "square": lambda x: x * x,
    SCALE.name: lambda x: 0.7 * x,
    CUBE.name: lambda x: x * x * x,
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "dot": lambda a, b: jnp.sum(a * b),
    "sum": jnp.sum,
    "softmax": jax.nn.softmax,
}


def reference_values(graph, inputs):
    """Every node's value by the reference table, in insertion order (topological here)."""
    values = dict(inputs)
    for name, node in graph.items():
        if not node.is_leaf:
            values[name] = REFERENCE[node.primitive.name](*(values[p] for p in node.parents))
    return values


def in_safe_domain(primitive, parent_values, value) -> bool:
    if primitive is ad.LOG and not np.all(np.asarray(parent_values[0]) > 0.1):
        return False
    return bool(np.all(np.isfinite(value)) and np.all(np.abs(value) < 50.0))


@st.composite
def random_graphs(draw, max_inputs=3, max_ops=8):
    """A random DAG over scalar and [3] inputs; each op picks earlier nodes as parents.

    Values are kept finite and away from log's singularity: an op whose value would leave the
    safe domain is replaced by tanh of its first parent.
    """
    graph, values = {}, {}
    for index in range(draw(st.integers(1, max_inputs))):
        shape = draw(st.sampled_from(SHAPES))
        graph[f"x{index}"] = ad.leaf()
        values[f"x{index}"] = jnp.asarray(
            draw(arrays(np.float64, shape, elements=st.floats(-2.0, 2.0)))
        )
    for index in range(draw(st.integers(1, max_ops))):
        first = draw(st.sampled_from(list(graph)))
        shape = jnp.shape(values[first])
        same_shape = [name for name in graph if jnp.shape(values[name]) == shape]
        kind = draw(st.sampled_from(["unary", "binary", "vector"]))
        if kind == "binary":
            primitive = draw(st.sampled_from(BINARY if shape else BINARY[:3]))
            parents = (first, draw(st.sampled_from(same_shape)))
        elif kind == "vector" and shape:
            primitive, parents = draw(st.sampled_from([ad.SUM, ad.SOFTMAX])), (first,)
        else:
            primitive, parents = draw(st.sampled_from(UNARY)), (first,)
        parent_values = [values[p] for p in parents]
        value = REFERENCE[primitive.name](*parent_values)
        if not in_safe_domain(primitive, parent_values, value):
            primitive, parents = ad.TANH, (first,)
            value = jnp.tanh(values[first])
        graph[f"v{index}"] = ad.apply(primitive, *parents)
        values[f"v{index}"] = value
    inputs = {name: values[name] for name, node in graph.items() if node.is_leaf}
    return graph, inputs


def as_function(graph, input_names):
    """The graph as a function of its inputs returning every node's value (for jax.vjp/jvp)."""

    def function(*input_values):
        values = reference_values(graph, dict(zip(input_names, input_values, strict=True)))
        return {name: values[name] for name in graph}

    return function


def random_like(draw, value):
    return jnp.asarray(draw(arrays(np.float64, jnp.shape(value), elements=st.floats(-1.0, 1.0))))


@x64_settings
@given(case=random_graphs())
def test_evaluate_matches_reference_semantics(x64, case):
    graph, inputs = case
    ours = ad.evaluate(graph, inputs)
    expected = reference_values(graph, inputs)
    for name in graph:
        np.testing.assert_allclose(ours[name], expected[name], rtol=1e-12, atol=1e-12)


@x64_settings
@given(case=random_graphs(), data=st.data())
def test_reverse_mode_adjoints_equal_jax_vjp_for_random_dags(x64, case, data):
    graph, inputs = case
    names = list(inputs)
    outputs = data.draw(st.lists(st.sampled_from(list(graph)), min_size=1, unique=True))
    values = ad.evaluate(graph, inputs)
    seeds = {name: random_like(data.draw, values[name]) for name in outputs}
    _, vjp_function = jax.vjp(as_function(graph, names), *(inputs[name] for name in names))
    cotangents = {name: seeds.get(name, jnp.zeros_like(values[name])) for name in graph}
    expected = vjp_function(cotangents)
    adjoints = ad.reverse_mode(graph, values, seeds).adjoints
    for name, expected_adjoint in zip(names, expected, strict=True):
        np.testing.assert_allclose(adjoints[name], expected_adjoint, rtol=1e-10, atol=1e-10)


@x64_settings
@given(case=random_graphs(), data=st.data())
def test_forward_mode_tangents_equal_jax_jvp_for_random_dags(x64, case, data):
    graph, inputs = case
    names = list(inputs)
    tangents_in = {name: random_like(data.draw, inputs[name]) for name in names}
    _, expected = jax.jvp(
        as_function(graph, names),
        tuple(inputs[name] for name in names),
        tuple(tangents_in[name] for name in names),
    )
    sweep = ad.forward_mode(graph, inputs, tangents_in)
    for name in graph:
        np.testing.assert_allclose(sweep.tangents[name], expected[name], rtol=1e-10, atol=1e-10)


@x64_settings
@given(case=random_graphs(max_inputs=2, max_ops=5), data=st.data())
def test_full_jacobian_takes_m_reverse_or_n_forward_sweeps_each_visiting_v_and_e(x64, case, data):
    graph, inputs = case
    names = list(inputs)
    outputs = data.draw(st.lists(st.sampled_from(list(graph)), min_size=1, unique=True))
    values = ad.evaluate(graph, inputs)
    m = sum(int(jnp.size(values[name])) for name in outputs)
    n = sum(int(jnp.size(values[name])) for name in names)
    reverse = ad.jacobian(graph, inputs, names, outputs, mode="reverse")
    forward = ad.jacobian(graph, inputs, names, outputs, mode="forward")

    def flat_outputs(*input_values):
        all_values = as_function(graph, names)(*input_values)
        return jnp.concatenate([jnp.ravel(all_values[name]) for name in outputs])

    per_input = jax.jacrev(flat_outputs, argnums=tuple(range(len(names))))(*inputs.values())
    expected = jnp.concatenate([block.reshape(m, -1) for block in per_input], axis=1)
    np.testing.assert_allclose(reverse.matrix, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(forward.matrix, expected, rtol=1e-10, atol=1e-10)
    num_nodes, num_edges = ad.graph_size(graph)
    assert (reverse.passes, forward.passes) == (m, n)
    assert reverse.cost == (m * num_nodes, m * num_edges)
    assert forward.cost == (n * num_nodes, n * num_edges)


@pytest.mark.parametrize(
    "primitive", [*UNARY, *BINARY, ad.SUM, ad.SOFTMAX], ids=lambda primitive: primitive.name
)
def test_every_primitive_edge_rule_equals_jax_jvp_and_vjp_on_vectors(x64, primitive):
    arguments = [f"a{k}" for k in range(primitive.arity)]
    graph = {name: ad.leaf() for name in arguments} | {"out": ad.apply(primitive, *arguments)}
    key_inputs, key_tangents, key_cotangent = jax.random.split(jax.random.key(0), 3)
    # In [0.5, 1.5): inside log's domain.
    inputs = dict(
        zip(arguments, jax.random.uniform(key_inputs, (primitive.arity, 4)) + 0.5, strict=True)
    )
    tangents = dict(
        zip(arguments, jax.random.normal(key_tangents, (primitive.arity, 4)), strict=True)
    )
    function = as_function(graph, arguments)
    value, expected_tangents = jax.jvp(function, tuple(inputs.values()), tuple(tangents.values()))
    cotangent = jax.random.normal(key_cotangent, jnp.shape(value["out"]))
    expected_adjoints = jax.vjp(function, *inputs.values())[1](
        {name: cotangent if name == "out" else jnp.zeros(4) for name in graph}
    )
    ours_forward = ad.forward_mode(graph, inputs, tangents).tangents["out"]
    ours_reverse = ad.reverse_mode(graph, ad.evaluate(graph, inputs), {"out": cotangent})
    np.testing.assert_allclose(ours_forward, expected_tangents["out"], rtol=1e-12, atol=1e-14)
    for name, expected in zip(arguments, expected_adjoints, strict=True):
        np.testing.assert_allclose(ours_reverse.adjoints[name], expected, rtol=1e-12, atol=1e-14)


def book_graph():
    """Book 10.1.2: y = (x1 + x2) · x1, with the loss L = y² of 10.2.2."""
    return {
        "x1": ad.leaf(),
        "x2": ad.leaf(),
        "v3": ad.apply(ad.ADD, "x1", "x2"),
        "v4": ad.apply(ad.MUL, "v3", "x1"),
        "y": ad.apply(ad.IDENTITY, "v4"),
        "L": ad.apply(ad.SQUARE, "y"),
    }


def test_book_10_2_2_adjoints_140_and_40_with_x1_accumulating_100_plus_40():
    graph = book_graph()
    assert ad.topological_order(graph) == ("x1", "x2", "v3", "v4", "y", "L")
    values = ad.evaluate(graph, {"x1": 2.0, "x2": 3.0})
    assert [float(values[n]) for n in ("v3", "v4", "y")] == [5.0, 10.0, 10.0]
    sweep = ad.reverse_mode(graph, values, {"L": 1.0})
    adjoints = {name: float(value) for name, value in sweep.adjoints.items()}
    assert adjoints == {"L": 1.0, "y": 20.0, "v4": 20.0, "v3": 40.0, "x2": 40.0, "x1": 140.0}
    into_x1 = {term.child: float(term.value) for term in sweep.edge_terms if term.parent == "x1"}
    assert into_x1 == {"v4": 100.0, "v3": 40.0}
    # dL/dx1 = 2y (2 x1 + x2) by hand.
    assert float(ad.forward_mode(graph, {"x1": 2.0, "x2": 3.0}, {"x1": 1.0}).tangents["L"]) == 140


def test_repeated_parent_accumulates_both_edges():
    graph = {"x": ad.leaf(), "y": ad.apply(ad.MUL, "x", "x")}
    sweep = ad.reverse_mode(graph, ad.evaluate(graph, {"x": 3.0}), {"y": 1.0})
    assert float(sweep.adjoints["x"]) == 6.0
    assert sweep.cost == (2, 2)


def test_softmax_node_backward_with_cross_entropy_gives_p_minus_y(x64):
    # L = -Σ y_i log p_i: the log node passes p̄ = -y/p to softmax, which returns p - y (10.4.2).
    graph = {
        "z": ad.leaf(),
        "y": ad.leaf(),
        "p": ad.apply(ad.SOFTMAX, "z"),
        "log_p": ad.apply(ad.LOG, "p"),
        "neg_log_likelihood": ad.apply(ad.DOT, "y", "log_p"),
        "L": ad.apply(ad.NEG, "neg_log_likelihood"),
    }
    z, y = jnp.array([1.0, -0.5, 2.0]), jnp.array([0.0, 1.0, 0.0])
    values = ad.evaluate(graph, {"z": z, "y": y})
    sweep = ad.reverse_mode(graph, values, {"L": 1.0})
    np.testing.assert_allclose(sweep.adjoints["p"], -y / values["p"], rtol=1e-12)
    np.testing.assert_allclose(sweep.adjoints["z"], jax.nn.softmax(z) - y, rtol=1e-12, atol=1e-15)


def test_cycle_is_refused_with_the_nodes_named():
    graph = {"x": ad.leaf(), "a": ad.apply(ad.ADD, "x", "b"), "b": ad.apply(ad.TANH, "a")}
    with pytest.raises(ValueError, match=r"cycle: nodes \['a', 'b'\]"):
        ad.topological_order(graph)


def test_malformed_graphs_and_arguments_raise_value_error():
    with pytest.raises(ValueError, match="unknown parent 'w'"):
        ad.topological_order({"x": ad.leaf(), "y": ad.apply(ad.ADD, "x", "w")})
    with pytest.raises(ValueError, match="add takes 2 argument"):
        ad.topological_order({"x": ad.leaf(), "y": ad.apply(ad.ADD, "x")})
    mixed = {"s": ad.leaf(), "v": ad.leaf(), "y": ad.apply(ad.MUL, "s", "v")}
    with pytest.raises(ValueError, match="mul needs arguments of one shape"):
        ad.evaluate(mixed, {"s": 1.0, "v": jnp.ones(3)})
    graph = book_graph()
    with pytest.raises(ValueError, match=r"missing for the leaves \['x2'\]"):
        ad.evaluate(graph, {"x1": 1.0})
    values = ad.evaluate(graph, {"x1": 1.0, "x2": 2.0})
    with pytest.raises(ValueError, match=r"output_cotangents of 'L' must have the shape"):
        ad.reverse_mode(graph, values, {"L": jnp.ones(2)})
    with pytest.raises(ValueError, match="mode must be one of"):
        ad.jacobian(graph, {"x1": 1.0, "x2": 2.0}, ["x1"], ["L"], mode="backward")
    with pytest.raises(ValueError, match=r"input_names \['v3'\] are not among"):
        ad.jacobian(graph, {"x1": 1.0, "x2": 2.0}, ["v3"], ["L"], mode="reverse")
    with pytest.raises(ValueError, match=r"input_tangents \['v3'\] are not among"):
        ad.forward_mode(graph, {"x1": 1.0, "x2": 2.0}, {"v3": 1.0})
