"""Chapter 6: the worked 2→3→1 network, forward pass, backprop and one SGD step (6.1-6.11).

Every printed number of the chapter recomputed with `core.mlp` (forward, per-sample and batch
gradients) and `core.optim.sgd`. The chain drifts from the first loss on; where an erratum can be
traced to its cause (a rounded input, a single sample used for a batch quantity) the note says
so, and where no weighting of the four samples reproduces a printed gradient the note gives the
least-squares residual that rules it out.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from core import activations, losses, mlp, optim
from experiments.book.records import Record, check, claim

LEARNING_RATE = 0.1  # book 6.10
BOOK_AVERAGED_W2_GRADIENT = ("0.0289", "0.0425", "0.0568")  # book eq. 6.56 (and 7.2)
BOOK_W2_NEW = ("0.6971", "0.7958", "0.8943")  # book eq. 6.60
BOOK_B2_NEW = "0.0831"  # book 6.61
BOOK_W1_NEW = ("0.0933", "0.1974", "0.2937", "0.3981", "0.4931", "0.5971")  # book eq. 6.63
BOOK_B1_NEW = ("-0.0032", "0.0094", "0.0142")  # book eq. 6.63


def book_network() -> tuple[mlp.Params, jax.Array, jax.Array]:
    """The parameters of eqs. 6.3-6.4 and the samples of eq. 6.2, column-stacked.

    Returns:
      (params: W^(1) [3, 2], b^(1) [3], W^(2) [1, 3], b^(2) [1]; X: [2, 4]; Y: [1, 4]).
    """
    params = [
        mlp.Layer(
            W=jnp.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]), b=jnp.array([0.01, 0.02, 0.03])
        ),
        mlp.Layer(W=jnp.array([[0.7, 0.8, 0.9]]), b=jnp.array([0.1])),
    ]
    inputs = jnp.array([[0.5, 0.2], [0.9, 0.8], [0.1, 0.3], [0.8, 0.9]]).T
    targets = jnp.array([[0.0, 1.0, 0.0, 1.0]])
    return params, inputs, targets


def sgd_step(params, gradients, learning_rate: float):
    """θ - η g with `core.optim.sgd` (book eq. 6.57), for any parameter pytree."""
    optimizer = optim.sgd(learning_rate)
    updates, _ = optimizer.update(gradients, optimizer.init(params), params)
    return optax.apply_updates(params, updates)


def printed(values) -> np.ndarray:
    """The book's printed numbers as floats, where the book uses them as inputs."""
    return np.asarray([float(v) for v in values])


def _bce_of_probability(probability: float, label: float) -> jax.Array:
    """BCE of a probability the book printed (eq. 6.9), to reproduce its rounded losses."""
    return losses.binary_cross_entropy(jnp.asarray(probability), jnp.asarray(label))


def _residual_from_span(vectors: jax.Array, target: jax.Array) -> float:
    """||target - its least-squares fit by the rows of `vectors`||: 0 iff in their span."""
    coefficients, *_ = jnp.linalg.lstsq(vectors.T, target)
    return float(jnp.linalg.norm(vectors.T @ coefficients - target))


def _flatten(layer: mlp.Layer) -> jax.Array:
    return jnp.concatenate([jnp.ravel(layer.W), jnp.ravel(layer.b)])


def _sample_forward_records(
    params: mlp.Params, cache: mlp.Cache, sample: int, equations: dict[str, str]
) -> list[Record]:
    """z^(1) summands and totals, a^(1), the z^(2) summands and z^(2) of one sample."""
    out = []
    x = cache.A[0][:, sample]
    hidden_z = cache.Z[0][:, sample]
    for unit, (section, summands, total) in enumerate(equations["hidden"]):
        terms = jnp.append(params[0].W[unit] * x, params[0].b[unit])  # the summands of eq. 3.2
        out += check(section, f"z_{unit + 1}^(1) summands W_jk x_k, b_j", summands, terms)
        out += check(section, f"z_{unit + 1}^(1)", total, hidden_z[unit])
    section, printed_a = equations["activation"]
    out += check(section, "a^(1) = ReLU(z^(1))", printed_a, cache.A[1][:, sample])
    section, summands, total = equations["output"]
    terms = jnp.append(params[1].W[0] * cache.A[1][:, sample], params[1].b[0])
    out += check(section, "z^(2) summands W_k a_k, b", summands, terms)
    out += check(section, "z^(2)", total, cache.Z[1][0, sample])
    return out


