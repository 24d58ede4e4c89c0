"""ViT patch embedding against the definition, book eqs. 19.5-19.6: flatten each patch, multiply
by W_proj, add the position embedding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core import vit

PATCH, DIM = 4, 6


def _explicit_patch_embedding(images, params, use_class_token):
    """z_p = x_p W_proj + b + e_pos^(p) with x_p the patch flattened in (row, column, channel)."""
    batch, height, width, channels = images.shape
    rows, columns = height // PATCH, width // PATCH
    tokens = []
    for row in range(rows):
        for column in range(columns):
            patch = images[
                :, row * PATCH : (row + 1) * PATCH, column * PATCH : (column + 1) * PATCH
            ]
            tokens.append(patch.reshape(batch, PATCH * PATCH * channels))
    patches = np.stack(tokens, axis=1)  # [B, N_p, P·P·C]
    w_proj = np.asarray(params["embedding"]["kernel"]).reshape(PATCH * PATCH * channels, DIM)
    embedded = patches @ w_proj + np.asarray(params["embedding"]["bias"])
    if use_class_token:
        cls = np.broadcast_to(np.asarray(params["cls"]), (batch, 1, DIM))
        embedded = np.concatenate([cls, embedded], axis=1)
    return embedded + np.asarray(params["pos_embedding"])


@pytest.mark.parametrize("use_class_token", [False, True])
def test_patch_embedding_is_flatten_project_and_add_position_eq_19_6(x64, use_class_token):
    module = vit.PatchEmbedding(patch_size=PATCH, embed_dim=DIM, use_class_token=use_class_token)
    images = np.random.default_rng(0).standard_normal((2, 8, 12, 3))  # 2×3 patches, non-square
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.asarray(images))["params"]
    rng = np.random.default_rng(1)
    params = jax.tree_util.tree_map(lambda leaf: rng.standard_normal(leaf.shape), shapes)
    tokens = jax.jit(module.apply)({"params": params}, jnp.asarray(images))
    assert tokens.shape == (2, 6 + use_class_token, DIM)
    np.testing.assert_allclose(
        tokens, _explicit_patch_embedding(images, params, use_class_token), atol=1e-12
    )


@pytest.mark.parametrize(("use_class_token", "num_tokens"), [(False, 196), (True, 197)])
def test_224_px_images_give_196_patch_tokens_eq_19_5(use_class_token, num_tokens):
    module = vit.PatchEmbedding(patch_size=16, embed_dim=768, use_class_token=use_class_token)
    images = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    variables = jax.eval_shape(module.init, jax.random.key(0), images)
    assert variables["params"]["pos_embedding"].shape == (1, num_tokens, 768)
    assert jax.eval_shape(module.apply, variables, images).shape == (1, num_tokens, 768)


def test_patch_size_that_does_not_divide_the_image_is_rejected():
    module = vit.PatchEmbedding(patch_size=16, embed_dim=8)
    images = jax.ShapeDtypeStruct((1, 84, 84, 3), jnp.float32)
    with pytest.raises(ValueError, match=r"patch_size 16 must divide the image size 84×84"):
        jax.eval_shape(module.init, jax.random.key(0), images)
