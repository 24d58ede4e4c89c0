"""Closed-loop evaluation metrics: success rate with its 95% Wilson interval, episode length,
return, outcomes, and the mode shares of the bimodal tasks.

Book 16.8: a cloned policy is judged by what it does in closed loop; on the bimodal tasks
(16.3.3, 18.8.1) the share of episodes per mode shows whether it averages the modes (eq. 16.39:
into the obstacle, between the zones) or collapses onto one.

Success rate. n episodes with s successes estimate p by p̂ = s/n. The Wilson score interval
(Wilson 1927) is the set of p that a two-sided z-test at level 95% does not reject,
|p̂ − p| ≤ z √(p(1 − p)/n), z = Φ⁻¹(0.975):

  centre = (p̂ + z²/(2n)) / (1 + z²/n),
  half   = z / (1 + z²/n) · √(p̂(1 − p̂)/n + z²/(4n²)).

Unlike the normal (Wald) interval p̂ ± z √(p̂(1 − p̂)/n) it stays inside [0, 1] and is not
empty at p̂ = 0 or 1 (0/10 gives [0, 0.278]), which matters at the success rates seen here.

All functions work on numpy arrays of a `core.evaluation.rollout.Rollouts` record on the host.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import numpy as np

from core.checks import check_rank
from core.envs import obstacle, pick_place
from core.evaluation.rollout import Rollouts

OUTCOMES = ("success", "failure", "timeout")
"""How an episode ended: the task's success, a terminal failure, or neither by the last step."""

Z_95 = 1.959963984540054
"""Φ⁻¹(0.975), the two-sided 95% quantile of the standard normal."""

MODE_CLASSIFIERS: dict[str, tuple[tuple[str, ...], Callable]] = {
    "obstacle": (obstacle.EPISODE_MODES, obstacle.classify_episode_mode),
    "pick_place": (pick_place.EPISODE_MODES, pick_place.classify_episode_mode),
}
"""Task name -> (mode names, classifier of one episode's states [T + 1] -> mode index)."""


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (module docstring).

    Args:
      successes: s, 0 <= s <= n.
      trials: n >= 1.
      z: the normal quantile of the confidence level (Z_95 for 95%).

    Returns:
      (low, high) with 0 <= low <= s/n <= high <= 1.
    """
    if not isinstance(trials, int | np.integer) or trials < 1:
        raise ValueError(f"trials must be a positive int, got {trials!r}")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must lie in 0..{trials}, got {successes!r}")
    if not z > 0:
        raise ValueError(f"z must be positive, got {z!r}")
    rate = successes / trials
    shrink = 1 + z**2 / trials
    center = (rate + z**2 / (2 * trials)) / shrink
    half_width = z / shrink * math.sqrt(rate * (1 - rate) / trials + z**2 / (4 * trials**2))
    # low <= p̂ <= high holds exactly; the clamps only undo rounding (e.g. 3e-17 at p̂ = 0)
    return min(max(0.0, center - half_width), rate), max(min(1.0, center + half_width), rate)


def episode_lengths(done: np.ndarray) -> np.ndarray:
    """[N] steps of each episode: up to and including its first done step, T if never done.

    done: [N, T] bool, the episode was done after step t (absorbing: stays done).
    """
    check_rank("done", done, 2)
    done = np.asarray(done, bool)
    return np.where(done.any(axis=1), done.argmax(axis=1) + 1, done.shape[1])


def rollout_lengths(rollouts: Rollouts) -> np.ndarray:
    """[N] steps of each episode of a rollout record (its end: terminated or truncated)."""
    return episode_lengths(np.asarray(rollouts.terminated) | np.asarray(rollouts.truncated))


def episode_outcomes(rollouts: Rollouts) -> np.ndarray:
    """[N] indices into OUTCOMES: success, failure (terminated without success) or timeout
    (truncated by the time limit, or still running after the last step)."""
    success = np.asarray(rollouts.success)[:, -1]
    terminated = np.asarray(rollouts.terminated)[:, -1]
    return np.where(success, 0, np.where(terminated, 1, 2))


def episode_modes(task_name: str, states) -> np.ndarray | None:
    """[N] mode indices into MODE_CLASSIFIERS[task_name][0], or None for a task without modes.

    states: the rollouts' state pytree with leading [N, T + 1].
    """
    if task_name not in MODE_CLASSIFIERS:
        return None
    _, classify = MODE_CLASSIFIERS[task_name]
    return np.asarray(_classify_episodes(classify, states))


@functools.partial(jax.jit, static_argnums=0)
def _classify_episodes(classify: Callable, states) -> jax.Array:
    return jax.vmap(classify)(states)


def shares(labels: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    """{name: fraction of the labels [N] (indices into names) equal to its index}."""
    counts = np.bincount(np.asarray(labels), minlength=len(names))
    return {name: float(count / len(labels)) for name, count in zip(names, counts, strict=True)}


def episode_statistics(rollouts: Rollouts, task_name: str) -> dict:
    """The evaluation statistics of N episodes (module docstring), JSON-ready.

    Keys: episodes, successes, success_rate, success_ci95 [low, high], mean_length, mean_return,
    outcome_shares {success, failure, timeout}, and for the bimodal tasks mode_shares.
    """
    success = np.asarray(rollouts.success)[:, -1]
    num_episodes, successes = len(success), int(success.sum())
    statistics = {
        "episodes": num_episodes,
        "successes": successes,
        "success_rate": successes / num_episodes,
        "success_ci95": list(wilson_interval(successes, num_episodes)),
        "mean_length": float(rollout_lengths(rollouts).mean()),
        "mean_return": float(np.asarray(rollouts.rewards).sum(axis=1).mean()),
        "outcome_shares": shares(episode_outcomes(rollouts), OUTCOMES),
    }
    modes = episode_modes(task_name, rollouts.states)
    if modes is not None:
        statistics["mode_shares"] = shares(modes, MODE_CLASSIFIERS[task_name][0])
    return statistics
