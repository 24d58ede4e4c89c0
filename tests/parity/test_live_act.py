"""Live parity of act with LeRobot's ACTPolicy (0.4.4) at full size, through its own files.

Skipped unless torch is installed (the `parity` extra); run it in the parity environment:

    PYTHONPATH=. /work/parity-venv/bin/python -m pytest tests/parity/test_live_act.py

It checks that the committed golden fixture is what LeRobot outputs today, then builds
LeRobot's default ACT (d_model 512, 8 heads, feed-forward 3200, 4 encoder, 1 decoder and 4
CVAE-encoder layers, d_z 32, k = 100) for a 14-dimensional robot and one 84×84 camera, with
PyTorch's random initialization and non-trivial frozen batch-norm statistics, saves it with
`save_pretrained`, loads the directory with `act.convert.load_lerobot_checkpoint`, and
compares the eval-mode chunk (z = 0) and the training forward (dropout 0, the same ε).
"""

from unittest import mock

import jax
import numpy as np
import pytest

from act import convert
from act.model import ACT
from core import torch_weights
from experiments.parity import act as reference
from experiments.parity.common import FIXTURE_DIR, import_torchvision

torch = pytest.importorskip("torch")

TOLERANCE = 1e-4  # the bar on max |ours - LeRobot|
BATCH, STATE_DIM, ACTION_DIM, IMAGE_SIZE, CHUNK, LATENT = 2, 14, 14, 84, 100, 32


def test_committed_fixture_equals_a_fresh_reference_run(tmp_path):
    fresh = reference.generate()
    committed = np.load(f"{FIXTURE_DIR}/act.npz")
    assert sorted(fresh) == sorted(committed.files)
    for key, array in fresh.items():
        if key.endswith("model.safetensors"):  # compare the tensors, not the file layout
            files = {}
            for name, data in (("fresh", array), ("committed", committed[key])):
                (tmp_path / name).write_bytes(data.tobytes())
                files[name] = torch_weights.read_state_dict(tmp_path / name)
            jax.tree.map(np.testing.assert_array_equal, files["fresh"], files["committed"])
        elif key.endswith("config.json"):
            assert array.tobytes() == committed[key].tobytes()
        else:
            np.testing.assert_allclose(committed[key], array, atol=1e-6, err_msg=key)


def _lerobot_policy(dropout: float):
    import_torchvision()
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy

    config = ACTConfig(
        input_features={
            "observation.state": PolicyFeature(FeatureType.STATE, (STATE_DIM,)),
            "observation.images.top": PolicyFeature(
                FeatureType.VISUAL, (3, IMAGE_SIZE, IMAGE_SIZE)
            ),
        },
        output_features={"action": PolicyFeature(FeatureType.ACTION, (ACTION_DIM,))},
        pretrained_backbone_weights=None,
        dropout=dropout,
    )
    return ACTPolicy(config)


def _randomize_frozen_batch_norms(policy, generator) -> None:
    """Statistics and affine parameters as a pretrained backbone has them (torch's init makes
    every FrozenBatchNorm2d the identity)."""
    norms = ("bn1.", "bn2.", "downsample.1.")
    with torch.no_grad():
        for name, tensor in policy.state_dict().items():
            if not (name.startswith("model.backbone.") and any(norm in name for norm in norms)):
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.exp(0.3 * torch.randn(tensor.shape, generator=generator)))
            elif name.endswith("weight"):
                tensor.copy_(1 + 0.2 * torch.randn(tensor.shape, generator=generator))
            else:
                tensor.copy_(0.2 * torch.randn(tensor.shape, generator=generator))


def _inputs(generator) -> dict:
    return {
        "observation.state": torch.randn(BATCH, STATE_DIM, generator=generator),
        "observation.images.top": torch.rand(BATCH, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
        "action": torch.randn(BATCH, CHUNK, ACTION_DIM, generator=generator),
        "action_is_pad": torch.arange(CHUNK).expand(BATCH, CHUNK) >= torch.tensor([[CHUNK], [60]]),
        "latent_noise": torch.randn(BATCH, LATENT, generator=generator),
    }


def _lerobot_batch(inputs: dict) -> dict:
    batch = {key: value for key, value in inputs.items() if key != "latent_noise"}
    images = torch.from_numpy(reference.normalized_images(inputs["observation.images.top"].numpy()))
    return {**batch, "observation.images.top": images}


def _our_observation(inputs: dict) -> dict:
    return {
        "observation.state": inputs["observation.state"].numpy()[:, None],
        "observation.images.top": np.moveaxis(inputs["observation.images.top"].numpy(), 1, -1)[
            :, None
        ],
    }


def test_a_full_size_lerobot_checkpoint_reproduces_lerobots_chunks(tmp_path):
    generator = torch.Generator().manual_seed(0)
    lerobot = _lerobot_policy(dropout=0.1)
    _randomize_frozen_batch_norms(lerobot, generator)
    lerobot.save_pretrained(tmp_path)
    checkpoint = convert.load_lerobot_checkpoint(tmp_path)
    inputs = _inputs(generator)
    batch = _lerobot_batch(inputs)
    observation = {key: value for key, value in batch.items() if key.startswith("observation.")}
    with torch.no_grad():
        expected = lerobot.predict_action_chunk(observation).numpy()
    ours = checkpoint.policy.predict_chunk(
        checkpoint.variables, _our_observation(inputs), jax.random.key(0)
    )
    error = np.abs(np.asarray(ours) - expected).max()
    print(f"full-size predict_chunk: max |ours - LeRobot| = {error:.2e}")
    assert error < TOLERANCE

    from lerobot.policies.act import modeling_act

    without_dropout = _lerobot_policy(dropout=0.0)
    without_dropout.load_state_dict(lerobot.state_dict())
    without_dropout.train()
    noise = inputs["latent_noise"]
    with torch.no_grad(), mock.patch.object(modeling_act.torch, "randn_like", lambda _: noise):
        model_batch = {**batch, "observation.images": [batch["observation.images.top"]]}
        actions_hat, (mu, log_sigma_x2) = without_dropout.model(model_batch)
    policy = checkpoint.policy
    predicted, mean, log_var = policy.module.apply(
        checkpoint.variables,
        inputs["action"].numpy(),
        inputs["action_is_pad"].numpy(),
        noise.numpy(),
        **policy.network_inputs(_our_observation(inputs)),
        deterministic=True,
        method=ACT.reconstruct,
    )
    for name, ours_value, theirs in (
        ("actions_hat", predicted, actions_hat),
        ("mu", mean, mu),
        ("log_sigma_x2", log_var, log_sigma_x2),
    ):
        error = np.abs(np.asarray(ours_value) - theirs.numpy()).max()
        print(f"full-size training forward {name}: max |ours - LeRobot| = {error:.2e}")
        assert error < TOLERANCE, name
