"""ACT as a policy (book 17.3, 17.5.1, 17.6): the loss terms against their formulas (eqs. 17.10,
17.15, 17.18, 17.19), the KL term's gradient reaching only the encoder (17.6.3), the inference
latents (eq. 17.34), and the multimodality claim of 17.8: trained on a bimodal task, chunks
decoded from prior samples fall into both modes and z = 0 picks one instead of averaging.
Parity of the loss terms with LeRobot is in test_convert.py."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from act.model import ACTConfig
from act.policy import (
    ACTPolicy,
    act_policy,
    masked_reconstruction_loss,
    mean_kl_divergence,
    normalize_images,
)
from experiments.policies import make_policy

CHUNK, ACTION_DIM, BATCH = 8, 2, 4
NETWORK = ACTConfig(
    action_dim=ACTION_DIM,
    chunk_size=CHUNK,
    latent_dim=4,
    model_dim=32,
    num_heads=4,
    ffn_dim=64,
    num_encoder_layers=1,
    num_cvae_encoder_layers=1,
)
POLICY = ACTPolicy(NETWORK, state_key=None, environment_state_key="observation.environment_state")
FEATURES = {
    "observation.state": {"dtype": "float32", "shape": [3], "names": None},
    "observation.environment_state": {"dtype": "float32", "shape": [4], "names": None},
    "observation.images.top": {"dtype": "image", "shape": [32, 32, 3], "names": None},
    "observation.images.wrist": {"dtype": "image", "shape": [32, 32, 3], "names": None},
    "action": {"dtype": "float32", "shape": [ACTION_DIM], "names": None},
}


def _batch(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    is_pad = np.zeros((BATCH, CHUNK), bool)
    is_pad[1, -3:] = True
    return {
        "observation.environment_state": rng.normal(size=(BATCH, 1, 3)).astype(np.float32),
        "action": rng.normal(size=(BATCH, CHUNK, ACTION_DIM)).astype(np.float32),
        "action_is_pad": is_pad,
    }


@functools.cache
def _variables():
    return POLICY.init(jax.random.key(0), _batch())


@pytest.mark.parametrize("kind", ["l1", "mse"])
def test_reconstruction_loss_is_the_mean_over_valid_entries(kind):
    """L1 (the original) and the book's eq. 17.15, 1/(kD)||A - Â||², over non-padded steps."""
    rng = np.random.default_rng(1)
    predicted, actions = rng.normal(size=(2, 3, 5, 2)).astype(np.float32)
    is_pad = np.array([[False] * 5, [False, False, True, True, True], [False] * 4 + [True]])
    residuals = [predicted[b, j] - actions[b, j] for b in range(3) for j in range(5)]
    valid = [r for r, pad in zip(residuals, is_pad.reshape(-1), strict=True) if not pad]
    elementwise = np.abs if kind == "l1" else np.square
    expected = np.mean([elementwise(r) for r in valid])
    loss = masked_reconstruction_loss(predicted, actions, is_pad, kind)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_kl_term_is_eq_17_18_summed_over_the_latent_and_averaged_over_the_batch():
    rng = np.random.default_rng(2)
    mean, log_var = rng.normal(size=(2, 3, 4))
    per_sample = 0.5 * np.sum(mean**2 + np.exp(log_var) - log_var - 1, axis=-1)
    np.testing.assert_allclose(mean_kl_divergence(mean, log_var), per_sample.mean(), rtol=1e-6)


@functools.cache
def _terms_and_gradients():
    """One compiled function for the loss tests: (L, metrics, ∂[L_rec, L_KL]/∂params) of a
    policy with β annealed over 100 steps, for a key and a step."""
    policy = dataclasses.replace(POLICY, kl_weight=10.0, kl_warmup_steps=100)

    def terms(params, key, step):
        loss, metrics = policy.loss({"params": params}, _batch(), key, step)
        return jnp.stack([metrics["l1"], metrics["kl"]]), (loss, metrics)

    return jax.jit(jax.jacrev(terms, has_aux=True))


