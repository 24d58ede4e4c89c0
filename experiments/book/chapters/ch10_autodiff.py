"""Chapter 10: computational graphs, reverse-mode adjoints, forward-mode tangents, their costs.

Book 10.1.2-10.2.2 (eqs. 10.1-10.7): the graph of y = (x1 + x2)·x1 with L = y² at x1 = 2,
x2 = 3, run through `core.autodiff`. Book 10.3 (eq. 10.8 and the table of 10.3.3): node visits
and edge traversals counted by the evaluator in every sweep, on the book's graph and on scalar
graphs of small tanh networks. Book 10.4.2 (eqs. 10.11-10.12): the softmax node's backward.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from core import activations, autodiff
from experiments.book.records import Record, check, claim

X1, X2 = 2.0, 3.0  # book 10.2.2
BOOK_EDGES = {("x1", "v3"), ("x2", "v3"), ("v3", "v4"), ("x1", "v4"), ("v4", "y")}  # 10.1.2
TOLERANCE = 1e-12


def _book_graph(with_loss: bool) -> autodiff.Graph:
    """Book 10.1.2: v3 = x1 + x2, v4 = v3·x1, v5 = y = v4; 10.2.2 adds L = y²."""
    graph = {
        "x1": autodiff.leaf(),
        "x2": autodiff.leaf(),
        "v3": autodiff.apply(autodiff.ADD, "x1", "x2"),
        "v4": autodiff.apply(autodiff.MUL, "v3", "x1"),
        "y": autodiff.apply(autodiff.IDENTITY, "v4"),
    }
    if with_loss:
        graph["L"] = autodiff.apply(autodiff.SQUARE, "y")
    return graph


def _tanh_network_graph(num_inputs: int, widths: tuple[int, ...]) -> autodiff.Graph:
    """A scalar graph of a tanh network: h = tanh(Σ_j w_ij h_j) per neuron, weights as leaves.

    Each neuron multiplies its n inputs by n weight leaves and adds them in a chain, so a layer
    of n neurons over n inputs has n² products; the outputs are the last layer's neurons.
    """
    graph: dict[str, autodiff.Node] = {f"x{j}": autodiff.leaf() for j in range(num_inputs)}
    previous = list(graph)
    for layer, width in enumerate(widths):
        current = []
        for i in range(width):
            terms = []
            for j, source in enumerate(previous):
                weight = f"w{layer}_{i}_{j}"
                graph[weight] = autodiff.leaf()
                graph[f"p{layer}_{i}_{j}"] = autodiff.apply(autodiff.MUL, weight, source)
                terms.append(f"p{layer}_{i}_{j}")
            total = terms[0]
            for position, term in enumerate(terms[1:], start=1):
                graph[f"s{layer}_{i}_{position}"] = autodiff.apply(autodiff.ADD, total, term)
                total = f"s{layer}_{i}_{position}"
            graph[f"h{layer}_{i}"] = autodiff.apply(autodiff.TANH, total)
            current.append(f"h{layer}_{i}")
        previous = current
    return graph


def _network_inputs(graph: autodiff.Graph) -> dict[str, jax.Array]:
    """Deterministic leaf values in [-0.5, 0.5] (the derivatives do not depend on the choice)."""
    leaves = [name for name, node in graph.items() if node.is_leaf]
    return {name: 0.5 * jnp.sin(1.0 + index) for index, name in enumerate(leaves)}


def _worked_example_records() -> list[Record]:
    graph = _book_graph(with_loss=True)
    inputs = {"x1": X1, "x2": X2}
    values = autodiff.evaluate(graph, inputs)
    sweep = autodiff.reverse_mode(graph, values, {"L": 1.0})
    terms = {(t.child, t.parent): float(t.value) for t in sweep.edge_terms}
    dy_dx1 = autodiff.forward_mode(graph, inputs, {"x1": 1.0}).tangents["y"]
    structure = _book_graph(with_loss=False)
    edges = {(parent, name) for name, node in structure.items() for parent in node.parents}
    order = autodiff.topological_order(structure)
    note = "core.autodiff.reverse_mode on the graph of 10.1.2 plus L = y², seed L̄ = 1"
    return [
        *claim(
            "10.1.2",
            "edges and topological order",
            "edges (v1,v3), (v2,v3), (v3,v4), (v1,v4), (v4,v5); order v1, v2, v3, v4, v5",
            f"edges {sorted(edges)}; topological_order = {order}",
            holds=edges == BOOK_EDGES and order == ("x1", "x2", "v3", "v4", "y"),
        ),
        *check(
            "10.2.2",
            "forward values v3, v4, y",
            ["5", "10", "10"],
            [values["v3"], values["v4"], values["y"]],
            note="core.autodiff.evaluate (eq. 10.1)",
        ),
        *check("10.2.2", "∂L/∂y = 2y, root adjoint v̄5", "20", sweep.adjoints["y"], note=note),
        *check("10.2.2 eq. 10.4", "v̄4", "20", sweep.adjoints["v4"], note=note),
        *check("10.2.2 eq. 10.5", "v̄3 = v̄4 · v1", "40", sweep.adjoints["v3"], note=note),
        *check(
            "10.2.2 eq. 10.5",
            "v̄1 term via v4: v̄4 · v3",
            "100",
            terms[("v4", "x1")],
            note="the edge term of eq. 10.3 recorded by reverse_mode",
        ),
        *check(
            "10.2.2 eq. 10.6",
            "v̄1 term via v3: v̄3 · 1",
            "40",
            terms[("v3", "x1")],
            note="the edge term of eq. 10.3 recorded by reverse_mode",
        ),
        *check("10.2.2 eq. 10.6", "v̄1 = ∂L/∂x1", "140", sweep.adjoints["x1"], note=note),
        *check("10.2.2 eq. 10.7", "v̄2 = ∂L/∂x2", "40", sweep.adjoints["x2"], note=note),
        *check(
            "10.2.2",
            "∂y/∂x1 = 2x1 + x2 in the hand check 20·(4 + 3)",
            "7",
            dy_dx1,
            note="core.autodiff.forward_mode tangent of y with ẋ1 = 1, ẋ2 = 0 (eq. 10.8)",
        ),
    ]


def _sweep_cost_records() -> list[Record]:
    out = []
    network = _tanh_network_graph(4, (4, 1))
    for name, graph, inputs, output in [
        ("book graph (L = y²)", _book_graph(with_loss=True), {"x1": X1, "x2": X2}, "L"),
        ("tanh network 4-4-1", network, _network_inputs(network), "h1_0"),
    ]:
        num_nodes, num_edges = autodiff.graph_size(graph)
        values = autodiff.evaluate(graph, inputs)
        backward = autodiff.reverse_mode(graph, values, {output: 1.0}).cost
        leaf = next(iter(inputs))
        tangent = autodiff.forward_mode(graph, inputs, {leaf: 1.0}).cost
        out += claim(
            "10.3.1-10.3.2",
            f"cost of one sweep, {name}",
            "one reverse or forward sweep traverses each edge once: O(|V| + |E|)",
            f"|V| = {num_nodes}, |E| = {num_edges}; counted: backward sweep {backward.node_visits} "
            f"visits / {backward.edge_traversals} edges, tangent sweep {tangent.node_visits} / "
            f"{tangent.edge_traversals}",
            holds=tuple(backward) == tuple(tangent) == (num_nodes, num_edges),
        )
    return out


def _jacobian_pass_records() -> list[Record]:
    """Table 10.3.3 on a 3-input graph with 2 outputs and on a scalar loss of many parameters."""
    wide = _tanh_network_graph(3, (2,))
    x_names = ["x0", "x1", "x2"]
    outputs = ["h0_0", "h0_1"]
    inputs = _network_inputs(wide)
    reverse = autodiff.jacobian(wide, inputs, x_names, outputs, mode="reverse")
    forward = autodiff.jacobian(wide, inputs, x_names, outputs, mode="forward")
    gap = float(jnp.max(jnp.abs(reverse.matrix - forward.matrix)))
    num_nodes, num_edges = autodiff.graph_size(wide)

    learning = _tanh_network_graph(4, (4, 1))
    parameters = [name for name, node in learning.items() if node.is_leaf]
    loss_inputs = _network_inputs(learning)
    by_reverse = autodiff.jacobian(learning, loss_inputs, parameters, ["h1_0"], mode="reverse")
    by_forward = autodiff.jacobian(learning, loss_inputs, parameters, ["h1_0"], mode="forward")

    many_outputs = _tanh_network_graph(1, (8,))
    fan_inputs = _network_inputs(many_outputs)
    fan_out = [f"h0_{i}" for i in range(8)]
    fan_reverse = autodiff.jacobian(many_outputs, fan_inputs, ["x0"], fan_out, mode="reverse")
    fan_forward = autodiff.jacobian(many_outputs, fan_inputs, ["x0"], fan_out, mode="forward")
    fan_text = (
        f"1 input, 8 outputs: reverse {fan_reverse.passes} sweeps / "
        f"{fan_reverse.cost.edge_traversals} edge traversals, forward {fan_forward.passes} / "
        f"{fan_forward.cost.edge_traversals}"
    )
    return [
        *claim(
            "10.3.3 table",
            "full Jacobian, n = 3 inputs, m = 2 outputs",
            "reverse needs m sweeps, O(m(V + E)); forward needs n sweeps, O(n(V + E))",
            f"|V| = {num_nodes}, |E| = {num_edges}: reverse {reverse.passes} sweeps, "
            f"{tuple(reverse.cost)} visits/edges; forward {forward.passes} sweeps, "
            f"{tuple(forward.cost)}; Jacobians agree to {gap:.1e}",
            holds=reverse.passes == 2
            and forward.passes == 3
            and tuple(reverse.cost) == (2 * num_nodes, 2 * num_edges)
            and tuple(forward.cost) == (3 * num_nodes, 3 * num_edges)
            and gap < TOLERANCE,
        ),
        *claim(
            "10.3.3",
            "scalar loss (m = 1) of n parameters",
            "reverse mode is standard in training: m = 1, n = number of parameters",
            f"4-4-1 tanh network, n = {len(parameters)} leaves: reverse {by_reverse.passes} "
            f"sweep / {by_reverse.cost.edge_traversals} edge traversals, forward "
            f"{by_forward.passes} sweeps / {by_forward.cost.edge_traversals}",
            holds=by_reverse.passes == 1
            and by_forward.passes == len(parameters)
            and by_reverse.cost.edge_traversals < by_forward.cost.edge_traversals,
        ),
        *claim(
            "10.3.2",
            "which mode for many outputs and few inputs",
            "for d ≫ 1 outputs and ≪ d inputs (as in supervised learning), reverse mode is vastly "
            "more efficient",
            fan_text,
            holds=fan_reverse.cost.edge_traversals < fan_forward.cost.edge_traversals,
            why="inverted: with many outputs and few inputs forward mode wins ("
            + fan_text
            + "); supervised learning has one output (the loss) and many inputs (the parameters),"
            " which is where reverse mode wins, as the 10.3.3 table says",
        ),
    ]


def _layered_network_cost_records() -> list[Record]:
    """10.3.1: O(|V| + |E|) for L layers of n neurons, measured for growing n."""
    num_layers = 2
    measured = []
    for width in (2, 4, 8):
        graph = _tanh_network_graph(width, (width,) * num_layers)
        values = autodiff.evaluate(graph, _network_inputs(graph))
        seed = {f"h{num_layers - 1}_0": 1.0}
        measured.append((width, autodiff.reverse_mode(graph, values, seed).cost))
    ratios = [cost.edge_traversals / (num_layers * width) for width, cost in measured]
    text = ", ".join(
        f"n = {width}: {cost.node_visits} visits, {cost.edge_traversals} edges"
        for width, cost in measured
    )
    return claim(
        "10.3.1",
        "backward cost of L = 2 layers of n scalar neurons",
        "O(|V| + |E|) is roughly O(L·n) for L layers of n neurons",
        f"{text}; edges / (L·n) = {[round(r, 1) for r in ratios]}",
        holds=max(ratios) < 1.5 * min(ratios),
        why="a dense layer of n neurons reads all n inputs, so |E| grows as L·n² (the number of "
        "weights; here 4n - 1 edges per neuron), not L·n: edges / (L·n) doubles with n",
    )


def _softmax_records() -> list[Record]:
    logits = jnp.array([2.0, 1.0, 0.1])
    labels = jnp.array([1.0, 0.0, 0.0])
    graph = {
        "z": autodiff.leaf(),
        "y": autodiff.leaf(),
        "p": autodiff.apply(autodiff.SOFTMAX, "z"),
        "log_p": autodiff.apply(autodiff.LOG, "p"),
        "y·log_p": autodiff.apply(autodiff.DOT, "y", "log_p"),
        "L": autodiff.apply(autodiff.NEG, "y·log_p"),
    }
    values = autodiff.evaluate(graph, {"z": logits, "y": labels})
    probs = values["p"]
    sweep = autodiff.reverse_mode(graph, values, {"L": 1.0})
    jacobian = activations.softmax_jacobian(probs)
    upstream = sweep.adjoints["p"]
    node_gap = float(jnp.max(jnp.abs(sweep.adjoints["z"] - jacobian.T @ upstream)))
    p_minus_y = probs - labels
    fed_p_minus_y = activations.softmax_vjp(probs, p_minus_y)
    upstream_gap = float(jnp.max(jnp.abs(upstream - p_minus_y)))
    return [
        *claim(
            "10.4.2 eqs. 10.11-10.12",
            "softmax backward z̄ = Jᵀp̄",
            "z̄ = Jᵀp̄ with J_ij = p_i(δ_ij - p_j), i.e. z̄_i = p_i(p̄_i - p̄ᵀp)",
            f"graph z = (2, 1, 0.1), L = -Σ y log p: reverse_mode's z̄ vs explicit Jᵀp̄: max "
            f"|difference| = {node_gap:.1e}",
            holds=node_gap < TOLERANCE,
        ),
        *claim(
            "10.4.2",
            "cross-entropy's upstream adjoint p̄",
            "for cross-entropy p̄_i = p_i - y_i",
            f"p̄ = ∂L/∂p = -y/p = {[round(float(v), 4) for v in upstream]}; p - y = "
            f"{[round(float(v), 4) for v in p_minus_y]}",
            holds=upstream_gap < TOLERANCE,
            why="for L = -Σ y_i log p_i the adjoint of p is p̄_i = -y_i/p_i; p - y is the adjoint "
            "of the logits z (the result of eq. 10.12), not the input to it",
        ),
        *claim(
            "10.4.2",
            "eq. 10.12 applied to p̄ = p - y",
            "with p̄ = p - y, eq. 10.12 gives z̄ = p - y",
            f"Jᵀ(p - y) = {[round(float(v), 4) for v in fed_p_minus_y]}; with the true p̄ = -y/p "
            f"the graph gives z̄ = {[round(float(v), 4) for v in sweep.adjoints['z']]}; p - y = "
            f"{[round(float(v), 4) for v in p_minus_y]}",
            holds=bool(jnp.allclose(fed_p_minus_y, p_minus_y, atol=TOLERANCE)),
            why="z̄ = p - y holds, but it comes from p̄ = -y/p: Jᵀ(-y/p) = p - y; feeding p - y "
            "into 10.12 gives p ⊙ ((p - y) - ⟨p - y, p⟩), a different vector",
        ),
    ]


def records() -> list[Record]:
    return [
        *_worked_example_records(),
        *_sweep_cost_records(),
        *_jacobian_pass_records(),
        *_layered_network_cost_records(),
        *_softmax_records(),
    ]
