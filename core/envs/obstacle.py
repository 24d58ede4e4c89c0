"""Obstacle: reach a goal behind an obstacle without touching it, passing left or right.

Book 16.3.3 and 18.8.1: the demonstrations are exactly bimodal. The expert passes the obstacle
on the left or on the right with probability 1/2 each (eq. 16.38 with M = 2, p_m = 1/2); the
average of a left and a right path runs through the obstacle, which is where a regression to the
mean of the demonstrations (eq. 16.39) leads a unimodal policy.

World (world units, y up, workspace [-1, 1]², drawn by the top camera):
  agent     disc of radius 0.05, starts at (U(-0.1, 0.1), U(-0.85, -0.75))
  obstacle  disc of radius 0.3 at (U(-0.05, 0.05), U(-0.05, 0.05))
  goal      disc of radius 0.08 at (U(-0.1, 0.1), U(0.75, 0.85))
Action: [2] position delta in [-1, 1]² (eq. 16.14), times MAX_STEP = 0.05 world units per step;
no gripper. Control rate 10 Hz; time limit 100 steps (10 s); the expert needs about 40.
Observation: "observation.state" [x, y, vx, vy] of the agent ([x, y] with
velocity_in_state=False); "observation.environment_state" [goal_x, goal_y, obstacle_x,
obstacle_y]; one image per camera. The velocity is the previous action times MAX_STEP · FPS, so
a cloned policy can copy it instead of reading the scene (causal confusion, de Haan et al.
2019; the proprioceptive state of book 16.5): velocity_in_state=False removes that shortcut.
Success: the agent's centre is inside the goal disc (|p - g| ≤ 0.08) before the time limit.
Failure (terminates the episode): the agent's disc touches the obstacle anywhere along the
straight segment it travels in a step (|segment - o| < 0.3 + 0.05), so no step tunnels through.
Expert: steers at full speed to the via point (o_x ∓ 0.6, o_y) on its side, then to the goal.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.struct
import jax
import jax.numpy as jnp

from core.envs import render
from core.envs.api import (
    ArraySpec,
    EnvSpec,
    EpisodeStatus,
    ExpertPlan,
    Observation,
    StepResult,
    advance_status,
    clip_action,
    finish_step,
    uniform_mode_plan,
)
from core.envs.point_mass import (
    PointMass,
    move,
    segment_point_distance,
    state_bounds,
    steer_toward,
)
from core.envs.tabletop import TabletopEnv

FPS = 10
MAX_STEP = 0.05
AGENT_RADIUS = 0.05
OBSTACLE_RADIUS = 0.3
GOAL_RADIUS = 0.08
VIA_OFFSET = 0.6
"""Horizontal distance of the expert's via points from the obstacle centre. The segments into
and out of a via point pass the centre at ≥ 0.6 · sin(atan(0.7 / 0.75)) ≈ 0.41 > 0.35 (the touch
distance) for every start, goal and obstacle position of `reset` (at most 0.75 across, at least
0.7 up)."""
ARRIVAL_TOLERANCE = 1e-3

# (low, high) of start_x, start_y, obstacle_x, obstacle_y, goal_x, goal_y.
LAYOUT_LOW = (-0.1, -0.85, -0.05, -0.05, -0.1, 0.75)
LAYOUT_HIGH = (0.1, -0.75, 0.05, 0.05, 0.1, 0.85)

AGENT_COLOR = (0.15, 0.35, 0.9)
OBSTACLE_COLOR = (0.45, 0.3, 0.25)
GOAL_COLOR = (0.2, 0.75, 0.3)
INSTRUCTION = "reach the green goal without touching the obstacle"


@flax.struct.dataclass
class ObstacleState:
    """agent: the point agent; goal, obstacle: [2] centres; status: episode progress."""

    agent: PointMass
    goal: jax.Array
    obstacle: jax.Array
    status: EpisodeStatus


@dataclasses.dataclass(frozen=True)
class ObstacleEnv(TabletopEnv):
    """The obstacle task (module docstring); configuration as in `TabletopEnv`, and
    velocity_in_state: whether "observation.state" holds the velocity after the position."""

    max_episode_steps: int = 100
    velocity_in_state: bool = True

    @property
    def spec(self) -> EnvSpec:
        return EnvSpec(
            name="obstacle",
            robot_type="planar_point",
            observation={
                "observation.state": self._state_spec(),
                "observation.environment_state": ArraySpec(
                    (4,),
                    "float32",
                    ("goal_x", "goal_y", "obstacle_x", "obstacle_y"),
                    low=(-1.0,) * 4,
                    high=(1.0,) * 4,
                ),
                **self.image_specs(),
            },
            action=ArraySpec((2,), "float32", ("dx", "dy"), low=(-1.0, -1.0), high=(1.0, 1.0)),
            gripper_dims=(),
            fps=FPS,
            max_episode_steps=self.max_episode_steps,
            cameras=self.cameras,
            success="agent centre within 0.08 of the goal centre, the obstacle never touched",
        )

    def _state_spec(self) -> ArraySpec:
        low, high = state_bounds(MAX_STEP, FPS)
        if self.velocity_in_state:
            return ArraySpec((4,), "float32", ("x", "y", "vx", "vy"), low, high)
        return ArraySpec((2,), "float32", ("x", "y"), low[:2], high[:2])

    def reset(self, key: jax.Array) -> tuple[ObstacleState, Observation]:
        layout = jax.random.uniform(
            key, (6,), minval=jnp.array(LAYOUT_LOW), maxval=jnp.array(LAYOUT_HIGH)
        )
        state = ObstacleState(
            agent=PointMass.at_rest(layout[0:2]),
            obstacle=layout[2:4],
            goal=layout[4:6],
            status=EpisodeStatus.start(),
        )
        return state, self.observe(state)

    def step(self, state: ObstacleState, action: jax.Array) -> StepResult:
        """action: [2] position delta in [-1, 1]² (clipped)."""
        action = clip_action(self.spec, action)
        agent = move(state.agent, action, MAX_STEP, FPS, AGENT_RADIUS)
        path_to_obstacle = segment_point_distance(
            state.agent.position, agent.position, state.obstacle
        )
        touched = path_to_obstacle < OBSTACLE_RADIUS + AGENT_RADIUS
        reached = jnp.linalg.norm(agent.position - state.goal) <= GOAL_RADIUS
        status = advance_status(state.status, reached & ~touched, touched, self.max_episode_steps)
        return finish_step(state, state.replace(agent=agent, status=status), self.observe)

    def observe(self, state: ObstacleState) -> Observation:
        return {
            "observation.state": self._agent_state(state.agent),
            "observation.environment_state": jnp.concatenate([state.goal, state.obstacle]),
            **self.images(state),
        }

    def _agent_state(self, agent: PointMass) -> jax.Array:
        """[4] position and velocity, or [2] the position alone (velocity_in_state=False)."""
        if self.velocity_in_state:
            return jnp.concatenate([agent.position, agent.velocity])
        return agent.position

    def scene(self, state: ObstacleState) -> render.Shapes:
        return render.stack(
            render.table(),
            render.disc(state.goal, GOAL_RADIUS, GOAL_COLOR),
            render.disc(state.obstacle, OBSTACLE_RADIUS, OBSTACLE_COLOR),
            render.disc(state.agent.position, AGENT_RADIUS, AGENT_COLOR),
        )

    def instruction(self, state: ObstacleState) -> str:
        return INSTRUCTION


@dataclasses.dataclass(frozen=True)
class ObstacleExpert:
    """Passes the obstacle on the side drawn by `plan` (0 left, 1 right), then goes to the goal."""

    mode_names: ClassVar[tuple[str, ...]] = ("left", "right")

    def plan(self, key: jax.Array, state: ObstacleState) -> ExpertPlan:
        return uniform_mode_plan(key, len(self.mode_names))

    def act(self, plan: ExpertPlan, state: ObstacleState) -> jax.Array:
        side = jnp.where(plan.mode == 0, -1.0, 1.0)
        via_point = state.obstacle + jnp.array([VIA_OFFSET, 0.0]) * side
        before_via_point = state.agent.position[1] < via_point[1] - ARRIVAL_TOLERANCE
        target = jnp.where(before_via_point, via_point, state.goal)
        return steer_toward(state.agent.position, target, MAX_STEP)


EPISODE_MODES = ("left", "right", "collided", "other")
"""How an episode went around the obstacle; "left" and "right" have the expert's mode indices."""


def classify_episode_mode(states: ObstacleState) -> jax.Array:
    """The mode of one episode, an int32 [] index into EPISODE_MODES (book 16.3.3, 18.8.1).

    states: the episode's states with a leading time axis [T + 1], the last one after the last
    step. "collided" if the episode ended touching the obstacle; otherwise "left" or "right" by
    the side of the obstacle centre the agent was on when it first came level with it (a path
    that does not touch the obstacle passes it at least 0.35 to the side); "other" if it never
    came level (e.g. it stalled below the obstacle).
    """
    position = states.agent.position  # [T + 1, 2]
    obstacle = states.obstacle[0]
    final = jax.tree.map(lambda leaf: leaf[-1], states.status)
    level = position[:, 1] >= obstacle[1]
    side = jnp.where(position[jnp.argmax(level), 0] < obstacle[0], 0, 1)
    collided = final.terminated & ~final.success
    mode = jnp.where(collided, 2, jnp.where(jnp.any(level), side, 3))
    return mode.astype(jnp.int32)
