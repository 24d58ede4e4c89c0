"""Chapter 12: tensor index notation, broadcasting, reshapes and the permutation of eq. 12.7.

Book 12.1.2 (eqs. 12.1-12.4), 12.2.1 (eq. 12.5) and 12.3 (eqs. 12.6-12.9), each run through
`core.tensor_notation` on small random arrays and compared with jnp's own matmul, correlate,
broadcasting and transpose.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from core import tensor_notation
from experiments.book.records import Record, ambiguous, claim

TOLERANCE = 1e-12
B, C, H, W = 2, 3, 4, 5  # a small [B, C, H, W] tensor for the reshapes of 12.3


def _random(key: int, shape: tuple[int, ...]) -> jax.Array:
    return jax.random.normal(jax.random.key(key), shape)


def _gap(a, b) -> float:
    return float(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b))))


def _einsum_records() -> list[Record]:
    a, b, x = _random(0, (3, 4)), _random(1, (4, 2)), _random(2, (4,))
    batch_a, batch_b = _random(3, (2, 3, 4)), _random(4, (2, 4, 5))
    signal, kernel = _random(5, (10,)), jnp.array([1.0, 2.0, -1.0])
    correlation = tensor_notation.correlate_valid(signal, kernel)
    conv_layer = jax.lax.conv_general_dilated(signal[None, None], kernel[None, None], (1,), "VALID")
    flipped = jnp.convolve(signal, kernel, mode="valid")
    matmul_gap = _gap(tensor_notation.matmul(a, b), a @ b)
    matvec_gap = _gap(tensor_notation.matvec(a, x), a @ x)
    batched = tensor_notation.batched_matmul(batch_a, batch_b)
    batched_gap = _gap(batched, jnp.matmul(batch_a, batch_b))
    return [
        *claim(
            "12.1.2 eq. 12.1",
            "C_ij = A_ik B_kj",
            "repeated index k is summed: the matrix product",
            f"einsum 'ik,kj->ij' vs A @ B on [3, 4]·[4, 2]: max |difference| = {matmul_gap:.1e}",
            holds=matmul_gap < TOLERANCE,
        ),
        *claim(
            "12.1.2 eq. 12.2",
            "y_i = W_ij x_j",
            "matrix-vector product in index notation",
            f"einsum 'ij,j->i' vs W @ x: max |difference| = {matvec_gap:.1e}",
            holds=matvec_gap < TOLERANCE,
        ),
        *claim(
            "12.1.2 eq. 12.3",
            "y_t = w_s x_{t+s}, T = 10, S = 3",
            "1D 'convolution', stride 1: t free, s contracted",
            f"output length {correlation.shape[0]} = T - S + 1; equals lax.conv_general_dilated "
            f"to {_gap(correlation, conv_layer[0, 0]):.1e}; the flipped-kernel convolution "
            f"jnp.convolve differs by {_gap(correlation, flipped):.2f}",
            holds=correlation.shape == (8,) and _gap(correlation, conv_layer[0, 0]) < TOLERANCE,
            note="eq. 12.3 is cross-correlation (no kernel flip), which is what deep-learning "
            "convolution layers compute; signal-processing convolution flips w",
        ),
        *claim(
            "12.1.2 eq. 12.4",
            "C_bmn = A_bmk B_bkn",
            "batched matrix multiplication",
            f"[2, 3, 4]·[2, 4, 5] -> {list(batched.shape)}; vs jnp.matmul: max |difference| = "
            f"{batched_gap:.1e}",
            holds=batched.shape == (2, 3, 5) and batched_gap < TOLERANCE,
        ),
    ]


def _broadcasting_records() -> list[Record]:
    gamma = _random(6, (W,))
    matrix, tensor = _random(7, (H, W)), _random(8, (B, H, W))
    scaled = tensor_notation.scale_last_axis(tensor, gamma)
    expanded = jnp.broadcast_to(gamma[None, None, :], (B, H, W))
    scale_gap = _gap(scaled, tensor * expanded)
    return [
        *claim(
            "12.2.1",
            "broadcast (M, N) with (N,)",
            "(N,) is expanded to (1, N), then to (M, N)",
            f"jnp.broadcast_shapes((4, 5), (5,)) = {jnp.broadcast_shapes(matrix.shape, (W,))}",
            holds=jnp.broadcast_shapes(matrix.shape, (W,)) == (H, W),
        ),
        *claim(
            "12.2.1 eq. 12.5",
            "Y_bmn = X_bmn γ_n",
            "(N,) is expanded to (1, 1, N) and broadcast to (B, M, N)",
            f"einsum '...n,n->...n' on [2, 4, 5] and [5] vs X · γ[None, None, :] explicitly "
            f"tiled: max |difference| = {scale_gap:.1e}",
            holds=scaled.shape == (B, H, W) and scale_gap == 0.0,
        ),
    ]


def _permutation_records() -> list[Record]:
    x = _random(9, (2, 3, 4, 5))  # axes named k, i, l, j
    y = tensor_notation.permute(x, "kilj", "ijkl")  # book eq. 12.8
    axes = tensor_notation.transpose_axes("kilj", "ijkl")
    book_axes = (2, 0, 3, 1)
    book_transpose = jnp.transpose(x, book_axes)
    moved = jnp.moveaxis(x, (0, 1, 2, 3), book_axes)
    book_holds = book_transpose.shape == y.shape and _gap(book_transpose, y) == 0.0
    return [
        *claim(
            "12.3.2 eq. 12.7",
            "permutation for Y_ijkl = X_kilj",
            "corresponds to permute((0, 1, 2, 3) → (2, 0, 3, 1))",
            f"X [2, 3, 4, 5] as (k, i, l, j): Y = {list(y.shape)}; transpose(X, {axes}) = Y; "
            f"transpose(X, (2, 0, 3, 1)) has shape {list(book_transpose.shape)} ≠ Y",
            holds=book_holds,
            why=f"with permute/transpose semantics (result axis a = input axis p[a]) the "
            f"permutation is {axes}; its inverse {tensor_notation.inverse_permutation(axes)} is "
            "the book's tuple, which lists where each X axis goes: "
            "moveaxis(X, (0, 1, 2, 3), (2, 0, 3, 1)) = Y",
        ),
        *claim(
            "12.3.2 eq. 12.7",
            "the arrow read as source → destination",
            "(0, 1, 2, 3) → (2, 0, 3, 1): X axis a moves to position (2, 0, 3, 1)[a]",
            f"jnp.moveaxis(X, (0, 1, 2, 3), (2, 0, 3, 1)) equals Y to {_gap(moved, y):.1e}",
            holds=moved.shape == y.shape and _gap(moved, y) == 0.0,
            note="the book's tuple is right under moveaxis semantics, wrong under permute's",
        ),
    ]


def _reshape_records() -> list[Record]:
    x = _random(10, (B, C, H, W))
    merged = tensor_notation.merge_batch_channels(x)
    flat = tensor_notation.flatten(x)
    per_sample = tensor_notation.flatten(x, start_axis=1)
    same_order = bool(jnp.array_equal(merged.ravel(), x.ravel()))
    return [
        *claim(
            "12.3.1 eq. 12.6",
            "reshape [B, C, H, W] -> [BC, HW]",
            "changes the shape without reordering data (row-major)",
            f"[2, 3, 4, 5] -> {list(merged.shape)}; row-major element order unchanged: "
            f"{same_order}; X'[b·C + c, h·W + w] = X[b, c, h, w]",
            holds=merged.shape == (B * C, H * W) and same_order,
        ),
        *ambiguous(
            "12.3.3 eq. 12.9",
            "flattening for a fully connected layer",
            "X ∈ R^{B×C×H×W} → vec(X) ∈ R^{B·C·H·W}, useful for FC layers after conv layers",
            f"flatten from axis 0: {list(flat.shape)}; from axis 1: {list(per_sample.shape)}",
            "eq. 12.9 merges the batch too ([120]); the input of a fully connected layer keeps "
            "the batch and flattens each sample, [B, C·H·W] = [2, 60]",
        ),
    ]


def records() -> list[Record]:
    return [
        *_einsum_records(),
        *_broadcasting_records(),
        *_permutation_records(),
        *_reshape_records(),
    ]