def _forward_records(params, inputs, targets) -> list[Record]:
    cache = mlp.forward(params, inputs)
    sample_losses = mlp.per_sample_losses(params, inputs, targets)
    y_hat = cache.A[-1][0]
    out = _sample_forward_records(
        params,
        cache,
        0,
        {
            "hidden": [
                ("eq. 6.12", ("0.05", "0.04", "0.01"), "0.10"),
                ("eq. 6.13", ("0.15", "0.08", "0.02"), "0.25"),
                ("eq. 6.14", ("0.25", "0.12", "0.03"), "0.40"),
            ],
            "activation": ("eqs. 6.15-6.16", ("0.10", "0.25", "0.40")),
            "output": ("eqs. 6.18-6.19", ("0.07", "0.20", "0.36", "0.10"), "0.73"),
        },
    )
    z_output = cache.Z[1][0, 0]
    out += check("eq. 6.21", "e^(-0.73)", "0.4819", jnp.exp(-z_output))
    out += check("eq. 6.21", "1 + e^(-0.73)", "1.4819", 1 + jnp.exp(-z_output))
    out += check("eq. 6.21", "ŷ^(1) = σ(0.73)", "0.6748", y_hat[0])
    out += check("eq. 6.22", "1 - ŷ^(1)", "0.3252", 1 - y_hat[0])
    out += check(
        "eq. 6.23",
        "L^(1) = -ln(1 - ŷ^(1))",
        "1.1223",
        sample_losses[0],
        why=(
            f"-ln(1 - {float(y_hat[0]):.6f}) = {float(sample_losses[0]):.4f}, and the book's own "
            f"-ln(0.3252) = {float(_bce_of_probability(0.6748, 0.0)):.4f}: a digit slip "
            "(33 -> 23), not a rounding"
        ),
    )
    out += _sample_forward_records(
        params,
        cache,
        1,
        {
            "hidden": [
                ("eq. 6.25", ("0.09", "0.16", "0.01"), "0.26"),
                ("eq. 6.26", ("0.27", "0.32", "0.02"), "0.61"),
                ("eq. 6.27", ("0.45", "0.48", "0.03"), "0.96"),
            ],
            "activation": ("eq. 6.28", ("0.26", "0.61", "0.96")),
            "output": ("eqs. 6.29-6.30", ("0.182", "0.488", "0.864", "0.1"), "1.634"),
        },
    )
    out += check("eq. 6.31", "ŷ^(2) = σ(1.634)", "0.8367", y_hat[1])
    out += check(
        "eq. 6.32",
        "L^(2) = -ln ŷ^(2)",
        "0.1779",
        sample_losses[1],
        why=(
            f"-ln({float(y_hat[1]):.6f}) = {float(sample_losses[1]):.4f}; the book took "
            f"-ln(0.837) = {float(_bce_of_probability(0.837, 1.0)):.4f}, ŷ rounded to 3 decimals "
            f"(-ln(0.8367) = {float(_bce_of_probability(0.8367, 1.0)):.4f})"
        ),
    )
    for index, (text, section) in enumerate((("0.9502", "L^(3)"), ("0.2148", "L^(4)"))):
        sample = index + 2
        # The ŷ the printed loss needs: L = -ln(1 - ŷ) for y = 0, -ln ŷ for y = 1.
        needed = 1 - np.exp(-float(text)) if targets[0, sample] == 0 else np.exp(-float(text))
        out += check(
            "eq. 6.33",
            f"{section}, 'assumed (as in the current draft)'",
            text,
            sample_losses[sample],
            why=(
                f"the chapter's sample {sample + 1} (x = {np.asarray(inputs[:, sample]).tolist()},"
                f" y = {int(targets[0, sample])}) gives z^(2) = {float(cache.Z[1][0, sample]):.4f},"
                f" ŷ = {float(y_hat[sample]):.4f}, {section} = {float(sample_losses[sample]):.4f};"
                f" the printed value needs ŷ = {needed:.4f}: carried over from another draft, "
                "not reproducible from eqs. 6.2-6.4"
            ),
        )
    return out