def test_loss_is_reconstruction_plus_annealed_beta_times_kl_eq_17_10_and_17_19():
    for step, beta in ((0, 0.0), (50, 5.0), (100, 10.0), (400, 10.0)):
        _, (value, metrics) = _terms_and_gradients()(
            _variables()["params"], jax.random.key(3), jnp.asarray(step)
        )
        assert set(metrics) == {"l1", "kl", "kl_weight"}
        np.testing.assert_allclose(metrics["kl_weight"], beta, rtol=1e-6)
        np.testing.assert_allclose(value, metrics["l1"] + beta * metrics["kl"], rtol=1e-6)


def test_the_kl_term_sends_no_gradient_to_the_decoder_17_6_3():
    """∂L_KL/∂θ_decoder = 0 (the KL depends on the encoder φ only) while ∂L_KL/∂φ ≠ 0, and the
    reconstruction reaches both."""
    gradients, _ = _terms_and_gradients()(_variables()["params"], jax.random.key(4), 0)
    reconstruction, kl = (jax.tree.map(lambda g, i=i: g[i], gradients) for i in range(2))
    assert all(np.all(g == 0) for g in jax.tree.leaves(kl["cvae_decoder"]))
    for term in (reconstruction, kl):
        assert max(np.abs(g).max() for g in jax.tree.leaves(term["cvae_encoder"])) > 1e-4
    assert max(np.abs(g).max() for g in jax.tree.leaves(reconstruction["cvae_decoder"])) > 1e-4


def test_the_loss_is_deterministic_given_the_key_and_random_across_keys():
    """ε and the dropout masks come from the key alone (core.policy: deterministic given rng)."""

    def loss(key):
        return _terms_and_gradients()(_variables()["params"], key, 0)[1][0]

    first, again, other = loss(jax.random.key(5)), loss(jax.random.key(5)), loss(jax.random.key(6))
    assert first == again and first != other


def test_zero_latent_is_deterministic_and_prior_samples_depend_on_the_key():
    observation = {key: _batch()[key] for key in POLICY.observation_keys}
    zero = POLICY.predict_chunk(_variables(), observation, jax.random.key(0))
    np.testing.assert_array_equal(
        zero, POLICY.predict_chunk(_variables(), observation, jax.random.key(1))
    )
    sampling = dataclasses.replace(POLICY, inference_latent="prior_sample")
    first = sampling.predict_chunk(_variables(), observation, jax.random.key(0))
    assert first.shape == (BATCH, CHUNK, ACTION_DIM)
    assert np.abs(
        first - sampling.predict_chunk(_variables(), observation, jax.random.key(1))
    ).max()


