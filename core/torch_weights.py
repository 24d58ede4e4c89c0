"""PyTorch weights in flax: reading weight files without torch and mapping state dicts to params.

Users bring weights trained elsewhere (torchvision's ImageNet ResNet-18, a LeRobot policy); this
module reads them and checks them, with no PyTorch installed:

- `read_state_dict` reads a state dict (name -> array) from a `.safetensors` file (an 8-byte
  little-endian header length, a JSON header giving each tensor's dtype, shape and byte range,
  then the raw buffer) or from a `torch.save` file (`.pth`, `.pt`, `.ckpt`, `.bin`: a zip
  archive holding `data.pkl`, a pickle whose tensors point at raw storage records `data/<key>`).
  The pickle is read by a restricted unpickler that knows exactly the callables a state dict
  needs (tensor and parameter rebuilding, storage types, OrderedDict) and refuses every other
  global, so loading a file never executes code from it. The format is recognised from the
  bytes, not the suffix.
- `KeyRule` and `convert_state_dict` map torch names onto a flax variables tree, transposing
  layouts (`conv_kernel_from_torch`, `linear_kernel_from_torch`), and check every name and shape
  against the model; `check_tree_shapes` is the general check of a params tree against the
  shapes a model expects (`jax.eval_shape(model.init, ...)`). Errors name the offending key and
  both shapes.
- `torch_default_kernel_init` and `torch_default_bias_init` reproduce PyTorch's default
  initialization of Linear and Conv layers, for modules that mirror torch layers trained from
  scratch.
"""

from __future__ import annotations

import collections
import io
import json
import math
import os
import pickle
import zipfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

StateDict = dict[str, np.ndarray]

_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": jnp.bfloat16,
    "F8_E4M3": jnp.float8_e4m3fn,
    "F8_E5M2": jnp.float8_e5m2,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U64": np.uint64,
    "U32": np.uint32,
    "U16": np.uint16,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
_SAFETENSORS_MAX_HEADER_BYTES = 100_000_000  # the format's own limit

_TORCH_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": jnp.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_TORCH_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[:-1]
"""torch.save before 1.6 started with this pickled magic number (without the STOP opcode)."""


class WeightFileError(ValueError):
    """A weight file that cannot be read: corrupt, truncated, unsupported or unsafe."""


# ---------------------------------------------------------------------------------------------
# Reading files.


def read_state_dict(path: str | os.PathLike) -> StateDict:
    """Reads a PyTorch state dict from a `.safetensors` or `torch.save` file, without torch.

    Nested dicts (e.g. a checkpoint {"model": state_dict}) are flattened with "." separators,
    as torch names nested modules.

    Args:
      path: a local file.

    Returns:
      {name: array} with the file's dtypes (bfloat16 and float8 as ml_dtypes numpy types).

    Raises:
      WeightFileError (a ValueError) naming the file for a corrupt or truncated file, an
      unknown format or dtype, a pickle that references anything but tensors, or an entry
      that is not a tensor.
    """
    path = os.fspath(path)
    with open(path, "rb") as file:
        start = file.read(len(_LEGACY_TORCH_MAGIC))
    if start.startswith(_ZIP_MAGIC):
        tree = _read_torch_zip(path)
    elif start == _LEGACY_TORCH_MAGIC:
        raise WeightFileError(
            f"{path}: a legacy (pre-1.6) torch.save file; re-save it with a current torch "
            "(torch.save(torch.load(path), path)) or as .safetensors"
        )
    else:
        with open(path, "rb") as file:
            tree = _read_safetensors(path, bytearray(file.read()))
    return _flatten_tensors(path, tree)


def _read_safetensors(path: str, contents: bytearray) -> StateDict:
    """The safetensors layout: u64 header size N, N bytes of JSON, then the tensor buffer."""
    if len(contents) < 8:
        raise WeightFileError(
            f"{path}: {len(contents)} bytes is too short for a safetensors or torch.save file"
        )
    header_size = int.from_bytes(contents[:8], "little")
    if header_size > min(len(contents) - 8, _SAFETENSORS_MAX_HEADER_BYTES):
        raise WeightFileError(
            f"{path}: not a safetensors or torch.save file, or truncated: the safetensors "
            f"header would be {header_size} bytes but the file has {len(contents)}"
        )
    try:
        header = json.loads(contents[8 : 8 + header_size])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightFileError(f"{path}: unreadable safetensors header ({error})") from error
    if not isinstance(header, dict):
        raise WeightFileError(f"{path}: the safetensors header is not a JSON object")
    buffer = memoryview(contents)[8 + header_size :]
    return {
        name: _safetensors_tensor(path, name, entry, buffer)
        for name, entry in header.items()
        if name != "__metadata__"
    }


