"""Reach target: go to the coloured target that a language instruction names.

Book 19.1 (eq. 19.1): a vision-language-action policy reads text tokens from a vocabulary
V_text beside the images; here V_text is a tiny fixed word vocabulary, and the instruction
matters.

N coloured targets (N = 3 or 4, colours red, green, blue, yellow in that order) are placed in a
random order on an arc; the instruction "go to the <colour> target" names one of them. Touching
any other target ends the episode as a failure, so a policy that ignores the instruction and
heads for one target succeeds on about 1/N of the episodes.

World (world units, y up, workspace [-1, 1]²):
  agent    disc of radius 0.05, starts at (U(-0.1, 0.1), U(-0.8, -0.7))
  targets  discs of radius 0.1 on the arc of radius 1.05 around (0, -0.8), at angles spread
           evenly over [40°, 140°] with the colours randomly permuted over these slots, each
           moved by U(-0.05, 0.05) per coordinate
Action: [2] position delta in [-1, 1]² times MAX_STEP = 0.05 world units per step; no gripper.
Control rate 10 Hz; time limit 80 steps (8 s); the expert needs about 20.
Observation: "observation.state" [x, y, vx, vy]; "observation.environment_state" the target
centres in colour order [2N]; "observation.instruction" int32 [5] token ids; one image per camera.
Instruction vocabulary (token id = position in VOCABULARY): go, to, the, target, red, green,
blue, yellow; every instruction is the 5 tokens "go to the <colour> target".
Success: the agent's centre is within 0.1 of the named target's centre before the time limit.
Failure (terminates): the agent's centre comes within 0.1 of another target anywhere along the
segment it travels in a step.
Expert: goes straight to the named target at full speed.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

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
TARGET_RADIUS = 0.1
ARC_CENTER = (0.0, -0.8)
ARC_RADIUS = 1.05
ARC_ANGLES_DEGREES = (40.0, 140.0)
TARGET_JITTER = 0.05
START_LOW = (-0.1, -0.8)
START_HIGH = (0.1, -0.7)

COLOR_NAMES = ("red", "green", "blue", "yellow")
COLORS = ((0.9, 0.15, 0.15), (0.15, 0.7, 0.2), (0.2, 0.35, 0.95), (0.95, 0.8, 0.1))
AGENT_COLOR = (0.15, 0.15, 0.15)
VOCABULARY = ("go", "to", "the", "target", *COLOR_NAMES)
INSTRUCTION_LENGTH = 5


def instruction_text(color: int) -> str:
    """The instruction naming target `color` (an index into COLOR_NAMES)."""
    return f"go to the {COLOR_NAMES[color]} target"


def tokenize(text: str) -> np.ndarray:
    """Token ids int32 [words] of an instruction; ValueError for a word outside VOCABULARY."""
    words = text.split()
    unknown = [word for word in words if word not in VOCABULARY]
    if unknown:
        raise ValueError(f"instruction words must be in {VOCABULARY}, got {unknown} in {text!r}")
    return np.array([VOCABULARY.index(word) for word in words], np.int32)


def detokenize(token_ids) -> str:
    """The text of token ids [words]."""
    return " ".join(VOCABULARY[int(token)] for token in np.asarray(token_ids))


INSTRUCTION_TOKENS = np.stack([tokenize(instruction_text(c)) for c in range(len(COLOR_NAMES))])
"""[colours, INSTRUCTION_LENGTH] the token ids of every instruction."""


@flax.struct.dataclass
class ReachTargetState:
    """agent: the point agent; targets: [N, 2] centres in colour order; named: int32 [] the
    colour the instruction names; status: episode progress."""

    agent: PointMass
    targets: jax.Array
    named: jax.Array
    status: EpisodeStatus


@dataclasses.dataclass(frozen=True)
class ReachTargetEnv(TabletopEnv):
    """The language-conditioned reaching task (module docstring).

    num_targets: N, 3 or 4; the rest as in `TabletopEnv`.
    """

    max_episode_steps: int = 80
    num_targets: int = 3

    def __post_init__(self):
        super().__post_init__()
        if self.num_targets not in (3, 4):
            raise ValueError(f"num_targets must be 3 or 4, got {self.num_targets!r}")

    @property
    def spec(self) -> EnvSpec:
        colors = COLOR_NAMES[: self.num_targets]
        return EnvSpec(
            name="reach_target",
            robot_type="planar_point",
            observation={
                "observation.state": ArraySpec(
                    (4,), "float32", ("x", "y", "vx", "vy"), *state_bounds(MAX_STEP, FPS)
                ),
                "observation.environment_state": ArraySpec(
                    (2 * self.num_targets,),
                    "float32",
                    tuple(f"{color}_{axis}" for color in colors for axis in "xy"),
                    low=(-1.0,) * 2 * self.num_targets,
                    high=(1.0,) * 2 * self.num_targets,
                ),
                "observation.instruction": ArraySpec(
                    (INSTRUCTION_LENGTH,),
                    "int32",
                    low=(0,) * INSTRUCTION_LENGTH,
                    high=(len(VOCABULARY) - 1,) * INSTRUCTION_LENGTH,
                ),
                **self.image_specs(),
            },
            action=ArraySpec((2,), "float32", ("dx", "dy"), low=(-1.0, -1.0), high=(1.0, 1.0)),
            gripper_dims=(),
            fps=FPS,
            max_episode_steps=self.max_episode_steps,
            cameras=self.cameras,
            success="agent centre within 0.1 of the named target, no other target touched",
            vocabulary=VOCABULARY,
        )

    def _slots(self) -> np.ndarray:
        """[N, 2] the arc positions the targets are dealt to, before jitter."""
        angles = np.radians(np.linspace(*ARC_ANGLES_DEGREES, self.num_targets))
        arc = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
        return (np.array(ARC_CENTER) + ARC_RADIUS * arc).astype(np.float32)

    def reset(self, key: jax.Array) -> tuple[ReachTargetState, Observation]:
        # One draw of uniforms (a single random-number kernel to compile), split by use.
        num_targets = self.num_targets
        draws = jax.random.uniform(key, (3 + 3 * num_targets,))
        start_draws, jitter_draws, order_draws, named_draw = jnp.split(
            draws, [2, 2 + 2 * num_targets, 2 + 3 * num_targets]
        )
        start = jnp.array(START_LOW) + (jnp.array(START_HIGH) - jnp.array(START_LOW)) * start_draws
        jitter = TARGET_JITTER * (2 * jitter_draws.reshape(num_targets, 2) - 1)
        slot_of_color = jnp.argsort(
            order_draws
        )  # the ranks of i.i.d. uniforms: a uniform permutation
        named = jnp.minimum(jnp.floor(named_draw[0] * num_targets), num_targets - 1)
        state = ReachTargetState(
            agent=PointMass.at_rest(start),
            targets=jnp.asarray(self._slots())[slot_of_color] + jitter,
            named=named.astype(jnp.int32),
            status=EpisodeStatus.start(),
        )
        return state, self.observe(state)

    def step(self, state: ReachTargetState, action: jax.Array) -> StepResult:
        """action: [2] position delta in [-1, 1]² (clipped)."""
        action = clip_action(self.spec, action)
        agent = move(state.agent, action, MAX_STEP, FPS, AGENT_RADIUS)
        path_to_targets = jax.vmap(segment_point_distance, in_axes=(None, None, 0))(
            state.agent.position, agent.position, state.targets
        )
        is_named = jnp.arange(self.num_targets) == state.named
        touched_other = jnp.any((path_to_targets <= TARGET_RADIUS) & ~is_named)
        reached = jnp.linalg.norm(agent.position - state.targets[state.named]) <= TARGET_RADIUS
        status = advance_status(
            state.status, reached & ~touched_other, touched_other, self.max_episode_steps
        )
        return finish_step(state, state.replace(agent=agent, status=status), self.observe)

    def observe(self, state: ReachTargetState) -> Observation:
        return {
            "observation.state": jnp.concatenate([state.agent.position, state.agent.velocity]),
            "observation.environment_state": state.targets.ravel(),
            "observation.instruction": jnp.asarray(INSTRUCTION_TOKENS)[state.named],
            **self.images(state),
        }

    def scene(self, state: ReachTargetState) -> render.Shapes:
        return render.stack(
            render.table(),
            *(
                render.disc(state.targets[color], TARGET_RADIUS, COLORS[color])
                for color in range(self.num_targets)
            ),
            render.disc(state.agent.position, AGENT_RADIUS, AGENT_COLOR),
        )

    def instruction(self, state: ReachTargetState) -> str:
        return instruction_text(int(state.named))


@dataclasses.dataclass(frozen=True)
class ReachTargetExpert:
    """Goes straight to the named target: a single demonstration mode."""

    mode_names: ClassVar[tuple[str, ...]] = ("direct",)

    def plan(self, key: jax.Array, state: ReachTargetState) -> ExpertPlan:
        return ExpertPlan(mode=jnp.zeros((), jnp.int32))

    def act(self, plan: ExpertPlan, state: ReachTargetState) -> jax.Array:
        return steer_toward(state.agent.position, state.targets[state.named], MAX_STEP)
