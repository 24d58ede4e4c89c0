"""Shape, parameter and FLOP tables of flax modules, traced without computing anything.

Book ch. 20 (20.2-20.4): the tensor-size trace and the FLOPs breakdown of a model, stage by
stage. `trace_module` runs a flax linen module abstractly (`jax.make_jaxpr`, so inputs and
variables may be `jax.ShapeDtypeStruct`s and nothing is allocated), records every submodule call
with `flax.linen.intercept_methods` and returns one row per call (`__call__` and public methods;
`setup` and private helpers belong to their caller's row): input and output shapes, parameter
count and FLOPs.

FLOPs are counted EXACTLY from the jaxpr, one multiply-add = 2 FLOPs (so a count of MACs is half):

  * `dot_general`: 2 · (output elements) · (contracted size), e.g. 2·B·M·N·K for a batched
    [M, K] @ [K, N];
  * `conv_general_dilated`: 2 · (output elements) · (kernel input features = C_in / groups) ·
    (kernel volume), taps on zero padding included, the convention of the published counts
    (ResNet-18's 1.8 G multiply-adds); a transposed conv (lhs dilation) counts from the input
    side, 2 · B · (input positions) · C_in · (C_out / groups) · (kernel volume), leaving out the
    zeros the dilation inserts (fvcore's convention);
  * everything else is counted apart, XLA's way: one FLOP per output element of an arithmetic or
    comparison op, (input − output) elements for a reduction, and transcendental functions
    (exp, log, tanh, erf, sqrt, ...) in a third column; data movement (reshape, transpose,
    slice, gather, concatenate, dtype conversion) is free.

Each equation is attributed to the innermost module call it was traced in (tagged through
`jax.named_scope`); a row's counts include its submodules'. Loops are unrolled in the count: a
`scan` body counts `length` times; a `while` body, whose trip count is not known at trace time,
once (`ModuleTrace.while_loops` says how many there were); a `cond` counts its costliest branch.

`xla_flops` is the cross-check: XLA's own `cost_analysis()` of the compiled program, which counts
matmul + elementwise FLOPs (transcendentals apart) like ours, with two differences: for a padded
convolution it counts only the taps that land inside the input (ResNet-18 at 224 px: 3.38 G
against our 3.63 G), and its optimizer may fold, simplify or add elementwise ops.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.extend as jex
import numpy as np

STAGE_TAG = "tracer_stage_"
_STAGE_PATTERN = re.compile(STAGE_TAG + r"(\d+)")

ELEMENTWISE_PRIMITIVES = frozenset(
    {
        *("add", "sub", "mul", "div", "rem", "neg", "max", "min", "abs", "sign"),
        *("floor", "ceil", "round", "square", "integer_pow", "select_n", "clamp", "nextafter"),
        *("eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not", "xor", "is_finite"),
    }
)
TRANSCENDENTAL_PRIMITIVES = frozenset(
    {
        *("exp", "exp2", "log", "log1p", "expm1", "tanh", "logistic", "sin", "cos", "tan"),
        *("atan2", "sqrt", "rsqrt", "cbrt", "pow", "erf", "erfc", "erf_inv"),
    }
)
REDUCTION_PRIMITIVES = frozenset(
    {"reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_and", "reduce_or"}
    | {"argmax", "argmin", "cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp"}
)


@dataclasses.dataclass(frozen=True)
class OpCounts:
    """Operation counts of a program.

    matmul_flops: exact FLOPs of dot_general and conv_general_dilated (2 per multiply-add).
    elementwise_flops: one per output element of other arithmetic ops, plus reductions.
    transcendentals: one per output element of exp, log, tanh, erf, sqrt, ...
    """

    matmul_flops: int = 0
    elementwise_flops: int = 0
    transcendentals: int = 0

    def __add__(self, other: OpCounts) -> OpCounts:
        return OpCounts(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def __mul__(self, factor: int) -> OpCounts:
        return OpCounts(*(factor * count for count in self.as_tuple()))

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.matmul_flops, self.elementwise_flops, self.transcendentals)


def _size(shape: Sequence[int]) -> int:
    return math.prod(int(d) for d in shape)


def _conv_flops(equation: jex.core.JaxprEqn, output_size: int) -> int:
    """2 · outputs · fan-in, or from the input side for a transposed (lhs-dilated) conv."""
    numbers = equation.params["dimension_numbers"]
    kernel_shape = equation.invars[1].aval.shape
    kernel_volume = _size([kernel_shape[d] for d in numbers.rhs_spec[2:]])
    if all(d == 1 for d in equation.params["lhs_dilation"]):
        return 2 * output_size * kernel_shape[numbers.rhs_spec[1]] * kernel_volume
    input_size = _size(equation.invars[0].aval.shape)  # B · C_in · input positions
    output_features = kernel_shape[numbers.rhs_spec[0]] // equation.params["feature_group_count"]
    return 2 * input_size * output_features * kernel_volume


def equation_counts(equation: jex.core.JaxprEqn) -> OpCounts:
    """The operation counts of one equation without sub-programs (see the module docstring)."""
    name = equation.primitive.name
    output_size = sum(_size(v.aval.shape) for v in equation.outvars)
    if name == "dot_general":
        (lhs_contracting, _), _ = equation.params["dimension_numbers"]
        lhs_shape = equation.invars[0].aval.shape
        return OpCounts(
            matmul_flops=2 * output_size * _size([lhs_shape[d] for d in lhs_contracting])
        )
    if name == "conv_general_dilated":
        return OpCounts(matmul_flops=_conv_flops(equation, output_size))
    if name in ELEMENTWISE_PRIMITIVES:
        return OpCounts(elementwise_flops=output_size)
    if name in TRANSCENDENTAL_PRIMITIVES:
        return OpCounts(transcendentals=output_size)
    if name in REDUCTION_PRIMITIVES:
        input_size = _size(equation.invars[0].aval.shape)
        cumulative = name.startswith("cum")
        return OpCounts(elementwise_flops=input_size if cumulative else input_size - output_size)
    return OpCounts()


@dataclasses.dataclass
class _Tally:
    """Counts per owning stage (None: outside every stage) and the number of while loops."""

    by_stage: dict[int | None, OpCounts] = dataclasses.field(default_factory=dict)
    while_loops: int = 0

    def add(self, stage: int | None, counts: OpCounts) -> None:
        self.by_stage[stage] = self.by_stage.get(stage, OpCounts()) + counts

    def merge(self, other: _Tally, factor: int = 1) -> None:
        for stage, counts in other.by_stage.items():
            self.add(stage, counts * factor)
        self.while_loops += other.while_loops

    def total(self) -> OpCounts:
        return sum(self.by_stage.values(), OpCounts())


def _owner(name_stack: str) -> int | None:
    """The innermost stage tag in a name stack, e.g. ".../tracer_stage_3/Dense_0" -> 3."""
    tags = _STAGE_PATTERN.findall(name_stack)
    return int(tags[-1]) if tags else None


def _tally(jaxpr: jex.core.Jaxpr, outer_stack: str = "") -> _Tally:
    """Counts every equation of `jaxpr`, recursing into sub-programs (scan × length, cond max)."""
    tally = _Tally()
    for equation in jaxpr.eqns:
        stack = "/".join(filter(None, (outer_stack, str(equation.source_info.name_stack))))
        name = equation.primitive.name
        if name == "cond":
            branches = [_tally(b.jaxpr, stack) for b in equation.params["branches"]]
            tally.merge(max(branches, key=lambda b: b.total().as_tuple()))
            continue
        for sub_jaxpr in jex.core.jaxprs_in_params(equation.params):
            factor = equation.params["length"] if name == "scan" else 1
            tally.merge(_tally(sub_jaxpr, stack), factor)
        if name == "while":
            tally.while_loops += 1
        tally.add(_owner(stack), equation_counts(equation))
    return tally


def count_ops(fn: Callable[..., Any], *args, **kwargs) -> OpCounts:
    """The operation counts of `fn(*args, **kwargs)`, traced abstractly.

    Args may be arrays or `jax.ShapeDtypeStruct`s.
    """
    closed = jax.make_jaxpr(lambda *a: fn(*a, **kwargs))(*args)
    return _tally(closed.jaxpr).total()


def xla_flops(fn: Callable[..., Any], *args) -> float:
    """XLA's count of FLOPs of the compiled `jax.jit(fn)(*args)` (`cost_analysis()["flops"]`)."""
    return float(jax.jit(fn).lower(*args).compile().cost_analysis()["flops"])


