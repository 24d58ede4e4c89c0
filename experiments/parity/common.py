"""Shared helpers of the parity scripts: seeded arrays and the torchvision import shim.

Importable without PyTorch: the JAX-side tests use `seeded_array` to rebuild exactly the
weights and inputs the reference run used.
"""

from __future__ import annotations

import sys
import types
import zlib

import numpy as np

FIXTURE_DIR = "tests/fixtures/parity"


def seeded_array(name: str, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    """A float32 array of N(0, scale²) values determined by `name` alone.

    The name (e.g. "encoder_layer/linear1.weight") seeds the generator, so the reference
    script and the JAX test draw identical values without sharing state or files.
    """
    seed = zlib.crc32(name.encode())
    generator = np.random.default_rng(seed)
    return (scale * generator.standard_normal(shape)).astype(np.float32)


def import_torchvision():
    """Imports torchvision beside the CPU build of torch.

    PyPI's torchvision wheel registers CUDA-only operators at import time and fails beside
    CPU torch ("operator torchvision::nms does not exist"); the pure-Python models we need
    (resnet18, FrozenBatchNorm2d) do not use them, so the registration module is stubbed.
    """
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    import torchvision

    return torchvision
