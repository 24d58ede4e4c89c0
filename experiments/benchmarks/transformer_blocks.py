"""Forward time of one transformer encoder layer and one decoder layer at ACT's size.

    python -m experiments.benchmarks.transformer_blocks [--runs 20]
        [--torch-python /work/parity-venv/bin/python]

ACT's sizes (LeRobot ACTConfig): d_model 512, 8 heads, feed-forward 3200, post-norm; batch 8,
an encoder sequence of 120 tokens and a decoder of 100 queries cross-attending to 120 memory
tokens, with position embeddings. Each block runs in evaluation mode (no dropout): ours jitted
in float32 and in bfloat16 (`dtype=jnp.bfloat16`), after a warm-up call, timed `--runs` times
(median and minimum; on a shared machine the minimum is the least disturbed). With
--torch-python (an interpreter with torch and lerobot, e.g. the parity venv) the same blocks
run in PyTorch under `torch.no_grad()` in a subprocess: LeRobot's ACTEncoderLayer/
ACTDecoderLayer and torch's nn.TransformerEncoderLayer/DecoderLayer (batch_first, which may
take torch's fused fast path); the table gives ours / torch on the minima.
Results go to results/benchmarks/transformer_blocks.json and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

RESULTS = Path("results/benchmarks/transformer_blocks.json")
BATCH, MODEL_DIM, NUM_HEADS, FFN_DIM = 8, 512, 8, 3200
ENCODER_TOKENS, DECODER_QUERIES = 120, 100  # [CLS; state; 18 visual; 100 actions]; k = 100


def milliseconds(run, runs: int) -> dict[str, float]:
    """Median and minimum wall time of `run()` over `runs` calls after a warm-up call, in ms.

    On a shared machine the minimum is the least disturbed by other processes.
    """
    run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(1000.0 * (time.perf_counter() - start))
    return {"median": statistics.median(times), "min": min(times)}


def jax_timings(runs: int) -> dict[str, dict[str, float]]:
    """Our encoder and decoder layers, jitted, float32 and bfloat16."""
    import jax
    import jax.numpy as jnp

    from core import transformer

    keys = jax.random.split(jax.random.key(0), 5)
    source = jax.random.normal(keys[0], (BATCH, ENCODER_TOKENS, MODEL_DIM))
    source_pos = jax.random.normal(keys[1], (1, ENCODER_TOKENS, MODEL_DIM))
    target = jax.random.normal(keys[2], (BATCH, DECODER_QUERIES, MODEL_DIM))
    target_pos = jax.random.normal(keys[3], (1, DECODER_QUERIES, MODEL_DIM))
    timings = {}
    for dtype_name, dtype in (("float32", None), ("bfloat16", jnp.bfloat16)):
        config = transformer.TransformerLayerConfig(
            MODEL_DIM, NUM_HEADS, FFN_DIM, dropout_rate=0.1, dtype=dtype
        )
        encoder = transformer.TransformerEncoderLayer(config)
        decoder = transformer.TransformerDecoderLayer(config)
        encoder_params = encoder.init(keys[4], source, deterministic=True)
        decoder_params = decoder.init(keys[4], target, source, deterministic=True)
        encode = jax.jit(lambda p, x, pos, m=encoder: m.apply(p, x, pos=pos, deterministic=True))
        decode = jax.jit(
            lambda p, x, memory, query_pos, memory_pos, m=decoder: m.apply(
                p, x, memory, query_pos=query_pos, memory_pos=memory_pos, deterministic=True
            )
        )
        timings[f"encoder_layer/ours_{dtype_name}"] = milliseconds(
            lambda e=encode, p=encoder_params: e(p, source, source_pos).block_until_ready(), runs
        )
        timings[f"decoder_layer/ours_{dtype_name}"] = milliseconds(
            lambda d=decode, p=decoder_params: d(
                p, target, source, target_pos, source_pos
            ).block_until_ready(),
            runs,
        )
    return timings


def torch_timings(runs: int) -> dict[str, dict[str, float]]:
    """LeRobot's ACT layers and torch.nn's layers (sequence-first for ACT, as LeRobot runs)."""
    import torch

    from experiments.parity.common import import_torchvision

    import_torchvision()
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTDecoderLayer, ACTEncoderLayer

    config = ACTConfig(pretrained_backbone_weights=None)  # d 512, 8 heads, ffn 3200, post-norm
    source = torch.randn(ENCODER_TOKENS, BATCH, MODEL_DIM)
    source_pos = torch.randn(ENCODER_TOKENS, 1, MODEL_DIM)
    target = torch.randn(DECODER_QUERIES, BATCH, MODEL_DIM)
    target_pos = torch.randn(DECODER_QUERIES, 1, MODEL_DIM)
    act_encoder, act_decoder = ACTEncoderLayer(config).eval(), ACTDecoderLayer(config).eval()
    torch_encoder = torch.nn.TransformerEncoderLayer(
        MODEL_DIM, NUM_HEADS, FFN_DIM, batch_first=True
    ).eval()
    torch_decoder = torch.nn.TransformerDecoderLayer(
        MODEL_DIM, NUM_HEADS, FFN_DIM, batch_first=True
    ).eval()
    source_batch_first, target_batch_first = source.transpose(0, 1), target.transpose(0, 1)
    with torch.no_grad():
        return {
            "encoder_layer/lerobot_act": milliseconds(
                lambda: act_encoder(source, pos_embed=source_pos), runs
            ),
            "decoder_layer/lerobot_act": milliseconds(
                lambda: act_decoder(
                    target, source, decoder_pos_embed=target_pos, encoder_pos_embed=source_pos
                ),
                runs,
            ),
            "encoder_layer/torch_nn": milliseconds(lambda: torch_encoder(source_batch_first), runs),
            "decoder_layer/torch_nn": milliseconds(
                lambda: torch_decoder(target_batch_first, source_batch_first), runs
            ),
        }


def run_torch_subprocess(python: str, runs: int) -> dict[str, dict[str, float]]:
    command = [python, "-m", "experiments.benchmarks.transformer_blocks", "--torch-only"]
    command += ["--runs", str(runs)]
    environment = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def table(timings: dict[str, dict[str, float]]) -> list[str]:
    header = f"{'block':<15}{'implementation':<16}{'median ms':>11}{'min ms':>9}"
    lines = [header + f"{'ours f32 / this (min)':>24}"]
    for block in ("encoder_layer", "decoder_layer"):
        ours = timings[f"{block}/ours_float32"]["min"]
        for name, measured in timings.items():
            if name.startswith(block):
                lines.append(
                    f"{block:<15}{name.split('/')[1]:<16}{measured['median']:>11.2f}"
                    f"{measured['min']:>9.2f}{ours / measured['min']:>24.2f}"
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--torch-python", help="an interpreter with torch and lerobot")
    parser.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_only:
        print(json.dumps(torch_timings(args.runs)))
        return
    timings = jax_timings(args.runs)
    if args.torch_python:
        timings |= run_torch_subprocess(args.torch_python, args.runs)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "config": {
            "batch": BATCH,
            "model_dim": MODEL_DIM,
            "num_heads": NUM_HEADS,
            "ffn_dim": FFN_DIM,
            "encoder_tokens": ENCODER_TOKENS,
            "decoder_queries": DECODER_QUERIES,
            "runs": args.runs,
        },
        "load_average": os.getloadavg(),
        "milliseconds": timings,
    }
    RESULTS.write_text(json.dumps(payload, indent=2))
    print("\n".join(table(timings)))
    print(f"load average {os.getloadavg()[0]:.1f}; written to {RESULTS}")


if __name__ == "__main__":
    main()
