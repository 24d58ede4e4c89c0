"""Golden outputs of torch.nn.MultiheadAttention (batch_first) for core.attention (book 17.5.2).

Three cases at E = 16, H = 4, batch 2: self-attention with a causal `attn_mask` and a
`key_padding_mask`, cross-attention with key padding, and cross-attention with kdim = 12,
vdim = 10 (separate q/k/v projection weights instead of the packed `in_proj_weight`). Each case
records the output and the per-head attention weights (`average_attn_weights=False`).

`state_dict(case)` and `inputs(case)` rebuild the weights and inputs without torch, from
`seeded_array`; the JAX tests load the state dict through
`core.attention.multi_head_attention_params_from_torch`. No query row is fully masked: torch
returns NaN there (ours returns zeros, tested separately).
"""

from __future__ import annotations

import numpy as np

from experiments.parity.common import seeded_array

EMBED_DIM, NUM_HEADS, BATCH = 16, 4, 2
CASES = {  # name: (key input dim, value input dim, Tq, Tk, causal)
    "self": (EMBED_DIM, EMBED_DIM, 6, 6, True),
    "cross": (EMBED_DIM, EMBED_DIM, 3, 7, False),
    "cross_kdim_vdim": (12, 10, 3, 7, False),
}
PADDED_KEYS = 2  # the last keys of the second example are padding


def seeded_state_dict(prefix: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Seeded values for a state dict's entries: W [out, in] ~ N(0, 1/in), biases ~ N(0, 0.1²),
    LayerNorm weights ~ 1 + N(0, 0.1²)."""
    arrays = {}
    for name, shape in shapes.items():
        seed_name = f"{prefix}/{name}"
        leaf = name.rsplit(".", 1)[-1]
        if "norm" in name and leaf == "weight":
            arrays[name] = 1.0 + seeded_array(seed_name, shape, 0.1)
        elif len(shape) == 1:
            arrays[name] = seeded_array(seed_name, shape, 0.1)
        else:
            arrays[name] = seeded_array(seed_name, shape, shape[-1] ** -0.5)
    return arrays


def attention_state_shapes(kdim: int, vdim: int, prefix: str = "") -> dict[str, tuple[int, ...]]:
    """Names and shapes of a torch MultiheadAttention(EMBED_DIM, kdim=, vdim=) state dict."""
    if kdim == vdim == EMBED_DIM:
        projections = {"in_proj_weight": (3 * EMBED_DIM, EMBED_DIM)}
    else:
        projections = {
            "q_proj_weight": (EMBED_DIM, EMBED_DIM),
            "k_proj_weight": (EMBED_DIM, kdim),
            "v_proj_weight": (EMBED_DIM, vdim),
        }
    shapes = {
        **projections,
        "in_proj_bias": (3 * EMBED_DIM,),
        "out_proj.weight": (EMBED_DIM, EMBED_DIM),
        "out_proj.bias": (EMBED_DIM,),
    }
    return {prefix + name: shape for name, shape in shapes.items()}


def state_dict(case: str) -> dict[str, np.ndarray]:
    kdim, vdim, _, _, _ = CASES[case]
    return seeded_state_dict(f"attention/{case}", attention_state_shapes(kdim, vdim))


def is_pad(num_keys: int) -> np.ndarray:
    """[B, Tk] True at padding: none in the first example, the last PADDED_KEYS in the second."""
    padding = np.zeros((BATCH, num_keys), bool)
    padding[1, -PADDED_KEYS:] = True
    return padding


def inputs(case: str) -> dict[str, np.ndarray]:
    """query [B, Tq, E], key [B, Tk, kdim], value [B, Tk, vdim] (the same tokens for "self")."""
    kdim, vdim, num_queries, num_keys, _ = CASES[case]
    query = seeded_array(f"attention/{case}/query", (BATCH, num_queries, EMBED_DIM))
    if case == "self":
        return {"query": query, "key": query, "value": query}
    return {
        "query": query,
        "key": seeded_array(f"attention/{case}/key", (BATCH, num_keys, kdim)),
        "value": seeded_array(f"attention/{case}/value", (BATCH, num_keys, vdim)),
    }


def load_state(module, arrays: dict[str, np.ndarray]) -> None:
    """Copies `arrays` into a torch module, failing loudly if names or shapes differ."""
    import torch

    expected = {name: tuple(value.shape) for name, value in module.state_dict().items()}
    ours = {name: array.shape for name, array in arrays.items()}
    if expected != ours:
        raise ValueError(f"state dict layout differs from torch's: {ours} vs {expected}")
    module.load_state_dict({name: torch.from_numpy(array) for name, array in arrays.items()})


def generate() -> dict[str, np.ndarray]:
    import torch

    outputs = {}
    for case, (kdim, vdim, num_queries, num_keys, causal) in CASES.items():
        module = torch.nn.MultiheadAttention(
            EMBED_DIM, NUM_HEADS, kdim=kdim, vdim=vdim, batch_first=True
        ).eval()
        load_state(module, state_dict(case))
        tensors = {name: torch.from_numpy(array) for name, array in inputs(case).items()}
        attn_mask = None
        if causal:  # torch: True = masked
            attn_mask = torch.ones(num_queries, num_keys, dtype=torch.bool).triu(1)
        with torch.no_grad():
            output, weights = module(
                tensors["query"],
                tensors["key"],
                tensors["value"],
                key_padding_mask=torch.from_numpy(is_pad(num_keys)),
                attn_mask=attn_mask,
                average_attn_weights=False,
            )
        outputs[f"{case}/output"] = output.numpy()
        outputs[f"{case}/weights"] = weights.numpy()
    return outputs