def _safetensors_tensor(path: str, name: str, entry: Any, buffer: memoryview) -> np.ndarray:
    try:
        dtype_name, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        shape = tuple(int(size) for size in shape)
    except (TypeError, KeyError, ValueError) as error:
        raise WeightFileError(
            f"{path}: safetensors entry {name!r} must hold dtype, shape and data_offsets, "
            f"got {entry!r}"
        ) from error
    if dtype_name not in _SAFETENSORS_DTYPES:
        raise WeightFileError(
            f"{path}: tensor {name!r} has unsupported dtype {dtype_name!r} "
            f"(known: {', '.join(_SAFETENSORS_DTYPES)})"
        )
    dtype = np.dtype(_SAFETENSORS_DTYPES[dtype_name])
    expected_bytes = math.prod(shape) * dtype.itemsize
    if min(shape, default=0) < 0 or not 0 <= begin <= end or end - begin != expected_bytes:
        raise WeightFileError(
            f"{path}: tensor {name!r} of shape {list(shape)} and dtype {dtype_name} needs "
            f"{expected_bytes} bytes, but its data_offsets are [{begin}, {end}]"
        )
    if end > len(buffer):
        raise WeightFileError(
            f"{path}: truncated: tensor {name!r} ends at byte {end} of the data buffer, which "
            f"has {len(buffer)} bytes"
        )
    return np.frombuffer(buffer[begin:end], dtype=dtype).reshape(shape)


class _StorageType(NamedTuple):
    """A torch storage class named in the pickle (torch.FloatStorage, ...): its numpy dtype."""

    name: str
    dtype: np.dtype


class _Storage(NamedTuple):
    """One raw storage record of the archive, as a flat numpy array."""

    key: str
    values: np.ndarray


