"""Data parallelism: 8 devices, and 2 processes, train like 1 device on the same global batch.

Both run in subprocesses (workers.py): the device count is fixed by XLA_FLAGS before jax is
imported, and the rest of the suite keeps its single device.

Tolerance. Sharding changes only the order of float32 additions in the batch mean of the
gradient (partial sums per device, then an all-reduce): a relative difference of a few ulps in
g. AdamW's step m̂ / (sqrt(v̂) + ε) is scale-free, so it inherits that relative error and moves
each parameter by at most η (1 + λ|θ|) per step; after 4-6 steps at η = 1e-2 the parameters
differ by < steps·η·1e-6 = 6e-8 plus an ulp of |θ| < 1 (6e-8). atol 1e-6 leaves a 10x margin.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from core.training import checkpoint, sharding
from core.training.config import save_config
from core.training.logs import read_metrics
from experiments.train import train_and_evaluate
from tests.core.training import toys

ROOT = Path(__file__).resolve().parents[3]
WORKER = Path(__file__).with_name("workers.py")
TIMEOUT_SECONDS = 240
ATOL = 1e-6


def _environment(devices: int) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow  # a subprocess: jax import and two compilations, ~5 s
def test_train_step_on_8_devices_equals_the_single_device_step(tmp_path):
    out = tmp_path / "params.npz"
    result = subprocess.run(
        [sys.executable, str(WORKER), "sharded", str(out)],
        env=_environment(8),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    arrays = np.load(out)
    sharded = sorted(name for name in arrays.files if name.startswith("sharded/"))
    assert len(sharded) == 8  # 4 parameter leaves and their EMAs
    for name in sharded:
        single = arrays[name.replace("sharded/", "single/")]
        np.testing.assert_allclose(arrays[name], single, rtol=0, atol=ATOL, err_msg=name)
    assert "divides over 8 devices" in str(arrays["indivisible_error"])


@pytest.mark.slow  # two subprocesses and an in-process reference run, ~10 s
def test_two_processes_train_like_one_process_with_the_same_global_batch(tmp_path):
    """Each process has 2 devices and loads half of every global batch (core.data.sampler);
    the checkpoints and logged losses must equal a 1-process run's."""
    config = toys.toy_config(toys.write_toy_dataset(tmp_path / "data"))
    config.train.num_steps = 6
    config.train.checkpoint_every = 3
    config.train.validate_every = 3
    config.train.keep_checkpoints = 2
    config.optim.ema_decay = 0.9
    config.optim.param_group_lr = {"encoder": 0.1}
    config_path = save_config(config, tmp_path / "config")
    command = [sys.executable, str(WORKER), "train", str(config_path), str(tmp_path / "run")]
    port = _free_port()
    workers = [
        subprocess.Popen(
            [*command, "--process-id", str(index), "--num-processes", "2", "--port", str(port)],
            env=_environment(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    outputs = []
    for worker in workers:
        try:
            outputs.append(worker.communicate(timeout=TIMEOUT_SECONDS))
        except subprocess.TimeoutExpired:
            for other in workers:
                other.kill()
            outputs.append(worker.communicate())
    codes = [worker.returncode for worker in workers]
    assert codes == [0, 0], "a process failed (exit codes {}):\n{}".format(
        codes, "\n".join(f"--- process {i}:\n{err[-2000:]}" for i, (_, err) in enumerate(outputs))
    )

    train_and_evaluate(
        config,
        tmp_path / "reference",
        make_policy=toys.make_toy_policy,
        evaluate=toys.fake_evaluate,
        progress=False,
    )
    for which in (3, 6):
        two_processes = checkpoint.restore(tmp_path / "run", which).variables
        one_process = checkpoint.restore(tmp_path / "reference", which).variables
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=ATOL),
            two_processes,
            one_process,
        )
    losses = [
        [record["train/loss"] for record in read_metrics(tmp_path / run) if "train/loss" in record]
        for run in ("run", "reference")
    ]
    np.testing.assert_allclose(*losses, rtol=1e-5)


def test_multihost_initialization_needs_all_three_settings_or_none():
    with pytest.raises(ValueError, match="give all of coordinator_address, num_processes and"):
        sharding.initialize_multihost("127.0.0.1:1234", num_processes=2)
