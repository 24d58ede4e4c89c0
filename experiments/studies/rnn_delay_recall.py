"""Book 15.6.2 and 15.6.4: a vanilla RNN loses a token over a long delay; attention does not.

The task: a sequence of delay + 1 random tokens (one of K, one-hot); after reading all of them
the model must name the first (many-to-one classification, chance 1/K), so the answer depends
on an input `delay` steps back. A vanilla tanh RNN (`core.rnn`, orthogonal W_hh, trained by the
hand-written BPTT of `core.rnn.train`) is compared with a one-layer pre-norm transformer encoder
from `core.transformer` (sinusoidal positions from `core.position_encoding`, read out at the
last token). Each model is trained afresh for every delay and seed with clipped Adam, and scored
on fresh sequences. Adam rescales small gradients, which lets the RNN learn longer delays than
plain SGD would: the comparison is at a fixed budget of steps.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from matplotlib.figure import Figure

from core import attention, losses, mlp, optim, position_encoding, rnn, transformer
from experiments.studies.common import StudyResult

NUM_TOKENS = 8  # K; chance accuracy is 1/K
LEARNING_RATE = 3e-3
MAX_GRADIENT_NORM = 1.0


def _sizes(tiny: bool) -> dict:
    if tiny:
        return dict(
            delays=(2, 24),
            seeds=1,
            batch=32,
            eval_batch=256,
            rnn_hidden=16,
            rnn_steps=200,
            model_dim=16,
            ffn_dim=32,
            transformer_steps=200,
        )
    return dict(
        delays=(4, 16, 24, 32, 64),
        seeds=2,
        batch=32,
        eval_batch=1024,
        rnn_hidden=32,
        rnn_steps=1000,
        model_dim=32,
        ffn_dim=64,
        transformer_steps=200,
    )


class RecallBatch(NamedTuple):
    """inputs: [B, T, K] one-hot tokens, zero at padding; labels: [B] the first real token;
    is_pad: [B, T] True at the padding that fills the front of a sequence shorter than T."""

    inputs: jax.Array
    labels: jax.Array
    is_pad: jax.Array


def first_token_batch(key: jax.Array, delay: jax.Array | int, batch: int, length: int):
    """A `RecallBatch` of delay + 1 random tokens each, right-aligned in `length` positions.

    Args:
      key: `jax.random` key.
      delay: tokens read after the one to recall (may be traced), at most length - 1.
      batch: B.
      length: T >= delay + 1; the RNN takes T = delay + 1 (no padding).
    """
    tokens = jax.random.randint(key, (batch, length), 0, NUM_TOKENS)
    first = length - 1 - delay
    is_pad = jnp.broadcast_to(jnp.arange(length) < first, (batch, length))
    inputs = jax.nn.one_hot(tokens, NUM_TOKENS) * ~is_pad[..., None]
    return RecallBatch(inputs, jnp.take(tokens, first, axis=1), is_pad)


class TransformerRecall(nn.Module):
    """Input projection + sinusoidal positions -> `core.transformer` encoder -> class logits of
    the last token. Padding keys are masked out and positions count from the first real token,
    so a padded sequence gives exactly the logits of its unpadded self."""

    config: transformer.TransformerLayerConfig
    num_layers: int = 1

    @nn.compact
    def __call__(self, inputs: jax.Array, is_pad: jax.Array) -> jax.Array:
        """inputs: [B, T, K]; is_pad: [B, T] -> [B, K] logits."""
        tokens = nn.Dense(self.config.model_dim, name="embed")(inputs)
        table = position_encoding.sinusoidal_table(inputs.shape[1], self.config.model_dim)
        position_index = jnp.maximum(jnp.cumsum(~is_pad, axis=1) - 1, 0)  # 0 at the first token
        encoded = transformer.TransformerEncoder(self.config, self.num_layers, final_norm=True)(
            tokens,
            pos=table[position_index],
            mask=attention.key_padding_mask(is_pad),
            deterministic=True,
        )
        return nn.Dense(NUM_TOKENS, name="readout")(encoded[:, -1])


def _optimizer() -> optax.GradientTransformation:
    return optax.chain(optim.clip_by_global_norm(MAX_GRADIENT_NORM), optim.adam(LEARNING_RATE))


def _accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def _rnn_accuracy(sizes: dict, delay: int, seed: jax.Array) -> jax.Array:
    """Trains a fresh RNN for one delay and seed; returns its accuracy on fresh sequences."""
    init_key, train_key, eval_key = jax.random.split(jax.random.key(seed), 3)

    def sample_batch(key):
        batch = first_token_batch(key, delay, sizes["batch"], length=delay + 1)
        return batch.inputs, jax.nn.one_hot(batch.labels, NUM_TOKENS)

    params = rnn.init(init_key, NUM_TOKENS, sizes["rnn_hidden"], NUM_TOKENS)
    trained = rnn.train(
        params,
        _optimizer(),
        sample_batch,
        train_key,
        sizes["rnn_steps"],
        rnn.TANH,
        mlp.SOFTMAX_CCE,
        "many_to_one",
    ).params
    test = first_token_batch(eval_key, delay, sizes["eval_batch"], length=delay + 1)
    last_hidden = rnn.forward(trained, test.inputs, rnn.TANH)[:, -1:]
    return _accuracy(rnn.output_logits(trained, last_hidden)[:, 0], test.labels)


def _transformer_accuracy(model, sizes: dict, params, delay: jax.Array, seed: jax.Array):
    """Trains the transformer from `params` for one delay and seed; returns its accuracy on
    fresh sequences. Sequences are padded to the longest delay, so all delays share one
    compilation."""
    train_key, eval_key = jax.random.split(jax.random.key(seed))
    length = max(sizes["delays"]) + 1
    optimizer = _optimizer()

    def loss(params, batch: RecallBatch):
        logits = model.apply(params, batch.inputs, batch.is_pad)
        return jnp.mean(losses.categorical_cross_entropy_integer_labels(logits, batch.labels))

    def step(carry, step_index):
        params, optimizer_state = carry
        batch_key = jax.random.fold_in(train_key, step_index)
        batch = first_token_batch(batch_key, delay, sizes["batch"], length)
        updates, optimizer_state = optimizer.update(
            jax.grad(loss)(params, batch), optimizer_state, params
        )
        return (optax.apply_updates(params, updates), optimizer_state), None

    (params, _), _ = jax.lax.scan(
        step, (params, optimizer.init(params)), jnp.arange(sizes["transformer_steps"])
    )
    test = first_token_batch(eval_key, delay, sizes["eval_batch"], length)
    return _accuracy(model.apply(params, test.inputs, test.is_pad), test.labels)


def _parameter_count(params) -> int:
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))


def _rnn_over_delays_and_seeds(sizes: dict) -> np.ndarray:
    """[num_delays, seeds] accuracies: one compilation per delay (the sequence length), the
    seeds vmapped."""
    seeds = jnp.arange(sizes["seeds"])
    return np.stack(
        [
            np.asarray(jax.jit(jax.vmap(functools.partial(_rnn_accuracy, sizes, delay)))(seeds))
            for delay in sizes["delays"]
        ]
    )


def _transformer_init(model, seed: int):
    example = first_token_batch(jax.random.key(0), 1, 1, length=2)
    return model.init(jax.random.key(seed), example.inputs, example.is_pad)


def _transformer_over_delays_and_seeds(model, sizes: dict) -> np.ndarray:
    """[num_delays, seeds] accuracies in one compilation, delays and seeds vmapped (the
    initial parameters are drawn outside it, eagerly, once per seed)."""
    delays, seeds = np.meshgrid(sizes["delays"], np.arange(sizes["seeds"]), indexing="ij")
    initial = [_transformer_init(model, seed) for seed in range(sizes["seeds"])]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves)[seeds.ravel()], *initial)
    accuracy_of = jax.vmap(functools.partial(_transformer_accuracy, model, sizes))
    accuracies = jax.jit(accuracy_of)(stacked, jnp.asarray(delays.ravel()), seeds.ravel())
    return np.asarray(accuracies).reshape(delays.shape)


def _plot(sizes, accuracy, parameters) -> Figure:
    figure = Figure(figsize=(7.5, 5))
    axes = figure.subplots()
    delays = np.asarray(sizes["delays"])
    labels = {
        "RNN": f"vanilla tanh RNN, d_h = {sizes['rnn_hidden']}, {sizes['rnn_steps']} steps",
        "transformer": f"1-layer transformer, d = {sizes['model_dim']}, "
        f"{sizes['transformer_steps']} steps",
    }
    for (name, values), (marker, color) in zip(
        accuracy.items(), (("o", "tab:red"), ("s", "tab:blue")), strict=True
    ):
        label = f"{labels[name]} ({parameters[name]:,} params)"
        axes.plot(delays, values.mean(axis=1), marker + "-", color=color, label=label)
        for seed_values in values.T:
            axes.plot(delays, seed_values, marker, color=color, alpha=0.35, markersize=4)
    chance = 1.0 / NUM_TOKENS
    axes.axhline(chance, color="grey", linestyle=":", label=f"chance 1/K = {chance:.3f}")
    axes.set(
        ylim=(0, 1.05),
        xlabel="delay (tokens read after the one to recall)",
        ylabel="recall accuracy on fresh sequences",
        title=f"Recall the first of delay + 1 tokens (K = {NUM_TOKENS}; "
        f"line: mean of {sizes['seeds']} seeds, dots: each)",
    )
    axes.legend(fontsize=8, loc="center left")
    figure.tight_layout()
    return figure


def run(tiny: bool = False) -> StudyResult:
    sizes = _sizes(tiny)
    config = transformer.TransformerLayerConfig(
        model_dim=sizes["model_dim"],
        num_heads=2,
        ffn_dim=sizes["ffn_dim"],
        dropout_rate=0.0,
        pre_norm=True,
    )
    model = TransformerRecall(config)
    accuracy = {
        "RNN": _rnn_over_delays_and_seeds(sizes),
        "transformer": _transformer_over_delays_and_seeds(model, sizes),
    }
    parameters = {
        "RNN": _parameter_count(
            rnn.init(jax.random.key(0), NUM_TOKENS, sizes["rnn_hidden"], NUM_TOKENS)
        ),
        "transformer": _parameter_count(_transformer_init(model, 0)),
    }
    delays = np.asarray(sizes["delays"])
    mean = {name: values.mean(axis=1) for name, values in accuracy.items()}
    chance = 1.0 / NUM_TOKENS
    rnn_learned = delays[mean["RNN"] >= 0.95]
    rnn_failed = delays[mean["RNN"] < 0.5]
    figures = {
        "delays": delays.tolist(),
        "chance": chance,
        "accuracy_per_seed": {name: values.tolist() for name, values in accuracy.items()},
        "mean_accuracy": {name: values.tolist() for name, values in mean.items()},
        "parameters": parameters,
        "training_steps": {"RNN": sizes["rnn_steps"], "transformer": sizes["transformer_steps"]},
        "rnn_longest_delay_at_least_0.95": int(rnn_learned.max()) if len(rnn_learned) else None,
        "rnn_first_delay_below_0.5": int(rnn_failed[0]) if len(rnn_failed) else None,
    }
    longest = accuracy["RNN"][-1]
    finding = (
        f"After {sizes['rnn_steps']} steps the RNN recalls ≥ 95% up to delay "
        f"{figures['rnn_longest_delay_at_least_0.95']} and {mean['RNN'][-1]:.2f} at delay "
        f"{delays[-1]} (seeds {longest.min():.2f}-{longest.max():.2f}, chance {chance:.3f}); "
        f"the transformer, after {sizes['transformer_steps']} steps, scores "
        f"{mean['transformer'].min():.2f} or more at every delay."
    )
    return StudyResult(
        claim=(
            "Book 15.6.2: through many steps the gradient vanishes, so a vanilla RNN relies on "
            "recent inputs and cannot learn long-term dependencies; attention (15.6.4) connects "
            "any two positions directly."
        ),
        finding=finding,
        figures=figures,
        figure=_plot(sizes, accuracy, parameters),
    )
