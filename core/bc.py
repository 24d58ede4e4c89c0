"""Book 16.8.1-16.8.2 with 16.3.2-16.3.3: behavioral-cloning baselines, an MLP on the state and a
small CNN on camera images, each with an MSE or a diagonal-Gaussian NLL head.

Behavioral cloning (Definition 16.9) fits π_θ(o) to demonstrations D = {(o_i, a_i*)} by
supervised regression. Two heads:

- "mse" (eq. 16.39): L = E ||a* - μ_θ(o)||², the squared error summed over the Da action
  dimensions and averaged over the valid (sample, chunk step) pairs. Its minimizer is the
  conditional mean E[a* | o], which for a multimodal P(a | o) (eq. 16.38) lies between the modes
  (16.3.3): on `obstacle` the average of "pass left" and "pass right" is "go straight".
- "gaussian_nll" (eqs. 16.33, 16.62): L = E -log N(a*; μ_θ(o), diag σ_θ(o)²), also averaged
  over the valid pairs. σ = σ_min + softplus(s_θ(o)) keeps σ positive with a floor σ_min:
  demonstrations are deterministic within a mode, and without a floor the NLL drives σ → 0 and
  diverges where the data are unimodal. A single Gaussian does not solve multimodality either:
  for targets ±1 its optimum is μ = 0, σ = 1 (the moments of the data), one wide mode centred
  on the average. At evaluation `predict_chunk` returns μ (the default) or, with
  `sample_actions`, a draw μ + σ ε, ε ~ N(0, I), i.e. a unimodal spread around the average,
  not a choice between the modes.

The policy predicts a chunk of k actions a_{t:t+k-1} (k = 1 is classic BC; 17.2 motivates
k > 1) from the To most recent observations o_{t-To+1:t}. Losses are masked by
`action_is_pad` (chunk steps past the episode end, `core.data.sampler`).

Networks (architecture only, `BCNetwork`): the state features (e.g. "observation.state" and, for
state-based experiments, "observation.environment_state") of the window are flattened and
concatenated; each camera image of each window step goes through one shared
`ImageKeypointEncoder` (a small conv stack with a stride-4 patchify stem, then spatial-softmax
keypoints, book 16.4 / 18.5, `core.spatial_softmax`); an MLP with ReLU maps the concatenation
to the chunk's means (and the pre-softplus σ). `BCPolicy` holds the hyper-parameters and
implements `core.policy.Policy`; `mlp_policy` and `cnn_policy` build one from a dataset's
feature specification.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from core.checks import check_shapes
from core.losses import gaussian_nll, masked_mean, sum_squared_error
from core.policy import Batch, Metrics, Variables
from core.spatial_softmax import SpatialSoftmax

HEADS = ("mse", "gaussian_nll")
IMAGE_PREFIX = "observation.images."
FLOAT_DTYPES = ("float32", "float64")
STEM_STRIDE = 4
"""Kernel size and stride of the image encoder's first (patchify) conv."""


def bc_mse_loss(
    predicted_actions: jax.Array, actions: jax.Array, action_is_pad: jax.Array
) -> jax.Array:
    """E ||a* - μ||² over the valid chunk steps (book eq. 16.39).

    Args:
      predicted_actions: [B, k, Da] μ_θ(o), normalized.
      actions: [B, k, Da] demonstrated a*, normalized.
      action_is_pad: [B, k] bool, true for chunk steps past the episode end (ignored).

    Returns:
      [] Σ_{valid (b, j)} ||a*_{bj} - μ_{bj}||² / #valid (0 if nothing is valid).
    """
    check_shapes(
        predicted_actions=(predicted_actions, ("B", "k", "Da")),
        actions=(actions, ("B", "k", "Da")),
        action_is_pad=(action_is_pad, ("B", "k")),
    )
    return masked_mean(sum_squared_error(predicted_actions, actions), ~action_is_pad)


def bc_gaussian_nll_loss(
    mean: jax.Array, log_std: jax.Array, actions: jax.Array, action_is_pad: jax.Array
) -> jax.Array:
    """E -log N(a*; μ, diag σ²) over the valid chunk steps (book eqs. 16.62, 16.33).

    Eq. 16.33 as printed sums only log σ_i over i and leaves the quadratic term outside the sum;
    the negative log density of a diagonal Gaussian sums both, as `core.losses.gaussian_nll`.

    Args:
      mean: [B, k, Da] μ_θ(o), normalized.
      log_std: [B, k, Da] log σ_θ(o).
      actions: [B, k, Da] demonstrated a*, normalized.
      action_is_pad: [B, k] bool, true for chunk steps past the episode end (ignored).

    Returns:
      [] the mean over valid (b, j) of Da/2 log 2π + Σ_i [log σ_i + (a_i - μ_i)² / (2σ_i²)].
    """
    check_shapes(
        mean=(mean, ("B", "k", "Da")),
        log_std=(log_std, ("B", "k", "Da")),
        actions=(actions, ("B", "k", "Da")),
        action_is_pad=(action_is_pad, ("B", "k")),
    )
    return masked_mean(gaussian_nll(actions, mean, log_std), ~action_is_pad)


