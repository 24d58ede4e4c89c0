"""The simulated ALOHA tasks of ACT in MuJoCo (gym-aloha's scenes) behind the `Env` API.

Book 17 and 20.1 (ACT's headline tasks: two ViperX arms with six joints and a parallel gripper
each, D = 14, 50 Hz, 480x640 cameras), 16.2 (the POMDP: s_t is MuJoCo's state, o_t = h(s_t) the
joint positions and camera images) and 16.6.1 (joint-space actions, here absolute positions
rather than eq. 16.52's increments; a gripper is a normalized finger position, 0 closed and
1 open, not eq. 16.54's signed command).

Tasks, gym-aloha 0.1.5's joint-space scenes (`gym_aloha/assets/bimanual_viperx_*.xml`):
  aloha_transfer_cube  the right arm picks up a 4 cm red cube and hands it to the left arm.
                       Cube at x ~ U(0, 0.2), y ~ U(0.4, 0.6), z = 0.05 m (it drops onto the
                       table, top at z = 0).
  aloha_insertion      the left arm picks up the blue socket, the right arm the red peg, and
                       they push the peg into the socket. Peg at x ~ U(0.1, 0.2), socket at
                       x ~ U(-0.2, -0.1), both y ~ U(0.4, 0.6), z = 0.05 m.
Object poses come from gym-aloha's own samplers (`sample_object_poses`), seeded by a 31-bit
integer drawn from the reset key; `reset_with_objects(sample_object_poses(task, s))` starts the
episode that gym-aloha's `reset(seed=s)` starts (and LeRobot's evaluation with seed s).

Action: [14] absolute joint targets, left arm then right arm, each [waist, shoulder, elbow,
forearm roll, wrist angle, wrist rotate, gripper] (gym_aloha.constants.ACTIONS), tracked by
MuJoCo's position actuators. Bounds: the actuators' control ranges, [0, 1] for the grippers;
clipping to them changes nothing physical, since MuJoCo clamps controls to the same ranges.
Control: 50 Hz (10 physics steps of 2 ms per action); time limit 400 steps (8 s), as ACT and
LeRobot evaluate (gym-aloha's own gymnasium registration uses 300).
Observation: "observation.state" [14] joint positions with normalized finger positions
(gym-aloha's `qpos`); "observation.environment_state" [7 per object] the object poses
(position, quaternion w x y z); "observation.images.<camera>" uint8 [H, W, 3] per camera.

Reward and success: gym-aloha's staged contact reward r ∈ {0, ..., 4}, computed by gym-aloha's
own `get_reward` (transfer: 1 the right gripper touches the cube, 2 ... and the cube is off the
table, 3 the left gripper touches it, 4 ... and it is off the table; insertion: 1 both grippers
touch their objects, 2 ... both off the table, 3 peg touches socket off the table, 4 peg
touches the pin). Success is r = 4 at some step: gym-aloha's `is_success`, ACT's
`max reward == 4` and LeRobot's success rate. As the `Env` API asks, the reward returned is 1 on
the step that first succeeds; `AlohaState.stage` keeps r. Success terminates the episode by
default, as in gym-aloha; with `terminate_on_success=False` an episode runs to its time limit
and "success" means "has succeeded" (demonstrations use it: r = 4 happens mid-handover).

State: `AlohaState` holds MuJoCo's complete integration state (`mj_getState`,
mjSTATE_INTEGRATION), so `step(state, action)` depends on its arguments only: each call loads
the state into the environment's scratch simulator, steps it and reads it back. One environment
steps any number of episodes (a batch on the host is a list of states) and transitions equal
gym-aloha's `AlohaEnv.step` bit for bit (dm_control's step order).

Rendering: MuJoCo's OpenGL renderer draws only the configured cameras (any of the scene's:
top, angle, front_close (gym-aloha's "vis"), left_pillar, right_pillar, left_wrist,
right_wrist) at image_size = (height, width). gym-aloha draws three 480x640 cameras with shadows
and 4x multisample anti-aliasing on every step; both are off by default here (in software
OpenGL each triples the cost of a frame: a 480x640 step takes ~6 ms without, ~60 ms with both);
`shadows=True, antialiasing=True` gives gym-aloha's look. Importing this module sets
MUJOCO_GL=egl on Linux unless MUJOCO_GL is already set (EGL with Mesa's llvmpipe renders
headless on a CPU); MuJoCo reads it on its first import, so import this module before MuJoCo.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import os
import sys
import weakref
from collections.abc import Callable
from typing import ClassVar

import flax.struct
import jax
import numpy as np

from core.checks import check_shapes
from core.envs.api import ArraySpec, EnvSpec, EpisodeStatus, Observation, StepResult

if sys.platform.startswith("linux"):
    os.environ.setdefault("MUJOCO_GL", "egl")

HEADLESS_GL_HELP = (
    "Headless rendering needs MUJOCO_GL=egl (libEGL: Mesa's llvmpipe renders without a GPU; "
    "`apt-get install libegl1` if it is missing) or MUJOCO_GL=osmesa (`apt-get install "
    "libosmesa6`), set before MuJoCo is first imported; state-only observations (cameras=()) "
    "need no OpenGL."
)


def _gl_error(error: Exception) -> str:
    return (
        f"MuJoCo could not set up OpenGL with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r} "
        f"({type(error).__name__}: {error}). {HEADLESS_GL_HELP}"
    )


try:
    import mujoco
    from dm_control import mujoco as dm_mujoco
    from gym_aloha import constants as aloha_constants
    from gym_aloha import utils as aloha_utils
    from gym_aloha.tasks import sim as aloha_tasks
except ModuleNotFoundError as error:
    raise ModuleNotFoundError(
        f"the ALOHA tasks need the `sim` extra (mujoco, dm-control, gym-aloha): "
        f"pip install -e '.[sim]'; missing module {error.name!r}",
        name=error.name,
    ) from error
except (ImportError, RuntimeError, OSError) as error:  # an OpenGL backend that fails to load
    raise ImportError(_gl_error(error)) from error

NUM_ARM_JOINTS = 16
"""qpos[:16]: per arm 6 joints and 2 finger slides; object poses follow from qpos[16]."""
GRIPPER_DIMS = (6, 13)
ARM_ACTUATORS = (*range(0, 6), *range(8, 14))
"""The actuators of the 12 arm joints; 6, 7, 14, 15 drive the fingers."""
POSE_SIZE = 7
MAX_REWARD = 4
FPS = aloha_constants.FPS
DEFAULT_IMAGE_SIZE = (480, 640)
DEFAULT_MAX_EPISODE_STEPS = 400
STATE_LAYOUT = mujoco.mjtState.mjSTATE_INTEGRATION
QPOS_OFFSET = 1
"""mj_getState concatenates the components in mjtState's bit order: time (1 number), then qpos."""


