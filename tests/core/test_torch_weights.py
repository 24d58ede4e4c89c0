"""Weight files written by torch.save and safetensors (fixture bytes), corrupt and unsafe files,
and the params-tree checks and layout conversions."""

import io
import zipfile

import jax
import numpy as np
import pytest

from core import torch_weights
from core.torch_weights import KeyRule, WeightFileError

FIXTURE = "tests/fixtures/parity/torch_weights.npz"


@pytest.fixture(scope="module")
def fixture():
    return dict(np.load(FIXTURE))


def _write(tmp_path, name: str, contents: bytes):
    path = tmp_path / name
    path.write_bytes(contents)
    return path


def _expected_entries(fixture, kind: str) -> dict[str, tuple[np.ndarray, str]]:
    prefix = f"{kind}/value/"
    return {
        key[len(prefix) :]: (fixture[key], str(fixture[f"{kind}/dtype/{key[len(prefix) :]}"]))
        for key in fixture
        if key.startswith(prefix)
    }


@pytest.mark.parametrize(
    ("kind", "file_name"), [("pth", "zoo.pth"), ("safetensors", "zoo.safetensors")]
)
def test_read_state_dict_gives_the_values_and_dtypes_torch_saved(
    tmp_path, fixture, kind, file_name
):
    path = _write(tmp_path, file_name, fixture[f"{kind}_bytes"].tobytes())
    state_dict = torch_weights.read_state_dict(path)
    expected = _expected_entries(fixture, kind)
    assert set(state_dict) == set(expected)
    for name, (values, dtype_name) in expected.items():
        array = state_dict[name]
        assert array.dtype.name == dtype_name, name
        assert array.shape == values.shape, name
        np.testing.assert_array_equal(array.astype(values.dtype), values, err_msg=name)


def test_format_is_recognised_from_the_bytes_not_the_suffix(tmp_path, fixture):
    pth = torch_weights.read_state_dict(_write(tmp_path, "a.bin", fixture["pth_bytes"].tobytes()))
    safetensors = torch_weights.read_state_dict(
        _write(tmp_path, "b.ckpt", fixture["safetensors_bytes"].tobytes())
    )
    np.testing.assert_array_equal(pth["float32"], safetensors["float32"])


def test_legacy_torch_save_format_is_rejected_naming_the_file(tmp_path, fixture):
    path = _write(tmp_path, "old.pt", fixture["legacy_pth_bytes"].tobytes())
    with pytest.raises(WeightFileError, match=r"old\.pt: a legacy \(pre-1\.6\)"):
        torch_weights.read_state_dict(path)


@pytest.mark.parametrize(
    ("kind", "keep", "message"),
    [
        ("pth", 0.5, "corrupt or truncated torch.save archive"),
        ("pth", 0.98, "corrupt or truncated torch.save archive"),
        ("safetensors", 0.98, "truncated: tensor"),
        ("safetensors", 0.3, "truncated: the safetensors header would be"),
        ("safetensors", 5 / 2000, "too short"),
    ],
)
def test_truncated_files_raise_naming_the_file(tmp_path, fixture, kind, keep, message):
    contents = fixture[f"{kind}_bytes"].tobytes()
    path = _write(tmp_path, f"cut.{kind}", contents[: max(5, int(keep * len(contents)))])
    with pytest.raises(WeightFileError, match="cut") as error:
        torch_weights.read_state_dict(path)
    assert message in str(error.value)


def test_safetensors_header_that_is_not_json_raises(tmp_path, fixture):
    contents = bytearray(fixture["safetensors_bytes"].tobytes())
    contents[8] = ord("x")  # the header's opening brace
    with pytest.raises(WeightFileError, match="unreadable safetensors header"):
        torch_weights.read_state_dict(_write(tmp_path, "bad.safetensors", bytes(contents)))


def test_safetensors_entry_whose_offsets_disagree_with_its_shape_raises(tmp_path):
    header = b'{"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}}'
    contents = len(header).to_bytes(8, "little") + header + bytes(24)
    with pytest.raises(WeightFileError, match=r"'w' of shape \[2, 3\] .* needs 24 bytes"):
        torch_weights.read_state_dict(_write(tmp_path, "w.safetensors", contents))


