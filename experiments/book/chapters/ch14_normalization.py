"""Chapter 14: data normalization and normalization layers (z-score, min-max, BN, LN, GN, IN).

Book 14.1-14.5 (eqs. 14.1-14.8) with `core.normalizers` and `core.normalization`. The chapter
prints formulas and a comparison table, no worked numbers; its statements are checked by
computation. Which axes a layer's statistics span (the table's "Statistics on" column) is read
off the Jacobian of one output element of a [B, H, W, C] = [2, 2, 3, 4] input: it depends on
exactly the inputs that share its mean and variance.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from core import normalization, normalizers
from experiments.book.records import Record, ambiguous, claim

FEATURE_MAP_SHAPE = (2, 2, 3, 4)  # [B, H, W, C]
AXIS_NAMES = ("B", "H", "W", "C")
NUM_GROUPS = 2
MOMENTUM = 0.9  # the book's α of eq. 14.4


def _feature_map() -> jax.Array:
    return jax.random.normal(jax.random.key(0), FEATURE_MAP_SHAPE)


def _train_and_test() -> tuple[jax.Array, jax.Array]:
    train_key, test_key = jax.random.split(jax.random.key(1))
    train = jnp.array([2.0, -1.0, 50.0]) + jnp.array([1.0, 0.1, 20.0]) * jax.random.normal(
        train_key, (500, 3)
    )
    test = 1.0 + 3.0 * jax.random.normal(test_key, (100, 3))  # shifted: a distribution change
    return train, test


def _normalizer_records() -> list[Record]:
    train, test = _train_and_test()
    zscore = normalizers.fit_zscore(train)
    normalized = zscore.normalize(train)
    mean_error = float(jnp.max(jnp.abs(jnp.mean(normalized, axis=0))))
    std_error = float(jnp.max(jnp.abs(jnp.std(normalized, axis=0) - 1.0)))
    minmax = normalizers.fit_minmax(train).normalize(train)
    minmax_range = (float(jnp.min(minmax)), float(jnp.max(minmax)))
    outlier_train = jnp.concatenate([jnp.linspace(0.0, 1.0, 199), jnp.array([1000.0])])[:, None]
    bulk = jnp.array([[0.25], [0.75]])
    minmax_gap = float(jnp.diff(normalizers.fit_minmax(outlier_train).normalize(bulk)[:, 0])[0])
    quantile_gap = float(jnp.diff(normalizers.fit_quantile(outlier_train).normalize(bulk)[:, 0])[0])
    test_normalized = zscore.normalize(test)
    rows_with_more_test = zscore.normalize(jnp.concatenate([test, 10.0 * test]))[: len(test)]
    test_mean = np.round(np.asarray(jnp.mean(test_normalized, axis=0)), 2).tolist()
    return [
        *claim(
            "14.1.1 eq. (14.1)",
            "z-score with the population σ (1/n)",
            "x' = (x - μ)/σ, σ = sqrt((1/n) Σ (x - μ)²)",
            f"fit_zscore on 500 training rows: normalized features have |mean| <= "
            f"{mean_error:.1e} and |std(ddof=0) - 1| <= {std_error:.1e}",
            holds=mean_error < 1e-12 and std_error < 1e-12,
        ),
        *claim(
            "14.1.2 eq. (14.2)",
            "min-max scaling onto [0, 1]",
            "x' = (x - min)/(max - min) scales to the fixed range [0, 1]",
            f"fit_minmax maps the training data onto [{minmax_range[0]:.3g}, "
            f"{minmax_range[1]:.3g}]",
            holds=abs(minmax_range[0]) < 1e-12 and abs(minmax_range[1] - 1.0) < 1e-12,
        ),
        *claim(
            "14.1.2",
            "min-max is sensitive to outliers",
            "Min-max scaling is sensitive to outliers",
            f"200 values: 199 in [0, 1] and one at 1000. Inputs 0.25 and 0.75 end "
            f"{minmax_gap:.1e} apart after min-max to [0, 1] (that fraction of the output "
            f"range); the q01/q99 quantile normalizer (fit_quantile) keeps them "
            f"{quantile_gap:.2f} apart in [-1, 1] ({quantile_gap / 2:.2f} of the range)",
            holds=minmax_gap < 1e-3 and quantile_gap / 2 > 0.4,
        ),
        *claim(
            "14.1.3",
            "statistics from training data only",
            "Compute μ, σ on training data and apply the same transformation to test data",
            f"the fitted normalizer is frozen: test rows normalize identically alone or with "
            f"other test data; a shifted test set keeps its shift (normalized test mean "
            f"{test_mean}), which test statistics would have erased",
            holds=bool(jnp.array_equal(rows_with_more_test, test_normalized)),
        ),
    ]


def _batch_norm_records() -> list[Record]:
    channels = FEATURE_MAP_SHAPE[-1]
    scale = jnp.linspace(0.5, 2.0, channels)
    bias = jnp.linspace(-1.0, 1.0, channels)
    flax_batch_norm = nn.BatchNorm(momentum=MOMENTUM, epsilon=1e-5, use_fast_variance=False)
    flax_variables = {
        "params": {"scale": scale, "bias": bias},
        "batch_stats": {"mean": jnp.zeros(channels), "var": jnp.ones(channels)},
    }
    running = normalization.init_running_stats(channels, jnp.float64)
    output_gap, stats_gap = 0.0, 0.0
    for step in range(3):
        x = 2.0 + 3.0 * jax.random.normal(jax.random.key(10 + step), FEATURE_MAP_SHAPE)
        y, running = normalization.batch_norm_train(
            x, scale, bias, running, momentum=MOMENTUM, epsilon=1e-5
        )
        expected, updated = flax_batch_norm.apply(
            flax_variables, x, use_running_average=False, mutable=["batch_stats"]
        )
        flax_variables = {**flax_variables, **updated}
        flax_stats = flax_variables["batch_stats"]
        output_gap = max(output_gap, float(jnp.max(jnp.abs(y - expected))))
        stats_gap = max(
            stats_gap,
            float(jnp.max(jnp.abs(running.mean - flax_stats["mean"]))),
            float(jnp.max(jnp.abs(running.var - flax_stats["var"]))),
        )
    eval_batch = jax.random.normal(jax.random.key(20), FEATURE_MAP_SHAPE)
    evaluated = normalization.batch_norm_eval(eval_batch, scale, bias, running, epsilon=1e-5)
    flax_evaluated = flax_batch_norm.apply(flax_variables, eval_batch, use_running_average=True)
    eval_gap = float(jnp.max(jnp.abs(evaluated - flax_evaluated)))
    constant_mean = jnp.full((8, channels), 2.0)
    memory = {}
    for alpha, steps in ((0.9, 10), (0.99, 100)):
        step = jax.jit(
            lambda running, alpha=alpha: normalization.batch_norm_train(
                constant_mean, scale, bias, running, momentum=alpha
            )[1]
        )
        averaged = normalization.init_running_stats(channels, jnp.float64)
        for _ in range(steps):
            averaged = step(averaged)
        memory[alpha] = float(averaged.mean[0]) / 2.0
    return [
        *claim(
            "14.2 eq. (14.3)",
            "batch norm in training mode = eqs. 7.11-7.14",
            "ẑ = (z - μ_B)/sqrt(σ_B² + ε), y = γ ẑ + β with mini-batch statistics",
            f"batch_norm_train vs flax.linen.BatchNorm (train) over 3 batches of "
            f"{list(FEATURE_MAP_SHAPE)}: max |Δy| = {output_gap:.1e}",
            holds=output_gap < 1e-10,
        ),
        *claim(
            "14.2.1 eq. (14.4)",
            "running averages accumulate the biased σ_B²",
            "μ_run <- α μ_run + (1 - α) μ_B, σ²_run <- α σ²_run + (1 - α) σ_B²",
            f"update_running_stats with α = {MOMENTUM} vs flax.linen.BatchNorm(momentum="
            f"{MOMENTUM}): max |Δ| of running mean and variance after 3 batches "
            f"{stats_gap:.1e}; eval mode with them: max |Δy| = {eval_gap:.1e}",
            holds=stats_gap < 1e-12 and eval_gap < 1e-10,
            note="σ_B² is the biased (1/m) variance of eq. 7.12, as in flax; PyTorch "
            "accumulates the unbiased m/(m - 1) σ_B² instead",
        ),
        *ambiguous(
            "14.2.1 eq. (14.4)",
            "α ≈ 0.9 or 0.99 (momentum)",
            "0.9 or 0.99",
            f"from μ_run = 0 with constant μ_B: after 10 batches at α = 0.9 μ_run covers "
            f"{memory[0.9]:.3f} of μ_B, after 100 at α = 0.99 {memory[0.99]:.3f} (1 - α^n): "
            "memories of about 10 and 100 batches",
            "The book's 'momentum' α weights the OLD average. flax.linen.BatchNorm's momentum "
            "is the same α (default 0.99); PyTorch's momentum weights the NEW batch, so its "
            "default 0.1 is α = 0.9 and passing 0.9 there would mean α = 0.1",
        ),
    ]


def _per_sample_records() -> list[Record]:
    channels = FEATURE_MAP_SHAPE[-1]
    scale, bias = jnp.ones(channels), jnp.zeros(channels)
    x = _feature_map()
    other_samples_changed = x.at[1:].set(-7.0)
    layer_gap = float(
        jnp.max(
            jnp.abs(
                normalization.layer_norm(x, scale, bias)[0]
                - normalization.layer_norm(other_samples_changed, scale, bias)[0]
            )
        )
    )
    single_sample = normalization.group_norm(x[:1], scale, bias, num_groups=NUM_GROUPS)
    in_batch = normalization.group_norm(x, scale, bias, num_groups=NUM_GROUPS)[:1]
    group_gap = float(jnp.max(jnp.abs(single_sample - in_batch)))
    params = normalization.LayerNorm().init(jax.random.key(0), x)["params"]
    param_shapes = {name: tuple(value.shape) for name, value in params.items()}
    return [
        *claim(
            "14.3 eqs. (14.5)-(14.6)",
            "layer norm statistics are per sample, not per batch",
            "LayerNorm computes statistics per sample; not dependent on batch statistics",
            f"changing every other sample of the batch changes sample 0's output by "
            f"{layer_gap:.1e}",
            holds=layer_gap == 0.0,
        ),
        *claim(
            "14.3",
            "layer norm γ, β are per feature (size n_ℓ)",
            "learnable scale γ and shift β are usually per-feature (size n_ℓ)",
            f"LayerNorm params for n_ℓ = {channels}: {param_shapes}",
            holds=param_shapes == {"scale": (channels,), "bias": (channels,)},
        ),
        *claim(
            "14.4.1",
            "group norm works with batch size 1",
            "Group norm works well when the batch is small (e.g. 1-4)",
            f"a sample normalized alone (batch 1) or in a batch of {FEATURE_MAP_SHAPE[0]} "
            f"differs by {group_gap:.1e}: no batch statistics are involved",
            holds=group_gap == 0.0,
        ),
    ]


def _coupled_inputs(layer) -> np.ndarray:
    """[B, H, W, C] bool: the inputs that output element (0, 0, 0, 0) of `layer` depends on."""
    jacobian = jax.jacobian(lambda x: layer(x)[0, 0, 0, 0])(_feature_map())
    return np.abs(np.asarray(jacobian)) > 1e-12


def _spanned_axes(layer) -> dict[str, int]:
    """{axis name: number of indices} for the axes the statistics of `layer` reduce over."""
    indices = np.nonzero(_coupled_inputs(layer))
    counts = {name: len(np.unique(index)) for name, index in zip(AXIS_NAMES, indices, strict=True)}
    return {name: count for name, count in counts.items() if count > 1}


def _describe(spanned: dict[str, int]) -> str:
    channels = FEATURE_MAP_SHAPE[-1]
    parts = [
        f"C ({count} of {channels} channels)" if name == "C" and count < channels else name
        for name, count in spanned.items()
    ]
    size = int(np.prod(list(spanned.values())))
    return f"statistics over {', '.join(parts)}: {size} values"


def _comparison_table_records() -> list[Record]:
    channels = FEATURE_MAP_SHAPE[-1]
    scale, bias = jnp.ones(channels), jnp.zeros(channels)
    running = normalization.init_running_stats(channels)
    batch = _spanned_axes(lambda x: normalization.batch_norm_train(x, scale, bias, running)[0])
    layer = _spanned_axes(lambda x: normalization.layer_norm(x, scale, bias))
    layer_of_feature_map = _spanned_axes(
        lambda x: normalization.group_norm(x, scale, bias, num_groups=1)
    )
    group = _spanned_axes(lambda x: normalization.group_norm(x, scale, bias, num_groups=NUM_GROUPS))
    instance = _spanned_axes(lambda x: normalization.instance_norm(x, scale, bias))
    features_per_sample = int(np.prod(FEATURE_MAP_SHAPE[1:]))  # S = C·H·W
    return [
        *claim(
            "14.5 table",
            "Batch Norm: statistics on",
            "Batch (μ_B, σ_B)",
            _describe(batch) + "; one (μ, σ²) per channel",
            holds=set(batch) == {"B", "H", "W"},
            note="over the batch and, for feature maps, every spatial position of a channel",
        ),
        *claim(
            "14.5 table / 14.3",
            "Layer Norm: statistics on",
            "Layer features (μ, σ per sample)",
            f"layer_norm (last axis, as Transformers and flax): {_describe(layer)}; the book's "
            f"whole-layer vector of a feature map is group norm with G = 1: "
            f"{_describe(layer_of_feature_map)}",
            holds=set(layer) == {"C"} and set(layer_of_feature_map) == {"H", "W", "C"},
            note="never over B; per position for sequences and feature maps",
        ),
        *claim(
            "14.5 table / 14.4.1 eq. (14.7)",
            "Group Norm: statistics on",
            "Groups of channels: S/G values per group, S = C·H·W",
            f"G = {NUM_GROUPS}: {_describe(group)}; S/G = {features_per_sample // NUM_GROUPS}",
            holds=set(group) == {"H", "W", "C"}
            and int(np.prod(list(group.values()))) == features_per_sample // NUM_GROUPS,
        ),
        *claim(
            "14.5 table / 14.4.2 eq. (14.8)",
            "Instance Norm: statistics on",
            "Channel: H·W values per channel and sample",
            _describe(instance) + "; one (μ, σ²) per sample and channel",
            holds=set(instance) == {"H", "W"},
        ),
    ]


def records() -> list[Record]:
    return [
        *_normalizer_records(),
        *_batch_norm_records(),
        *_per_sample_records(),
        *_comparison_table_records(),
    ]