def test_images_are_normalized_with_the_imagenet_statistics():
    images = np.array([[0.485, 0.456, 0.406], [1.0, 1.0, 1.0]], np.float32)
    expected = (images - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(normalize_images(images), expected, rtol=1e-6, atol=1e-6)


def _bimodal_batch(key: jax.Array, batch_size: int, ramp: np.ndarray) -> dict:
    """One observation, two equally likely chunks: ±ramp."""
    mode = jnp.where(jax.random.bernoulli(key, 0.5, (batch_size,)), 1.0, -1.0)
    return {
        "observation.environment_state": jnp.ones((batch_size, 1, 3)),
        "action": mode[:, None, None] * ramp,
        "action_is_pad": jnp.zeros((batch_size, CHUNK), bool),
    }


@pytest.mark.slow  # 800 training steps of a tiny ACT: ~10 s on 2 idle cores
def test_trained_on_two_modes_prior_samples_cover_both_and_the_zero_latent_picks_one():
    """Book 17.8: the latent selects the mode. After training on ±ramp with equal weight, 200
    chunks decoded from z ~ N(0, I) (eq. 17.34) split between the modes (each >= 25%) and are
    coherent chunks of one mode (most within 0.15 of it, while the modes are 0.94 apart); the
    chunk of z = 0 (the original's inference) is nearer a mode than their average, which is
    what a regression to the mean would output (16.3.3)."""
    ramp = np.linspace(0.25, 1.0, CHUNK)[:, None] * np.array([1.0, 0.5])
    network = dataclasses.replace(NETWORK, dropout_rate=0.0)
    policy = dataclasses.replace(
        POLICY, network=network, kl_weight=0.1, inference_latent="prior_sample"
    )
    params = policy.init(jax.random.key(0), _bimodal_batch(jax.random.key(1), 1, ramp))["params"]
    optimizer = optax.adam(2e-3)

    @jax.jit
    def train(params):
        def step(carry, index):
            params, opt_state = carry
            key = jax.random.key(index)
            batch = _bimodal_batch(jax.random.fold_in(key, 0), 64, ramp)
            batch_loss = functools.partial(
                policy.loss, batch=batch, rng=jax.random.fold_in(key, 1), step=index
            )
            (_, metrics), gradient = jax.value_and_grad(
                lambda p: batch_loss({"params": p}), has_aux=True
            )(params)
            updates, opt_state = optimizer.update(gradient, opt_state)
            return (optax.apply_updates(params, updates), opt_state), metrics["l1"]

        (params, _), l1 = jax.lax.scan(step, (params, optimizer.init(params)), jnp.arange(800))
        return params, l1

    params, l1 = train(params)
    assert l1[-50:].mean() < 0.1  # both modes reconstructed: the posterior tells them apart
    observation = {"observation.environment_state": jnp.ones((200, 1, 3))}
    chunks = policy.predict_chunk({"params": params}, observation, jax.random.key(7))
    distance_plus = np.abs(chunks - ramp).mean(axis=(1, 2))
    distance_minus = np.abs(chunks + ramp).mean(axis=(1, 2))
    assert 0.25 <= np.mean(distance_plus < distance_minus) <= 0.75
    assert np.mean(np.minimum(distance_plus, distance_minus) < 0.15) > 0.8
    zero = dataclasses.replace(policy, inference_latent="zero")
    chunk = zero.predict_chunk({"params": params}, observation, jax.random.key(0))[0]
    nearest_mode = min(np.abs(chunk - ramp).mean(), np.abs(chunk + ramp).mean())
    assert nearest_mode < np.abs(chunk).mean()  # the average of the modes is 0


def test_factory_reads_the_features_and_the_registry_builds_it():
    policy = act_policy(FEATURES, action_horizon=CHUNK, model_dim=32, num_heads=4, kl_weight=1.0)
    assert policy.image_keys == ("observation.images.top", "observation.images.wrist")
    assert policy.observation_keys == ("observation.state", *policy.image_keys)
    assert (policy.action_horizon, policy.network.action_dim) == (CHUNK, ACTION_DIM)
    assert policy.network.model_dim == 32 and policy.kl_weight == 1.0
    config = {
        "name": "act",
        "observation_horizon": 1,
        "action_horizon": CHUNK,
        "cameras": (),
        "environment_state_key": "observation.environment_state",
    }
    registered = make_policy(config, FEATURES)
    assert registered.image_keys == () and registered.environment_state_key is not None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"observation_horizon": 2}, "observation_horizon must be 1"),
        ({"hidden_sizes": (8,)}, r"no option\(s\) \['hidden_sizes'\]"),
        ({"cameras": ("side",)}, r"\['observation.images.side'\] are not dataset features"),
        ({"reconstruction_loss": "huber"}, "reconstruction_loss must be one of"),
        ({"inference_latent": "mean"}, "inference_latent must be one of"),
        ({"use_cvae": False, "inference_latent": "prior_sample"}, "needs the CVAE"),
        ({"kl_warmup_steps": -1}, "kl_warmup_steps must be an int >= 0"),
    ],
)
def test_factory_rejects_bad_options_naming_them(options, message):
    with pytest.raises(ValueError, match=message):
        act_policy(FEATURES, **options)


def test_observation_checks_name_the_missing_key_and_the_bad_window():
    batch = _batch()
    with pytest.raises(ValueError, match=r"observation lacks \['observation.environment_state'\]"):
        POLICY.predict_chunk(_variables(), {"action": batch["action"]}, None)
    two_frames = {**batch, "observation.environment_state": np.zeros((BATCH, 2, 3), np.float32)}
    with pytest.raises(ValueError, match=r"environment_state must have shape \[B, 1, \*\]"):
        POLICY.loss(_variables(), two_frames, jax.random.key(0), 0)
    with pytest.raises(ValueError, match="batch lacks 'action_is_pad'"):
        POLICY.loss(_variables(), {k: v for k, v in batch.items() if k != "action_is_pad"}, None, 0)
