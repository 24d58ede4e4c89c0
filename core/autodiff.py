"""Book 10.1-10.4: computational graphs and automatic differentiation in both modes.

A computational graph (book 10.1.1) is a mapping from node names to `Node`s: a leaf holds an
input, an operation node names a `Primitive` and its parents. `topological_order` orders it
(and refuses cycles), `evaluate` runs the forward pass (eq. 10.1), `reverse_mode` propagates
adjoints v̄_j = Σ_children v̄_k ∂v_k/∂v_j from the outputs to the leaves (eq. 10.3, 10.10 for
vector nodes), and `forward_mode` propagates tangents v̇_j = Σ_parents ∂v_j/∂v_k v̇_k from the
leaves to the outputs (eq. 10.8). `jacobian` assembles a full Jacobian from m reverse or n
forward passes, with the node visits and edge traversals of every pass counted as they happen
(book 10.3.3's table).

This is a teaching-scale autodiff: the graph is walked in Python and each node's value is a jax
array computed op by op, so it is neither jit-able nor fast; production code uses `jax.grad`.
Nodes hold scalars or vectors; a primitive supplies its derivative one edge at a time, as a
Jacobian-vector product for forward mode and a vector-Jacobian product Jᵀv̄ for reverse mode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from core import activations
from core.numerics import softmax

Mode = Literal["reverse", "forward"]
MODES: tuple[Mode, ...] = ("reverse", "forward")

EdgeRule = Callable[[int, tuple[jax.Array, ...], jax.Array, jax.Array], jax.Array]
"""(argument index k, arguments, node value, vector) -> the product of ∂v/∂args[k] with vector."""


@dataclasses.dataclass(frozen=True)
class Primitive:
    """An operation with its local derivatives, one edge (argument) at a time.

    Attributes:
      name: for error messages.
      arity: number of arguments.
      forward: (*args) -> value.
      jvp: J_k ẋ_k, the term of eq. 10.8 contributed by argument k with tangent ẋ_k.
      vjp: J_kᵀ v̄, the term of eq. 10.3 (10.10 for vectors) that argument k receives from the
        node's adjoint v̄.
      same_shape_args: whether all arguments must have one shape (elementwise and dot products);
        checked by `evaluate`, so broadcasting never silently changes a derivative's shape.
    """

    name: str
    arity: int
    forward: Callable[..., jax.Array]
    jvp: EdgeRule
    vjp: EdgeRule
    same_shape_args: bool = True


def _elementwise(
    name: str,
    arity: int,
    forward: Callable[..., jax.Array],
    partials: Callable[[tuple[jax.Array, ...], jax.Array], tuple[jax.Array | float, ...]],
) -> Primitive:
    """An elementwise op; partials(args, value) are ∂v/∂args[k], elementwise.

    The Jacobian of an elementwise op is diagonal, so its JVP and VJP are both the elementwise
    product with the partial derivative.
    """

    def edge_product(index, args, value, vector):
        return partials(args, value)[index] * vector

    return Primitive(name, arity, forward, edge_product, edge_product)


IDENTITY = _elementwise("identity", 1, lambda x: x, lambda args, value: (1.0,))
NEG = _elementwise("neg", 1, jnp.negative, lambda args, value: (-1.0,))
EXP = _elementwise("exp", 1, jnp.exp, lambda args, value: (value,))
LOG = _elementwise("log", 1, jnp.log, lambda args, value: (1.0 / args[0],))
SIN = _elementwise("sin", 1, jnp.sin, lambda args, value: (jnp.cos(args[0]),))
SQUARE = _elementwise("square", 1, jnp.square, lambda args, value: (2.0 * args[0],))
TANH = _elementwise(
    "tanh", 1, activations.tanh, lambda args, value: (activations.tanh_derivative(args[0]),)
)
SIGMOID = _elementwise(
    "sigmoid",
    1,
    activations.sigmoid,
    lambda args, value: (activations.sigmoid_derivative(args[0]),),
)
ADD = _elementwise("add", 2, jnp.add, lambda args, value: (1.0, 1.0))
SUB = _elementwise("sub", 2, jnp.subtract, lambda args, value: (1.0, -1.0))
MUL = _elementwise("mul", 2, jnp.multiply, lambda args, value: (args[1], args[0]))


def scale(factor: float) -> Primitive:
    """v = factor · x, elementwise multiplication by a constant."""
    return _elementwise(f"scale({factor})", 1, lambda x: factor * x, lambda args, value: (factor,))


def power(exponent: float) -> Primitive:
    """v = x^exponent elementwise, with ∂v/∂x = exponent · x^(exponent - 1)."""
    return _elementwise(
        f"power({exponent})",
        1,
        lambda x: x**exponent,
        lambda args, value: (exponent * args[0] ** (exponent - 1),),
    )


SUM = Primitive(
    "sum",
    1,
    jnp.sum,
    jvp=lambda index, args, value, tangent: jnp.sum(tangent),
    vjp=lambda index, args, value, cotangent: cotangent * jnp.ones_like(args[0]),
)
"""v = Σ_i x_i: a vector (any shape) to a scalar."""

DOT = Primitive(
    "dot",
    2,
    jnp.vdot,
    jvp=lambda index, args, value, tangent: jnp.vdot(args[1 - index], tangent),
    vjp=lambda index, args, value, cotangent: cotangent * args[1 - index],
)
"""v = Σ_i a_i b_i: two vectors of one shape to a scalar."""

SOFTMAX = Primitive(
    "softmax",
    1,
    softmax,
    # J_ij = p_i(δ_ij - p_j) (book eq. 10.11) is symmetric, so Jv and Jᵀv are both eq. 10.12.
    jvp=lambda index, args, value, tangent: activations.softmax_vjp(value, tangent),
    vjp=lambda index, args, value, cotangent: activations.softmax_vjp(value, cotangent),
)
"""p = softmax(z) over the last axis: a vector to a vector (book 10.4.2)."""


@dataclasses.dataclass(frozen=True)
class Node:
    """A node of the graph: a leaf (primitive None, no parents) or an op applied to parents."""

    primitive: Primitive | None
    parents: tuple[str, ...] = ()

    @property
    def is_leaf(self) -> bool:
        return self.primitive is None


Graph = Mapping[str, Node]
"""Node name -> Node; parents are referred to by name."""


def leaf() -> Node:
    """An input node (book 10.1.1: leaves hold the data x or the parameters θ)."""
    return Node(None)


def apply(primitive: Primitive, *parents: str) -> Node:
    """An operation node v = primitive(parents...)."""
    return Node(primitive, tuple(parents))


class PassCost(NamedTuple):
    """Work done by one sweep over the graph, counted as it happens."""

    node_visits: int
    edge_traversals: int


class EdgeTerm(NamedTuple):
    """One summand v̄_child · ∂v_child/∂v_parent of eq. 10.3, through argument `argument`."""

    child: str
    argument: int
    parent: str
    value: jax.Array


class ReversePass(NamedTuple):
    """adjoints: v̄_j = ∂L/∂v_j for every node; edge_terms: the summands of eq. 10.3."""

    adjoints: dict[str, jax.Array]
    edge_terms: tuple[EdgeTerm, ...]
    cost: PassCost


class ForwardPass(NamedTuple):
    """values: v_j for every node; tangents: v̇_j = ∂v_j/∂x · ẋ for every node."""

    values: dict[str, jax.Array]
    tangents: dict[str, jax.Array]
    cost: PassCost


class JacobianResult(NamedTuple):
    """matrix: [m, n] ∂(outputs, flattened)/∂(inputs, flattened); passes: sweeps it took."""

    matrix: jax.Array
    passes: int
    cost: PassCost


def _check_structure(graph: Graph) -> None:
    for name, node in graph.items():
        if node.is_leaf:
            if node.parents:
                raise ValueError(f"leaf {name!r} must have no parents, got {node.parents}")
            continue
        if len(node.parents) != node.primitive.arity:
            raise ValueError(
                f"node {name!r}: {node.primitive.name} takes {node.primitive.arity} "
                f"argument(s), got parents {node.parents}"
            )
        for parent in node.parents:
            if parent not in graph:
                raise ValueError(f"node {name!r} has unknown parent {parent!r}")


def children(graph: Graph) -> dict[str, list[tuple[str, int]]]:
    """Node name -> the (child, argument index) pairs that consume it (the out-edges)."""
    consumers: dict[str, list[tuple[str, int]]] = {name: [] for name in graph}
    for name, node in graph.items():
        for index, parent in enumerate(node.parents):
            consumers[parent].append((name, index))
    return consumers


def topological_order(graph: Graph) -> tuple[str, ...]:
    """Node names such that every parent precedes its children (book 10.1.1), by Kahn's method.

    Ties are broken by the graph's insertion order, so the book's example orders as written.

    Raises:
      ValueError for an unknown parent, a wrong number of parents, or a cycle (naming the nodes
      that lie on or after it).
    """
    _check_structure(graph)
    consumers = children(graph)
    pending = {name: len(node.parents) for name, node in graph.items()}
    ready = [name for name, count in pending.items() if count == 0]
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for child, _ in consumers[name]:
            pending[child] -= 1
            if pending[child] == 0:
                ready.append(child)
    if len(order) != len(graph):
        stuck = sorted(name for name in graph if name not in order)
        raise ValueError(
            f"the graph has a cycle: nodes {stuck} lie on or after it; a computational graph "
            "must be a DAG (book 10.1.1)"
        )
    return tuple(order)


def graph_size(graph: Graph) -> tuple[int, int]:
    """(|V|, |E|): the number of nodes and of parent -> child edges (repeated parents count)."""
    return len(graph), sum(len(node.parents) for node in graph.values())


def _leaves(graph: Graph) -> list[str]:
    return [name for name, node in graph.items() if node.is_leaf]


def _check_names(what: str, given: Sequence[str], allowed: Sequence[str]) -> None:
    unknown = [name for name in given if name not in allowed]
    if unknown:
        raise ValueError(f"{what} {unknown} are not among {list(allowed)}")


def _check_like(what: str, arrays: Mapping[str, jax.Array], values: Mapping[str, jax.Array]):
    for name, array in arrays.items():
        if jnp.shape(array) != jnp.shape(values[name]):
            raise ValueError(
                f"{what} of {name!r} must have the shape of its value "
                f"{list(jnp.shape(values[name]))}, got {list(jnp.shape(array))}"
            )


def _check_inputs(graph: Graph, inputs: Mapping[str, jax.Array]) -> None:
    leaves = _leaves(graph)
    _check_names("inputs", list(inputs), leaves)
    missing = [name for name in leaves if name not in inputs]
    if missing:
        raise ValueError(f"inputs are missing for the leaves {missing}")


def _node_value(graph: Graph, name: str, values: Mapping[str, jax.Array]) -> jax.Array:
    """Applies node `name`'s primitive to its parents' values (book eq. 10.1)."""
    node = graph[name]
    args = tuple(values[parent] for parent in node.parents)
    if node.primitive.same_shape_args:
        shapes = {
            parent: list(jnp.shape(arg)) for parent, arg in zip(node.parents, args, strict=True)
        }
        if len({tuple(shape) for shape in shapes.values()}) > 1:
            raise ValueError(
                f"node {name!r}: {node.primitive.name} needs arguments of one shape, got {shapes}"
            )
    return node.primitive.forward(*args)


def evaluate(graph: Graph, inputs: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """The forward pass: every node's value, in topological order (book eq. 10.1).

    Args:
      graph: the computational graph.
      inputs: a value (scalar or array) for every leaf.

    Returns:
      Node name -> value, for every node.
    """
    order = topological_order(graph)
    _check_inputs(graph, inputs)
    values: dict[str, jax.Array] = {}
    for name in order:
        if graph[name].is_leaf:
            values[name] = jnp.asarray(inputs[name])
        else:
            values[name] = _node_value(graph, name, values)
    return values


def reverse_mode(
    graph: Graph, values: Mapping[str, jax.Array], output_cotangents: Mapping[str, jax.Array]
) -> ReversePass:
    """One backward sweep: the adjoint of every node (book eqs. 10.3, 10.10).

    Visits nodes in reverse topological order and sets
    v̄_j = seed_j + Σ_{(k, a) ∈ children(j)} J_{k,a}ᵀ v̄_k, where seed_j is the given cotangent of
    an output node (v̄_root = 1 for a scalar loss) and 0 elsewhere. A node used by several
    children accumulates one term per edge (the "+=" of book 10.2.2).

    Args:
      graph: the computational graph.
      values: every node's value from `evaluate` (reverse mode needs them all stored).
      output_cotangents: seeds ∂L/∂v for the output nodes, each with its node's shape.

    Returns:
      The adjoints of all nodes, every edge's summand, and the work counted in this sweep.
    """
    order = topological_order(graph)
    _check_names("output_cotangents", list(output_cotangents), list(graph))
    _check_like("output_cotangents", output_cotangents, values)
    consumers = children(graph)
    adjoints: dict[str, jax.Array] = {}
    edge_terms: list[EdgeTerm] = []
    node_visits = edge_traversals = 0
    for name in reversed(order):
        node_visits += 1
        adjoint = jnp.zeros_like(values[name])
        if name in output_cotangents:
            adjoint = adjoint + jnp.asarray(output_cotangents[name])
        for child, argument in consumers[name]:
            edge_traversals += 1
            child_node = graph[child]
            child_args = tuple(values[parent] for parent in child_node.parents)
            term = child_node.primitive.vjp(argument, child_args, values[child], adjoints[child])
            edge_terms.append(EdgeTerm(child, argument, name, term))
            adjoint = adjoint + term  # book eq. 10.3
        adjoints[name] = adjoint
    return ReversePass(adjoints, tuple(edge_terms), PassCost(node_visits, edge_traversals))


def forward_mode(
    graph: Graph, inputs: Mapping[str, jax.Array], input_tangents: Mapping[str, jax.Array]
) -> ForwardPass:
    """One forward sweep computing each node's value and tangent together (book eq. 10.8).

    v̇_j = Σ_{(k, a) ∈ parents(j)} J_{j,a} v̇_k, in topological order, starting from the given
    leaf tangents (ẋ_i = 1 and ẋ_i' = 0 for i' ≠ i gives the column ∂v/∂x_i).

    Args:
      graph: the computational graph.
      inputs: a value for every leaf.
      input_tangents: tangents for some leaves, each with its leaf's shape; the others are 0.

    Returns:
      The values and tangents of all nodes and the work counted in this sweep.
    """
    order = topological_order(graph)
    _check_inputs(graph, inputs)
    _check_names("input_tangents", list(input_tangents), _leaves(graph))
    _check_like("input_tangents", input_tangents, {k: jnp.asarray(v) for k, v in inputs.items()})
    values: dict[str, jax.Array] = {}
    tangents: dict[str, jax.Array] = {}
    node_visits = edge_traversals = 0
    for name in order:
        node_visits += 1
        node = graph[name]
        if node.is_leaf:
            values[name] = jnp.asarray(inputs[name])
        else:
            values[name] = _node_value(graph, name, values)
        tangent = jnp.zeros_like(values[name])
        if name in input_tangents:
            tangent = tangent + jnp.asarray(input_tangents[name])
        args = tuple(values[parent] for parent in node.parents)
        for argument, parent in enumerate(node.parents):
            edge_traversals += 1
            term = node.primitive.jvp(argument, args, values[name], tangents[parent])
            tangent = tangent + term  # book eq. 10.8
        tangents[name] = tangent
    return ForwardPass(values, tangents, PassCost(node_visits, edge_traversals))


def _unit_seeds(
    values: Mapping[str, jax.Array], names: Sequence[str]
) -> Iterator[dict[str, jax.Array]]:
    """One seed per scalar component of the named nodes: 1 at that component, 0 elsewhere."""
    for name in names:
        size = jnp.size(values[name])
        for component in range(size):
            one_hot = jnp.zeros(size, jnp.result_type(values[name], float)).at[component].set(1)
            yield {name: one_hot.reshape(jnp.shape(values[name]))}


def _flat(arrays: Mapping[str, jax.Array], names: Sequence[str]) -> jax.Array:
    return jnp.concatenate([jnp.ravel(arrays[name]) for name in names])


def jacobian(
    graph: Graph,
    inputs: Mapping[str, jax.Array],
    input_names: Sequence[str],
    output_names: Sequence[str],
    mode: Mode,
) -> JacobianResult:
    """The full Jacobian ∂(outputs)/∂(inputs), by sweeps of one mode (book 10.3.3's table).

    "reverse": one backward sweep per scalar output, each giving a row (the forward values are
    computed once and stored). "forward": one tangent sweep per scalar input, each giving a
    column. The cost adds up the derivative sweeps.

    Returns:
      matrix [m, n] with m the total size of the outputs and n that of the inputs.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    _check_names("input_names", input_names, _leaves(graph))
    _check_names("output_names", output_names, list(graph))
    values = evaluate(graph, inputs)
    if mode == "reverse":
        sweeps = [reverse_mode(graph, values, seed) for seed in _unit_seeds(values, output_names)]
        slices = [_flat(sweep.adjoints, input_names) for sweep in sweeps]
    else:
        sweeps = [forward_mode(graph, inputs, seed) for seed in _unit_seeds(values, input_names)]
        slices = [_flat(sweep.tangents, output_names) for sweep in sweeps]
    cost = PassCost(
        sum(sweep.cost.node_visits for sweep in sweeps),
        sum(sweep.cost.edge_traversals for sweep in sweeps),
    )
    matrix = jnp.stack(slices, axis=0 if mode == "reverse" else 1)
    return JacobianResult(matrix, len(sweeps), cost)
