"""Tests of core.tracer: FLOPs of dense, conv and attention layers equal their closed forms
exactly, parameter counts equal the variables' sizes, shapes equal jax.eval_shape, nested and
looped programs are attributed and multiplied correctly, and XLA's count differs from ours by
exactly what XLA leaves out (padding taps of a convolution)."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import tracer


def _abstract(module: nn.Module, *shapes: tuple[int, ...]):
    """Variables and inputs as ShapeDtypeStructs: nothing is allocated or computed."""
    inputs = [jax.ShapeDtypeStruct(shape, jnp.float32) for shape in shapes]
    variables = jax.eval_shape(module.init, jax.random.key(0), *inputs)
    return variables, inputs


def _size(tree) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


@given(
    batch=st.sampled_from([1, 3]),
    features_in=st.sampled_from([5, 16]),
    features_out=st.sampled_from([7, 32]),
)
def test_dense_flops_are_2_b_in_out_plus_one_add_per_output(batch, features_in, features_out):
    module = nn.Dense(features_out)
    variables, (inputs,) = _abstract(module, (batch, features_in))
    stage = tracer.trace_module(module, variables, inputs).stages[0]
    assert stage.counts == tracer.OpCounts(
        matmul_flops=2 * batch * features_in * features_out,
        elementwise_flops=batch * features_out,  # the bias
    )
    assert stage.param_count == features_in * features_out + features_out
    assert stage.output_shapes == ((batch, features_out),)


@pytest.mark.parametrize(
    "kernel, strides, groups, padding",
    [((3, 3), 1, 1, "SAME"), ((7, 7), 2, 1, "SAME"), ((3, 3), 2, 4, "VALID"), ((1, 1), 1, 1, 0)],
)
def test_conv_flops_are_2_outputs_times_fan_in(kernel, strides, groups, padding):
    """2 · (B·H'·W'·C_out) · (C_in/groups) · kh · kw, H' from the padding and stride."""
    batch, size, channels_in, channels_out = 2, 9, 8, 12
    module = nn.Conv(channels_out, kernel, strides, padding, feature_group_count=groups)
    variables, (images,) = _abstract(module, (batch, size, size, channels_in))
    stage = tracer.trace_module(module, variables, images).stages[0]
    (output_shape,) = stage.output_shapes
    assert output_shape == jax.eval_shape(module.apply, variables, images).shape
    outputs = math.prod(output_shape)
    assert stage.counts.matmul_flops == 2 * outputs * channels_in // groups * math.prod(kernel)
    assert stage.param_count == _size(variables["params"])


@pytest.mark.parametrize("strides, padding", [(2, "VALID"), (2, "SAME"), (3, "VALID")])
def test_transposed_conv_flops_count_input_positions_times_kernel(strides, padding):
    """2 · B · L_in · C_in · C_out · k: the zeros the stride inserts are not multiplied."""
    batch, length, channels_in, channels_out, kernel = 2, 10, 4, 8, 4
    module = nn.ConvTranspose(channels_out, (kernel,), (strides,), padding, use_bias=False)
    variables, (inputs,) = _abstract(module, (batch, length, channels_in))
    counts = tracer.count_ops(module.apply, variables, inputs)
    expected = 2 * batch * length * channels_in * channels_out * kernel
    assert counts.matmul_flops == expected
    if padding == "VALID":  # nothing cropped: XLA multiplies exactly these pairs
        assert tracer.xla_flops(module.apply, variables, inputs) == expected


def test_attention_flops_are_8_b_n_d_squared_plus_4_b_n_squared_d():
    """Q, K, V, O projections 4 · 2BNd², scores QKᵀ 2BN²d, weights · V 2BN²d (heads split d)."""
    batch, length, width, heads = 2, 10, 32, 4
    module = nn.MultiHeadDotProductAttention(num_heads=heads)
    variables, (tokens,) = _abstract(module, (batch, length, width))
    trace = tracer.trace_module(module, variables, tokens)
    root = trace.stages[0]
    projections = 8 * batch * length * width**2
    assert root.counts.matmul_flops == projections + 4 * batch * length**2 * width
    for name in ("query", "key", "value", "out"):
        assert trace.stage(name).counts.matmul_flops == projections // 4
    assert root.counts.transcendentals == batch * heads * length**2 + 1  # softmax exp, 1/√d_k
    assert root.param_count == _size(variables["params"]) == 4 * (width * width + width)


class _Block(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.features, (3, 3), padding="VALID", name="conv")(x)
        return nn.relu(nn.Dense(self.features, name="dense")(x))


class _Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = _Block(6, name="block1")(x)
        x = _Block(4, name="block2")(x)
        return jnp.sum(x, axis=(1, 2))


