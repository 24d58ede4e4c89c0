"""Argument checks for public entry points: wrong shapes fail loudly, with names.

Shapes are static under `jax.jit`, so these checks run once at trace time and cost nothing
afterwards. They raise `ValueError` naming the argument, the expected and the actual shape,
instead of letting broadcasting turn a mistake into a silently wrong result.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Dim = int | str | None
"""An expected dimension: an int is exact, None is anything, and a string names a dimension
that must agree wherever the same name appears (e.g. "B" for the batch)."""


def _shape_text(dims: Sequence[Dim]) -> str:
    return "[" + ", ".join("*" if d is None else str(d) for d in dims) + "]"


def check_rank(name: str, array, rank: int | Sequence[int]) -> None:
    """Raises ValueError unless `array` has the given rank (or one of the given ranks)."""
    ranks = (rank,) if isinstance(rank, int) else tuple(rank)
    actual = np.ndim(array)
    if actual not in ranks:
        expected = " or ".join(str(r) for r in ranks)
        raise ValueError(
            f"{name} must have rank {expected}, got rank {actual} (shape {np.shape(array)})"
        )


def check_shapes(**named: tuple[object, Sequence[Dim]]) -> dict[str, int]:
    """Checks several arrays against shape patterns that share named dimensions.

    Example:
      check_shapes(logits=(logits, ("B", "K")), labels=(labels, ("B", "K")))

    Returns:
      The sizes bound to each named dimension, e.g. {"B": 8, "K": 10}.

    Raises:
      ValueError naming the first argument whose rank or a dimension does not fit.
    """
    bound: dict[str, int] = {}
    for name, (array, pattern) in named.items():
        shape = np.shape(array)
        pattern = tuple(pattern)
        if len(shape) != len(pattern):
            raise ValueError(
                f"{name} must have shape {_shape_text(pattern)} (rank {len(pattern)}), "
                f"got {list(shape)}"
            )
        for axis, (dim, size) in enumerate(zip(pattern, shape, strict=True)):
            if dim is None:
                continue
            if isinstance(dim, str):
                if dim in bound and bound[dim] != size:
                    raise ValueError(
                        f"{name} must have shape {_shape_text(pattern)} with {dim}={bound[dim]} "
                        f"(as in the arguments before it), got {list(shape)}"
                    )
                bound.setdefault(dim, size)
            elif size != dim:
                raise ValueError(
                    f"{name} must have shape {_shape_text(pattern)}, got {list(shape)} "
                    f"(axis {axis})"
                )
    return bound


def check_same_shape(**named) -> tuple[int, ...]:
    """Raises ValueError unless all arrays have exactly the same shape; returns it."""
    items = list(named.items())
    first_name, first = items[0]
    shape = np.shape(first)
    for name, array in items[1:]:
        if np.shape(array) != shape:
            raise ValueError(
                f"{name} must have the same shape as {first_name} {list(shape)}, "
                f"got {list(np.shape(array))}"
            )
    return shape