@dataclasses.dataclass(frozen=True)
class AlohaTask:
    """What distinguishes the two tasks.

    name: registry name. scene_file: gym-aloha's joint-space scene under ASSETS_DIR.
    reward_task: gym-aloha's dm_control task (its `before_step`, `get_qpos`, `get_reward`).
    object_names: the free bodies whose poses follow the arms' joints in qpos.
    sample_poses: gym-aloha's sampler, seed -> [7 per object] poses.
    instruction: the episode's task text (as in LeRobot's ALOHA datasets).
    success: the success metric in words.
    """

    name: str
    scene_file: str
    reward_task: type
    object_names: tuple[str, ...]
    sample_poses: Callable[[int], np.ndarray]
    instruction: str
    success: str


TRANSFER_CUBE = AlohaTask(
    name="aloha_transfer_cube",
    scene_file="bimanual_viperx_transfer_cube.xml",
    reward_task=aloha_tasks.TransferCubeTask,
    object_names=("cube",),
    sample_poses=aloha_utils.sample_box_pose,
    instruction="Pick up the cube with the right arm and transfer it to the left arm.",
    success="gym-aloha reward 4: the left gripper holds the cube off the table",
)
INSERTION = AlohaTask(
    name="aloha_insertion",
    scene_file="bimanual_viperx_insertion.xml",
    reward_task=aloha_tasks.InsertionTask,
    object_names=("peg", "socket"),
    sample_poses=lambda seed: np.concatenate(aloha_utils.sample_insertion_pose(seed)),
    instruction="Insert the peg into the socket.",
    success="gym-aloha reward 4: the peg touches the pin inside the socket",
)
TASKS = {task.name: task for task in (TRANSFER_CUBE, INSERTION)}