def _batch_loss_records(params, inputs, targets) -> list[Record]:
    sample_losses = mlp.per_sample_losses(params, inputs, targets)
    book_losses = printed(("1.1223", "0.1779", "0.9502", "0.2148"))
    cause = (
        "the book's arithmetic on its own four printed losses is right "
        f"(sum {book_losses.sum():.4f}, mean {book_losses.mean():.4f}); the inputs are wrong "
        "(the L^(1), L^(2) slips and the assumed L^(3), L^(4) of eq. 6.33)"
    )
    out = check(
        "eq. 6.35",
        "Σ_i L^(i)",
        "2.4652",
        jnp.sum(sample_losses),
        why=f"Σ_i L^(i) = {float(jnp.sum(sample_losses)):.4f}; {cause}",
    )
    batch = mlp.batch_loss(params, inputs, targets)
    out += check(
        "eq. 6.36",
        "L_batch = (1/4) Σ_i L^(i)",
        "0.6163",
        batch,
        why=f"L_batch = {float(batch):.5f}; {cause}",
    )
    return out


def _sample1_backward_records(params, cache, targets) -> list[Record]:
    deltas = mlp.backpropagate(params, cache, mlp.SIGMOID_BCE.output_delta(cache.A[-1], targets))
    autodiff_delta = jax.grad(lambda z: jnp.sum(mlp.SIGMOID_BCE.per_sample_loss(z, targets)))(
        cache.Z[-1]
    )
    per_sample = mlp.per_sample_gradients(deltas, cache)
    relu_slope = activations.relu_derivative(cache.Z[0][:, 0])
    out = check("eq. 6.44", "δ_1^(2) = ŷ^(1) - y^(1)", "0.6748", deltas[1][0, 0])
    out += claim(
        "eq. 6.37",
        "δ^(2) = ŷ - y (sigmoid + BCE)",
        "δ^(2) = ∂L/∂z^(2) = ŷ - y",
        "Ŷ - Y equals jax.grad of Σ_i L^(i) w.r.t. z^(2) for all four samples",
        holds=bool(jnp.allclose(deltas[1], autodiff_delta, rtol=1e-12, atol=1e-15)),
    )
    out += check(
        "eq. 6.47",
        "∂L^(1)/∂W^(2) = δ_1^(2) a^(1)ᵀ",
        ("0.06748", "0.16870", "0.26992"),
        per_sample[1].W[0],
    )
    out += check("eq. 6.48", "∂L^(1)/∂b^(2) = δ_1^(2)", "0.6748", per_sample[1].b[0])
    hidden_delta = ("0.47236", "0.53984", "0.60732")
    out += check(
        "eq. 6.49",
        "(W^(2))ᵀ δ_1^(2)",
        hidden_delta,
        params[1].W[0] * deltas[1][0, 0],
    )
    out += check("eq. 6.50", "ReLU'(z^(1)) of sample 1", ("1", "1", "1"), relu_slope)
    out += check("eq. 6.50", "δ_1^(1)", hidden_delta, deltas[0][:, 0])
    out += check(
        "eq. 6.53",
        "∂L^(1)/∂W^(1) = δ_1^(1) x^(1)ᵀ",
        ("0.23618", "0.09447", "0.26992", "0.10797", "0.30366", "0.12146"),
        per_sample[0].W[0],
    )
    out += check("eq. 6.54", "∂L^(1)/∂b^(1) = δ_1^(1)", hidden_delta, per_sample[0].b[0])
    return out


