"""Policies built from a scripted expert for the tests: one mode forced, or all modes averaged."""

import dataclasses
from typing import Any, ClassVar

import jax.numpy as jnp

from core.envs.api import Expert, ExpertPlan


def _no_choice() -> ExpertPlan:
    return ExpertPlan(mode=jnp.zeros((), jnp.int32))


@dataclasses.dataclass(frozen=True)
class FixedModeExpert:
    """The expert with its demonstration mode fixed instead of drawn."""

    expert: Expert
    mode: int
    mode_names: ClassVar[tuple[str, ...]] = ("fixed",)

    def plan(self, key, state: Any) -> ExpertPlan:
        return ExpertPlan(mode=jnp.asarray(self.mode, jnp.int32))

    def act(self, plan: ExpertPlan, state: Any):
        return self.expert.act(plan, state)


@dataclasses.dataclass(frozen=True)
class ModeAveragingPolicy:
    """Regression to the mean (book eq. 16.39): the average of the expert's actions over its
    equally likely modes, what an MSE-trained unimodal policy converges to."""

    expert: Expert
    mode_names: ClassVar[tuple[str, ...]] = ("average",)

    def plan(self, key, state: Any) -> ExpertPlan:
        return _no_choice()

    def act(self, plan: ExpertPlan, state: Any):
        modes = range(len(self.expert.mode_names))
        actions = [self.expert.act(ExpertPlan(mode=jnp.int32(m)), state) for m in modes]
        return jnp.mean(jnp.stack(actions), axis=0)