def std_from_logit(std_logit: jax.Array, min_std: float) -> jax.Array:
    """σ = σ_min + softplus(s): positive, at least σ_min, and smooth in s. Any shape."""
    return min_std + jax.nn.softplus(std_logit)


class ImageKeypointEncoder(nn.Module):
    """Small conv stack -> spatial-softmax keypoints: [N, H, W, 3] -> [N, 2K].

    The first layer is a "patchify" stem, a STEM_STRIDE×STEM_STRIDE conv with the same stride
    (ConvNeXt's stem; 64 px -> 16×16): convolutions at full resolution with few channels are
    what costs most on a CPU (a 5×5/2 stem of 32 channels at 64 px made a train step ~50x
    slower here). The other layers are 3×3 'SAME' convs with stride 1; every conv is followed
    by ReLU.

    Attributes:
      conv_channels: output channels of each conv layer, the stem first.
      num_keypoints: K, the keypoints of the spatial softmax (a 1×1 projection to K channels).
    """

    conv_channels: Sequence[int]
    num_keypoints: int

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        """images: [N, H, W, 3] in [0, 1] -> [N, 2K] keypoint coordinates (x, y) in [-1, 1]."""
        features = images
        for index, channels in enumerate(self.conv_channels):
            stem = index == 0
            features = nn.Conv(
                channels,
                (STEM_STRIDE, STEM_STRIDE) if stem else (3, 3),
                strides=STEM_STRIDE if stem else 1,
                padding="VALID" if stem else "SAME",
                name=f"conv{index}",
            )(features)
            features = nn.relu(features)
        keypoints = SpatialSoftmax(self.num_keypoints, name="keypoints")(features)
        return keypoints.reshape(keypoints.shape[0], -1)


class BCNetwork(nn.Module):
    """Observation window -> (means, pre-softplus σ) of an action chunk.

    Attributes:
      state_keys: vector observation features, each [B, To, D_key], flattened and concatenated.
      image_keys: camera features, each [B, To, H, W, 3], encoded by one shared
        `ImageKeypointEncoder` per window step.
      hidden_sizes: widths of the ReLU hidden layers of the MLP.
      conv_channels, num_keypoints: the image encoder's (unused without image_keys).
      action_horizon: k; action_dim: Da.
      predict_std: also output the σ head (the Gaussian NLL head).
    """

    state_keys: Sequence[str]
    image_keys: Sequence[str]
    hidden_sizes: Sequence[int]
    conv_channels: Sequence[int]
    num_keypoints: int
    action_horizon: int
    action_dim: int
    predict_std: bool

    @nn.compact
    def __call__(self, observation: Batch) -> tuple[jax.Array, jax.Array | None]:
        """observation: the keys above -> (mean [B, k, Da], std_logit [B, k, Da] or None)."""
        parts = []
        for key in self.state_keys:
            state = observation[key]
            parts.append(state.reshape(state.shape[0], -1))
        if self.image_keys:
            encoder = ImageKeypointEncoder(
                self.conv_channels, self.num_keypoints, name="image_encoder"
            )
            for key in self.image_keys:
                images = observation[key]
                keypoints = encoder(images.reshape(-1, *images.shape[2:]))
                parts.append(keypoints.reshape(images.shape[0], -1))
        hidden = jnp.concatenate(parts, axis=-1)
        for index, width in enumerate(self.hidden_sizes):
            hidden = nn.relu(nn.Dense(width, name=f"hidden{index}")(hidden))
        chunk_shape = (hidden.shape[0], self.action_horizon, self.action_dim)
        chunk_size = self.action_horizon * self.action_dim
        mean = nn.Dense(chunk_size, name="mean")(hidden).reshape(chunk_shape)
        if not self.predict_std:
            return mean, None
        std_logit = nn.Dense(chunk_size, name="std_logit")(hidden).reshape(chunk_shape)
        return mean, std_logit


def _positive_ints(name: str, values: Sequence[int], allow_empty: bool) -> None:
    if (not values and not allow_empty) or any(int(v) < 1 for v in values):
        raise ValueError(f"{name} must be positive ints, got {tuple(values)}")