def _update_records(params, inputs, targets) -> list[Record]:
    cache = mlp.forward(params, inputs)
    deltas = mlp.backpropagate(params, cache, mlp.SIGMOID_BCE.output_delta(cache.A[-1], targets))
    per_sample = mlp.per_sample_gradients(deltas, cache)
    batch_size = inputs.shape[1]
    gradients = mlp.backward(params, cache, targets)
    updated = sgd_step(params, gradients, LEARNING_RATE)

    book_w2_gradient = printed(BOOK_AVERAGED_W2_GRADIENT)
    rounding = 0.5e-4 * np.sqrt(book_w2_gradient.size)  # the norm of a ±0.00005 rounding error
    w2_residual = _residual_from_span(per_sample[1].W[:, 0, :], jnp.asarray(book_w2_gradient))
    summed = jnp.sum(per_sample[1].W[:, 0, :], axis=0)
    steps = np.diff(book_w2_gradient)
    out = check(
        "eq. 6.56",
        "∂L_batch/∂W^(2), 'as summarized in the current draft'",
        BOOK_AVERAGED_W2_GRADIENT,
        gradients[1].W[0],
        why=(
            "the mean of the 4 per-sample gradients is "
            f"{np.round(np.asarray(gradients[1].W[0]), 4).tolist()} (their sum "
            f"{np.round(np.asarray(summed), 4).tolist()}, sample 1 alone "
            f"{np.round(np.asarray(per_sample[1].W[0, 0]), 4).tolist()}); not reproducible: no "
            "weighting of the samples' gradients (mean, sum, subset, /m²) comes within rounding "
            f"of the printed one (least-squares residual {w2_residual:.1e} > {rounding:.1e}), "
            "since every ∂L/∂W^(2) of this network is an arithmetic progression (the rows of "
            f"W^(1), b^(1) are) and the printed one is not (steps {steps[0]:.4f}, {steps[1]:.4f})"
        ),
    )

    from_book_gradient = sgd_step(
        params[1].W[0], jnp.asarray(book_w2_gradient), LEARNING_RATE
    )  # the book's own arithmetic in eq. 6.59
    out += check(
        "eq. 6.60",
        "W^(2)_new = W^(2) - 0.1 ∂L_batch/∂W^(2)",
        BOOK_W2_NEW,
        updated[1].W[0],
        why=(
            f"with the correct gradient W^(2)_new = "
            f"{np.round(np.asarray(updated[1].W[0]), 4).tolist()}; the printed values follow "
            "from eq. 6.56's wrong gradient (0.7 - 0.1·0.0289 = "
            f"{float(from_book_gradient[0]):.4f}, arithmetic right)"
        ),
    )
    out += check(
        "eq. 6.59-6.60",
        "W^(2) - 0.1·[0.0289, 0.0425, 0.0568], the book's step on its printed gradient",
        BOOK_W2_NEW,
        from_book_gradient,
        note="core.optim.sgd(0.1) applied to the printed gradient",
    )
    sample1_bias_gradient = per_sample[1].b[0] / batch_size
    sample1_step = sgd_step(params[1].b, sample1_bias_gradient, LEARNING_RATE)
    out += check(
        "eq. 6.61",
        "b^(2)_new 'as reported in the current draft'",
        BOOK_B2_NEW,
        updated[1].b[0],
        why=(
            f"∂L_batch/∂b^(2) = mean δ^(2) = {float(gradients[1].b[0]):.4f}, so b^(2)_new = "
            f"{float(updated[1].b[0]):.4f}; the book's 0.0831 is sample 1's delta alone divided "
            f"by m: 0.1 - 0.1·0.6748/4 = {float(sample1_step[0]):.4f}"
        ),
    )

    book_updated = _book_updated_params()
    implied = jax.tree.map(  # the layer-1 gradient the printed update implies
        lambda old, new: (old - new) / LEARNING_RATE, params[0], book_updated[0]
    )
    per_sample_layer1 = jax.vmap(_flatten)(per_sample[0])
    layer1_residual = _residual_from_span(per_sample_layer1, _flatten(implied))
    layer1_rounding = 0.5e-4 / LEARNING_RATE * np.sqrt(per_sample_layer1.shape[1])
    why_layer1 = (
        "with the correct gradient W^(1)_new = "
        f"{np.round(np.asarray(updated[0].W), 4).tolist()}, b^(1)_new = "
        f"{np.round(np.asarray(updated[0].b), 4).tolist()}; not reproducible: the implied "
        f"gradient (θ - θ_new)/0.1 has W {np.round(np.asarray(implied.W), 3).tolist()}, "
        f"b {np.round(np.asarray(implied.b), 3).tolist()}, but with every ReLU active each "
        "∂L/∂b^(1) is a multiple of W^(2)ᵀ = [0.7, 0.8, 0.9]; no weighting of the samples "
        f"comes within rounding (least-squares residual {layer1_residual:.1e} > "
        f"{layer1_rounding:.1e})"
    )
    out += check(
        "eq. 6.63",
        "W^(1)_new 'as summarized in the current draft'",
        BOOK_W1_NEW,
        updated[0].W,
        why=why_layer1,
    )
    out += check(
        "eq. 6.63",
        "b^(1)_new",
        BOOK_B1_NEW,
        updated[0].b,
        why=why_layer1,
    )
    return out


