"""Pick and place: grasp a block with a gripper and release it in either of two zones.

Book 16.6.2 (eq. 16.54), 16.7 and 17.2: a gripper command in [-1, 1] (< 0 opens, > 0 closes),
and a task long enough (about 90 steps for the expert) that predicting action chunks
(eqs. 16.56, 17.1, k ∈ [10, 100]) matters. The demonstrations are bimodal: two target zones,
left and right, both count, and the expert carries the block to one of them with probability
1/2 each (eq. 16.38); the average of the two carries ends between the zones, in neither.

World (world units, y up, workspace [-1, 1]², seen from above):
  gripper  a point (its fingers are drawn around it), starts at (U(-0.6, 0.6), U(-0.85, -0.75))
           with opening 1 (fully open)
  block    square of half-side 0.07 at (U(-0.3, 0.3), U(-0.4, -0.1))
  zones    squares of half-side 0.16 at (∓0.55 + U(-0.05, 0.05), 0.55 + U(-0.05, 0.05))
Action: [dx, dy, gripper]; the position delta in [-1, 1]² times MAX_STEP = 0.02 world units per
step (eq. 16.14), the gripper command in [-1, 1] moves the opening g ∈ [0, 1] by
-GRIPPER_RATE · command per step (1 = open, 0 = closed). Control rate 20 Hz; time limit 200 steps
(10 s); the expert needs 75 to 120 (about 90).
Grasp: the block is grasped on the step where g falls below 1/2 while the gripper centre is
within GRASP_TOLERANCE = 0.04 of the block centre (closing elsewhere grasps nothing, and a
gripper that is already closed cannot grasp); a grasped block moves with the gripper and is
released when g rises to 1/2 or more.
Observation: "observation.state" [x, y, vx, vy, opening] ([x, y, opening] with
velocity_in_state=False, which removes the copy-the-previous-action shortcut, as in
`core.envs.obstacle`); "observation.environment_state" [block_x, block_y, left_zone_x,
left_zone_y, right_zone_x, right_zone_y]; one image per camera.
Success: the block lies entirely inside a zone, released, with the gripper open (g ≥ 0.9).
There is no failure state: a block dropped outside the zones can be grasped again.
Expert: moves to the block with the gripper open, closes it, carries the block to the centre of
its zone with the gripper closed, then opens it.
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
from core.envs.point_mass import PointMass, move, state_bounds, steer_toward
from core.envs.tabletop import TabletopEnv

FPS = 20
MAX_STEP = 0.02
GRIPPER_REACH = 0.1
"""The gripper centre stays GRIPPER_REACH inside the workspace, so a carried block stays on it."""
BLOCK_HALF_SIDE = 0.07
ZONE_HALF_SIDE = 0.16
GRASP_TOLERANCE = 0.04
GRIPPER_RATE = 0.2
GRASP_THRESHOLD = 0.5
OPEN_THRESHOLD = 0.9
ARRIVAL_TOLERANCE = 1e-3

# (low, high) of gripper_x, gripper_y, block_x, block_y, left/right zone x and y offsets.
LAYOUT_LOW = (-0.6, -0.85, -0.3, -0.4, -0.05, -0.05, -0.05, -0.05)
LAYOUT_HIGH = (0.6, -0.75, 0.3, -0.1, 0.05, 0.05, 0.05, 0.05)
ZONE_CENTERS = ((-0.55, 0.55), (0.55, 0.55))

FINGER_HALF_SIZE = (0.015, 0.05)
FINGER_TRAVEL = BLOCK_HALF_SIDE + 0.03
PALM_HALF_HEIGHT = 0.012
BLOCK_COLOR = (0.85, 0.2, 0.15)
ZONE_COLOR = (0.2, 0.7, 0.3)
ZONE_LINE_WIDTH = 0.025
GRIPPER_COLOR = (0.2, 0.2, 0.25)
INSTRUCTION = "put the red block in a green zone"


@flax.struct.dataclass
class PickPlaceState:
    """agent: the gripper centre's position/velocity; opening: [] in [0, 1]; holding: bool [];
    block: [2] centre; zones: [2, 2] left and right zone centres; status: episode progress."""

    agent: PointMass
    opening: jax.Array
    holding: jax.Array
    block: jax.Array
    zones: jax.Array
    status: EpisodeStatus


def block_in_zones(block: jax.Array, zones: jax.Array) -> jax.Array:
    """[2] bool: the block (centre [2]) lies entirely inside each zone (centres [2, 2])."""
    slack = ZONE_HALF_SIDE - BLOCK_HALF_SIDE
    return jnp.all(jnp.abs(block[None] - zones) <= slack, axis=-1)


@dataclasses.dataclass(frozen=True)
class PickPlaceEnv(TabletopEnv):
    """The pick-and-place task (module docstring); configuration as in `TabletopEnv`, and
    velocity_in_state: whether "observation.state" holds the velocity after the position."""

    max_episode_steps: int = 200
    velocity_in_state: bool = True

    @property
    def spec(self) -> EnvSpec:
        zone_names = ("left_zone_x", "left_zone_y", "right_zone_x", "right_zone_y")
        low, high = state_bounds(MAX_STEP, FPS)
        kept = slice(None) if self.velocity_in_state else slice(0, 2)
        names = ("x", "y", "vx", "vy")[kept]
        return EnvSpec(
            name="pick_place",
            robot_type="planar_gripper",
            observation={
                "observation.state": ArraySpec(
                    (len(names) + 1,),
                    "float32",
                    (*names, "gripper_opening"),
                    low=(*low[kept], 0.0),
                    high=(*high[kept], 1.0),
                ),
                "observation.environment_state": ArraySpec(
                    (6,),
                    "float32",
                    ("block_x", "block_y", *zone_names),
                    low=(-1.0,) * 6,
                    high=(1.0,) * 6,
                ),
                **self.image_specs(),
            },
            action=ArraySpec(
                (3,), "float32", ("dx", "dy", "gripper"), low=(-1.0,) * 3, high=(1.0,) * 3
            ),
            gripper_dims=(2,),
            fps=FPS,
            max_episode_steps=self.max_episode_steps,
            cameras=self.cameras,
            success="block entirely inside either zone, released, gripper opening >= 0.9",
        )

    def reset(self, key: jax.Array) -> tuple[PickPlaceState, Observation]:
        layout = jax.random.uniform(
            key, (8,), minval=jnp.array(LAYOUT_LOW), maxval=jnp.array(LAYOUT_HIGH)
        )
        state = PickPlaceState(
            agent=PointMass.at_rest(layout[0:2]),
            opening=jnp.ones((), jnp.float32),
            holding=jnp.zeros((), bool),
            block=layout[2:4],
            zones=jnp.array(ZONE_CENTERS) + layout[4:8].reshape(2, 2),
            status=EpisodeStatus.start(),
        )
        return state, self.observe(state)

    def step(self, state: PickPlaceState, action: jax.Array) -> StepResult:
        """action: [3] = position delta in [-1, 1]², gripper command in [-1, 1] (clipped)."""
        action = clip_action(self.spec, action)
        agent = move(state.agent, action[:2], MAX_STEP, FPS, GRIPPER_REACH)
        block = state.block + state.holding * (agent.position - state.agent.position)
        opening = jnp.clip(state.opening - GRIPPER_RATE * action[2], 0.0, 1.0)
        closed = opening < GRASP_THRESHOLD
        closes_now = (state.opening >= GRASP_THRESHOLD) & closed
        aligned = jnp.linalg.norm(agent.position - block) <= GRASP_TOLERANCE
        holding = closed & (state.holding | (closes_now & aligned))
        success = (
            jnp.any(block_in_zones(block, state.zones)) & ~holding & (opening >= OPEN_THRESHOLD)
        )
        status = advance_status(state.status, success, jnp.zeros((), bool), self.max_episode_steps)
        next_state = state.replace(
            agent=agent, opening=opening, holding=holding, block=block, status=status
        )
        return finish_step(state, next_state, self.observe)

    def observe(self, state: PickPlaceState) -> Observation:
        agent = state.agent
        velocity = [agent.velocity] if self.velocity_in_state else []
        return {
            "observation.state": jnp.concatenate([agent.position, *velocity, state.opening[None]]),
            "observation.environment_state": jnp.concatenate([state.block, state.zones.ravel()]),
            **self.images(state),
        }

    def scene(self, state: PickPlaceState) -> render.Shapes:
        finger_offset = FINGER_HALF_SIZE[0] + state.opening * FINGER_TRAVEL
        finger_offset = jnp.where(
            state.holding,
            jnp.maximum(finger_offset, BLOCK_HALF_SIDE + FINGER_HALF_SIZE[0]),
            finger_offset,
        )
        center = state.agent.position
        palm_center = center + jnp.array([0.0, FINGER_HALF_SIZE[1]])
        palm_half_size = jnp.stack([finger_offset + FINGER_HALF_SIZE[0], PALM_HALF_HEIGHT])
        return render.stack(
            render.table(),
            *(
                render.box(zone, ZONE_HALF_SIDE, ZONE_COLOR, outline_width=ZONE_LINE_WIDTH)
                for zone in state.zones
            ),
            render.box(state.block, BLOCK_HALF_SIDE, BLOCK_COLOR),
            render.box(center - jnp.array([finger_offset, 0.0]), FINGER_HALF_SIZE, GRIPPER_COLOR),
            render.box(center + jnp.array([finger_offset, 0.0]), FINGER_HALF_SIZE, GRIPPER_COLOR),
            render.box(palm_center, palm_half_size, GRIPPER_COLOR),
        )

    def instruction(self, state: PickPlaceState) -> str:
        return INSTRUCTION


@dataclasses.dataclass(frozen=True)
class PickPlaceExpert:
    """Picks the block and places it in the zone drawn by `plan` (0 left, 1 right)."""

    mode_names: ClassVar[tuple[str, ...]] = ("left_zone", "right_zone")

    def plan(self, key: jax.Array, state: PickPlaceState) -> ExpertPlan:
        return uniform_mode_plan(key, len(self.mode_names))

    def act(self, plan: ExpertPlan, state: PickPlaceState) -> jax.Array:
        position = state.agent.position
        zone = state.zones[plan.mode]
        at_zone = jnp.linalg.norm(state.block - zone) <= ARRIVAL_TOLERANCE
        at_block = jnp.linalg.norm(state.block - position) <= ARRIVAL_TOLERANCE
        released = ~state.holding & jnp.any(block_in_zones(state.block, state.zones))
        carry = steer_toward(position, zone + position - state.block, MAX_STEP)
        approach = steer_toward(position, state.block, MAX_STEP)
        stay = jnp.zeros(2)
        # (movement, gripper command) per phase, in order of precedence.
        phases = [
            (state.holding & at_zone, stay, -1.0),  # release in the zone
            (state.holding, carry, 1.0),  # carry with the gripper closed
            (released, stay, -1.0),  # open fully
            (at_block, stay, 1.0),  # close on the block
        ]
        movement, command = approach, -1.0  # approach the block with the gripper open
        for condition, phase_movement, phase_command in reversed(phases):
            movement = jnp.where(condition, phase_movement, movement)
            command = jnp.where(condition, phase_command, command)
        return jnp.concatenate([movement, command[None]])


EPISODE_MODES = ("left_zone", "right_zone", "neither")
"""Where an episode left the block; the zones have the expert's mode indices."""


def classify_episode_mode(states: PickPlaceState) -> jax.Array:
    """The mode of one episode, an int32 [] index into EPISODE_MODES (book 16.7, eq. 16.38).

    states: the episode's states with a leading time axis [T + 1], the last one after the last
    step. The zone the block lies entirely inside at the end (held or not), else "neither": the
    average of a left and a right carry ends between the zones.
    """
    inside = block_in_zones(states.block[-1], states.zones[-1])
    return jnp.where(inside[0], 0, jnp.where(inside[1], 1, 2)).astype(jnp.int32)
