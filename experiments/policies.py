"""The policy registry: a config's `policy.name` -> the method's `core.policy.Policy`.

Every method is built by a factory `factory(features, **options)` from the dataset's feature
specification (`reader.features`) and the policy config's fields other than `name`. Factories
are named by import path and imported only when asked for, so a method package (and its
dependencies) loads only when a config uses it; a new method adds one entry here.

  bc_mlp   book 16.8.1: MLP on the state vectors, MSE or Gaussian NLL head (`core.bc`)
  bc_cnn   book 16.8.1: small CNN on the camera images (+ state), same heads (`core.bc`)
  act      book 17, 20: Action Chunking with Transformers, a CVAE over action chunks (`act.policy`)
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from core.policy import Policy

POLICIES = {
    "bc_mlp": "core.bc:mlp_policy",
    "bc_cnn": "core.bc:cnn_policy",
    "act": "act.policy:act_policy",
}
"""Policy name -> "module:factory"."""


def _plain(value: Any) -> Any:
    """ConfigDict / dict / list values as plain dicts and tuples (hashable where possible)."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return tuple(_plain(item) for item in value)
    return value


def make_policy(policy_config: Mapping[str, Any], features: Mapping[str, Any]) -> Policy:
    """Builds the policy a config names (contract 4 of the training loop and the evaluator).

    Args:
      policy_config: the config's `policy` section (an `ml_collections.ConfigDict` or a
        mapping): `name` (a key of POLICIES) and the method's options, e.g.
        {"name": "bc_mlp", "head": "mse", "hidden_sizes": (256, 256), "action_horizon": 1}.
      features: the dataset's feature specification, {key: {"dtype", "shape", "names"}}.

    Raises:
      ValueError naming a missing or unknown policy name, or (from the factory) an unknown
      option or a bad value.
    """
    options = _plain(policy_config)
    if "name" not in options:
        raise ValueError(f"the policy config needs a name, one of {sorted(POLICIES)}")
    name = options.pop("name")
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; known: {sorted(POLICIES)}")
    module_name, factory_name = POLICIES[name].split(":")
    factory = getattr(importlib.import_module(module_name), factory_name)
    return factory(features, **options)