def _book_updated_params() -> mlp.Params:
    """The updated parameters as printed in eqs. 6.60, 6.61 and 6.63."""
    return [
        mlp.Layer(
            W=jnp.asarray(printed(BOOK_W1_NEW).reshape(3, 2)), b=jnp.asarray(printed(BOOK_B1_NEW))
        ),
        mlp.Layer(
            W=jnp.asarray(printed(BOOK_W2_NEW))[None, :], b=jnp.asarray(printed((BOOK_B2_NEW,)))
        ),
    ]


def _second_iteration_records(params, inputs, targets) -> list[Record]:
    gradients = mlp.backward(params, mlp.forward(params, inputs), targets)
    updated = sgd_step(params, gradients, LEARNING_RATE)
    sample1 = (inputs[:, :1], targets[:, :1])
    new_cache = mlp.forward(updated, sample1[0])
    book_cache = mlp.forward(_book_updated_params(), sample1[0])
    new_loss = mlp.per_sample_losses(updated, *sample1)[0]
    old_loss = mlp.per_sample_losses(params, *sample1)[0]
    book_z = printed(("0.0872", "0.2388", "0.3834"))
    book_output_layer = _book_updated_params()[1]
    book_output_z = book_output_layer.W @ book_z + book_output_layer.b
    new_y_hat = new_cache.A[-1][0, 0]

    why_hidden = (
        f"after the correct step z^(1) = {np.round(np.asarray(new_cache.Z[0][:, 0]), 4).tolist()};"
        " the book's own updated parameters (6.60-6.63) give "
        f"{np.round(np.asarray(book_cache.Z[0][:, 0]), 4).tolist()}, so 6.64 does not follow "
        "from 6.63 either: not reproducible"
    )
    out = check("eq. 6.64", "z^(1)_new of sample 1", book_z, new_cache.Z[0][:, 0], why=why_hidden)
    out += check("eq. 6.64", "a^(1)_new of sample 1", book_z, new_cache.A[1][:, 0], why=why_hidden)
    out += check(
        "eq. 6.65",
        "z^(2)_new of sample 1",
        "0.6772",
        new_cache.Z[1][0, 0],
        why=(
            f"after the correct step z^(2) = {float(new_cache.Z[1][0, 0]):.4f}; the book's "
            f"W^(2)_new, b^(2)_new with its a^(1)_new give {float(book_output_z[0]):.4f}"
        ),
    )
    out += check(
        "eq. 6.65",
        "ŷ^(1)_new = σ(z^(2)_new)",
        "0.6636",
        new_y_hat,
        why=(
            f"σ({float(new_cache.Z[1][0, 0]):.4f}) = {float(new_y_hat):.4f}; even the book's "
            f"σ(0.6772) is {float(activations.sigmoid(0.6772)):.4f}, not 0.6636"
        ),
    )
    out += check(
        "eq. 6.66",
        "1 - ŷ^(1)_new",
        "0.3364",
        1 - new_y_hat,
        why=f"1 - {float(new_y_hat):.4f}; the book's 1 - 0.6636 is consistent with its ŷ",
    )
    out += check(
        "eq. 6.66",
        "L^(1)_new = -ln(1 - ŷ^(1)_new)",
        "1.0898",
        new_loss,
        why=(
            f"L^(1)_new = {float(new_loss):.4f}; even the book's -ln(0.3364) is "
            f"{float(_bce_of_probability(0.6636, 0.0)):.4f}, not 1.0898"
        ),
    )
    new_batch_loss = mlp.batch_loss(updated, inputs, targets)
    old_batch_loss = mlp.batch_loss(params, inputs, targets)
    out += claim(
        "6.11",
        "the step decreases the loss",
        "the loss of sample 1 decreases from ≈ 1.1223 to ≈ 1.0898",
        f"L^(1): {float(old_loss):.4f} -> {float(new_loss):.4f}; "
        f"L_batch: {float(old_batch_loss):.4f} -> {float(new_batch_loss):.4f}",
        holds=bool(new_loss < old_loss and new_batch_loss < old_batch_loss),
        note="both the sample-1 loss and the batch loss decrease after the correct step",
    )
    return out


def records() -> list[Record]:
    params, inputs, targets = book_network()
    cache = mlp.forward(params, inputs)
    return [
        *_forward_records(params, inputs, targets),
        *_batch_loss_records(params, inputs, targets),
        *_sample1_backward_records(params, cache, targets),
        *_update_records(params, inputs, targets),
        *_second_iteration_records(params, inputs, targets),
    ]
