"""Book 9.2.2: the number of linear regions of ReLU networks against depth, at a fixed number of
hidden units.

Setup: random ReLU networks on R² with U = 48 hidden units split evenly over L = 1 ... 16 layers
(`core.linear_regions.random_relu_network`: He-normal weights, biases N(0, 0.5²), large enough
that the unit boundaries do not all pass near the origin), 10 seeds per depth. Regions are
counted exactly along a segment of length 6 through the origin in a random direction
(`count_regions_on_line`), and from below on the square [−3, 3]² by the distinct activation
patterns of a 200 x 200 grid (`plane_pattern_ids`). Against them, Telgarsky's sawtooth
(`sawtooth_network`, 2 units per layer) shows what depth *can* do: 2^L regions on [0, 1] with
2L units, counted by the same exact routine.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from core import linear_regions
from experiments.studies import common

TOTAL_UNITS = 48
INPUT_DIM = 2
HALF_LENGTH = 3.0
BIAS_STD = 0.5


def _counts_at_depth(
    key: jax.Array, depth: int, num_seeds: int, resolution: int
) -> tuple[list[int], list[int]]:
    """Exact counts along a random segment and grid lower bounds on the plane, per seed."""
    width = TOTAL_UNITS // depth
    sizes = (INPUT_DIM, *[width] * depth, 1)
    line_counts, plane_counts = [], []
    for seed_key in jax.random.split(key, num_seeds):
        network_key, direction_key = jax.random.split(seed_key)
        params = linear_regions.random_relu_network(network_key, sizes, BIAS_STD)
        direction = jax.random.normal(direction_key, (INPUT_DIM,))
        direction = HALF_LENGTH * direction / jnp.linalg.norm(direction)
        line = linear_regions.count_regions_on_line(
            params, -direction, direction, max_breakpoints=512
        )
        labels = linear_regions.plane_pattern_ids(
            params, jnp.zeros(INPUT_DIM), jnp.eye(INPUT_DIM), HALF_LENGTH, resolution
        )
        line_counts.append(line.count)
        plane_counts.append(int(labels.max()) + 1)
    return line_counts, plane_counts


def _show_regions(axes, key: jax.Array, depth: int, resolution: int) -> None:
    """Paints the activation regions of one random network on the plane, one colour each."""
    width = TOTAL_UNITS // depth
    params = linear_regions.random_relu_network(key, (INPUT_DIM, *[width] * depth, 1), BIAS_STD)
    labels = linear_regions.plane_pattern_ids(
        params, jnp.zeros(INPUT_DIM), jnp.eye(INPUT_DIM), HALF_LENGTH, resolution
    )
    shuffled = np.random.default_rng(0).permutation(labels.max() + 1)[labels]
    extent = (-HALF_LENGTH, HALF_LENGTH, -HALF_LENGTH, HALF_LENGTH)
    axes.imshow(shuffled, origin="lower", extent=extent, cmap="tab20", interpolation="nearest")
    axes.set(
        title=f"L = {depth} x {width} units: >= {labels.max() + 1} regions",
        xlabel="$x_1$",
        ylabel="$x_2$",
    )


def run(tiny: bool = False) -> common.StudyResult:
    depths = [1, 4] if tiny else [1, 2, 3, 4, 6, 8, 12, 16]
    sawtooth_depths = [1, 3] if tiny else list(range(1, 11))
    num_seeds, resolution = (3, 60) if tiny else (10, 200)
    keys = jax.random.split(jax.random.key(0), len(depths))
    with jax.enable_x64(True):
        counts = [
            _counts_at_depth(k, depth, num_seeds, resolution)
            for k, depth in zip(keys, depths, strict=True)
        ]
        sawtooth = [
            linear_regions.count_regions_on_line(
                linear_regions.sawtooth_network(depth),
                jnp.zeros(1),
                jnp.ones(1),
                max_breakpoints=2 ** max(sawtooth_depths),
            ).count
            for depth in sawtooth_depths
        ]
        figure = Figure(figsize=(11, 9.5), layout="constrained")
        (line_axes, plane_axes), (shallow_axes, deep_axes) = figure.subplots(2, 2)
        _show_regions(shallow_axes, keys[0], depths[0], resolution)
        _show_regions(deep_axes, keys[-1], depths[-1], resolution)
    line_counts = np.array([c[0] for c in counts])  # [depths, seeds]
    plane_counts = np.array([c[1] for c in counts])

    line_axes.errorbar(
        depths,
        line_counts.mean(axis=1),
        yerr=line_counts.std(axis=1),
        fmt="o-",
        capsize=3,
        label=f"random nets, {TOTAL_UNITS} units (mean ± std, {num_seeds} seeds)",
    )
    line_axes.semilogy(
        sawtooth_depths, sawtooth, "s--", color="C3", label="sawtooth, 2 units/layer: 2^L"
    )
    line_axes.axhline(
        TOTAL_UNITS + 1,
        color="gray",
        ls=":",
        label=f"one layer's maximum, U + 1 = {TOTAL_UNITS + 1}",
    )
    line_axes.set(
        xlabel="depth L (hidden layers)",
        ylabel="linear regions along the segment (exact)",
        title="along a segment of length 6 through 0",
    )
    line_axes.legend(fontsize=8)
    plane_axes.errorbar(
        depths,
        plane_counts.mean(axis=1),
        yerr=plane_counts.std(axis=1),
        fmt="o-",
        capsize=3,
        label=f"random nets, {TOTAL_UNITS} units (mean ± std)",
    )
    plane_axes.axhline(
        1 + TOTAL_UNITS + TOTAL_UNITS * (TOTAL_UNITS - 1) // 2,
        color="gray",
        ls=":",
        label="one layer's maximum in 2D, 1 + U + U(U−1)/2",
    )
    plane_axes.set(
        xlabel="depth L (hidden layers)",
        ylabel=f"distinct patterns on a {resolution}² grid (lower bound)",
        title=f"on the square [−{HALF_LENGTH:g}, {HALF_LENGTH:g}]²",
        yscale="log",
    )
    plane_axes.legend(fontsize=8)

    line_means = line_counts.mean(axis=1)
    plane_means = plane_counts.mean(axis=1)
    multiplies = line_means.max() > 2 * line_means[0] or plane_means.max() > 2 * plane_means[0]
    verdict = "gain regions" if multiplies else "do not multiply their regions"
    finding = (
        f"At a fixed {TOTAL_UNITS} hidden units, random ReLU networks {verdict} with depth: "
        f"along a line {line_means[0]:.0f} regions on average at L = 1 (at most U + 1 = "
        f"{TOTAL_UNITS + 1}), {line_means.max():.0f} at most at any depth and "
        f"{line_means[-1]:.0f} at L = {depths[-1]}; on the plane {plane_means[0]:.0f} at "
        f"L = 1, {plane_means.max():.0f} at most and {plane_means[-1]:.0f} at "
        f"L = {depths[-1]} (grid lower bounds). Depth can multiply regions: the sawtooth's "
        f"2L units give {sawtooth[-1]} regions at L = {sawtooth_depths[-1]} "
        f"(2^L = {2 ** sawtooth_depths[-1]}), but with hand-set weights; 'exponentially in "
        f"depth' describes the best case, not typical (randomly initialized) networks."
    )
    return common.StudyResult(
        claim=(
            "Depth can increase the number of linear regions of a ReLU network dramatically, "
            "often exponentially in depth (9.2.2)."
        ),
        finding=finding,
        figures={
            "total_units": TOTAL_UNITS,
            "depths": depths,
            "num_seeds": num_seeds,
            "bias_std": BIAS_STD,
            "line_counts": line_counts.tolist(),
            "plane_counts_lower_bound": plane_counts.tolist(),
            "plane_grid_resolution": resolution,
            "sawtooth_depths": sawtooth_depths,
            "sawtooth_counts": sawtooth,
        },
        figure=figure,
    )
