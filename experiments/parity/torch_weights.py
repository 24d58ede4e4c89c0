"""Reference weight files: `torch.save` and `safetensors` bytes for `core.torch_weights`.

The reference here is PyTorch's own serialization. A zoo of tensors (every storage dtype, a
transposed view, a view at a storage offset, a parameter, a scalar, an empty tensor, a nested
dict) is saved with `torch.save`, with `safetensors.torch.save` (plus float8), and with the
legacy pre-1.6 format; the file bytes go into the fixture as uint8 arrays with the expected
values (as float32/float64/integers) and dtype names, so the CI test writes them to disk and
reads them back without torch.

`seeded_state_dict` (numpy only) derives the weights of any torch module from its names and
shapes; the other parity scripts use it for the reference modules' weights.
"""

from __future__ import annotations

import io
import math

import numpy as np

from experiments.parity.common import seeded_array

FLOAT8_NAMES = ("float8_e4m3fn", "float8_e5m2")
NOT_IN_NUMPY = ("bfloat16", *FLOAT8_NAMES)


def seeded_state_dict(namespace: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Seeded values for a torch state dict, by the role the name gives each entry.

    Weights of rank >= 2 (Linear, Conv): N(0, 1/fan_in) with fan_in the product of all axes
    but the first, so deep stacks keep unit scale. Rank-1 weights (norm γ): 1 + N(0, 0.1²).
    Biases and running means: N(0, 0.1²). Running variances: exp(N(0, 0.3²)), positive.
    """
    state_dict = {}
    for name, shape in shapes.items():
        key = f"{namespace}/{name}"
        if name.endswith("weight") and len(shape) >= 2:
            value = seeded_array(key, shape, 1.0 / math.sqrt(math.prod(shape[1:])))
        elif name.endswith("weight"):
            value = 1.0 + seeded_array(key, shape, 0.1)
        elif name.endswith(("bias", "running_mean")):
            value = seeded_array(key, shape, 0.1)
        elif name.endswith("running_var"):
            value = np.exp(seeded_array(key, shape, 0.3))
        else:
            raise ValueError(f"no seeding rule for state-dict entry {name!r}")
        state_dict[name] = value.astype(np.float32)
    return state_dict


def _tensor_zoo(torch) -> dict:
    """Tensors covering what a torch.save state dict can hold."""
    base = torch.from_numpy(seeded_array("torch_weights/base", (3, 4)))
    return {
        "float32": base,
        "transposed_view": base.t(),  # strides (1, 4) on the base's storage
        "offset_view": base[1],  # storage offset 4
        "float64": torch.from_numpy(seeded_array("torch_weights/float64", (2, 3))).double(),
        "float16": torch.from_numpy(seeded_array("torch_weights/float16", (5,))).half(),
        "bfloat16": torch.from_numpy(seeded_array("torch_weights/bfloat16", (2, 2))).bfloat16(),
        "int64_scalar": torch.tensor(7),
        "int32": torch.arange(-3, 3, dtype=torch.int32),
        "int16": torch.arange(4, dtype=torch.int16),
        "int8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "uint8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 3),
        "parameter": torch.nn.Parameter(torch.ones(2, 2)),
    }


def _expected(prefix: str, tensors: dict) -> dict[str, np.ndarray]:
    """Each tensor's values (bfloat16 and float8, which numpy lacks, as exact float32) and its
    dtype name."""
    arrays = {}
    for name, tensor in tensors.items():
        dtype_name = str(tensor.dtype).removeprefix("torch.")
        values = tensor.detach()
        if dtype_name in NOT_IN_NUMPY:
            values = values.float()
        arrays[f"{prefix}/value/{name}"] = values.numpy()
        arrays[f"{prefix}/dtype/{name}"] = np.array(dtype_name)
    return arrays


def _file_bytes(save) -> np.ndarray:
    buffer = io.BytesIO()
    save(buffer)
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


def generate() -> dict[str, np.ndarray]:
    import torch
    from safetensors.torch import save as save_safetensors

    zoo = _tensor_zoo(torch)
    pth_state = {**zoo, "nested": {"inner": zoo["int32"] * 2}}
    safetensors_state = {
        name: tensor.detach().contiguous().clone()
        for name, tensor in zoo.items()
        if name not in ("transposed_view", "offset_view", "parameter")
    }
    for name in FLOAT8_NAMES:
        values = torch.from_numpy(seeded_array(f"torch_weights/{name}", (4,)))
        safetensors_state[name] = values.to(getattr(torch, name))
    return {
        "pth_bytes": _file_bytes(lambda buffer: torch.save(pth_state, buffer)),
        "safetensors_bytes": np.frombuffer(save_safetensors(safetensors_state), np.uint8),
        "legacy_pth_bytes": _file_bytes(
            lambda buffer: torch.save(
                {"weight": zoo["float32"]}, buffer, _use_new_zipfile_serialization=False
            )
        ),
        **_expected("pth", {**zoo, "nested.inner": pth_state["nested"]["inner"]}),
        **_expected("safetensors", safetensors_state),
    }
