"""The shared problem of the chapter 13 studies: an MLP on scikit-learn's handwritten digits.

1797 real 8×8 grey-scale digits (UCI, shipped inside scikit-learn: no download), 10 classes,
split once into 1200 training and 597 validation images. The model is `core.mlp`'s network,
64 -> 64 ReLU -> 10 softmax with cross-entropy (He initialization), in the book's
column-stacked convention, trained by mini-batch steps of any optax optimizer. Small enough
that a few hundred steps take milliseconds once compiled, real enough that the learning rate,
momentum and weight decay all change the validation loss.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

from core import mlp

NUM_TRAIN = 1200
LAYER_SIZES = (64, 64, 10)
MAX_INTENSITY = 16.0  # the digits' pixels are integers 0..16
CHANCE_LOSS = float(np.log(10.0))  # the cross-entropy of the uniform prediction


class Digits(NamedTuple):
    """The split, column-stacked (one image per column, as `core.mlp` expects).

    train_inputs: [64, 1200] pixels scaled to [0, 1]; train_labels: [10, 1200] one-hot.
    validation_inputs: [64, 597]; validation_labels: [10, 597].
    """

    train_inputs: jax.Array
    train_labels: jax.Array
    validation_inputs: jax.Array
    validation_labels: jax.Array


def load(split_seed: int = 0) -> Digits:
    """The digits, shuffled once by `split_seed` and split 1200 / 597.

    Pixels are divided by their known maximum 16, not standardized per pixel: some border pixels
    are almost always 0 in training, and a per-pixel z-score would turn a rare non-zero
    validation value into an input of hundreds.
    """
    digits = load_digits()
    order = np.random.default_rng(split_seed).permutation(len(digits.target))
    inputs = (digits.data[order] / MAX_INTENSITY).T.astype(np.float32)
    labels = np.eye(LAYER_SIZES[-1], dtype=np.float32)[digits.target[order]].T
    return Digits(
        jnp.asarray(inputs[:, :NUM_TRAIN]),
        jnp.asarray(labels[:, :NUM_TRAIN]),
        jnp.asarray(inputs[:, NUM_TRAIN:]),
        jnp.asarray(labels[:, NUM_TRAIN:]),
    )


def init_params(key: jax.Array) -> mlp.Params:
    """He-normal weights and zero biases for the 64-64-10 network (book eq. 11.6)."""
    return mlp.init(key, LAYER_SIZES)


def batch_loss(params: mlp.Params, inputs: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy of a batch (book eqs. 4.10, 6.10); inputs [64, B], labels [10, B]."""
    return mlp.batch_loss(params, inputs, labels, mlp.RELU, mlp.SOFTMAX_CCE)


def batch_indices(key: jax.Array, num_steps: int, batch_size: int) -> jax.Array:
    """[num_steps, batch_size] training-example indices: epochs of fresh permutations."""
    batches_per_epoch = NUM_TRAIN // batch_size
    num_epochs = -(-num_steps // batches_per_epoch)
    epoch_keys = jax.random.split(key, num_epochs)
    orders = jax.vmap(lambda k: jax.random.permutation(k, NUM_TRAIN))(epoch_keys)
    usable = orders[:, : batches_per_epoch * batch_size]
    return usable.reshape(-1, batch_size)[:num_steps]


def train(
    key: jax.Array,
    data: Digits,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    batch_size: int = 64,
) -> tuple[mlp.Params, jax.Array]:
    """Mini-batch training from a fresh initialization; jit-able (a `lax.scan` over steps).

    Args:
      key: initialization and batch order.
      data: the split.
      optimizer: any optax optimizer (e.g. `core.optim.momentum(schedule, 0.9)`).
      num_steps, batch_size: the run's length and batch size.

    Returns:
      (the trained parameters, [num_steps] training batch losses before each step).
    """
    init_key, order_key = jax.random.split(key)
    params = init_params(init_key)

    def step(carry, indices):
        params, optimizer_state = carry
        inputs, labels = data.train_inputs[:, indices], data.train_labels[:, indices]
        loss, gradients = jax.value_and_grad(batch_loss)(params, inputs, labels)
        updates, optimizer_state = optimizer.update(gradients, optimizer_state, params)
        return (optax.apply_updates(params, updates), optimizer_state), loss

    (params, _), losses = jax.lax.scan(
        step, (params, optimizer.init(params)), batch_indices(order_key, num_steps, batch_size)
    )
    return params, losses


def validation_loss(params: mlp.Params, data: Digits) -> jax.Array:
    """Mean validation cross-entropy; NaN or inf when training diverged."""
    return batch_loss(params, data.validation_inputs, data.validation_labels)


def capped(loss: jax.Array) -> jax.Array:
    """A loss with diverged (non-finite) or worse-than-chance values replaced by ln 10."""
    return jnp.where(jnp.isfinite(loss), jnp.minimum(loss, CHANCE_LOSS), CHANCE_LOSS)