def sample_object_poses(task: str, seed: int) -> np.ndarray:
    """[7 per object] object poses of `task` as gym-aloha's `reset(seed=seed)` draws them."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    return np.asarray(TASKS[task].sample_poses(seed), np.float64)


def layout_seed(key: jax.Array) -> int:
    """The integer seed of gym-aloha's object sampler drawn from a reset key, in [0, 2^31 - 1)."""
    return int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))


@flax.struct.dataclass
class AlohaState:
    """One episode's state, as numpy arrays (a pytree: states of many episodes stack).

    physics: float64 [S] MuJoCo's integration state (time, qpos, qvel, controls, solver warm
      start, ...; `mj_getState` with mjSTATE_INTEGRATION): enough to continue exactly.
    stage: int32 [] gym-aloha's reward r after the last step (0 after reset; 4 = success).
    status: the episode's progress (numpy scalars).
    """

    physics: np.ndarray
    stage: np.ndarray
    status: EpisodeStatus


def object_poses(state: AlohaState, task: str) -> np.ndarray:
    """float64 [7 per object] the poses of `task`'s objects in `state`."""
    start = QPOS_OFFSET + NUM_ARM_JOINTS
    return state.physics[start : start + POSE_SIZE * len(TASKS[task].object_names)].copy()


def _start_status() -> EpisodeStatus:
    return EpisodeStatus(
        time=np.int32(0), success=np.False_, terminated=np.False_, truncated=np.False_
    )


