"""Stand-in policies for the evaluator's tests: the obstacle expert seen through observations.

`ObstacleOraclePolicy.predict_chunk` receives normalized observation windows, undoes the
normalization with statistics it carries in its variables, rebuilds the task state from the
observation (agent position and velocity, goal, obstacle: the state is fully observed), and
predicts the expert's next k actions exactly by simulating the deterministic task k steps
ahead; it returns them normalized. Any error in the evaluator's plumbing (observation
normalization, action un-normalization, chunk row order, clipping, time limit) shows up as a
deviation from the expert. With `average_modes` it predicts the mean of the left and the right
expert action instead: the regression-to-the-mean policy of book 16.3.3 / eq. 16.39.
"""

import dataclasses

import jax
import jax.numpy as jnp

from core.envs.api import EpisodeStatus, ExpertPlan
from core.envs.obstacle import ObstacleEnv, ObstacleExpert, ObstacleState
from core.envs.point_mass import PointMass
from core.normalizers import AffineNormalizer

STATE_KEYS = ("observation.state", "observation.environment_state")


def oracle_normalizers() -> dict[str, AffineNormalizer]:
    """Deliberately non-trivial affine normalizers (offsets and scales far from 0 and 1)."""
    return {
        "observation.state": AffineNormalizer(
            jnp.array([0.1, -0.2, 0.0, 0.3]), jnp.array([0.5, 0.7, 0.4, 0.6])
        ),
        "observation.environment_state": AffineNormalizer(
            jnp.array([0.0, 0.8, 0.05, -0.02]), jnp.array([0.1, 0.05, 0.03, 0.04])
        ),
        "action": AffineNormalizer(jnp.array([0.2, -0.1]), jnp.array([0.9, 1.3])),
    }


def oracle_mode(environment_state: jax.Array) -> jax.Array:
    """The oracle's side for an episode, from [goal_x, goal_y, obstacle_x, obstacle_y]: left
    (0) when the obstacle lies right of the goal, else right (1); fixed within an episode."""
    return jnp.where(environment_state[2] > environment_state[0], 0, 1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class ObstacleOraclePolicy:
    """See the module docstring. Variables: {"normalizers": oracle_normalizers()}."""

    action_horizon: int = 1
    observation_horizon: int = 1
    average_modes: bool = False
    observation_keys: tuple[str, ...] = STATE_KEYS

    def _expert_action(self, state: ObstacleState, environment_state: jax.Array) -> jax.Array:
        expert = ObstacleExpert()
        if self.average_modes:
            left, right = (expert.act(ExpertPlan(jnp.int32(mode)), state) for mode in (0, 1))
            return (left + right) / 2
        return expert.act(ExpertPlan(oracle_mode(environment_state)), state)

    def predict_chunk(self, variables, observation, rng):
        normalizers = variables["normalizers"]
        agent, environment = (
            normalizers[key].unnormalize(observation[key][:, -1]) for key in STATE_KEYS
        )
        env = ObstacleEnv(cameras=())

        def expert_chunk(agent, environment):
            state = ObstacleState(
                agent=PointMass(agent[:2], agent[2:]),
                goal=environment[:2],
                obstacle=environment[2:],
                status=EpisodeStatus.start(),
            )

            def simulate(state, _):
                action = self._expert_action(state, environment)
                return env.step(state, action)[0], action

            return jax.lax.scan(simulate, state, length=self.action_horizon)[1]

        chunk = jax.vmap(expert_chunk)(agent, environment)
        return normalizers["action"].normalize(chunk)


@dataclasses.dataclass(frozen=True)
class ConstantPolicy:
    """Predicts the same normalized action everywhere (e.g. far outside the bounds)."""

    value: float
    action_dim: int = 2
    action_horizon: int = 1
    observation_horizon: int = 1
    observation_keys: tuple[str, ...] = ("observation.state",)

    def predict_chunk(self, variables, observation, rng):
        batch_size = observation["observation.state"].shape[0]
        return jnp.full((batch_size, self.action_horizon, self.action_dim), self.value)