# A torch.save archive is a zip of <prefix>/data.pkl plus raw storages <prefix>/data/<key>;
# the pickles below are assembled opcode by opcode (protocol 2) to control every field.


def _unicode(text: str) -> bytes:
    return b"X" + len(text.encode()).to_bytes(4, "little") + text.encode()


def _int(value: int) -> bytes:
    return b"K" + bytes([value])


def _tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _tensor_pickle(numel: int, offset: int, size, stride) -> bytes:
    """{"weight": _rebuild_tensor_v2(FloatStorage "0", offset, size, stride, False, {})}."""
    storage_id = _tuple(
        _unicode("storage"), b"ctorch\nFloatStorage\n", _unicode("0"), _unicode("cpu"), _int(numel)
    )
    arguments = _tuple(
        storage_id + b"Q",  # BINPERSID: the storage is resolved by persistent_load
        _int(offset),
        _tuple(*map(_int, size)),
        _tuple(*map(_int, stride)),
        b"\x89",  # requires_grad False
        b"ccollections\nOrderedDict\n)R",  # backward hooks
    )
    return (
        b"\x80\x02}"
        + _unicode("weight")
        + b"ctorch._utils\n_rebuild_tensor_v2\n"
        + arguments
        + b"Rs."
    )


def _torch_archive(pickle_bytes: bytes, storage: np.ndarray | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle_bytes)
        archive.writestr("archive/byteorder", "little")
        if storage is not None:
            archive.writestr("archive/data/0", storage.tobytes())
    return buffer.getvalue()


def test_hand_built_archive_reads_a_strided_view(tmp_path):
    storage = np.arange(6, dtype=np.float32)
    contents = _torch_archive(_tensor_pickle(6, 1, (2, 2), (1, 2)), storage)
    state_dict = torch_weights.read_state_dict(_write(tmp_path, "view.pth", contents))
    np.testing.assert_array_equal(state_dict["weight"], [[1.0, 3.0], [2.0, 4.0]])


def test_tensor_whose_strides_read_past_its_storage_is_rejected(tmp_path):
    contents = _torch_archive(_tensor_pickle(4, 0, (2, 3), (3, 1)), np.zeros(4, np.float32))
    with pytest.raises(WeightFileError, match="reads past the 4 elements"):
        torch_weights.read_state_dict(_write(tmp_path, "oob.pth", contents))


def test_storage_record_shorter_than_the_pickle_says_is_rejected(tmp_path):
    contents = _torch_archive(_tensor_pickle(8, 0, (2,), (1,)), np.zeros(3, np.float32))
    with pytest.raises(WeightFileError, match=r"holds 3 elements of FloatStorage, .* expects 8"):
        torch_weights.read_state_dict(_write(tmp_path, "short.pth", contents))


def test_pickle_calling_anything_but_tensor_rebuilders_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "executed"
    malicious = b"\x80\x02cos\nsystem\n" + _tuple(_unicode(f"touch {marker}")) + b"R."
    path = _write(tmp_path, "evil.pth", _torch_archive(malicious))
    with pytest.raises(WeightFileError, match=r"evil\.pth: refusing to load os\.system"):
        torch_weights.read_state_dict(path)
    assert not marker.exists()


def test_entry_that_is_not_a_tensor_is_named(tmp_path):
    contents = _torch_archive(b"\x80\x02}" + _unicode("epoch") + _int(3) + b"s.")
    with pytest.raises(WeightFileError, match="entry 'epoch' is a int, not a tensor"):
        torch_weights.read_state_dict(_write(tmp_path, "ckpt.pth", contents))