@dataclasses.dataclass(frozen=True)
class BCPolicy:
    """A behavioral-cloning policy (module docstring): hyper-parameters only, hashable.

    Attributes:
      action_dim: Da.
      state_keys: vector observation features (may be empty when images are given).
      image_keys: camera features "observation.images.<camera>" (empty for the MLP policy).
      observation_horizon: To; action_horizon: k (1 = classic single-step BC).
      head: "mse" (eq. 16.39) or "gaussian_nll" (eq. 16.62).
      hidden_sizes: the MLP's hidden widths.
      conv_channels, num_keypoints: the image encoder's (see `ImageKeypointEncoder`).
      min_std: σ_min of the Gaussian head (normalized action units).
      sample_actions: with the Gaussian head, `predict_chunk` samples μ + σ ε instead of
        returning μ.
    """

    action_dim: int
    state_keys: tuple[str, ...] = ("observation.state",)
    image_keys: tuple[str, ...] = ()
    observation_horizon: int = 1
    action_horizon: int = 1
    head: str = "mse"
    hidden_sizes: tuple[int, ...] = (256, 256)
    conv_channels: tuple[int, ...] = (16, 32)
    num_keypoints: int = 32
    min_std: float = 0.01
    sample_actions: bool = False

    def __post_init__(self):
        # configs restored from JSON carry lists; tuples keep the policy hashable (jit-static)
        for name in ("state_keys", "image_keys", "hidden_sizes", "conv_channels"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        _positive_ints("action_dim", (self.action_dim,), allow_empty=False)
        _positive_ints("observation_horizon", (self.observation_horizon,), allow_empty=False)
        _positive_ints("action_horizon", (self.action_horizon,), allow_empty=False)
        _positive_ints("hidden_sizes", self.hidden_sizes, allow_empty=True)
        _positive_ints("conv_channels", self.conv_channels, allow_empty=False)
        _positive_ints("num_keypoints", (self.num_keypoints,), allow_empty=False)
        if not self.state_keys and not self.image_keys:
            raise ValueError("a BC policy needs at least one state key or image key")
        bad_images = [key for key in self.image_keys if not key.startswith(IMAGE_PREFIX)]
        if bad_images:
            raise ValueError(f"image_keys must start with {IMAGE_PREFIX!r}, got {bad_images}")
        if not self.min_std > 0:
            raise ValueError(f"min_std must be positive, got {self.min_std}")
        if self.sample_actions and self.head != "gaussian_nll":
            raise ValueError(f"sample_actions needs head='gaussian_nll', got head={self.head!r}")

    @property
    def observation_keys(self) -> tuple[str, ...]:
        return self.state_keys + self.image_keys

    @property
    def network(self) -> BCNetwork:
        return BCNetwork(
            state_keys=self.state_keys,
            image_keys=self.image_keys,
            hidden_sizes=self.hidden_sizes,
            conv_channels=self.conv_channels,
            num_keypoints=self.num_keypoints,
            action_horizon=self.action_horizon,
            action_dim=self.action_dim,
            predict_std=self.head == "gaussian_nll",
        )

    def _check_observation(self, observation: Batch) -> dict[str, int]:
        missing = [key for key in self.observation_keys if key not in observation]
        if missing:
            raise ValueError(f"observation lacks {missing}; it has {sorted(observation)}")
        window = ("B", self.observation_horizon)
        return check_shapes(
            **{key: (observation[key], (*window, None)) for key in self.state_keys},
            **{key: (observation[key], (*window, None, None, 3)) for key in self.image_keys},
        )

    def _check_actions(self, batch: Batch, batch_size: int) -> None:
        for key in ("action", "action_is_pad"):
            if key not in batch:
                raise ValueError(f"batch lacks {key!r}; it has {sorted(batch)}")
        chunk = (batch_size, self.action_horizon)
        check_shapes(
            action=(batch["action"], (*chunk, self.action_dim)),
            action_is_pad=(batch["action_is_pad"], chunk),
        )

    def init(self, rng: jax.Array, batch: Batch) -> Variables:
        """{"params": ...} shaped by an example batch (observation keys suffice)."""
        self._check_observation(batch)
        observation = {key: batch[key] for key in self.observation_keys}
        return self.network.init(rng, observation)

    def action_distribution(
        self, variables: Variables, observation: Batch
    ) -> tuple[jax.Array, jax.Array | None]:
        """(μ [B, k, Da], σ [B, k, Da] or None for the MSE head), normalized action units.

        observation: the policy's observation keys, each [B, To, ...].
        """
        self._check_observation(observation)
        mean, std_logit = self.network.apply(variables, observation)
        std = None if std_logit is None else std_from_logit(std_logit, self.min_std)
        return mean, std

    def loss(
        self, variables: Variables, batch: Batch, rng: jax.Array, step: jax.Array
    ) -> tuple[jax.Array, Metrics]:
        """The head's loss over the valid chunk steps and metrics.

        BC is deterministic in training: `rng` and `step` are unused. Metrics: "mse"
        (eq. 16.39) always; the Gaussian head adds "nll" (eq. 16.62, the loss) and "std", the
        mean predicted σ.

        batch: the observation keys [B, To, ...], action [B, k, Da], action_is_pad [B, k].
        """
        sizes = self._check_observation(batch)
        self._check_actions(batch, sizes["B"])
        actions, action_is_pad = batch["action"], batch["action_is_pad"]
        mean, std = self.action_distribution(variables, batch)
        mse = bc_mse_loss(mean, actions, action_is_pad)
        if std is None:
            return mse, {"mse": mse}
        nll = bc_gaussian_nll_loss(mean, jnp.log(std), actions, action_is_pad)
        return nll, {"nll": nll, "mse": mse, "std": masked_mean(std, ~action_is_pad)}

    def predict_chunk(self, variables: Variables, observation: Batch, rng: jax.Array) -> jax.Array:
        """[B, k, Da] normalized chunk: μ, or μ + σ ε with `sample_actions` (ε from `rng`)."""
        mean, std = self.action_distribution(variables, observation)
        if not self.sample_actions:
            return mean
        return mean + std * jax.random.normal(rng, mean.shape, mean.dtype)


def _action_dim(features: Mapping[str, Mapping[str, Any]]) -> int:
    if "action" not in features:
        raise ValueError(f"features lack 'action'; they have {sorted(features)}")
    return int(features["action"]["shape"][-1])


def _check_known(features: Mapping[str, Mapping[str, Any]], name: str, keys: Sequence[str]):
    unknown = sorted(set(keys) - set(features))
    if unknown:
        raise ValueError(f"{name} {unknown} are not dataset features; have {sorted(features)}")


def _check_options(policy_name: str, options: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"{policy_name} has no option(s) {unknown}; known: {sorted(allowed)}")


_SHARED_OPTIONS = {
    "observation_horizon",
    "action_horizon",
    "head",
    "hidden_sizes",
    "min_std",
    "sample_actions",
}


def mlp_policy(
    features: Mapping[str, Mapping[str, Any]],
    *,
    state_keys: Sequence[str] | None = None,
    **options: Any,
) -> BCPolicy:
    """The MLP-on-state BC policy for a dataset (book 16.8.1).

    Args:
      features: the dataset's feature specification (`reader.features`).
      state_keys: the vector observations to read; default every float "observation.*"
        feature that is not an image (e.g. "observation.state" and
        "observation.environment_state").
      **options: `BCPolicy` fields among observation_horizon, action_horizon, head,
        hidden_sizes, min_std, sample_actions.

    Raises:
      ValueError naming an unknown option, a missing feature or a bad value.
    """
    _check_options("bc_mlp", options, _SHARED_OPTIONS)
    if state_keys is None:
        state_keys = [
            key
            for key, spec in features.items()
            if key.startswith("observation.")
            and not key.startswith(IMAGE_PREFIX)
            and spec["dtype"] in FLOAT_DTYPES
        ]
    _check_known(features, "state_keys", state_keys)
    return BCPolicy(action_dim=_action_dim(features), state_keys=tuple(state_keys), **options)


def cnn_policy(
    features: Mapping[str, Mapping[str, Any]],
    *,
    cameras: Sequence[str] | None = None,
    state_keys: Sequence[str] = ("observation.state",),
    **options: Any,
) -> BCPolicy:
    """The small-CNN-on-images BC policy for a dataset (book 16.8.1 with 16.4).

    Args:
      features: the dataset's feature specification (`reader.features`).
      cameras: camera names to read ("observation.images.<camera>"); default every camera.
      state_keys: vector observations concatenated to the image keypoints (proprioception).
      **options: `BCPolicy` fields among observation_horizon, action_horizon, head,
        hidden_sizes, min_std, sample_actions, conv_channels, num_keypoints.

    Raises:
      ValueError naming an unknown option, a missing feature or a bad value.
    """
    _check_options("bc_cnn", options, _SHARED_OPTIONS | {"conv_channels", "num_keypoints"})
    if cameras is None:
        image_keys = [key for key in features if key.startswith(IMAGE_PREFIX)]
    else:
        image_keys = [IMAGE_PREFIX + camera for camera in cameras]
    if not image_keys:
        raise ValueError(f"bc_cnn needs camera images; the features are {sorted(features)}")
    _check_known(features, "cameras", image_keys)
    _check_known(features, "state_keys", state_keys)
    return BCPolicy(
        action_dim=_action_dim(features),
        state_keys=tuple(state_keys),
        image_keys=tuple(image_keys),
        **options,
    )