@dataclasses.dataclass(frozen=True)
class AlohaEnv:
    """An ALOHA task (module docstring); configuration:

    cameras: camera names of the scene (see module docstring); () for state-only observations.
    image_size: (height, width) of every camera image in pixels.
    shadows, antialiasing: render shadows / 4x multisample anti-aliasing (gym-aloha: both on).
    max_episode_steps: the time limit in control steps.
    terminate_on_success: success ends the episode (gym-aloha); False runs to the time limit.
    """

    cameras: tuple[str, ...] = ("top",)
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE
    shadows: bool = False
    antialiasing: bool = False
    max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS
    terminate_on_success: bool = True

    task: ClassVar[AlohaTask]

    def __post_init__(self):
        _check_config(self)
        physics = dm_mujoco.Physics.from_xml_path(
            str(aloha_constants.ASSETS_DIR / self.task.scene_file)
        )
        control_steps = aloha_constants.DT / physics.model.opt.timestep
        object.__setattr__(self, "_physics", physics)
        object.__setattr__(self, "_reward_task", self.task.reward_task())
        object.__setattr__(self, "_substeps", round(control_steps))
        unknown = sorted(set(self.cameras) - set(self.camera_names))
        if unknown:
            raise ValueError(
                f"cameras must be among the scene's {self.camera_names}, got unknown {unknown}"
            )

    @property
    def camera_names(self) -> tuple[str, ...]:
        """Every camera of the scene."""
        model = self._physics.model
        return tuple(model.id2name(index, "camera") for index in range(model.ncam))

    @functools.cached_property
    def spec(self) -> EnvSpec:
        ranges = self._physics.model.actuator_ctrlrange[list(ARM_ACTUATORS)]
        low, high = list(ranges[:, 0]), list(ranges[:, 1])
        for dim in GRIPPER_DIMS:  # normalized finger position: 0 closed, 1 open
            low.insert(dim, 0.0)
            high.insert(dim, 1.0)
        pose_names = tuple(
            f"{name}_{field}"
            for name in self.task.object_names
            for field in ("x", "y", "z", "qw", "qx", "qy", "qz")
        )
        height, width = self.image_size
        return EnvSpec(
            name=self.task.name,
            robot_type="aloha",
            observation={
                "observation.state": ArraySpec(
                    (len(aloha_constants.JOINTS),), "float32", tuple(aloha_constants.JOINTS)
                ),
                "observation.environment_state": ArraySpec(
                    (len(pose_names),), "float32", pose_names
                ),
                **{
                    f"observation.images.{camera}": ArraySpec((height, width, 3), "uint8")
                    for camera in self.cameras
                },
            },
            action=ArraySpec(
                (len(aloha_constants.ACTIONS),),
                "float32",
                tuple(aloha_constants.ACTIONS),
                low=tuple(float(value) for value in low),
                high=tuple(float(value) for value in high),
            ),
            gripper_dims=GRIPPER_DIMS,
            fps=FPS,
            max_episode_steps=self.max_episode_steps,
            cameras=self.cameras,
            success=self.task.success,
        )

    def reset(self, key: jax.Array) -> tuple[AlohaState, Observation]:
        """The episode whose object poses gym-aloha's sampler draws from `layout_seed(key)`."""
        return self.reset_with_objects(sample_object_poses(self.task.name, layout_seed(key)))

    def reset_with_objects(self, object_poses: np.ndarray) -> tuple[AlohaState, Observation]:
        """Both arms at gym-aloha's START_ARM_POSE, at rest, objects at
        object_poses: [7 per object] (position, quaternion w x y z), as gym-aloha resets."""
        object_poses = np.asarray(object_poses, np.float64)
        check_shapes(object_poses=(object_poses, (POSE_SIZE * len(self.task.object_names),)))
        physics = self._physics
        mujoco.mj_resetData(physics.model.ptr, physics.data.ptr)
        physics.data.qpos[:NUM_ARM_JOINTS] = aloha_constants.START_ARM_POSE
        physics.data.ctrl[:] = aloha_constants.START_ARM_POSE
        physics.data.qpos[NUM_ARM_JOINTS:] = object_poses
        mujoco.mj_forward(physics.model.ptr, physics.data.ptr)
        state = AlohaState(physics=self._saved(), stage=np.int32(0), status=_start_status())
        return state, self._observation()

    def step(self, state: AlohaState, action: np.ndarray) -> StepResult:
        """action: [14] joint targets (module docstring), clipped to the bounds. A done state is
        absorbing: it comes back unchanged with reward 0."""
        action = self.checked_action(action)
        if state.status.done:
            return state, self.observe(state), np.float32(0.0), np.True_, _info(state.status)
        self._load(state)
        self._reward_task.before_step(action, self._physics)
        self._physics.step(self._substeps)  # ends with mj_step1: contacts of the new state
        stage = np.int32(self._reward_task.get_reward(self._physics))
        status = self._next_status(state.status, stage == MAX_REWARD)
        next_state = AlohaState(physics=self._saved(), stage=stage, status=status)
        reward = np.float32(status.success and not state.status.success)
        return next_state, self._observation(), reward, status.done, _info(status)

    def checked_action(self, action: np.ndarray) -> np.ndarray:
        """action: [14] as float64, clipped to the spec's bounds; ValueError for a wrong shape
        or a non-finite entry."""
        action = np.asarray(action, np.float64)
        spec = self.spec.action
        check_shapes(action=(action, spec.shape))
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action must be finite, got {action}")
        return np.clip(action, spec.low, spec.high)

    def observe(self, state: AlohaState) -> Observation:
        self._load(state)
        return self._observation()

    def render(self, state: AlohaState, camera: str) -> np.ndarray:
        """uint8 [height, width, 3]: the frame of any of the scene's cameras."""
        if camera not in self.camera_names:
            raise ValueError(f"camera must be one of {self.camera_names}, got {camera!r}")
        self._load(state)
        return self._frame(camera)

    def instruction(self, state: AlohaState) -> str:
        return self.task.instruction

    def close(self) -> None:
        """Frees the OpenGL context, if a frame was rendered."""
        if "_renderer" in self.__dict__:
            self.__dict__.pop("_renderer").close()

    def _next_status(self, status: EpisodeStatus, succeeds: bool) -> EpisodeStatus:
        time = np.int32(status.time + 1)
        success = np.bool_(status.success or succeeds)
        terminated = np.bool_(success and self.terminate_on_success)
        return EpisodeStatus(
            time=time,
            success=success,
            terminated=terminated,
            truncated=np.bool_(time >= self.max_episode_steps and not terminated),
        )

    def _saved(self) -> np.ndarray:
        physics = self._physics
        state = np.empty(mujoco.mj_stateSize(physics.model.ptr, STATE_LAYOUT))
        mujoco.mj_getState(physics.model.ptr, physics.data.ptr, state, STATE_LAYOUT)
        return state

    def _load(self, state: AlohaState) -> None:
        physics = self._physics
        mujoco.mj_setState(physics.model.ptr, physics.data.ptr, state.physics, STATE_LAYOUT)
        mujoco.mj_forward(physics.model.ptr, physics.data.ptr)

    def _observation(self) -> Observation:
        physics = self._physics
        return {
            "observation.state": self._reward_task.get_qpos(physics).astype(np.float32),
            "observation.environment_state": physics.data.qpos[NUM_ARM_JOINTS:].astype(np.float32),
            **{f"observation.images.{camera}": self._frame(camera) for camera in self.cameras},
        }

    def _frame(self, camera: str) -> np.ndarray:
        self._renderer.update_scene(self._physics.data.ptr, camera=camera)
        return self._renderer.render()

    @functools.cached_property
    def _renderer(self) -> mujoco.Renderer:
        model = self._physics.model.ptr
        height, width = self.image_size
        model.vis.global_.offheight = max(height, model.vis.global_.offheight)
        model.vis.global_.offwidth = max(width, model.vis.global_.offwidth)
        model.vis.quality.offsamples = 4 if self.antialiasing else 0
        try:
            renderer = mujoco.Renderer(model, height=height, width=width)
        except Exception as error:  # any backend failure: name the fix
            raise RuntimeError(_gl_error(error)) from error
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = self.shadows
        # MuJoCo's EGL backend terminates its display at exit (registered with its first
        # context); a context still open then fails noisily in its __del__: close it first.
        atexit.register(_close_renderer, weakref.ref(renderer))
        return renderer


