"""What an evaluation shows: a GIF grid of rollouts and an overlay of many trajectories.

Book 16.3.3, 16.8 and 18.8.1: on a bimodal task the demonstrations go left or right; a policy
trained by regression to the mean (eq. 16.39) drives into the obstacle between the modes, and a
unimodal Gaussian (eq. 16.62) may collapse onto one side. Plotting many closed-loop trajectories
over the scene, coloured by mode, makes the difference visible at a glance; the video grid
shows individual episodes with a border that turns green (success), red (failure) or amber
(time limit) when the episode ends.

Both functions take plain numpy arrays (frames, positions, labels), so every rollout path (the
jitted one of `core.evaluation.rollout` or a host-stepped simulator) can use them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from core.checks import check_rank, check_shapes
from core.evaluation.metrics import OUTCOMES

RUNNING_COLOR = (110, 110, 110)
LABEL_COLORS = {
    "success": "#2ca02c",
    "failure": "#d62728",
    "timeout": "#e69500",
    "left": "#1f77b4",
    "right": "#ff7f0e",
    "left_zone": "#1f77b4",
    "right_zone": "#ff7f0e",
    "collided": "#d62728",
    "other": "#7f7f7f",
    "neither": "#7f7f7f",
}
"""Colours of episode labels (outcomes and the bimodal tasks' modes); others cycle tab10."""
FAILURE_LABELS = ("failure", "collided")
HOLD_SECONDS = 1.0
"""The last frame of the grid stays this long before the GIF loops."""


def label_color(name: str, index: int) -> str:
    """The colour of a label: LABEL_COLORS, else the index-th colour of matplotlib's tab10."""
    cycled = matplotlib.colors.to_hex(matplotlib.colormaps["tab10"](index % 10))
    return LABEL_COLORS.get(name, cycled)


def _rgb(color: str) -> np.ndarray:
    return np.round(np.asarray(matplotlib.colors.to_rgb(color)) * 255).astype(np.uint8)


def video_grid(
    frames: np.ndarray,
    lengths: np.ndarray,
    outcomes: np.ndarray,
    *,
    columns: int | None = None,
    border: int = 3,
) -> np.ndarray:
    """Tiles V episode videos into one video, each framed by its outcome once it has ended.

    Args:
      frames: [V, T + 1, H, W, 3] uint8, frame t shows the state before step t (the last one
        after the last step).
      lengths: [V] steps of each episode; its border turns to the outcome colour at frame
        lengths[v], when the episode has ended, and stays grey before.
      outcomes: [V] int indices into OUTCOMES.
      columns: tiles per row (default: ceil(sqrt(V))).
      border: border width in pixels.

    Returns:
      [max(lengths) + 1, rows · (H + 2 border), columns · (W + 2 border), 3] uint8 grid frames.
    """
    check_rank("frames", frames, 5)
    sizes = check_shapes(
        frames=(frames, ("V", None, None, None, 3)),
        lengths=(lengths, ("V",)),
        outcomes=(outcomes, ("V",)),
    )
    num_videos, num_frames, height, width, _ = frames.shape
    columns = columns or int(np.ceil(np.sqrt(sizes["V"])))
    rows = -(-num_videos // columns)
    tile_height, tile_width = height + 2 * border, width + 2 * border
    duration = int(min(np.max(lengths) + 1, num_frames))
    grid = np.zeros((duration, rows * tile_height, columns * tile_width, 3), np.uint8)
    outcome_colors = np.stack([_rgb(label_color(name, 0)) for name in OUTCOMES])
    for video in range(num_videos):
        top, left = (video // columns) * tile_height, (video % columns) * tile_width
        ended = np.arange(duration) >= lengths[video]
        colors = np.where(ended[:, None], outcome_colors[outcomes[video]], RUNNING_COLOR)
        grid[:, top : top + tile_height, left : left + tile_width] = colors[:, None, None, :]
        grid[:, top + border : top + border + height, left + border : left + border + width] = (
            frames[video, :duration]
        )
    return grid


def write_gif(frames: np.ndarray, path: str | Path, fps: float) -> Path:
    """Writes frames: [T, H, W, 3] uint8 as a looping GIF at fps, holding the last frame.

    All frames share one 256-colour palette (from a sample of the frames), so the file stays
    small and colours do not flicker.
    """
    check_shapes(frames=(frames, (None, None, None, 3)))
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    sample = frames[np.linspace(0, len(frames) - 1, min(len(frames), 8)).astype(int)]
    palette = Image.fromarray(np.concatenate(list(sample), axis=0)).quantize(256)
    images = [Image.fromarray(frame).quantize(palette=palette, dither=0) for frame in frames]
    frame_ms = 1000.0 / fps
    durations = [frame_ms] * (len(images) - 1) + [frame_ms + 1000.0 * HOLD_SECONDS]
    path = Path(path)
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)
    return path


@dataclasses.dataclass(frozen=True)
class TrajectoryPanel:
    """One panel of a trajectory overlay: N planar trajectories with a label each.

    positions: [N, T + 1, 2] world coordinates; lengths: [N] steps (points 0..lengths are drawn);
    labels: [N] int indices into label_names.
    """

    title: str
    positions: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    label_names: tuple[str, ...]

    def __post_init__(self):
        check_shapes(
            positions=(self.positions, ("N", None, 2)),
            lengths=(self.lengths, ("N",)),
            labels=(self.labels, ("N",)),
        )


def plot_trajectories(
    panels: Sequence[TrajectoryPanel],
    background: np.ndarray,
    extent: tuple[float, float, float, float],
    path: str | Path,
) -> Path:
    """Draws each panel's trajectories over the scene image, coloured by label, side by side.

    Args:
      panels: e.g. (the expert's trajectories, the policy's).
      background: [H, W, 3] uint8 image of a scene, row 0 at the top.
      extent: (x_min, x_max, y_min, y_max) world coordinates the background covers.
      path: the PNG to write.
    """
    check_shapes(background=(background, (None, None, 3)))
    figure = Figure(figsize=(4.6 * len(panels), 5.0), layout="constrained")  # no pyplot state
    axes = figure.subplots(1, len(panels), squeeze=False)
    for axis, panel in zip(axes[0], panels, strict=True):
        axis.imshow(background, extent=extent, alpha=0.55, interpolation="bilinear")
        colors = [label_color(name, i) for i, name in enumerate(panel.label_names)]
        for positions, length, label in zip(
            panel.positions, panel.lengths, panel.labels, strict=True
        ):
            path_points = positions[: int(length) + 1]
            axis.plot(*path_points.T, color=colors[label], alpha=0.45, linewidth=1.0)
            if panel.label_names[label] in FAILURE_LABELS:
                axis.plot(*path_points[-1], marker="x", color=colors[label], markersize=4)
        axis.scatter(*panel.positions[:, 0].T, s=4, color="black", zorder=3)
        counts = np.bincount(panel.labels, minlength=len(panel.label_names))
        handles = [
            Line2D([], [], color=color, label=f"{name} {count / len(panel.labels):.0%}")
            for name, color, count in zip(panel.label_names, colors, counts, strict=True)
            if count
        ]
        axis.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.85)
        axis.set(title=panel.title, xlim=extent[:2], ylim=extent[2:], aspect="equal")
        axis.title.set_fontsize(9)
        axis.tick_params(labelsize=7)
    path = Path(path)
    figure.savefig(path, dpi=110)
    return path
