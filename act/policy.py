"""ACT as a `core.policy.Policy`: the CVAE loss, the inference latent, and the factory.

Book 17.3 (the objective L = L_rec + β L_KL, eq. 17.10, with the KL of eq. 17.18 and the
annealed weight of eq. 17.19), 17.5.1 (the inference latent, eq. 17.34), 17.6 (the
reparameterized sample, eq. 17.49) and 17.10 (Algorithm 1, one training step).

Loss (`ACTPolicy.loss`). The CVAE encoder reads the demonstrated chunk, z = μ + σ ⊙ ε, the
decoder reconstructs the chunk, and

  L = L_rec + β(t) · mean_b KL(N(μ_b, σ_b²) || N(0, I)),

L_rec the mean absolute error (the original's L1, "l1") or the mean squared error (the book's
eq. 17.15, "mse") over the entries of the non-padded chunk steps, the KL summed over the d_z
latent dimensions (eq. 17.18) and averaged over the batch, as the original and LeRobot do. The
original and LeRobot divide the masked sum by ALL B·k·D entries, padded ones included, so
chunks that run past the episode end weigh less there; here the mean is over the valid entries
(`core.losses.masked_mean`). The two agree when nothing is padded; otherwise theirs is ours
times the fraction of valid steps. β is constant (`kl_weight`, 10 in ACT) or ramps linearly
from 0 over `kl_warmup_steps` (eq. 17.19). Dropout (0.1) is on in the loss.

Inference (`predict_chunk`). z = 0, the prior's mean (the original and LeRobot: "zero"), or a
draw z ~ N(0, I) (eq. 17.34, "prior_sample"), which picks a mode at random on multimodal data.

Inputs. One observation frame (ACT's To = 1): the robot state ("observation.state"), an
optional environment state, and camera images in [0, 1], normalized here with the ImageNet
statistics the backbone was pretrained with (the original's `transforms.Normalize`, LeRobot's
`use_imagenet_stats`). States and actions arrive normalized by the data pipeline.

Randomness. `rng` (a threefry key) is split into the latent noise ε and the dropout key. The
dropout masks draw their bits from `act.dropout_keys` ("hash", the default: ~10x cheaper than
threefry, which would take about a third of a full-size train step on CPU) or from threefry
itself (`dropout_bits="threefry"`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from act.dropout_keys import dropout_key
from act.model import ACT, ACTConfig
from core import schedules
from core.checks import check_shapes
from core.losses import absolute_error, kl_to_standard_normal, masked_mean, squared_error
from core.policy import Batch, Metrics, Variables

IMAGE_PREFIX = "observation.images."
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
RECONSTRUCTION_LOSSES = {"l1": absolute_error, "mse": squared_error}
INFERENCE_LATENTS = ("zero", "prior_sample")
DROPOUT_BITS = ("hash", "threefry")


def normalize_images(images: jax.Array) -> jax.Array:
    """images: [..., 3] RGB in [0, 1] -> (x - mean) / std with the ImageNet statistics."""
    return (images - IMAGENET_MEAN) / IMAGENET_STD


def masked_reconstruction_loss(
    predicted: jax.Array, actions: jax.Array, action_is_pad: jax.Array, kind: str
) -> jax.Array:
    """L_rec over the valid chunk steps: mean |Â - A| ("l1") or mean (Â - A)² ("mse", book
    eq. 17.15's 1/(kD) ||A - Â||_F², averaged over the batch).

    Args:
      predicted: [B, k, D] Â.
      actions: [B, k, D] demonstrated A.
      action_is_pad: [B, k] bool, True for steps past the episode end (left out).
      kind: "l1" or "mse".

    Returns:
      [] the mean over the B·(valid k)·D entries.
    """
    if kind not in RECONSTRUCTION_LOSSES:
        raise ValueError(f"kind must be one of {sorted(RECONSTRUCTION_LOSSES)}, got {kind!r}")
    check_shapes(
        predicted=(predicted, ("B", "k", "D")),
        actions=(actions, ("B", "k", "D")),
        action_is_pad=(action_is_pad, ("B", "k")),
    )
    return masked_mean(RECONSTRUCTION_LOSSES[kind](predicted, actions), ~action_is_pad)


def mean_kl_divergence(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """L_KL: KL(N(μ, σ²) || N(0, I)) summed over d_z (eq. 17.18), averaged over the batch.

    mean, log_var: [B, d_z] μ and log σ² of the posterior.
    """
    check_shapes(mean=(mean, ("B", "Z")), log_var=(log_var, ("B", "Z")))
    return jnp.mean(kl_to_standard_normal(mean, log_var))


@dataclasses.dataclass(frozen=True)
class ACTPolicy:
    """ACT: hyper-parameters only, hashable (a static argument of jit).

    Attributes:
      network: the architecture (`act.model.ACTConfig`); its chunk_size is k.
      state_key: the robot-state feature [B, 1, Ds], or None.
      environment_state_key: an environment-state feature [B, 1, De], or None.
      image_keys: camera features "observation.images.<camera>", each [B, 1, H, W, 3] in
        [0, 1], all of one size.
      reconstruction_loss: "l1" (the original) or "mse" (the book's eq. 17.15).
      kl_weight: β (β_target with annealing), >= 0.
      kl_warmup_steps: t_anneal of eq. 17.19; 0 keeps β constant.
      inference_latent: "zero" (the original) or "prior_sample" (eq. 17.34).
      dropout_bits: "hash" (`act.dropout_keys`) or "threefry", the source of the dropout masks.
    """

    network: ACTConfig
    state_key: str | None = "observation.state"
    environment_state_key: str | None = None
    image_keys: tuple[str, ...] = ()
    reconstruction_loss: str = "l1"
    kl_weight: float = 10.0
    kl_warmup_steps: int = 0
    inference_latent: str = "zero"
    dropout_bits: str = "hash"

    def __post_init__(self):
        object.__setattr__(self, "image_keys", tuple(self.image_keys))
        if self.state_key is None and self.environment_state_key is None and not self.image_keys:
            raise ValueError("ACT needs a state_key, an environment_state_key or image_keys")
        bad_images = [key for key in self.image_keys if not key.startswith(IMAGE_PREFIX)]
        if bad_images:
            raise ValueError(f"image_keys must start with {IMAGE_PREFIX!r}, got {bad_images}")
        if self.reconstruction_loss not in RECONSTRUCTION_LOSSES:
            raise ValueError(
                f"reconstruction_loss must be one of {sorted(RECONSTRUCTION_LOSSES)}, got "
                f"{self.reconstruction_loss!r}"
            )
        if not self.kl_weight >= 0:
            raise ValueError(f"kl_weight must be >= 0, got {self.kl_weight!r}")
        if not isinstance(self.kl_warmup_steps, int) or self.kl_warmup_steps < 0:
            raise ValueError(f"kl_warmup_steps must be an int >= 0, got {self.kl_warmup_steps!r}")
        if self.inference_latent not in INFERENCE_LATENTS:
            raise ValueError(
                f"inference_latent must be one of {INFERENCE_LATENTS}, got "
                f"{self.inference_latent!r}"
            )
        if self.inference_latent == "prior_sample" and not self.network.use_cvae:
            raise ValueError(
                "inference_latent='prior_sample' needs the CVAE (use_cvae=True): without it the "
                "decoder is trained on z = 0 only"
            )

        if self.dropout_bits not in DROPOUT_BITS:
            raise ValueError(
                f"dropout_bits must be one of {DROPOUT_BITS}, got {self.dropout_bits!r}"
            )

    @property
    def observation_horizon(self) -> int:
        return 1

    @property
    def action_horizon(self) -> int:
        return self.network.chunk_size

    @property
    def observation_keys(self) -> tuple[str, ...]:
        vectors = (self.state_key, self.environment_state_key)
        return tuple(key for key in vectors if key is not None) + self.image_keys

    @property
    def module(self) -> ACT:
        return ACT(self.network)

    def network_inputs(self, observation: Batch) -> dict[str, jax.Array | None]:
        """The network's inputs from a batch of one-frame observation windows.

        Args:
          observation: the policy's keys: state features [B, 1, D_key] and camera images
            [B, 1, H, W, 3] in [0, 1].

        Returns:
          {"images": [B, N_cam, H, W, 3] ImageNet-normalized or None, "state": [B, Ds] or None,
          "environment_state": [B, De] or None}.
        """
        missing = [key for key in self.observation_keys if key not in observation]
        if missing:
            raise ValueError(f"observation lacks {missing}; it has {sorted(observation)}")
        vectors = {"state": self.state_key, "environment_state": self.environment_state_key}
        check_shapes(
            **{key: (observation[key], ("B", 1, None)) for key in vectors.values() if key},
            **{key: (observation[key], ("B", 1, "H", "W", 3)) for key in self.image_keys},
        )
        inputs = {
            name: None if key is None else observation[key][:, 0] for name, key in vectors.items()
        }
        inputs["images"] = None
        if self.image_keys:
            images = jnp.stack([observation[key][:, 0] for key in self.image_keys], axis=1)
            inputs["images"] = normalize_images(images)
        return inputs

    def _check_actions(self, batch: Batch) -> None:
        for key in ("action", "action_is_pad"):
            if key not in batch:
                raise ValueError(f"batch lacks {key!r}; it has {sorted(batch)}")

    def init(self, rng: jax.Array, batch: Batch) -> Variables:
        """{"params", "batch_stats"} (the latter with cameras), shaped by an example batch; only
        its observation keys are read."""
        inputs = jax.tree.map(lambda x: x[:1], self.network_inputs(batch))
        chunk = (1, self.network.chunk_size)
        return self.module.init(
            rng,
            jnp.zeros((*chunk, self.network.action_dim)),
            jnp.zeros(chunk, bool),
            jnp.zeros((1, self.network.latent_dim)),
            **inputs,
            deterministic=True,
            method=ACT.reconstruct,
        )

    def kl_weight_at(self, step: jax.Array) -> jax.Array:
        """β(t): constant, or linearly annealed from 0 over kl_warmup_steps (eq. 17.19)."""
        if self.kl_warmup_steps == 0:
            return jnp.asarray(self.kl_weight, jnp.float32)
        return schedules.kl_weight_annealing(self.kl_weight, self.kl_warmup_steps)(step)

    def loss(
        self, variables: Variables, batch: Batch, rng: jax.Array, step: jax.Array
    ) -> tuple[jax.Array, Metrics]:
        """L = L_rec + β(t) L_KL (eq. 17.10) with dropout; see the module docstring.

        Args:
          variables: {"params", "batch_stats"}.
          batch: the observation keys, action [B, k, D], action_is_pad [B, k].
          rng: drives ε of eq. 17.49 and dropout.
          step: t, for the KL annealing.

        Returns:
          (L, metrics): the reconstruction term under its name ("l1" or "mse"), and with the
          CVAE "kl" (L_KL) and "kl_weight" (β(t)).
        """
        inputs = self.network_inputs(batch)
        self._check_actions(batch)
        actions, action_is_pad = batch["action"], batch["action_is_pad"]
        noise_rng, dropout_rng = jax.random.split(rng)
        if self.dropout_bits == "hash":
            dropout_rng = dropout_key(dropout_rng)
        latent_noise = jax.random.normal(
            noise_rng, (actions.shape[0], self.network.latent_dim), jnp.float32
        )
        predicted, mean, log_var = self.module.apply(
            variables,
            actions,
            action_is_pad,
            latent_noise,
            **inputs,
            deterministic=False,
            method=ACT.reconstruct,
            rngs={"dropout": dropout_rng},
        )
        reconstruction = masked_reconstruction_loss(
            predicted, actions, action_is_pad, self.reconstruction_loss
        )
        metrics = {self.reconstruction_loss: reconstruction}
        if mean is None:
            return reconstruction, metrics
        kl = mean_kl_divergence(mean, log_var)
        kl_weight = self.kl_weight_at(step)
        return reconstruction + kl_weight * kl, {**metrics, "kl": kl, "kl_weight": kl_weight}

    def predict_chunk(self, variables: Variables, observation: Batch, rng: jax.Array) -> jax.Array:
        """[B, k, D] normalized chunk from z = 0 or z ~ N(0, I) (drawn from `rng`), no dropout."""
        inputs = self.network_inputs(observation)
        batch_size = next(value for value in inputs.values() if value is not None).shape[0]
        latent_shape = (batch_size, self.network.latent_dim)
        if self.inference_latent == "zero":
            latent = jnp.zeros(latent_shape, jnp.float32)
        else:
            latent = jax.random.normal(rng, latent_shape, jnp.float32)  # eq. 17.34
        return self.module.apply(variables, latent, **inputs, deterministic=True)


POLICY_OPTIONS = frozenset(
    {"reconstruction_loss", "kl_weight", "kl_warmup_steps", "inference_latent", "dropout_bits"}
)
NETWORK_OPTIONS = frozenset(
    field.name for field in dataclasses.fields(ACTConfig) if field.name != "action_dim"
) - {"chunk_size"}


def act_policy(
    features: Mapping[str, Mapping[str, Any]],
    *,
    observation_horizon: int = 1,
    action_horizon: int = 100,
    cameras: Sequence[str] | None = None,
    state_key: str | None = "observation.state",
    environment_state_key: str | None = None,
    **options: Any,
) -> ACTPolicy:
    """ACT for a dataset (the "act" entry of `experiments.policies`).

    Args:
      features: the dataset's feature specification (`reader.features`).
      observation_horizon: To; ACT reads one frame, so it must be 1.
      action_horizon: k, the chunk size.
      cameras: camera names ("observation.images.<camera>"); default every camera; () for a
        state-only ACT.
      state_key: the robot-state feature (None: no proprioception token).
      environment_state_key: an environment-state feature, e.g.
        "observation.environment_state" (default: none).
      **options: `ACTConfig` fields (model_dim, num_heads, ffn_dim, dropout_rate, activation,
        pre_norm, latent_dim, num_encoder_layers, num_decoder_layers,
        num_cvae_encoder_layers, use_cvae, vision_backbone, compute_dtype) and `ACTPolicy`
        fields (reconstruction_loss, kl_weight, kl_warmup_steps, inference_latent,
        dropout_bits).

    Raises:
      ValueError naming an unknown option, a missing feature or a bad value.
    """
    unknown = sorted(set(options) - NETWORK_OPTIONS - POLICY_OPTIONS)
    if unknown:
        known = sorted(NETWORK_OPTIONS | POLICY_OPTIONS)
        raise ValueError(f"act has no option(s) {unknown}; known: {known}")
    if observation_horizon != 1:
        raise ValueError(
            f"ACT reads one observation frame: observation_horizon must be 1, got "
            f"{observation_horizon}"
        )
    if "action" not in features:
        raise ValueError(f"features lack 'action'; they have {sorted(features)}")
    if cameras is None:
        image_keys = tuple(key for key in features if key.startswith(IMAGE_PREFIX))
    else:
        image_keys = tuple(IMAGE_PREFIX + camera for camera in cameras)
    used = [key for key in (state_key, environment_state_key, *image_keys) if key is not None]
    absent = [key for key in used if key not in features]
    if absent:
        raise ValueError(f"{absent} are not dataset features; have {sorted(features)}")
    network = ACTConfig(
        action_dim=int(features["action"]["shape"][-1]),
        chunk_size=action_horizon,
        **{name: value for name, value in options.items() if name in NETWORK_OPTIONS},
    )
    return ACTPolicy(
        network=network,
        state_key=state_key,
        environment_state_key=environment_state_key,
        image_keys=image_keys,
        **{name: value for name, value in options.items() if name in POLICY_OPTIONS},
    )
