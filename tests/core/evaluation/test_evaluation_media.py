"""Evaluation media (core.evaluation.media): the video grid's tile placement and outcome
borders, the GIF's frames and timing read back with PIL, and the trajectory plot's file."""

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from core.evaluation import media

HEIGHT, WIDTH, BORDER = 4, 6, 2


def _frames(num_videos: int, num_frames: int) -> np.ndarray:
    """[V, T, H, W, 3] frames whose pixels encode (video, frame)."""
    values = 10 * np.arange(num_videos)[:, None] + np.arange(num_frames)[None, :]
    return np.broadcast_to(
        values[:, :, None, None, None].astype(np.uint8), (num_videos, num_frames, HEIGHT, WIDTH, 3)
    ).copy()


def _tile(grid_frame, video, columns):
    top = (video // columns) * (HEIGHT + 2 * BORDER)
    left = (video % columns) * (WIDTH + 2 * BORDER)
    return grid_frame[top : top + HEIGHT + 2 * BORDER, left : left + WIDTH + 2 * BORDER]


def test_video_grid_places_each_episode_in_its_tile_and_borders_it_by_outcome_once_ended():
    frames = _frames(3, 6)
    lengths = np.array([2, 5, 3])
    outcomes = np.array([0, 1, 2])  # success, failure, timeout
    grid = media.video_grid(frames, lengths, outcomes, border=BORDER)
    columns = 2  # ceil(sqrt(3))
    assert grid.shape == (6, 2 * (HEIGHT + 2 * BORDER), 2 * (WIDTH + 2 * BORDER), 3)
    colors = [np.round(np.array(to_rgb(media.LABEL_COLORS[name])) * 255) for name in media.OUTCOMES]
    for t in range(6):
        for video in range(3):
            tile = _tile(grid[t], video, columns)
            np.testing.assert_array_equal(tile[BORDER:-BORDER, BORDER:-BORDER], frames[video, t])
            border = colors[outcomes[video]] if t >= lengths[video] else media.RUNNING_COLOR
            np.testing.assert_array_equal(tile[0, 0], border)
            np.testing.assert_array_equal(tile[-1, BORDER], border)
    np.testing.assert_array_equal(_tile(grid[0], 3, columns), 0)  # the empty fourth slot


def test_video_grid_stops_one_frame_after_the_longest_episode():
    grid = media.video_grid(_frames(2, 9), np.array([3, 4]), np.array([0, 0]), border=BORDER)
    assert len(grid) == 5


def test_video_grid_rejects_mismatched_episode_counts():
    with pytest.raises(ValueError, match="lengths must have shape"):
        media.video_grid(_frames(2, 3), np.array([1, 2, 3]), np.array([0, 0]))


def test_gif_holds_every_frame_and_lingers_on_the_last(tmp_path):
    frames = np.zeros((4, 8, 8, 3), np.uint8)
    for t in range(4):
        frames[t, :, : 2 * (t + 1)] = (200, 30, 30)
    path = media.write_gif(frames, tmp_path / "grid.gif", fps=10)
    with Image.open(path) as gif:
        assert gif.n_frames == 4
        durations, decoded = [], []
        for index in range(4):
            gif.seek(index)
            durations.append(gif.info["duration"])
            decoded.append(np.asarray(gif.convert("RGB")))
    assert durations == [100, 100, 100, 100 + 1000 * media.HOLD_SECONDS]
    np.testing.assert_array_equal(np.stack(decoded), frames)  # 2 colours: exact palette


def test_trajectory_plot_writes_a_png_of_one_panel_per_rollout_set(tmp_path):
    rng = np.random.default_rng(0)
    panels = [
        media.TrajectoryPanel(
            title=title,
            positions=rng.uniform(-1, 1, (5, 7, 2)),
            lengths=np.array([6, 3, 6, 2, 6]),
            labels=np.array([0, 1, 2, 0, 3]),
            label_names=("left", "right", "collided", "other"),
        )
        for title in ("expert", "policy")
    ]
    background = np.full((16, 16, 3), 230, np.uint8)
    path = media.plot_trajectories(panels, background, (-1, 1, -1, 1), tmp_path / "plot.png")
    with Image.open(path) as image:
        width, height = image.size
    assert width > 1.5 * height  # two panels side by side


def test_trajectory_panel_rejects_labels_of_another_episode_count():
    with pytest.raises(ValueError, match="labels must have shape"):
        media.TrajectoryPanel("x", np.zeros((3, 4, 2)), np.ones(3), np.zeros(2, int), ("a",))
