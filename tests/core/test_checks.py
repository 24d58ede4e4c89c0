"""Shape checks name the argument and say what was expected."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core import checks


def test_named_dimensions_bind_across_arguments():
    bound = checks.check_shapes(x=(np.zeros((8, 3)), ("B", 3)), y=(np.zeros((8,)), ("B",)))
    assert bound == {"B": 8}


def test_mismatched_named_dimension_names_the_argument():
    with pytest.raises(ValueError, match=r"labels must have shape \[B, K\] with B=8"):
        checks.check_shapes(
            logits=(np.zeros((8, 4)), ("B", "K")), labels=(np.zeros((7, 4)), ("B", "K"))
        )


def test_wrong_rank_and_exact_dimension():
    with pytest.raises(ValueError, match=r"x must have shape \[\*, 3\] \(rank 2\), got \[3\]"):
        checks.check_shapes(x=(np.zeros(3), (None, 3)))
    with pytest.raises(ValueError, match=r"x must have shape \[\*, 3\], got \[2, 4\] \(axis 1\)"):
        checks.check_shapes(x=(np.zeros((2, 4)), (None, 3)))
    with pytest.raises(ValueError, match="must have rank 2 or 3, got rank 1"):
        checks.check_rank("x", np.zeros(3), (2, 3))


def test_same_shape_and_checks_work_under_jit():
    with pytest.raises(ValueError, match=r"b must have the same shape as a \[2\], got \[3\]"):
        checks.check_same_shape(a=np.zeros(2), b=np.zeros(3))

    @jax.jit
    def total(x):
        checks.check_shapes(x=(x, (None, 2)))
        return x.sum()

    assert total(jnp.ones((3, 2))) == 6.0
    with pytest.raises(ValueError, match="x must have shape"):
        total(jnp.ones((3, 4)))
