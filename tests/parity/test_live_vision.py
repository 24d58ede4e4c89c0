"""Live parity of the ResNet-18 backbone and spatial softmax with torchvision and LeRobot.

Skipped unless torch is installed (the `parity` extra); run it in the parity environment:

    PYTHONPATH=. /work/parity-venv/bin/python -m pytest tests/parity/test_live_vision.py

It checks that the committed golden fixtures are what the references output today, then loads
torch's own (randomized) weights the way a user would, through a weight file written by torch
and `core.torch_weights.read_state_dict`, and compares every stage at ACT's and the book's image
sizes.
"""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core import resnet, spatial_softmax, torch_weights
from experiments.parity import resnet as resnet_reference
from experiments.parity.common import FIXTURE_DIR, import_torchvision

torch = pytest.importorskip("torch")

TOLERANCE = 1e-5  # max |ours - torch| / max |torch|


@pytest.mark.parametrize("name", ["resnet", "spatial_softmax"])
def test_committed_fixtures_equal_a_fresh_reference_run(name):
    fresh = importlib.import_module(f"experiments.parity.{name}").generate()
    committed = np.load(f"{FIXTURE_DIR}/{name}.npz")
    assert sorted(fresh) == sorted(committed.files)
    for key, array in fresh.items():
        np.testing.assert_allclose(committed[key], array, atol=1e-6, err_msg=key)


def _randomize_norms(model, generator):
    """Non-trivial γ, β and running statistics, as pretrained weights have."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith(("bn1.weight", "bn2.weight", "downsample.1.weight")):
                tensor.copy_(1 + 0.2 * torch.randn(tensor.shape, generator=generator))
            elif name.endswith(("bn1.bias", "bn2.bias", "downsample.1.bias", "running_mean")):
                tensor.copy_(0.2 * torch.randn(tensor.shape, generator=generator))
            elif name.endswith("running_var"):
                tensor.copy_(torch.exp(0.3 * torch.randn(tensor.shape, generator=generator)))


def _save(state_dict, path, file_format):
    if file_format == "pth":
        torch.save(state_dict, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state_dict.items()}, path)


@pytest.mark.parametrize(
    ("norm", "file_format", "size", "batch"),
    [
        ("frozen_batch_norm", "pth", 84, 2),
        ("frozen_batch_norm", "safetensors", 224, 1),
        ("group_norm", "safetensors", 84, 2),
    ],
)
def test_every_stage_matches_torchvision_with_weights_read_from_a_torch_file(
    tmp_path, norm, file_format, size, batch
):
    torchvision = import_torchvision()
    generator = torch.Generator().manual_seed(size)
    # frozen_batch_norm: an ImageNet-style checkpoint, BatchNorm2d with running statistics and
    # step counters; group_norm: Diffusion Policy's backbone.
    norm_layer = None if norm == "frozen_batch_norm" else lambda c: torch.nn.GroupNorm(c // 16, c)
    trained = torchvision.models.resnet18(weights=None, norm_layer=norm_layer)
    _randomize_norms(trained, generator)
    state_dict = trained.state_dict()
    path = tmp_path / f"resnet18.{file_format}"
    _save(state_dict, path, file_format)
    variables = resnet.resnet_variables_from_torchvision(torch_weights.read_state_dict(path), norm)

    reference = resnet_reference.build_torchvision_resnet18(
        norm,
        {k: v.numpy() for k, v in state_dict.items() if not k.endswith("num_batches_tracked")},
    )
    images = torch.randn(batch, 3, size, size, generator=generator)
    expected = resnet_reference.torchvision_stages(reference, images.numpy())
    model = resnet.ResNet(norm)
    stages = jax.jit(lambda v, x: model.apply(v, x, method=resnet.ResNet.feature_stages))(
        variables, jnp.asarray(images.numpy().transpose(0, 2, 3, 1))
    )
    for name in resnet.STAGE_NAMES:
        torch_stage = expected[name].transpose(0, 2, 3, 1)
        assert stages[name].shape == torch_stage.shape, name
        error = np.abs(stages[name] - torch_stage).max() / np.abs(torch_stage).max()
        assert error < TOLERANCE, (name, error)


@pytest.mark.parametrize("num_keypoints", [32, None])
def test_spatial_softmax_matches_lerobot_on_a_diffusion_policy_feature_map(num_keypoints):
    import_torchvision()
    from lerobot.policies.diffusion.modeling_diffusion import SpatialSoftmax

    torch.manual_seed(0)
    shape = (512, 3, 3)  # layer4 of an 84 px crop
    reference = SpatialSoftmax(shape, num_kp=num_keypoints).eval()
    features = 3 * torch.randn(4, *shape)
    with torch.no_grad():
        expected = reference(features).numpy()
    module = spatial_softmax.SpatialSoftmax(num_keypoints)
    variables = {}
    if num_keypoints is not None:
        state_dict = {k: v.numpy() for k, v in reference.state_dict().items()}
        variables = {
            "params": spatial_softmax.spatial_softmax_params_from_lerobot(state_dict, module)
        }
    keypoints = jax.jit(module.apply)(
        variables, jnp.asarray(features.numpy().transpose(0, 2, 3, 1))
    )
    np.testing.assert_allclose(keypoints, expected, atol=TOLERANCE)


def test_diffusion_policy_rgb_encoder_backbone_and_keypoints_match_lerobot():
    import_torchvision()
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionRgbEncoder

    torch.manual_seed(0)
    config = DiffusionConfig(
        input_features={
            "observation.state": PolicyFeature(FeatureType.STATE, (2,)),
            "observation.image": PolicyFeature(FeatureType.VISUAL, (3, 96, 96)),
        },
        output_features={"action": PolicyFeature(FeatureType.ACTION, (2,))},
        pretrained_backbone_weights=None,
    )
    encoder = DiffusionRgbEncoder(config).eval()  # GroupNorm backbone kept as nn.Sequential
    with torch.no_grad():
        for name, tensor in encoder.state_dict().items():
            if name.startswith("backbone.") and tensor.ndim == 1:  # GroupNorm γ, β
                tensor.add_(0.2 * torch.randn(tensor.shape))
    images = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        expected = encoder.pool(encoder.backbone(images)).numpy()
    state_dict = {k: v.numpy() for k, v in encoder.state_dict().items()}
    backbone_variables = resnet.resnet_variables_from_torchvision(
        resnet.torchvision_names_from_sequential(state_dict, "backbone."), "group_norm"
    )
    pool = spatial_softmax.SpatialSoftmax(config.spatial_softmax_num_keypoints)
    pool_params = spatial_softmax.spatial_softmax_params_from_lerobot(
        state_dict, pool, prefix="pool."
    )

    @jax.jit
    def keypoints(x):
        return pool.apply(
            {"params": pool_params}, resnet.ResNet("group_norm").apply(backbone_variables, x)
        )

    ours = keypoints(jnp.asarray(images.numpy().transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(ours, expected, atol=TOLERANCE)