def test_nested_stages_have_eval_shape_outputs_own_params_and_inclusive_flops():
    module = _Net()
    variables, (images,) = _abstract(module, (2, 9, 9, 3))
    trace = tracer.trace_module(module, variables, images)
    names = [stage.name for stage in trace.stages]
    assert names == [
        "(root)",
        "block1",
        "block1/conv",
        "block1/dense",
        "block2",
        "block2/conv",
        "block2/dense",
    ]
    params = variables["params"]
    features = jax.eval_shape(_Block(6).apply, {"params": params["block1"]}, images)
    assert trace.stage("block1").output_shapes == (features.shape,)
    assert trace.stage("(root)").output_shapes == (
        jax.eval_shape(module.apply, variables, images).shape,
    )
    for stage in trace.stages:
        subtree = params
        for name in stage.path:
            subtree = subtree[name]
        assert stage.param_count == _size(subtree)
        children = [s for s in trace.stages if s.parent == stage.index]
        if children:  # a block's own work (the relu) is elementwise; its matmuls are its children's
            assert stage.counts.matmul_flops == sum(c.counts.matmul_flops for c in children)
    block1 = trace.stage("block1")
    assert block1.counts.elementwise_flops == sum(
        trace.stage(n).counts.elementwise_flops for n in ("block1/conv", "block1/dense")
    ) + math.prod(features.shape)  # relu: one max per element
    assert trace.total == trace.stages[0].counts
    table = trace.table(max_depth=1)
    assert "block1/conv" not in table
    # block2: conv 3·3·6·4 + 4 = 220 params, dense 4·4 + 4 = 20
    assert "| block2 | _Block | (2, 7, 7, 6) | (2, 5, 5, 4) | 240 |" in table


def test_scan_body_counts_length_times_and_cond_its_costliest_branch():
    matrix = jax.ShapeDtypeStruct((8, 8), jnp.float32)

    def scanned(carry):
        return jax.lax.scan(lambda c, _: (c @ c, None), carry, length=5)[0]

    assert tracer.count_ops(scanned, matrix).matmul_flops == 5 * 2 * 8**3

    def branching(flag, carry):
        return jax.lax.cond(flag, lambda c: c @ c @ c, lambda c: c + 1.0, carry)

    flag = jax.ShapeDtypeStruct((), jnp.bool_)
    assert tracer.count_ops(branching, flag, matrix).matmul_flops == 2 * 2 * 8**3


def test_while_loops_are_counted_once_and_reported():
    class Loop(nn.Module):
        @nn.compact
        def __call__(self, x):
            dense = nn.Dense(x.shape[-1])
            return jax.lax.while_loop(lambda c: c.sum() < 10.0, lambda c: c + 1.0, dense(x))

    module = Loop()
    variables, (inputs,) = _abstract(module, (2, 4))
    trace = tracer.trace_module(module, variables, inputs)
    assert trace.while_loops == 1
    assert "1 while loop(s) counted as one iteration" in trace.table()


def test_xla_counts_our_matmul_and_elementwise_flops_but_skips_padding_taps():
    """XLA's cost analysis counts a convolution's in-bounds taps only: with SAME padding a 3×3
    kernel sees Σ_positions (taps inside) = 3H − 2 rows per column of an H-row image."""
    batch, size, channels_in, channels_out = 2, 6, 3, 16
    dense = nn.Dense(24)
    variables, (inputs,) = _abstract(dense, (batch, 10))
    counts = tracer.count_ops(dense.apply, variables, inputs)
    assert tracer.xla_flops(dense.apply, variables, inputs) == (
        counts.matmul_flops + counts.elementwise_flops
    )
    conv = nn.Conv(channels_out, (3, 3), padding="SAME")
    variables, (images,) = _abstract(conv, (batch, size, size, channels_in))
    counts = tracer.count_ops(conv.apply, variables, images)
    in_bounds_taps = (3 * size - 2) ** 2
    assert counts.matmul_flops == 2 * batch * size**2 * channels_out * channels_in * 9
    assert tracer.xla_flops(conv.apply, variables, images) == (
        2 * batch * channels_out * channels_in * in_bounds_taps + counts.elementwise_flops
    )


def test_bad_arguments_raise_errors_naming_them():
    with pytest.raises(ValueError, match=r"module must be a flax\.linen\.Module, got function"):
        tracer.trace_module(lambda x: x, {"params": {}}, jnp.ones(3))
    with pytest.raises(ValueError, match=r"'params' collection, got dict with keys \['batch"):
        tracer.trace_module(nn.Dense(3), {"batch_stats": {}}, jnp.ones((1, 3)))
    with pytest.raises(KeyError, match="no stage 'decoder'"):
        tracer.trace_module(
            nn.Dense(3), *_abstract(nn.Dense(3), (1, 2))[0:1], jnp.ones((1, 2))
        ).stage("decoder")


def test_format_count_uses_si_prefixes():
    assert [tracer.format_count(n) for n in (999, 1234, 3.6e9, 2.2e12)] == [
        "999",
        "1.23 k",
        "3.6 G",
        "2.2 T",
    ]
