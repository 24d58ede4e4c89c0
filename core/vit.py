"""Book 19.3 (eqs. 19.5-19.6): the Vision Transformer's patch embedding.

An H×W×C image is cut into N_p = (H/P)·(W/P) non-overlapping P×P patches (eq. 19.5: 196 for
224×224 and P = 16), each flattened to P·P·C values x_p and projected, z_p = x_p W_proj + b +
e_pos^(p) (eq. 19.6) with a learned position embedding per token. A P×P convolution with stride P
computes all x_p W_proj at once; its HWIO kernel [P, P, C, D] is W_proj [P·P·C, D] with rows in
(row, column, channel) order of the patch. With `use_class_token` a learned [CLS] token is
prepended (and gets position 0), as in ViT's classification setup.

Names follow google-research/vision_transformer (`embedding`, `cls`, `pos_embedding`);
initialization too: LeCun-normal projection, zero class token, N(0, 0.02²) position embedding.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from core.checks import check_rank
from core.conv_arithmetic import patch_grid

POSITION_EMBEDDING_STD = 0.02


class PatchEmbedding(nn.Module):
    """Images [B, H, W, C] -> tokens [B, N_p (+1), D], book eq. 19.6.

    Attributes:
      patch_size: P, which must divide H and W.
      embed_dim: D = d_model.
      use_class_token: prepend a learned [CLS] token.

    Params: embedding {kernel [P, P, C, D], bias [D]}, pos_embedding [1, N_p (+1), D] and, with
    the class token, cls [1, 1, D]. The position embedding is sized by the image at init.
    """

    patch_size: int = 16
    embed_dim: int = 768
    use_class_token: bool = False

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        check_rank("images", images, 4)
        batch, height, width, _ = images.shape
        rows, columns = patch_grid(height, width, self.patch_size)  # eq. 19.5; ValueError if P∤H
        patch_shape = (self.patch_size, self.patch_size)
        projected = nn.Conv(
            self.embed_dim, patch_shape, strides=patch_shape, padding="VALID", name="embedding"
        )(images)  # x_p W_proj + b for every patch, [B, H/P, W/P, D]
        tokens = projected.reshape(batch, rows * columns, self.embed_dim)
        if self.use_class_token:
            cls = self.param("cls", nn.initializers.zeros, (1, 1, self.embed_dim))
            cls = jnp.broadcast_to(cls, (batch, 1, self.embed_dim)).astype(tokens.dtype)
            tokens = jnp.concatenate([cls, tokens], axis=1)
        position_embedding = self.param(
            "pos_embedding",
            nn.initializers.normal(POSITION_EMBEDDING_STD),
            (1, tokens.shape[1], self.embed_dim),
        )
        return tokens + position_embedding  # eq. 19.6
