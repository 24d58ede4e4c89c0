"""ACT's network: the CVAE encoder q_φ(z | A, o) and the transformer decoder p_θ(A | z, o).

Book 17.3-17.6 (the CVAE: eqs. 17.16-17.18, 17.20-17.30, 17.34-17.49), 16.4-16.5 (camera and
proprioception tokens) and 20.2 (the tensor trace). Architecture only: losses, sampling and
execution live in `act.policy` and `core.controllers`. The layout is LeRobot's `ACT` (0.4.x),
which follows the original (Zhao et al. 2023, tonyzhaozh/act), so LeRobot checkpoints load
name for name (`act.convert`).

CVAE encoder (training only, `CVAEEncoder`, book 17.4). Tokens [CLS, proprioception, a_1..a_k]:
a learned CLS vector, linear projections of the robot state and of each action (eq. 17.20),
the fixed 1D sinusoidal table as position embedding (eq. 17.21, `sinusoidal_table`) and a key
padding mask over the actions past the episode end. A post-norm transformer encoder (4 layers)
runs over them; the CLS output (eq. 17.27) goes through one linear layer to [μ, log σ²] ∈
R^{2 d_z} (eqs. 17.29-17.30; d_z = 32). Unlike the book's 17.4.1 the CVAE encoder sees no image
tokens, so it reads k + 2 tokens (102), not k + 2 + N_vis.

Latent. z = μ + σ ⊙ ε (eq. 17.49, `reparameterize`) in training; at inference z = 0 (the
original) or z ~ N(0, I) (eq. 17.34), chosen by the policy.

CVAE decoder (`CVAEDecoder`, book 17.5 and 20.2). A transformer encoder (4 layers) over
[latent, robot state, environment state, image tokens]: z projected to d_model (eq. 17.35;
ACT puts it in the encoder input, where the book's 20.2.2 puts a CLS token), the state
vectors projected to one token each, learned position embeddings for these 1D tokens, and
for every camera the layer4 map of one shared ResNet-18 with frozen batch norm (LeRobot; the
original builds one ResNet per camera), a 1×1 conv to d_model and DETR's 2D sine embedding
(`CameraTokens`). A transformer decoder runs k learned query positions (eq. 17.37) from zero
inputs, self-attending and cross-attending to the encoder output, whose keys carry the
encoder's position embeddings; a linear head maps each of the k outputs to the D action
dimensions (eq. 17.45). The decoder attends to the encoder output only: the latent is not
appended to the memory as 17.38 and 20.9 suggest. Layers are post-norm (d_model 512, 8 heads,
feed-forward 3200, ReLU, dropout 0.1); the decoder stack ends with a LayerNorm.

One decoder layer, not seven. The original configures `dec_layers = 7`, but its DETR
transformer is built with `return_intermediate_dec=True`, so the decoder returns the stack
[LN(h_1), ..., LN(h_7)] of every layer's normalized output, and `DETRVAE.forward` keeps
`hs = transformer(...)[0]`: the output of the FIRST layer after the final LayerNorm. Layers 2-7
are computed and discarded, and receive no gradient. `num_decoder_layers = 1` computes exactly
what the original uses (LeRobot's default for the same reason, tonyzhaozh/act issue 25).

Initialization: transformer weights xavier-uniform (core.transformer), the other linear and
conv layers PyTorch's default, embeddings N(0, 1), the backbone torchvision's, as LeRobot and
the original do for every part but one: they leave the CVAE encoder's transformer at
PyTorch's defaults (uniform ±1/√fan_in for its feed-forward and output projections), which
here is xavier-uniform too. This changes the starting point only, not the function computed
or the checkpoints loaded. The original's `is_pad_head` (a linear layer predicting padding)
is left out: its output never enters the loss (LeRobot drops it too).

Images enter normalized as the backbone expects (ImageNet statistics, `act.policy`); all
shapes are batch-first and channels-last.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from core import position_encoding, resnet, transformer
from core.attention import key_padding_mask
from core.checks import check_shapes
from core.conv_arithmetic import RESNET18_BLOCKS, RESNET34_BLOCKS
from core.torch_weights import torch_default_bias_init, torch_default_kernel_init

VISION_BACKBONES = {"resnet18": RESNET18_BLOCKS, "resnet34": RESNET34_BLOCKS}
COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}
"""Matmul dtype of the transformer layers (bfloat16 accumulates in float32)."""


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ACTConfig:
    """Sizes and options of the ACT network; the defaults are the original's (and LeRobot's).

    Attributes:
      action_dim: D, the action dimension.
      chunk_size: k, the actions predicted per chunk (eq. 17.1).
      latent_dim: d_z.
      model_dim: d_model, the token size.
      num_heads: H of every attention layer.
      ffn_dim: hidden size of the feed-forward networks.
      dropout_rate: dropout of every transformer layer.
      activation: "relu" or "gelu", of the feed-forward networks.
      pre_norm: pre-norm layers (and a final LayerNorm on each encoder); ACT uses post-norm.
      num_encoder_layers: layers of the decoder's transformer encoder.
      num_decoder_layers: transformer decoder layers (1: see the module docstring).
      num_cvae_encoder_layers: layers of the CVAE encoder.
      use_cvae: train with the CVAE encoder; False drops it and always feeds z = 0 (the paper's
        "no CVAE" ablation, LeRobot's use_vae = False).
      vision_backbone: "resnet18" or "resnet34" (frozen batch norm, layer4 features).
      compute_dtype: "float32" or "bfloat16" matmuls in the transformer layers.
    """

    action_dim: int
    chunk_size: int = 100
    latent_dim: int = 32
    model_dim: int = 512
    num_heads: int = 8
    ffn_dim: int = 3200
    dropout_rate: float = 0.1
    activation: str = "relu"
    pre_norm: bool = False
    num_encoder_layers: int = 4
    num_decoder_layers: int = 1
    num_cvae_encoder_layers: int = 4
    use_cvae: bool = True
    vision_backbone: str = "resnet18"
    compute_dtype: str = "float32"

    def __post_init__(self):
        for name in (
            "action_dim",
            "chunk_size",
            "latent_dim",
            "num_encoder_layers",
            "num_decoder_layers",
            "num_cvae_encoder_layers",
        ):
            _positive(name, getattr(self, name))
        if self.vision_backbone not in VISION_BACKBONES:
            raise ValueError(
                f"vision_backbone must be one of {sorted(VISION_BACKBONES)}, got "
                f"{self.vision_backbone!r}"
            )
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(
                f"compute_dtype must be one of {sorted(COMPUTE_DTYPES)}, got {self.compute_dtype!r}"
            )
        _ = self.layer  # TransformerLayerConfig checks the layer sizes, dropout and activation

    @property
    def layer(self) -> transformer.TransformerLayerConfig:
        """The configuration shared by every transformer layer."""
        return transformer.TransformerLayerConfig(
            model_dim=self.model_dim,
            num_heads=self.num_heads,
            ffn_dim=self.ffn_dim,
            dropout_rate=self.dropout_rate,
            activation=self.activation,
            pre_norm=self.pre_norm,
            dtype=COMPUTE_DTYPES[self.compute_dtype],
        )


def _linear(features: int, fan_in: int, name: str) -> nn.Dense:
    """torch.nn.Linear(fan_in, features) with PyTorch's default initialization."""
    return nn.Dense(
        features,
        kernel_init=torch_default_kernel_init,
        bias_init=torch_default_bias_init(fan_in),
        name=name,
    )


def reparameterize(mean: jax.Array, log_var: jax.Array, noise: jax.Array) -> jax.Array:
    """z = μ + σ ⊙ ε with σ = exp(½ log σ²) (book eq. 17.49); differentiable in μ and log σ².

    Args:
      mean: [B, d_z] μ.
      log_var: [B, d_z] log σ².
      noise: [B, d_z] ε ~ N(0, I).
    """
    check_shapes(mean=(mean, ("B", "Z")), log_var=(log_var, ("B", "Z")), noise=(noise, ("B", "Z")))
    return mean + jnp.exp(0.5 * log_var) * noise


class CameraTokens(nn.Module):
    """Camera images -> image tokens and their positions (book 16.4, 20.2.1, eqs. 20.1-20.4).

    Every camera goes through the same ResNet (`backbone`, frozen batch norm) to its layer4 map
    [h, w, 512], a 1×1 conv to d_model (`projection`) and DETR's 2D sine embedding of the
    h×w grid. Tokens are camera-major, row-major within a camera (LeRobot's order).
    """

    model_dim: int
    backbone_blocks: tuple[int, ...] = RESNET18_BLOCKS

    @nn.compact
    def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """images: [B, N_cam, H, W, 3] normalized -> (tokens [B, N_cam·h·w, d], positions
        [N_cam·h·w, d])."""
        sizes = check_shapes(images=(images, ("B", "N", "H", "W", 3)))
        batch, cameras = sizes["B"], sizes["N"]
        features = resnet.ResNet(
            norm="frozen_batch_norm", blocks_per_stage=self.backbone_blocks, name="backbone"
        )(images.reshape(batch * cameras, *images.shape[2:]))
        features = nn.Conv(
            self.model_dim,
            (1, 1),
            kernel_init=torch_default_kernel_init,
            bias_init=torch_default_bias_init(features.shape[-1]),
            name="projection",
        )(features)
        height, width = features.shape[1:3]
        positions = position_encoding.sine_position_embedding_2d(height, width, self.model_dim)
        positions = jnp.tile(positions.reshape(height * width, self.model_dim), (cameras, 1))
        return features.reshape(batch, cameras * height * width, self.model_dim), positions


class CVAEEncoder(nn.Module):
    """q_φ(z | A, o): [CLS, robot state, actions] -> (μ, log σ²) (book 17.4, eqs. 17.20-17.30).

    Params: `cls_token` [1, d], `state_projection`, `action_projection`, `encoder`
    (TransformerEncoder) and `latent_head` (d -> 2 d_z).
    """

    config: ACTConfig

    @nn.compact
    def __call__(
        self,
        actions: jax.Array,
        action_is_pad: jax.Array,
        state: jax.Array | None,
        *,
        deterministic: bool,
    ) -> tuple[jax.Array, jax.Array]:
        """Args:
          actions: [B, k, D] normalized action chunk.
          action_is_pad: [B, k] bool, True past the episode end (masked as keys).
          state: [B, Ds] normalized robot state, or None (no proprioception token).
          deterministic: False applies dropout (the "dropout" rng stream).

        Returns:
          (μ [B, d_z], log σ² [B, d_z]).
        """
        config = self.config
        model_dim = config.model_dim
        batch = actions.shape[0]
        cls = self.param("cls_token", nn.initializers.normal(1.0), (1, model_dim))
        tokens = [jnp.broadcast_to(cls[None], (batch, 1, model_dim))]
        if state is not None:
            projection = _linear(model_dim, state.shape[-1], "state_projection")
            tokens.append(projection(state)[:, None])
        num_prefix = len(tokens)
        tokens.append(_linear(model_dim, actions.shape[-1], "action_projection")(actions))
        tokens = jnp.concatenate(tokens, axis=1)  # eqs. 17.20, 17.22 (without image tokens)
        positions = position_encoding.sinusoidal_table(tokens.shape[1], model_dim)  # eq. 17.21
        is_pad = jnp.concatenate([jnp.zeros((batch, num_prefix), bool), action_is_pad], axis=1)
        hidden = transformer.TransformerEncoder(
            config.layer, config.num_cvae_encoder_layers, final_norm=config.pre_norm, name="encoder"
        )(tokens, pos=positions[None], mask=key_padding_mask(is_pad), deterministic=deterministic)
        latent_parameters = _linear(2 * config.latent_dim, model_dim, "latent_head")(hidden[:, 0])
        mean, log_var = jnp.split(latent_parameters, 2, axis=-1)  # eqs. 17.27, 17.29-17.30
        return mean, log_var


class CVAEDecoder(nn.Module):
    """p_θ(A | z, o): latent and observation tokens -> an action chunk (book 17.5, 20.2).

    Params: `latent_projection`, `state_projection`, `environment_state_projection`,
    `token_positions` (learned, one per 1D token), `camera_tokens` (CameraTokens), `encoder`,
    `query_positions` (learned, k), `decoder` (TransformerDecoder with a final LayerNorm) and
    `action_head`.
    """

    config: ACTConfig

    @nn.compact
    def __call__(
        self,
        latent: jax.Array,
        images: jax.Array | None,
        state: jax.Array | None,
        environment_state: jax.Array | None,
        *,
        deterministic: bool,
    ) -> jax.Array:
        """Args:
          latent: [B, d_z] z.
          images: [B, N_cam, H, W, 3] normalized camera images, or None.
          state: [B, Ds] normalized robot state, or None.
          environment_state: [B, De] normalized environment state, or None.
          deterministic: False applies dropout (the "dropout" rng stream).

        Returns:
          [B, k, D] the normalized action chunk.
        """
        config = self.config
        model_dim = config.model_dim
        vectors = [("latent_projection", latent)]  # eq. 17.35
        vectors += [
            ("state_projection", state),
            ("environment_state_projection", environment_state),
        ]
        tokens = [
            _linear(model_dim, value.shape[-1], name)(value)
            for name, value in vectors
            if value is not None
        ]
        tokens = [jnp.stack(tokens, axis=1)]
        positions = [
            position_encoding.LearnedPositionEmbedding(
                tokens[0].shape[1], model_dim, name="token_positions"
            )()
        ]
        if images is not None:
            image_tokens, image_positions = CameraTokens(
                model_dim, VISION_BACKBONES[config.vision_backbone], name="camera_tokens"
            )(images)
            tokens.append(image_tokens)
            positions.append(image_positions)
        tokens = jnp.concatenate(tokens, axis=1)  # eq. 20.5
        positions = jnp.concatenate(positions, axis=0)[None]
        memory = transformer.TransformerEncoder(
            config.layer, config.num_encoder_layers, final_norm=config.pre_norm, name="encoder"
        )(tokens, pos=positions, deterministic=deterministic)  # eq. 20.6
        query_positions = position_encoding.LearnedPositionEmbedding(
            config.chunk_size, model_dim, name="query_positions"
        )()  # eq. 17.37
        queries = jnp.zeros((tokens.shape[0], config.chunk_size, model_dim), memory.dtype)
        decoded = transformer.TransformerDecoder(
            config.layer, config.num_decoder_layers, final_norm=True, name="decoder"
        )(
            queries,
            memory,
            query_pos=query_positions[None],
            memory_pos=positions,
            deterministic=deterministic,
        )  # eqs. 17.40-17.44, 20.10
        return _linear(config.action_dim, model_dim, "action_head")(decoded)  # eq. 17.45


class ACT(nn.Module):
    """The whole network: `posterior` (CVAE encoder), `__call__` (decoder: inference) and
    `reconstruct` (both, the training forward pass). Params `cvae_encoder` (with use_cvae) and
    `cvae_decoder`; the frozen backbone statistics are in the "batch_stats" collection.
    """

    config: ACTConfig

    def setup(self):
        if self.config.use_cvae:
            self.cvae_encoder = CVAEEncoder(self.config)
        self.cvae_decoder = CVAEDecoder(self.config)

    def _check_observation(self, images, state, environment_state, batch_dims) -> None:
        if images is None and state is None and environment_state is None:
            raise ValueError("ACT needs at least one of images, state, environment_state")
        check_shapes(
            **batch_dims,
            **({} if images is None else {"images": (images, ("B", None, None, None, 3))}),
            **({} if state is None else {"state": (state, ("B", None))}),
            **(
                {}
                if environment_state is None
                else {"environment_state": (environment_state, ("B", None))}
            ),
        )

    def _check_actions(self, actions: jax.Array, action_is_pad: jax.Array) -> dict:
        chunk = self.config.chunk_size
        return {
            "actions": (actions, ("B", chunk, self.config.action_dim)),
            "action_is_pad": (action_is_pad, ("B", chunk)),
        }

    def posterior(
        self,
        actions: jax.Array,
        action_is_pad: jax.Array,
        state: jax.Array | None = None,
        *,
        deterministic: bool,
    ) -> tuple[jax.Array, jax.Array]:
        """(μ, log σ²) of q_φ(z | A, o) (book 17.4); arguments as `CVAEEncoder`."""
        if not self.config.use_cvae:
            raise ValueError("this ACT has no CVAE encoder (use_cvae=False)")
        check_shapes(
            **self._check_actions(actions, action_is_pad),
            **({} if state is None else {"state": (state, ("B", None))}),
        )
        return self.cvae_encoder(actions, action_is_pad, state, deterministic=deterministic)

    def __call__(
        self,
        latent: jax.Array,
        images: jax.Array | None = None,
        state: jax.Array | None = None,
        environment_state: jax.Array | None = None,
        *,
        deterministic: bool,
    ) -> jax.Array:
        """The action chunk [B, k, D] for a latent z [B, d_z] (book 17.5); observation
        arguments as `CVAEDecoder`, at least one of them given."""
        latent_shape = {"latent": (latent, ("B", self.config.latent_dim))}
        self._check_observation(images, state, environment_state, latent_shape)
        return self.cvae_decoder(
            latent, images, state, environment_state, deterministic=deterministic
        )

    def reconstruct(
        self,
        actions: jax.Array,
        action_is_pad: jax.Array,
        latent_noise: jax.Array,
        images: jax.Array | None = None,
        state: jax.Array | None = None,
        environment_state: jax.Array | None = None,
        *,
        deterministic: bool,
    ) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
        """The training forward pass (LeRobot's ACT.forward in train mode): encode the chunk,
        draw z by eq. 17.49 with the given noise, decode.

        Args:
          actions: [B, k, D] demonstrated (normalized) chunk; action_is_pad: [B, k].
          latent_noise: [B, d_z] ε ~ N(0, I).
          images, state, environment_state: as `CVAEDecoder`.
          deterministic: False applies dropout.

        Returns:
          (predicted chunk [B, k, D], μ [B, d_z], log σ² [B, d_z]); μ and log σ² are None
          without the CVAE encoder (z = 0).
        """
        batch_dims = {
            **self._check_actions(actions, action_is_pad),
            "latent_noise": (latent_noise, ("B", self.config.latent_dim)),
        }
        self._check_observation(images, state, environment_state, batch_dims)
        if self.config.use_cvae:
            mean, log_var = self.cvae_encoder(
                actions, action_is_pad, state, deterministic=deterministic
            )
            latent = reparameterize(mean, log_var, latent_noise)  # eq. 17.49
        else:
            mean = log_var = None
            latent = jnp.zeros_like(latent_noise)
        predicted = self.cvae_decoder(
            latent, images, state, environment_state, deterministic=deterministic
        )
        return predicted, mean, log_var
