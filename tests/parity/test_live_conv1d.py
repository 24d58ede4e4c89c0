"""Live parity of the temporal U-Net blocks with LeRobot's Diffusion Policy and torch's convs.

Skipped unless torch is installed (the `parity` extra); run it in the parity environment:

    PYTHONPATH=. /work/parity-venv/bin/python -m pytest tests/parity/test_live_conv1d.py

It checks that the committed golden fixtures (blocks and weight files) are what the references
output today, then reads a whole LeRobot U-Net's state dict from a `.safetensors` file and runs
its blocks through our converters (the real naming, selected by prefix), at Diffusion Policy's
sizes, and compares torch's Conv1d/ConvTranspose1d over a range of kernel/stride/padding.
"""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core import conv1d, torch_weights
from experiments.parity.common import FIXTURE_DIR, import_torchvision

torch = pytest.importorskip("torch")

TOLERANCE = 1e-5  # max |ours - torch| / max |torch|
BATCH, HORIZON, CONDITION_DIM = 4, 16, 260  # LeRobot's default: 128 step + 2·(64 + 2) obs


@pytest.mark.parametrize("name", ["conv1d", "torch_weights"])
def test_committed_fixtures_equal_a_fresh_reference_run(tmp_path, name):
    # File bytes differ between saves (torch writes a random serialization id): compare what
    # they hold instead.
    fresh = importlib.import_module(f"experiments.parity.{name}").generate()
    committed = np.load(f"{FIXTURE_DIR}/{name}.npz")
    assert sorted(fresh) == sorted(committed.files)
    for key, array in fresh.items():
        if key.endswith("_bytes"):
            suffix = "safetensors" if "safetensors" in key else "pth"
            paths = [tmp_path / f"fresh.{suffix}", tmp_path / f"committed.{suffix}"]
            paths[0].write_bytes(array.tobytes())
            paths[1].write_bytes(committed[key].tobytes())
            if key.startswith("legacy"):
                continue  # unreadable by design; tests/core checks the error
            fresh_dict, committed_dict = map(torch_weights.read_state_dict, paths)
            assert sorted(fresh_dict) == sorted(committed_dict), key
            for entry in fresh_dict:
                np.testing.assert_array_equal(fresh_dict[entry], committed_dict[entry])
        elif array.dtype.kind == "f":
            np.testing.assert_allclose(committed[key], array, atol=1e-6, err_msg=key)
        else:  # dtype names, integers, booleans
            np.testing.assert_array_equal(committed[key], array, err_msg=key)


def _relative_error(ours, expected) -> float:
    return float(np.abs(np.asarray(ours) - expected).max() / np.abs(expected).max())


def _ntc(tensor) -> jax.Array:
    return jnp.asarray(tensor.numpy().transpose(0, 2, 1))


@pytest.fixture(scope="module")
def lerobot_unet(tmp_path_factory):
    """A LeRobot U-Net (down_dims 256/512, torch's init) and its state dict read from a file."""
    import_torchvision()
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionConditionalUnet1d
    from safetensors.torch import save_file

    torch.manual_seed(0)
    config = DiffusionConfig(
        input_features={"observation.state": PolicyFeature(FeatureType.STATE, (2,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (2,))},
        down_dims=(256, 512),
        pretrained_backbone_weights=None,
    )
    unet = DiffusionConditionalUnet1d(config, global_cond_dim=CONDITION_DIM - 128).eval()
    with torch.no_grad():  # GroupNorm starts at γ = 1, β = 0: make them count
        for name, tensor in unet.state_dict().items():
            if ".block.1." in name:
                tensor.add_(0.2 * torch.randn(tensor.shape))
    path = tmp_path_factory.mktemp("unet") / "model.safetensors"
    save_file(unet.state_dict(), path)
    return unet, config, torch_weights.read_state_dict(path)


@pytest.mark.parametrize(
    ("prefix", "in_channels"),
    [("down_modules.0.0.", 2), ("down_modules.1.1.", 512), ("up_modules.0.0.", 1024)],
)
def test_unet_residual_blocks_match_lerobot(lerobot_unet, prefix, in_channels):
    unet, config, state_dict = lerobot_unet
    reference = unet.get_submodule(prefix.rstrip("."))
    block = conv1d.ConditionalResidualBlock1d(
        features=reference.out_channels,
        kernel_size=config.kernel_size,
        num_groups=config.n_groups,
        use_film_scale=config.use_film_scale_modulation,
    )
    params = conv1d.residual_block_params_from_lerobot(state_dict, block, prefix=prefix)
    x = torch.randn(BATCH, in_channels, HORIZON)
    condition = torch.randn(BATCH, CONDITION_DIM)
    with torch.no_grad():
        expected = reference(x, condition).numpy().transpose(0, 2, 1)
    ours = jax.jit(block.apply)({"params": params}, _ntc(x), jnp.asarray(condition.numpy()))
    assert _relative_error(ours, expected) < TOLERANCE


def test_unet_resampling_and_final_block_match_lerobot(lerobot_unet):
    unet, config, state_dict = lerobot_unet
    cases = [
        ("down_modules.0.2.", conv1d.Downsample1d(256), conv1d.conv1d_params_from_torch),
        ("up_modules.0.2.", conv1d.Upsample1d(256), conv1d.conv_transpose1d_params_from_torch),
        (
            "final_conv.0.",
            conv1d.Conv1dBlock(256, config.kernel_size, config.n_groups),
            conv1d.conv1d_block_params_from_lerobot,
        ),
    ]
    for prefix, module, convert in cases:
        params = convert(state_dict, module, prefix=prefix)
        x = torch.randn(BATCH, 256, HORIZON)
        with torch.no_grad():
            expected = unet.get_submodule(prefix.rstrip("."))(x).numpy().transpose(0, 2, 1)
        ours = jax.jit(module.apply)({"params": params}, _ntc(x))
        assert _relative_error(ours, expected) < TOLERANCE, prefix


@pytest.mark.parametrize(
    ("kernel_size", "stride", "padding", "horizon"),
    [(4, 2, 1, 8), (3, 2, 1, 9), (5, 3, 2, 7), (2, 2, 0, 5), (7, 1, 3, 6)],
)
def test_conv_and_transposed_conv_match_torch(kernel_size, stride, padding, horizon):
    torch.manual_seed(kernel_size * 10 + stride)
    x = torch.randn(BATCH, 8, horizon)
    for reference, module, convert in (
        (
            torch.nn.Conv1d(8, 6, kernel_size, stride, padding),
            conv1d.Conv1d(6, kernel_size, stride, padding),
            conv1d.conv1d_params_from_torch,
        ),
        (
            torch.nn.ConvTranspose1d(8, 6, kernel_size, stride, padding),
            conv1d.ConvTranspose1d(6, kernel_size, stride, padding),
            conv1d.conv_transpose1d_params_from_torch,
        ),
    ):
        state_dict = {k: v.detach().numpy() for k, v in reference.state_dict().items()}
        with torch.no_grad():
            expected = reference(x).numpy().transpose(0, 2, 1)
        ours = jax.jit(module.apply)({"params": convert(state_dict, module)}, _ntc(x))
        assert ours.shape == expected.shape
        assert _relative_error(ours, expected) < TOLERANCE