@dataclasses.dataclass(frozen=True)
class Stage:
    """One module call of a trace.

    index: call order (0 is the traced module itself).
    parent: index of the enclosing call (None for the root).
    path: the module's path of names, e.g. ("backbone", "layer1_0", "conv1"); () for the root.
    module: its class name. method: the method called.
    input_shapes: the shape of every array among the positional arguments, in pytree order.
    output_shapes: the shape of every array the call returned, in pytree order.
    param_count: number of entries of the `params` collection under `path`.
    counts: operations of the call, its submodules' included.
    """

    index: int
    parent: int | None
    path: tuple[str, ...]
    module: str
    method: str
    input_shapes: tuple[tuple[int, ...], ...]
    output_shapes: tuple[tuple[int, ...], ...]
    param_count: int
    counts: OpCounts

    @property
    def depth(self) -> int:
        return len(self.path)

    @property
    def name(self) -> str:
        label = "/".join(self.path) or "(root)"
        return label if self.method == "__call__" else f"{label}.{self.method}"


@dataclasses.dataclass(frozen=True)
class ModuleTrace:
    """The stages of a module call, with whole-program totals.

    total: counts of the whole program (equal to the root stage's unless the traced function does
      work outside the module).
    while_loops: number of while loops whose body was counted once.
    """

    stages: tuple[Stage, ...]
    total: OpCounts
    while_loops: int

    def stage(self, name: str) -> Stage:
        """The first stage called `name` (as in the table's first column)."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage {name!r}; stages are {[s.name for s in self.stages]}")

    def table(self, max_depth: int | None = None) -> str:
        """A markdown table of the stages down to `max_depth` (None: all)."""
        lines = [
            "| Stage | Module | Inputs | Outputs | Params | Matmul FLOPs | Other FLOPs |",
            "|---|---|---|---|--:|--:|--:|",
        ]
        for stage in self.stages:
            if max_depth is not None and stage.depth > max_depth:
                continue
            other = stage.counts.elementwise_flops + stage.counts.transcendentals
            cells = [
                stage.name,
                stage.module,
                _shapes_text(stage.input_shapes),
                _shapes_text(stage.output_shapes),
                f"{stage.param_count:,}",
                format_count(stage.counts.matmul_flops),
                format_count(other),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        if self.while_loops:
            lines.append(f"\n{self.while_loops} while loop(s) counted as one iteration.")
        return "\n".join(lines)


def format_count(count: float) -> str:
    """1234567 -> "1.23 M"; SI prefixes up to T."""
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(count) >= scale:
            return f"{count / scale:.3g} {prefix}"
    return f"{count:.3g}"


def _param_count(params: Any, path: tuple[str, ...]) -> int:
    subtree = params
    for name in path:
        if not isinstance(subtree, Mapping) or name not in subtree:
            return 0
        subtree = subtree[name]
    return sum(_size(np.shape(leaf)) for leaf in jax.tree.leaves(subtree))


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Call:
    index: int
    parent: int | None
    path: tuple[str, ...]
    module: str
    method: str
    input_shapes: tuple[tuple[int, ...], ...]
    output_shapes: tuple[tuple[int, ...], ...]


def _array_shapes(tree: Any) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(leaf.shape) for leaf in jax.tree.leaves(tree) if hasattr(leaf, "shape"))


def _shapes_text(shapes: tuple[tuple[int, ...], ...]) -> str:
    return ", ".join(str(shape) for shape in shapes)


def trace_module(
    module: nn.Module,
    variables: Any,
    *args,
    method: str | Callable[..., Any] | None = None,
    **kwargs,
) -> ModuleTrace:
    """Traces `module.apply(variables, *args, method=method, **kwargs)` stage by stage.

    Args:
      module: a flax linen module.
      variables: its variables ({"params": ..., ...}), arrays or `jax.ShapeDtypeStruct`s (e.g.
        from `jax.eval_shape(module.init, ...)`).
      *args: the inputs, arrays or `jax.ShapeDtypeStruct`s.
      method, **kwargs: passed to `module.apply` (e.g. `train=False`, `rngs=...`).

    Returns:
      A `ModuleTrace` with one `Stage` per module call, in call order.
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be a flax.linen.Module, got {type(module).__name__}")
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise ValueError(
            "variables must be a dict with a 'params' collection, got "
            f"{type(variables).__name__} with keys {list(getattr(variables, 'keys', list)())}"
        )
    calls: list[_Call | None] = []
    open_calls: list[int] = []

    def record(next_fun, call_args, call_kwargs, context):
        method_name = context.method_name
        if method_name == "setup" or (method_name.startswith("_") and method_name != "__call__"):
            return next_fun(*call_args, **call_kwargs)  # setup and private helpers: not stages
        index = len(calls)
        parent = open_calls[-1] if open_calls else None
        open_calls.append(index)
        with jax.named_scope(f"{STAGE_TAG}{index}"):
            calls.append(None)  # reserve the index; the row is written when the call returns
            outputs = next_fun(*call_args, **call_kwargs)
        open_calls.pop()
        calls[index] = _Call(
            index=index,
            parent=parent,
            path=tuple(context.module.path),
            module=type(context.module).__name__,
            method=method_name,
            input_shapes=_array_shapes(call_args),
            output_shapes=_array_shapes(outputs),
        )
        return outputs

    def apply(variables, *inputs):
        with nn.intercept_methods(record):
            return module.apply(variables, *inputs, method=method, **kwargs)

    tally = _tally(jax.make_jaxpr(apply)(variables, *args).jaxpr)
    inclusive = {call.index: tally.by_stage.get(call.index, OpCounts()) for call in calls}
    for call in reversed(calls):  # children come after their parent in call order
        if call.parent is not None:
            inclusive[call.parent] = inclusive[call.parent] + inclusive[call.index]
    stages = tuple(
        Stage(
            index=call.index,
            parent=call.parent,
            path=call.path,
            module=call.module,
            method=call.method,
            input_shapes=call.input_shapes,
            output_shapes=call.output_shapes,
            param_count=_param_count(variables["params"], call.path),
            counts=inclusive[call.index],
        )
        for call in calls
    )
    return ModuleTrace(stages, tally.total(), tally.while_loops)