def _close_renderer(renderer_reference: weakref.ref) -> None:
    renderer = renderer_reference()
    if renderer is not None:
        renderer.close()


def _info(status: EpisodeStatus) -> dict[str, np.ndarray]:
    return {
        "success": status.success,
        "terminated": status.terminated,
        "truncated": status.truncated,
    }


def _check_config(env: AlohaEnv) -> None:
    """Raises ValueError naming a bad configuration value."""
    if not isinstance(env.cameras, tuple) or not all(isinstance(c, str) for c in env.cameras):
        raise ValueError(f"cameras must be a tuple of camera names, got {env.cameras!r}")
    if len(set(env.cameras)) != len(env.cameras):
        raise ValueError(f"cameras must not repeat, got {env.cameras}")
    size = env.image_size
    if not (
        isinstance(size, tuple)
        and len(size) == 2
        and all(isinstance(side, int) and side >= 1 for side in size)
    ):
        raise ValueError(
            f"image_size must be a (height, width) tuple of positive ints, got {size!r}"
        )
    for flag in ("shadows", "antialiasing", "terminate_on_success"):
        if not isinstance(getattr(env, flag), bool):
            raise ValueError(f"{flag} must be a bool, got {getattr(env, flag)!r}")
    if not isinstance(env.max_episode_steps, int) or env.max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be a positive int, got {env.max_episode_steps!r}")


@dataclasses.dataclass(frozen=True)
class TransferCubeEnv(AlohaEnv):
    """aloha_transfer_cube (module docstring)."""

    task: ClassVar[AlohaTask] = TRANSFER_CUBE


@dataclasses.dataclass(frozen=True)
class InsertionEnv(AlohaEnv):
    """aloha_insertion (module docstring)."""

    task: ClassVar[AlohaTask] = INSERTION