def _rebuild_tensor(storage, storage_offset, size, stride, *unused_grad_hooks_metadata):
    """torch._utils._rebuild_tensor_v2: a strided view of a storage, copied into an array."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError(f"a tensor must be built on a storage, got {type(storage)}")
    size, stride = tuple(size), tuple(stride)
    if len(size) != len(stride) or min((*size, *stride, storage_offset), default=0) < 0:
        raise pickle.UnpicklingError(
            f"tensor with invalid size {size}, stride {stride} or offset {storage_offset}"
        )
    if math.prod(size) == 0:
        return np.zeros(size, storage.values.dtype)
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= storage.values.size:
        raise pickle.UnpicklingError(
            f"tensor of size {size}, stride {stride} and offset {storage_offset} reads past "
            f"the {storage.values.size} elements of storage {storage.key}"
        )
    itemsize = storage.values.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage.values[storage_offset:],
        shape=size,
        strides=tuple(s * itemsize for s in stride),
        writeable=False,
    )
    return np.array(view)


def _rebuild_parameter(data, *unused_requires_grad_hooks_state):
    """torch._utils._rebuild_parameter(_with_state): an nn.Parameter is its data."""
    return data


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{
        ("torch", name): _StorageType(name, np.dtype(dtype))
        for name, dtype in _TORCH_STORAGE_DTYPES.items()
    },
}


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a torch.save archive's data.pkl, resolving only `_SAFE_GLOBALS`.

    Python's unpickler can only call objects that `find_class` returned, so refusing every
    other global means no code from the file runs. Storages are persistent ids
    ('storage', storage type, key, location, numel) resolved to the archive's raw records.
    """

    def __init__(self, file, archive: zipfile.ZipFile, record_prefix: str, path: str):
        super().__init__(file)
        self._archive = archive
        self._record_prefix = record_prefix
        self._path = path
        self._storages: dict[tuple[str, np.dtype], _Storage] = {}

    def find_class(self, module: str, name: str):
        if (module, name) not in _SAFE_GLOBALS:
            raise WeightFileError(
                f"{self._path}: refusing to load {module}.{name}: only tensors, parameters and "
                "(ordered) dicts of them can be read without executing code from the file"
            )
        return _SAFE_GLOBALS[(module, name)]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise WeightFileError(f"{self._path}: unknown persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise WeightFileError(f"{self._path}: unknown storage type {storage_type!r}")
        cache_key = (str(key), storage_type.dtype)
        if cache_key not in self._storages:
            record = f"{self._record_prefix}data/{key}"
            try:
                raw = self._archive.read(record)
            except KeyError as error:
                raise WeightFileError(f"{self._path}: missing storage record {record}") from error
            values = np.frombuffer(raw, dtype=storage_type.dtype)
            if values.size < numel:
                raise WeightFileError(
                    f"{self._path}: storage record {record} holds {values.size} elements of "
                    f"{storage_type.name}, the pickle expects {numel}"
                )
            self._storages[cache_key] = _Storage(record, values)
        return self._storages[cache_key]


def _read_torch_zip(path: str) -> Any:
    """The torch.save zip layout: <prefix>/data.pkl, <prefix>/data/<key>, <prefix>/byteorder."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pickles = [name for name in names if name.endswith("data.pkl")]
            if len(pickles) != 1:
                raise WeightFileError(
                    f"{path}: a torch.save archive holds exactly one data.pkl, found {pickles}"
                )
            record_prefix = pickles[0][: -len("data.pkl")]
            if f"{record_prefix}byteorder" in names:
                byteorder = archive.read(f"{record_prefix}byteorder").decode()
                if byteorder != "little":
                    raise WeightFileError(f"{path}: {byteorder}-endian tensors are not supported")
            data = io.BytesIO(archive.read(pickles[0]))
            return _StateDictUnpickler(data, archive, record_prefix, path).load()
    except WeightFileError:
        raise
    except (
        zipfile.BadZipFile,
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,  # e.g. a tensor rebuilt from arguments of the wrong kind
        IndexError,
        KeyError,
        AttributeError,
    ) as error:
        raise WeightFileError(
            f"{path}: corrupt or truncated torch.save archive ({error})"
        ) from error


def _flatten_tensors(path: str, tree: Any) -> StateDict:
    if not isinstance(tree, Mapping):
        raise WeightFileError(
            f"{path}: a state dict must be a mapping of names to tensors, got {type(tree)}"
        )
    flat: StateDict = {}
    for name, value in tree.items():
        if isinstance(value, Mapping):
            nested = _flatten_tensors(path, value)
            flat.update({f"{name}.{inner}": array for inner, array in nested.items()})
        elif isinstance(value, np.ndarray):
            flat[str(name)] = value
        else:
            raise WeightFileError(
                f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor"
            )
    return flat


# ---------------------------------------------------------------------------------------------
# Layouts and checks.


def conv_kernel_from_torch(weight: np.ndarray) -> np.ndarray:
    """A torch Conv kernel [O, I, *K] (OIW, OIHW) as a flax one [*K, I, O] (WIO, HWIO)."""
    weight = np.asarray(weight)
    if weight.ndim < 3:
        raise ValueError(
            f"a torch conv weight must be [out, in, *kernel], got shape {list(weight.shape)}"
        )
    return np.transpose(weight, (*range(2, weight.ndim), 1, 0))


def conv_transpose_kernel_from_torch(weight: np.ndarray) -> np.ndarray:
    """A torch ConvTranspose weight [I, O, *K] as [*K, I, O] (I, O of the transposed conv)."""
    weight = np.asarray(weight)
    if weight.ndim < 3:
        raise ValueError(
            f"a torch transposed-conv weight must be [in, out, *kernel], got {list(weight.shape)}"
        )
    return np.transpose(weight, (*range(2, weight.ndim), 0, 1))


def linear_kernel_from_torch(weight: np.ndarray) -> np.ndarray:
    """A torch Linear weight [out, in] (y = x Wᵀ) as a flax Dense kernel [in, out] (y = x W)."""
    weight = np.asarray(weight)
    if weight.ndim != 2:
        raise ValueError(f"a torch linear weight must be [out, in], got {list(weight.shape)}")
    return weight.T


def _path_text(path: Sequence[Any]) -> str:
    return "/".join(str(part) for part in path)


def _leaf_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        jax.tree_util.keystr(path, simple=True, separator="/"): tuple(np.shape(leaf))
        for path, leaf in leaves
    }


def check_tree_shapes(tree: Any, expected: Any, *, name: str = "params") -> None:
    """Raises ValueError unless `tree` has exactly the leaves and shapes of `expected`.

    Args:
      tree: a pytree of arrays, e.g. converted params.
      expected: a pytree with the same structure whose leaves have `.shape`, typically
        `jax.eval_shape(model.init, rng, example_input)` (arrays work too).
      name: what the tree is, for the message.

    Raises:
      ValueError listing every missing and unexpected key, and every key whose shape differs,
      with both shapes (keys as slash-separated paths, e.g. "params/conv1/kernel").
    """
    actual, wanted = _leaf_shapes(tree), _leaf_shapes(expected)
    problems = [
        f"missing {key} of shape {list(wanted[key])}" for key in wanted if key not in actual
    ]
    problems += [
        f"unexpected {key} of shape {list(actual[key])}" for key in actual if key not in wanted
    ]
    problems += [
        f"{key} has shape {list(actual[key])}, expected {list(wanted[key])}"
        for key in wanted
        if key in actual and actual[key] != wanted[key]
    ]
    if problems:
        raise ValueError(f"{name} do not fit the model: " + "; ".join(problems))


def variable_paths(expected: Any) -> list[tuple[str, ...]]:
    """The key path of every leaf of a nested dict, e.g. ("params", "conv1", "kernel")."""
    leaves = jax.tree_util.tree_leaves_with_path(expected)
    return [tuple(str(key.key) for key in path) for path, _ in leaves]


def entry_shape(state_dict: Mapping[str, np.ndarray], name: str) -> tuple[int, ...]:
    """The shape of state_dict[name]; ValueError naming the key when it is missing."""
    if name not in state_dict:
        raise ValueError(f"state dict has no key {name!r}; keys: {_list_keys(list(state_dict))}")
    return tuple(np.shape(state_dict[name]))


def _identity(array: np.ndarray) -> np.ndarray:
    return array


class KeyRule(NamedTuple):
    """Where one state-dict entry goes: torch name, flax variables path, layout transform."""

    torch_name: str
    path: tuple[str, ...]
    transform: Callable[[np.ndarray], np.ndarray] = _identity


def _leaf_at(tree: Any, path: Sequence[str]) -> Any:
    for part in path:
        tree = tree[part]
    return tree


def _set_leaf(tree: dict, path: Sequence[str], value: np.ndarray) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def _list_keys(keys: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray],
    rules: Sequence[KeyRule],
    expected: Any,
    *,
    prefix: str = "",
    is_ignored: Callable[[str], bool] = lambda name: False,
) -> dict:
    """Builds flax variables from the entries of a state dict under `prefix`.

    Args:
      state_dict: {torch name: array}, e.g. from `read_state_dict`.
      rules: one KeyRule per entry the model needs (names relative to `prefix`).
      expected: the model's variables shapes, `jax.eval_shape(model.init, ...)`; each converted
        array is cast to the dtype found there.
      prefix: the module's name inside a larger state dict (e.g. "model.backbone."); entries
        outside it are left alone.
      is_ignored: names (relative to `prefix`) that may be present and are not used.

    Returns:
      A nested dict of numpy arrays shaped like `expected`.

    Raises:
      ValueError naming the missing and unexpected keys, or every key whose converted shape
      does not fit, with the torch shape, the converted shape and the model's shape.
    """
    scoped = {
        name[len(prefix) :]: value for name, value in state_dict.items() if name.startswith(prefix)
    }
    if not scoped:
        raise ValueError(
            f"no state-dict key starts with prefix {prefix!r}; keys: {_list_keys(list(state_dict))}"
        )
    wanted = {rule.torch_name for rule in rules}
    missing = [prefix + rule.torch_name for rule in rules if rule.torch_name not in scoped]
    unexpected = [prefix + name for name in scoped if name not in wanted and not is_ignored(name)]
    if missing or unexpected:
        parts = [f"missing keys: {_list_keys(missing)}"] if missing else []
        parts += [f"unexpected keys: {_list_keys(unexpected)}"] if unexpected else []
        raise ValueError("state dict does not fit the model: " + "; ".join(parts))
    variables: dict = {}
    misfits = []
    for rule in rules:
        source = np.asarray(scoped[rule.torch_name])
        target = _leaf_at(expected, rule.path)
        converted = rule.transform(source)
        if converted.shape != tuple(target.shape):
            misfits.append(
                f"{prefix}{rule.torch_name} of torch shape {list(source.shape)} converts to "
                f"{list(converted.shape)} for {_path_text(rule.path)}, but the model expects "
                f"{list(target.shape)}"
            )
        else:
            _set_leaf(variables, rule.path, np.asarray(converted, dtype=target.dtype))
    if misfits:
        raise ValueError("state dict does not fit the model: " + "; ".join(misfits))
    check_tree_shapes(variables, expected, name="converted variables")
    return variables


# ---------------------------------------------------------------------------------------------
# PyTorch's default initialization.

torch_default_kernel_init = jax.nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
"""nn.Linear/nn.Conv weights: kaiming_uniform(a=√5), i.e. U(-1/√fan_in, 1/√fan_in)."""


def torch_default_bias_init(fan_in: int) -> Callable[..., jax.Array]:
    """nn.Linear/nn.Conv biases: U(-1/√fan_in, 1/√fan_in), fan_in of the layer's weight."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init
