"""Golden outputs of torch's and LeRobot's transformer layers for core.transformer (book 17.4-17.5).

torch: nn.TransformerEncoderLayer and nn.TransformerDecoderLayer (batch_first, dropout 0) in
all four combinations of norm_first and relu/gelu, d_model 16, 4 heads, feed-forward 32; the
encoder with a source key-padding mask, the decoder with a causal target mask and a memory
key-padding mask.

LeRobot: ACTEncoder and ACTDecoder stacks of two ACTEncoderLayer/ACTDecoderLayer (post-norm,
ACT's setting, and pre-norm), with position embeddings added to queries and keys; the encoder
with a key-padding mask (as ACT's VAE encoder uses it), the decoder ending in ACT's final
LayerNorm. ACT runs sequence-first ([T, B, D]); inputs and outputs here are batch-first.

`layer_state_dict(case)` and `inputs(case)` rebuild weights and inputs without torch.
"""

from __future__ import annotations

import numpy as np

from experiments.parity.attention import attention_state_shapes, load_state, seeded_state_dict
from experiments.parity.common import import_torchvision, seeded_array

MODEL_DIM, NUM_HEADS, FFN_DIM = 16, 4, 32
BATCH, SOURCE_LENGTH, TARGET_LENGTH, PADDED_SOURCE = 2, 6, 4, 2
ACT_LAYERS = 2
TORCH_CASES = {  # name: (kind, norm_first, activation)
    f"torch_{kind}_{'pre' if norm_first else 'post'}_{activation}": (kind, norm_first, activation)
    for kind in ("encoder", "decoder")
    for norm_first in (False, True)
    for activation in ("relu", "gelu")
}
ACT_CASES = {  # name: (kind, pre_norm)
    f"act_{kind}_{'pre' if pre_norm else 'post'}": (kind, pre_norm)
    for kind in ("encoder", "decoder")
    for pre_norm in (False, True)
}


def layer_state_shapes(kind: str, prefix: str = "") -> dict[str, tuple[int, ...]]:
    """Names and shapes of a torch/ACT encoder or decoder layer's state dict."""
    attention_names = ["self_attn"] if kind == "encoder" else ["self_attn", "multihead_attn"]
    shapes = {}
    for name in attention_names:
        shapes |= attention_state_shapes(MODEL_DIM, MODEL_DIM, f"{prefix}{name}.")
    shapes |= {
        f"{prefix}linear1.weight": (FFN_DIM, MODEL_DIM),
        f"{prefix}linear1.bias": (FFN_DIM,),
        f"{prefix}linear2.weight": (MODEL_DIM, FFN_DIM),
        f"{prefix}linear2.bias": (MODEL_DIM,),
    }
    for index in range(1, len(attention_names) + 2):
        shapes |= {
            f"{prefix}norm{index}.weight": (MODEL_DIM,),
            f"{prefix}norm{index}.bias": (MODEL_DIM,),
        }
    return shapes


def act_stack_state_shapes(kind: str, pre_norm: bool) -> dict[str, tuple[int, ...]]:
    """ACTEncoder (final norm only with pre_norm) or ACTDecoder (always a final norm)."""
    shapes = {}
    for index in range(ACT_LAYERS):
        shapes |= layer_state_shapes(kind, f"layers.{index}.")
    if kind == "decoder" or pre_norm:
        shapes |= {"norm.weight": (MODEL_DIM,), "norm.bias": (MODEL_DIM,)}
    return shapes


def state_dict(case: str) -> dict[str, np.ndarray]:
    if case in TORCH_CASES:
        shapes = layer_state_shapes(TORCH_CASES[case][0])
    else:
        shapes = act_stack_state_shapes(*ACT_CASES[case])
    return seeded_state_dict(f"transformer/{case}", shapes)


def source_is_pad() -> np.ndarray:
    """[B, Ts] True at padding: the last PADDED_SOURCE tokens of the second example."""
    padding = np.zeros((BATCH, SOURCE_LENGTH), bool)
    padding[1, -PADDED_SOURCE:] = True
    return padding


def inputs(case: str) -> dict[str, np.ndarray]:
    """source [B, Ts, D] (+ source_pos [1, Ts, D]); decoders add target [B, Tt, D] and
    target_pos [1, Tt, D]. Position embeddings are used by the ACT cases only."""
    arrays = {
        "source": seeded_array(f"transformer/{case}/source", (BATCH, SOURCE_LENGTH, MODEL_DIM)),
        "source_pos": seeded_array(f"transformer/{case}/source_pos", (1, SOURCE_LENGTH, MODEL_DIM)),
    }
    if "decoder" in case:
        arrays["target"] = seeded_array(
            f"transformer/{case}/target", (BATCH, TARGET_LENGTH, MODEL_DIM)
        )
        arrays["target_pos"] = seeded_array(
            f"transformer/{case}/target_pos", (1, TARGET_LENGTH, MODEL_DIM)
        )
    return arrays


def _torch_output(case: str, tensors) -> np.ndarray:
    import torch

    kind, norm_first, activation = TORCH_CASES[case]
    layer_type = torch.nn.TransformerEncoderLayer
    if kind == "decoder":
        layer_type = torch.nn.TransformerDecoderLayer
    layer = layer_type(
        MODEL_DIM,
        NUM_HEADS,
        FFN_DIM,
        dropout=0.0,
        activation=activation,
        batch_first=True,
        norm_first=norm_first,
    ).eval()
    load_state(layer, state_dict(case))
    source_padding = torch.from_numpy(source_is_pad())
    if kind == "encoder":
        return layer(tensors["source"], src_key_padding_mask=source_padding).numpy()
    causal = torch.ones(TARGET_LENGTH, TARGET_LENGTH, dtype=torch.bool).triu(1)  # True = masked
    return layer(
        tensors["target"],
        tensors["source"],
        tgt_mask=causal,
        memory_key_padding_mask=source_padding,
    ).numpy()


def _act_output(case: str, tensors) -> np.ndarray:
    import torch

    import_torchvision()
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTDecoder, ACTEncoder

    kind, pre_norm = ACT_CASES[case]
    config = ACTConfig(
        dim_model=MODEL_DIM,
        n_heads=NUM_HEADS,
        dim_feedforward=FFN_DIM,
        dropout=0.0,
        pre_norm=pre_norm,
        n_encoder_layers=ACT_LAYERS,
        n_decoder_layers=ACT_LAYERS,
    )
    stack = (ACTEncoder if kind == "encoder" else ACTDecoder)(config).eval()
    load_state(stack, state_dict(case))
    sequence_first = {name: tensor.transpose(0, 1) for name, tensor in tensors.items()}
    if kind == "encoder":
        output = stack(
            sequence_first["source"],
            pos_embed=sequence_first["source_pos"],
            key_padding_mask=torch.from_numpy(source_is_pad()),
        )
    else:
        output = stack(
            sequence_first["target"],
            sequence_first["source"],
            decoder_pos_embed=sequence_first["target_pos"],
            encoder_pos_embed=sequence_first["source_pos"],
        )
    return output.transpose(0, 1).numpy()


def generate() -> dict[str, np.ndarray]:
    import torch

    outputs = {}
    for case in (*TORCH_CASES, *ACT_CASES):
        tensors = {name: torch.from_numpy(array) for name, array in inputs(case).items()}
        with torch.no_grad():
            if case in TORCH_CASES:
                outputs[f"{case}/output"] = _torch_output(case, tensors)
            else:
                outputs[f"{case}/output"] = _act_output(case, tensors)
    return outputs
