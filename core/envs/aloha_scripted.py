"""Scripted ALOHA experts: end-effector waypoints, executed in the mocap scene, replayed in joints.

Book 16.6.1 (the plan lives in task space, eq. 16.53; the demonstration in joint space),
16.8.1 (demonstrations D = {(o_t, a*_t)} for behavioural cloning) and 17 (ACT's simulated
tasks, `core.envs.aloha`). A demonstration is made the way the ACT paper records its scripted
data:

 1. Plan. From the object poses at reset, each arm gets a few waypoints (time step, grasp point,
    orientation, gripper opening): approach, grasp, lift, then hand over (transfer cube) or
    push in (insertion). Between waypoints, position and gripper move linearly and orientation
    by spherical interpolation (`interpolate`).
 2. Execute the plan in gym-aloha's end-effector scene, where each gripper is welded to a mocap
    body that follows the plan; record the arm joints reached after every step and the gripper
    opening commanded in it.
 3. Replay: those 14 numbers per step are the joint-space actions, executed in the joint-space
    scene from the same object poses (`scripted_episode`). The replay is the demonstration; its
    success (gym-aloha's reward 4) decides whether it is kept.

The grasp point is the point the weld holds at the mocap body: 13.5 cm ahead of
`gripper_link`, between the finger pads (the weld's reference pose, from the scene's qpos0).
Waypoints are planned for it. The first waypoint is the grasp point's pose at reset, so the
arms do not jump.

The MuJoCo 3 weld fix: since MuJoCo 3.0 the rotational part of a weld is much softer than in
the 2.3 series gym-aloha's scenes were tuned for (ACT issues #37 and #45, MuJoCo issue #1483):
the grippers lag their mocap orientation by up to ~50 degrees and grasps miss. The weld's
torquescale (`eq_data[:, 10]`) is raised to WELD_TORQUESCALE = 20, which brings the lag under
a degree.

Recorded action at step t: the arm joints reached after end-effector step t with the gripper
opening commanded at step t, normalized as gym-aloha's action (0 closed, 1 open). The
commanded, not the measured, finger position is replayed (a measured closed gripper on an
object stays open by the object's width and would not squeeze it). ACT's recorder pairs step t
with the joints before step t instead, which lags the replay one step more.

Each arm grasps its object pitched 60 degrees down; the transfer's receiving (left) gripper is
rolled 90 degrees so that its fingers close vertically on the cube held by the right one. Heights
are planned from the objects' resting heights on the table (they spawn 3 cm above it and drop).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar, NamedTuple

import flax.struct
import jax
import numpy as np

from core.checks import check_shapes
from core.envs import aloha
from core.envs.api import ExpertPlan
from core.envs.waypoints import (
    ArmTargets,
    Waypoint,
    axis_angle_quaternion,
    interpolate,
    quaternion_conjugate,
    quaternion_product,
)

mujoco = aloha.mujoco  # imported by core.envs.aloha, after it chooses the OpenGL backend
aloha_constants = aloha.aloha_constants

WELD_TORQUESCALE = 20.0
WELD_RELATIVE_POSITION = slice(3, 6)
WELD_RELATIVE_QUATERNION = slice(6, 10)
WELD_TORQUESCALE_INDEX = 10
"""A weld's eq_data: anchor [0:3], body2's pose relative to body1 [3:10], torquescale [10]."""
END_EFFECTOR_SCENES = {
    aloha.TRANSFER_CUBE.name: "bimanual_viperx_end_effector_transfer_cube.xml",
    aloha.INSERTION.name: "bimanual_viperx_end_effector_insertion.xml",
}
GRIPPER_BODIES = ("vx300s_left/gripper_link", "vx300s_right/gripper_link")
LEFT_ARM_JOINTS = slice(0, 6)
RIGHT_ARM_JOINTS = slice(8, 14)

CUBE_REST_Z = 0.02
PEG_REST_Z = 0.01
SOCKET_REST_Z = 0.022
"""Centre heights of the objects lying on the table (the table top is z = 0)."""
HOVER_HEIGHT = 0.08
"""Approach this far above the grasp point, then descend."""
CUBE_GRASP_HEIGHT = CUBE_REST_Z + 0.01
PEG_GRASP_HEIGHT = PEG_REST_Z + 0.02
SOCKET_GRASP_HEIGHT = SOCKET_REST_Z - 0.002
"""Heights of the grasp points at the grasp. The cube's is not critical (0.5 to 2.5 cm above its
centre all succeed); a peg gripped 2.5 cm above its centre slips out of the fingers."""
HANDOVER_POINT = np.array([0.0, 0.5, 0.25])
RECEIVER_OFFSET = np.array([0.02, 0.0, -0.02])
"""Where the left grasp point closes relative to the right one: 2 cm lower, as the cube hangs
below the grasp point of a gripper pitched 60 degrees down, and 2 cm further in, so that the
cube sits deep between the left fingers."""
RECEIVER_WAIT = 0.12
"""The left gripper waits this far short (in x) of where it closes."""
RETREAT = 0.1
"""The right gripper backs off this far (in x) after letting go."""
INSERTION_POINT = np.array([0.0, 0.5, 0.15])
INSERTION_START = 0.1
INSERTION_END = 0.045
"""Each arm lifts its object to INSERTION_POINT ± INSERTION_START in x, then pushes it to
± INSERTION_END: peg and socket centres 9 cm apart, 1 cm closer than where the peg's tip
meets the pin (the peg and socket are 12 cm long, the pin 8 cm)."""
OPEN, CLOSED = 1.0, 0.0
X_AXIS, Z_AXIS = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])


class ArmPlans(NamedTuple):
    """Waypoints of both arms, each starting at time 0 and sorted by time."""

    left: tuple[Waypoint, ...]
    right: tuple[Waypoint, ...]


PITCHED_DOWN_RIGHT = axis_angle_quaternion([0, 1, 0], -60)
PITCHED_DOWN_LEFT = axis_angle_quaternion([0, 1, 0], 60)
ROLLED_LEFT = axis_angle_quaternion([1, 0, 0], 90)
"""Mocap orientations. The identity points a gripper horizontally at the other arm (the
scenes' qpos0); the right gripper pitches down by -60 degrees about y, the left one by +60."""


def transfer_cube_plan(cube_pose: np.ndarray, start: ArmPlans, duration: int) -> ArmPlans:
    """Right arm: hover over the cube, descend, close, carry it to the handover point, hold,
    open once the left gripper has closed, back off. Left arm: wait rolled 90 degrees short of
    the handover point until the cube has arrived (a cube lifted from right below the handover
    point would hit a waiting gripper), slide in, close, pull the cube away.

    cube_pose: [7] at reset. start: one waypoint per arm at time 0 (the grasp points at reset).
    duration: the episode's length in steps (>= 400).
    """
    cube = np.array([cube_pose[0], cube_pose[1], CUBE_GRASP_HEIGHT])
    hover = cube + HOVER_HEIGHT * Z_AXIS
    receive = HANDOVER_POINT + RECEIVER_OFFSET
    wait = receive - RECEIVER_WAIT * X_AXIS
    retreat = HANDOVER_POINT + RETREAT * X_AXIS
    right = (
        start.right[0],
        Waypoint(80, hover, PITCHED_DOWN_RIGHT, OPEN),
        Waypoint(120, cube, PITCHED_DOWN_RIGHT, OPEN),
        Waypoint(150, cube, PITCHED_DOWN_RIGHT, CLOSED),
        Waypoint(210, HANDOVER_POINT, PITCHED_DOWN_RIGHT, CLOSED),
        Waypoint(300, HANDOVER_POINT, PITCHED_DOWN_RIGHT, CLOSED),
        Waypoint(320, HANDOVER_POINT, PITCHED_DOWN_RIGHT, OPEN),
        Waypoint(350, retreat, PITCHED_DOWN_RIGHT, OPEN),
        Waypoint(duration, retreat, PITCHED_DOWN_RIGHT, OPEN),
    )
    left = (
        start.left[0],
        Waypoint(100, wait, ROLLED_LEFT, OPEN),
        Waypoint(220, wait, ROLLED_LEFT, OPEN),
        Waypoint(260, receive, ROLLED_LEFT, OPEN),
        Waypoint(290, receive, ROLLED_LEFT, CLOSED),
        Waypoint(320, receive, ROLLED_LEFT, CLOSED),
        Waypoint(360, wait, ROLLED_LEFT, CLOSED),
        Waypoint(duration, wait, ROLLED_LEFT, CLOSED),
    )
    return ArmPlans(left=left, right=right)


def insertion_plan(object_poses: np.ndarray, start: ArmPlans, duration: int) -> ArmPlans:
    """Each arm hovers over its object (right: peg, left: socket), descends, closes, lifts it
    to INSERTION_POINT ± INSERTION_START in x, then both push in to ± INSERTION_END.

    object_poses: [14] peg then socket pose at reset. start, duration: as `transfer_cube_plan`.
    """
    peg = np.array([object_poses[0], object_poses[1], PEG_GRASP_HEIGHT])
    socket = np.array([object_poses[7], object_poses[8], SOCKET_GRASP_HEIGHT])
    # The grasp points carry the objects' centres to the insertion height: each sits above its
    # object's centre by as much as it did at the grasp (the peg 2 cm, the socket -2 mm).
    peg_side = INSERTION_POINT + INSERTION_START * X_AXIS + (PEG_GRASP_HEIGHT - PEG_REST_Z) * Z_AXIS
    socket_side = (
        INSERTION_POINT - INSERTION_START * X_AXIS + (SOCKET_GRASP_HEIGHT - SOCKET_REST_Z) * Z_AXIS
    )
    push = (INSERTION_START - INSERTION_END) * X_AXIS

    def grasp_and_push(start_waypoint, grasp, lifted, orientation, pushed):
        hover = grasp + HOVER_HEIGHT * Z_AXIS
        return (
            start_waypoint,
            Waypoint(110, hover, orientation, OPEN),
            Waypoint(160, grasp, orientation, OPEN),
            Waypoint(200, grasp, orientation, CLOSED),
            Waypoint(270, lifted, orientation, CLOSED),
            Waypoint(330, pushed, orientation, CLOSED),
            Waypoint(duration, pushed, orientation, CLOSED),
        )

    return ArmPlans(
        left=grasp_and_push(
            start.left[0], socket, socket_side, PITCHED_DOWN_LEFT, socket_side + push
        ),
        right=grasp_and_push(start.right[0], peg, peg_side, PITCHED_DOWN_RIGHT, peg_side - push),
    )


PLANNERS = {
    aloha.TRANSFER_CUBE.name: transfer_cube_plan,
    aloha.INSERTION.name: insertion_plan,
}
MIN_DURATION = 400
"""The plans' waypoints run to step 360; an episode must be at least this long."""


def check_duration(duration: int) -> None:
    """Raises ValueError unless duration is an int >= MIN_DURATION."""
    if not isinstance(duration, int) or duration < MIN_DURATION:
        raise ValueError(f"duration must be an int >= {MIN_DURATION}, got {duration!r}")


@dataclasses.dataclass(frozen=True)
class EndEffectorScene:
    """gym-aloha's end-effector (mocap) scene of `task`, with the weld fix (module docstring).

    A scratch simulator: `joint_trajectory` resets it, so results depend on its arguments only.
    """

    task: str
    weld_torquescale: float = WELD_TORQUESCALE

    def __post_init__(self):
        if self.task not in END_EFFECTOR_SCENES:
            raise ValueError(
                f"task must be one of {sorted(END_EFFECTOR_SCENES)}, got {self.task!r}"
            )
        if not self.weld_torquescale > 0:
            raise ValueError(f"weld_torquescale must be positive, got {self.weld_torquescale!r}")
        path = aloha_constants.ASSETS_DIR / END_EFFECTOR_SCENES[self.task]
        model = mujoco.MjModel.from_xml_path(str(path))
        model.eq_data[: len(GRIPPER_BODIES), WELD_TORQUESCALE_INDEX] = self.weld_torquescale
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_data", mujoco.MjData(model))
        object.__setattr__(self, "_substeps", round(aloha_constants.DT / model.opt.timestep))

    def reset(self, object_poses: np.ndarray) -> ArmPlans:
        """Arms at START_ARM_POSE with closed grippers, objects at object_poses [7 per object],
        each mocap body on its grasp point. Returns the grasp points' poses as time-0 waypoints."""
        object_poses = np.asarray(object_poses, np.float64)
        num_objects = len(aloha.TASKS[self.task].object_names)
        check_shapes(object_poses=(object_poses, (aloha.POSE_SIZE * num_objects,)))
        model, data = self._model, self._data
        mujoco.mj_resetData(model, data)
        data.qpos[: aloha.NUM_ARM_JOINTS] = aloha_constants.START_ARM_POSE
        data.qpos[aloha.NUM_ARM_JOINTS :] = object_poses
        data.ctrl[:] = _finger_controls(CLOSED, CLOSED)
        mujoco.mj_forward(model, data)
        for arm in range(len(GRIPPER_BODIES)):
            data.mocap_pos[arm], data.mocap_quat[arm] = self.grasp_pose(arm)
        mujoco.mj_forward(model, data)
        start = [
            (Waypoint(0, data.mocap_pos[arm].copy(), data.mocap_quat[arm].copy(), CLOSED),)
            for arm in range(len(GRIPPER_BODIES))
        ]
        return ArmPlans(*start)

    def grasp_pose(self, arm: int) -> tuple[np.ndarray, np.ndarray]:
        """Position [3] and orientation [4] of the grasp point of `arm` (0 left, 1 right) now:
        the mocap pose its weld holds the gripper at. gripper = mocap ∘ relpose, so
        mocap = gripper ∘ relpose⁻¹."""
        model, data = self._model, self._data
        relative_position = model.eq_data[arm, WELD_RELATIVE_POSITION]
        relative_quaternion = model.eq_data[arm, WELD_RELATIVE_QUATERNION]
        body_id = model.body(GRIPPER_BODIES[arm]).id
        quaternion = quaternion_product(
            data.xquat[body_id], quaternion_conjugate(relative_quaternion)
        )
        offset = np.empty(3)
        mujoco.mju_rotVecQuat(offset, relative_position, quaternion)
        return data.xpos[body_id] - offset, quaternion

    def step(self, left: ArmTargets, right: ArmTargets) -> np.ndarray:
        """One control step toward each arm's target (`ArmTargets` of one step: position [3],
        quaternion [4], gripper []); returns float32 [14] the joint-space action it records."""
        model, data = self._model, self._data
        for arm, target in enumerate((left, right)):
            data.mocap_pos[arm] = target.positions
            data.mocap_quat[arm] = target.quaternions
        data.ctrl[:] = _finger_controls(left.grippers, right.grippers)
        mujoco.mj_step(model, data, self._substeps)
        return np.concatenate(
            [
                data.qpos[LEFT_ARM_JOINTS],
                [left.grippers],
                data.qpos[RIGHT_ARM_JOINTS],
                [right.grippers],
            ]
        ).astype(np.float32)

    def joint_trajectory(self, object_poses: np.ndarray, duration: int) -> np.ndarray:
        """Plans the task from object_poses [7 per object], executes it for `duration` steps and
        returns float32 [duration, 14] joint-space actions (module docstring)."""
        check_duration(duration)
        start = self.reset(object_poses)
        plans = PLANNERS[self.task](np.asarray(object_poses), start, duration)
        times = np.arange(1, duration + 1)
        left, right = interpolate(plans.left, times), interpolate(plans.right, times)
        return np.stack([self.step(left.at(step), right.at(step)) for step in range(duration)])


def _finger_controls(left_opening: float, right_opening: float) -> np.ndarray:
    """[4] finger slide targets (left arm's two fingers, right arm's) of normalized openings."""
    left, right = (
        aloha_constants.unnormalize_puppet_gripper_position(opening)
        for opening in (left_opening, right_opening)
    )
    return np.array([left, -left, right, -right])


@flax.struct.dataclass
class ScriptedPlan(ExpertPlan):
    """mode: int32 [] always 0 (one mode); joint_actions: float32 [T, 14] the actions to replay."""

    joint_actions: np.ndarray


@dataclasses.dataclass(frozen=True)
class ScriptedExpert:
    """The scripted expert of an ALOHA task (module docstring), as an `Expert`: `plan` runs the
    end-effector scene from the state's object poses, `act` replays its joint trajectory.

    duration: steps planned (the task's time limit; at least MIN_DURATION).
    """

    duration: int = aloha.DEFAULT_MAX_EPISODE_STEPS

    task: ClassVar[str]
    mode_names: ClassVar[tuple[str, ...]] = ("scripted",)

    def __post_init__(self):
        check_duration(self.duration)

    @functools.cached_property
    def scene(self) -> EndEffectorScene:
        return EndEffectorScene(self.task)

    def plan(self, key: jax.Array, state: aloha.AlohaState) -> ScriptedPlan:
        """The replayed trajectory for the objects in `state` (a reset state). The expert is
        deterministic: `key` is not used."""
        del key
        object_poses = aloha.object_poses(state, self.task)
        return ScriptedPlan(
            mode=np.int32(0), joint_actions=self.scene.joint_trajectory(object_poses, self.duration)
        )

    def act(self, plan: ScriptedPlan, state: aloha.AlohaState) -> np.ndarray:
        """float32 [14] the planned action of the state's time step (the last one after it)."""
        step = min(int(state.status.time), len(plan.joint_actions) - 1)
        return plan.joint_actions[step]


@dataclasses.dataclass(frozen=True)
class TransferCubeExpert(ScriptedExpert):
    """The transfer-cube expert (`transfer_cube_plan`)."""

    task: ClassVar[str] = aloha.TRANSFER_CUBE.name


@dataclasses.dataclass(frozen=True)
class InsertionExpert(ScriptedExpert):
    """The insertion expert (`insertion_plan`)."""

    task: ClassVar[str] = aloha.INSERTION.name


@dataclasses.dataclass(frozen=True)
class ScriptedEpisode:
    """One expert episode in the joint-space scene.

    arrays: {observation key: [T, ...], "action": float32 [T, 14], "next.reward": float32 [T],
      "next.done": bool [T], "next.success": bool [T]}, cut at the first done step.
    succeeded: the episode succeeded. stages: int32 [T] gym-aloha's reward after each step.
    final_state: the state after the last step. plan: the expert's plan. instruction: the task
    text.
    """

    arrays: dict[str, np.ndarray]
    succeeded: bool
    stages: np.ndarray
    final_state: aloha.AlohaState
    plan: ScriptedPlan
    instruction: str


def scripted_episode(
    env: aloha.AlohaEnv, expert: ScriptedExpert, key: jax.Array
) -> ScriptedEpisode:
    """Rolls out `expert` in `env` from `key`, split as `core.envs.rollout` splits episode keys
    (reset key, plan key), until the episode is done."""
    if expert.task != env.task.name:
        raise ValueError(f"expert is for {expert.task!r}, env for {env.task.name!r}")
    check_shapes(key=(key, ()))
    reset_key, plan_key = jax.random.split(key)
    state, observation = env.reset(reset_key)
    plan = expert.plan(plan_key, state)
    steps = []
    done = False
    while not done:
        action = expert.act(plan, state)
        next_state, next_observation, reward, done, info = env.step(state, action)
        steps.append((observation, action, reward, done, info["success"], next_state.stage))
        state, observation = next_state, next_observation
    observations, actions, rewards, dones, successes, stages = zip(*steps, strict=True)
    arrays = {
        key: np.stack([observation[key] for observation in observations]) for key in observations[0]
    }
    arrays.update(
        {
            "action": np.stack(actions).astype(np.float32),
            "next.reward": np.array(rewards, np.float32),
            "next.done": np.array(dones, bool),
            "next.success": np.array(successes, bool),
        }
    )
    return ScriptedEpisode(
        arrays=arrays,
        succeeded=bool(state.status.success),
        stages=np.array(stages, np.int32),
        final_state=state,
        plan=plan,
        instruction=env.instruction(state),
    )
