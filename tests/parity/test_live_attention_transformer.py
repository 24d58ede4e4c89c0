"""Live parity of attention, transformer layers and position encodings with PyTorch and LeRobot.

Skipped unless torch is installed (the `parity` extra); run it in the parity environment:

    PYTHONPATH=. /work/parity-venv/bin/python -m pytest tests/parity/test_live_attention_*.py

It checks that the committed golden fixtures are what the references output today, and compares
our modules with torch directly at ACT's real sizes (d_model 512, 8 heads, feed-forward 3200),
with torch's own random initialization loaded through our converters.
"""

import importlib

import jax
import numpy as np
import pytest

from core import attention, position_encoding, transformer
from experiments.parity.common import FIXTURE_DIR, import_torchvision

torch = pytest.importorskip("torch")

ACT_CONFIG = transformer.TransformerLayerConfig(dropout_rate=0.0)  # ACT's sizes, eval mode
BATCH, SOURCE_LENGTH, TARGET_LENGTH = 2, 20, 10
TOLERANCE = 1e-5


def _modeling_act():
    import_torchvision()
    from lerobot.policies.act import modeling_act

    return modeling_act


def _numpy_state(module):
    return {name: tensor.numpy() for name, tensor in module.state_dict().items()}


def _random(*shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))


@pytest.mark.parametrize("name", ["attention", "transformer", "position_encoding"])
def test_committed_fixtures_equal_a_fresh_reference_run(name):
    fresh = importlib.import_module(f"experiments.parity.{name}").generate()
    committed = np.load(f"{FIXTURE_DIR}/{name}.npz")
    assert sorted(fresh) == sorted(committed.files)
    for key, array in fresh.items():
        np.testing.assert_allclose(committed[key], array, atol=1e-6, err_msg=key)


def test_multi_head_attention_matches_torch_at_act_size_with_masks():
    torch.manual_seed(0)
    module = torch.nn.MultiheadAttention(512, 8, batch_first=True).eval()
    query, memory = _random(BATCH, TARGET_LENGTH, 512), _random(BATCH, SOURCE_LENGTH, 512)
    is_pad = torch.zeros(BATCH, SOURCE_LENGTH, dtype=torch.bool)
    is_pad[1, -5:] = True
    with torch.no_grad():
        expected, _ = module(query, memory, memory, key_padding_mask=is_pad)
    ours = attention.MultiHeadAttention(512, 8)
    params = attention.multi_head_attention_params_from_torch(_numpy_state(module), ours)
    output = jax.jit(ours.apply, static_argnames="deterministic")(
        {"params": params},
        query.numpy(),
        memory.numpy(),
        memory.numpy(),
        mask=attention.key_padding_mask(is_pad.numpy()),
        deterministic=True,
    )
    np.testing.assert_allclose(output, expected.numpy(), atol=TOLERANCE)


def test_act_encoder_and_decoder_layers_match_lerobot_at_act_size():
    modeling_act = _modeling_act()
    from lerobot.policies.act.configuration_act import ACTConfig

    config = ACTConfig(dropout=0.0, pretrained_backbone_weights=None)
    torch.manual_seed(1)
    encoder_layer = modeling_act.ACTEncoderLayer(config).eval()
    decoder_layer = modeling_act.ACTDecoderLayer(config).eval()
    source, source_pos = _random(SOURCE_LENGTH, BATCH, 512), _random(SOURCE_LENGTH, 1, 512)
    target, target_pos = _random(TARGET_LENGTH, BATCH, 512), _random(TARGET_LENGTH, 1, 512)
    with torch.no_grad():
        memory = encoder_layer(source, pos_embed=source_pos)
        decoded = decoder_layer(
            target, memory, decoder_pos_embed=target_pos, encoder_pos_embed=source_pos
        )

    def batch_first(tensor):
        return np.swapaxes(tensor.numpy(), 0, 1)

    encoder_params = transformer.encoder_layer_params_from_torch(
        _numpy_state(encoder_layer), ACT_CONFIG
    )
    decoder_params = transformer.decoder_layer_params_from_torch(
        _numpy_state(decoder_layer), ACT_CONFIG
    )
    our_memory = transformer.TransformerEncoderLayer(ACT_CONFIG).apply(
        {"params": encoder_params}, batch_first(source), pos=batch_first(source_pos),
        deterministic=True,
    )  # fmt: skip
    our_decoded = transformer.TransformerDecoderLayer(ACT_CONFIG).apply(
        {"params": decoder_params}, batch_first(target), batch_first(memory),
        query_pos=batch_first(target_pos), memory_pos=batch_first(source_pos),
        deterministic=True,
    )  # fmt: skip
    np.testing.assert_allclose(our_memory, batch_first(memory), atol=TOLERANCE)
    np.testing.assert_allclose(our_decoded, batch_first(decoded), atol=TOLERANCE)


def test_position_encodings_match_lerobot_at_act_sizes():
    modeling_act = _modeling_act()
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionSinusoidalPosEmb

    table = modeling_act.create_sinusoidal_pos_embedding(102, 512).numpy()  # VAE encoder input
    np.testing.assert_allclose(position_encoding.sinusoidal_table(102, 512), table, atol=1e-6)
    for size in (3, 7):  # ResNet-18 layer4 at 84 and 224 px
        grid = modeling_act.ACTSinusoidalPositionEmbedding2d(256)(torch.zeros(1, 512, size, size))
        ours = position_encoding.sine_position_embedding_2d(size, size, 512)
        np.testing.assert_allclose(ours, grid[0].permute(1, 2, 0).numpy(), atol=1e-6)
    steps = torch.arange(100)
    with torch.no_grad():
        embedding = DiffusionSinusoidalPosEmb(128)(steps).numpy()
    ours = position_encoding.sinusoidal_timestep_embedding(steps.numpy(), 128)
    np.testing.assert_allclose(ours, embedding, atol=np.spacing(np.float32(99)))