def test_conv_and_linear_layouts_move_each_torch_index_to_its_flax_place():
    weight = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # [O, I, kh, kw]
    kernel = torch_weights.conv_kernel_from_torch(weight)  # [kh, kw, I, O]
    assert kernel.shape == (4, 5, 3, 2)
    assert kernel[3, 1, 2, 0] == weight[0, 2, 3, 1]
    transposed = np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4)  # [I, O, k]
    assert (
        torch_weights.conv_transpose_kernel_from_torch(transposed)[1, 2, 0] == transposed[2, 0, 1]
    )
    linear = np.arange(6.0).reshape(2, 3)  # [out, in]
    np.testing.assert_array_equal(torch_weights.linear_kernel_from_torch(linear), linear.T)
    with pytest.raises(ValueError, match=r"\[out, in, \*kernel\], got shape \[2, 3\]"):
        torch_weights.conv_kernel_from_torch(linear)


def test_check_tree_shapes_lists_missing_unexpected_and_misshapen_keys():
    expected = {"params": {"a": {"kernel": np.zeros((3, 4))}, "b": np.zeros(2)}}
    torch_weights.check_tree_shapes(
        {"params": {"a": {"kernel": np.ones((3, 4))}, "b": np.ones(2)}}, expected
    )
    wrong = {"params": {"a": {"kernel": np.ones((4, 3))}, "c": np.ones(1)}}
    with pytest.raises(ValueError) as error:
        torch_weights.check_tree_shapes(wrong, expected)
    message = str(error.value)
    assert "missing params/b of shape [2]" in message
    assert "unexpected params/c of shape [1]" in message
    assert "params/a/kernel has shape [4, 3], expected [3, 4]" in message


def _dense_rules():
    return [
        KeyRule("fc.weight", ("params", "kernel"), torch_weights.linear_kernel_from_torch),
        KeyRule("fc.bias", ("params", "bias")),
    ]


def _dense_expected():
    return {
        "params": {
            "kernel": jax.ShapeDtypeStruct((3, 2), np.float32),
            "bias": jax.ShapeDtypeStruct((2,), np.float32),
        }
    }


def test_convert_state_dict_transposes_casts_and_keeps_only_the_prefix():
    weight = np.arange(6, dtype=np.float64).reshape(2, 3)
    state_dict = {"head.fc.weight": weight, "head.fc.bias": np.ones(2), "other.x": np.zeros(9)}
    variables = torch_weights.convert_state_dict(
        state_dict, _dense_rules(), _dense_expected(), prefix="head."
    )
    np.testing.assert_array_equal(variables["params"]["kernel"], weight.T)
    assert variables["params"]["kernel"].dtype == np.float32


@pytest.mark.parametrize(
    ("state_dict", "message"),
    [
        ({"fc.weight": np.zeros((2, 3))}, "missing keys: fc.bias"),
        (
            {"fc.weight": np.zeros((2, 3)), "fc.bias": np.zeros(2), "fc.scale": np.zeros(2)},
            "unexpected keys: fc.scale",
        ),
        (
            {"fc.weight": np.zeros((2, 4)), "fc.bias": np.zeros(2)},
            r"fc.weight of torch shape \[2, 4\] converts to \[4, 2\] for params/kernel, but the "
            r"model expects \[3, 2\]",
        ),
    ],
)
def test_convert_state_dict_names_the_offending_key_and_shapes(state_dict, message):
    with pytest.raises(ValueError, match=message):
        torch_weights.convert_state_dict(state_dict, _dense_rules(), _dense_expected())


def test_convert_state_dict_reports_a_prefix_that_matches_nothing():
    with pytest.raises(ValueError, match=r"no state-dict key starts with prefix 'head\."):
        torch_weights.convert_state_dict(
            {"fc.weight": np.zeros((2, 3))}, _dense_rules(), _dense_expected(), prefix="head."
        )


def test_torch_default_init_is_uniform_within_one_over_sqrt_fan_in():
    fan_in = 25
    bound = 1.0 / np.sqrt(fan_in)
    bias = torch_weights.torch_default_bias_init(fan_in)(jax.random.key(0), (20_000,))
    kernel = torch_weights.torch_default_kernel_init(jax.random.key(1), (5, 5, 800))  # fan_in 25
    for values in (np.asarray(bias), np.asarray(kernel)):
        assert np.abs(values).max() <= bound
        # U(-b, b) has variance b²/3; 20,000 samples give its estimate to ~1% (4σ: 4%).
        assert np.var(values) == pytest.approx(bound**2 / 3, rel=0.04)
