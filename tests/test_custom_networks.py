"""User-supplied networks and continuous data: an IWAE with a linear encoder and decoder and a
Gaussian likelihood with a learned scale is a linear-Gaussian model (probabilistic PCA), whose
log p(x) = log N(x; b, W W^T + diag(sigma^2)) is exact: IWAE-5000 and AIS must both find it."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdgm
from tfdgm import evaluation

LATENT, DIM, N = 2, 5, 512


def _data(num, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(LATENT, DIM))
    return (rng.normal(size=(num, LATENT)) @ w + 0.3 + 0.5 * rng.normal(size=(num, DIM))).astype(np.float32)


def _model():
    keras.utils.set_random_seed(1)  # the user's networks are built here, outside the model
    encoder = keras.Sequential([keras.layers.Dense(2 * LATENT)], name="linear_encoder")  # (loc, raw scale)
    decoder = keras.Sequential([keras.layers.Dense(DIM)], name="linear_decoder")
    return tfdgm.models.IWAE(input_shape=(DIM,), latent_dim=LATENT, encoder=encoder, decoder=decoder,
                             likelihood=tfdgm.distributions.GaussianLikelihood(scale="learned"), num_samples=5,
                             seed=0)


def _exact_log_px(model, x):
    kernel, bias = (w.numpy().astype(np.float64) for w in model.decoder.weights)
    sigma = model.likelihood.stddev().numpy().astype(np.float64)
    cov = kernel.T @ kernel + np.diag(np.broadcast_to(sigma, (DIM,)) ** 2)
    centred = x.astype(np.float64) - bias
    _, logdet = np.linalg.slogdet(cov)
    quadratic = np.einsum("ni,ij,nj->n", centred, np.linalg.inv(cov), centred)
    return -0.5 * (DIM * np.log(2 * np.pi) + logdet + quadratic)


@pytest.fixture(scope="module")
def trained():
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(2e-2), jit_compile=False)
    x = _data(N)
    first = model.fit(x, batch_size=64, epochs=40, verbose=0).history["loss"]
    ds = tf.data.Dataset.from_tensor_slices(x).shuffle(N, seed=0).batch(64)
    last = model.fit(ds, epochs=5, verbose=0).history["loss"]
    assert last[-1] < first[0] - 1.0  # it learned
    return model, x


def test_the_learned_scale_and_user_networks_are_trained(trained):
    model, _ = trained
    groups = model.optimizers_by_group
    assert sorted(groups) == ["p", "q"]
    assert "raw_scale" in {v.name for v in model.group_variables()["p"]}
    sigma = model.likelihood.stddev().numpy()
    assert np.all(np.abs(sigma - 0.5) < 0.25), sigma  # moved from its initial 1.0 toward the true 0.5


def _assert_matches_exact(estimate, exact, label):
    diff = estimate - exact
    stderr = diff.std(ddof=1) / np.sqrt(len(diff))
    assert abs(diff.mean()) < 3 * stderr + 2e-3, f"{label}: mean error {diff.mean():.4f} +- {stderr:.4f}"
    return diff.mean(), stderr


def test_iwae_5000_and_ais_agree_with_the_exact_log_likelihood(trained):
    model, x = trained
    x = x[:100]
    exact = _exact_log_px(model, x)
    iwae = evaluation.iwae_log_likelihoods(model, x, num_samples=5000, seed=0, verbose=False)
    _, iwae_stderr = _assert_matches_exact(iwae, exact, "IWAE-5000")
    ais = evaluation.ais_log_likelihoods(model, x, num_steps=500, num_chains=16, leapfrog_steps=5, seed=0,
                                         verbose=False)
    _, ais_stderr = _assert_matches_exact(ais.log_px, exact, "AIS")
    # The tolerances can fail: the ELBO (IWAE-1) of this well-trained linear encoder is off by
    # ~0.05 nats (measured), many of IWAE-5000's and several of AIS's standard errors.
    elbo = evaluation.iwae_log_likelihoods(model, x, num_samples=1, seed=0, verbose=False)
    assert np.mean(exact - elbo) > 3 * max(iwae_stderr, ais_stderr), (np.mean(exact - elbo), iwae_stderr, ais_stderr)
    # Both are (stochastic) lower bounds: an estimate far above the exact value would be a bug.
    assert np.mean(iwae - exact) < 0.01 and np.mean(ais.log_px - exact) < 0.01


def test_custom_networks_round_trip_safely_and_export(trained, tmp_path):
    model, x = trained
    path = str(tmp_path / "linear.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert loaded.encoder.name == "linear_encoder" and loaded.likelihood.learned
    np.testing.assert_allclose(loaded.reconstruct(x[:8]), model.reconstruct(x[:8]), atol=1e-6)
    seed = tf.constant([1, 2])
    np.testing.assert_allclose(loaded.log_likelihood_bound(x[:8], 50, seed=seed),
                               model.log_likelihood_bound(x[:8], 50, seed=seed), atol=1e-4)
    export = str(tmp_path / "linear_savedmodel")
    model.export(export, verbose=False)
    restored = tf.saved_model.load(export)
    np.testing.assert_allclose(restored.encode(x[:8]), model.encode(x[:8]), atol=1e-6)
    np.testing.assert_allclose(restored.sample(num_samples=tf.constant(4), seed=tf.constant([3, 4], tf.int32)),
                               model.sample(4, seed=tf.constant([3, 4])), atol=1e-6)


def test_binary_data_is_refused_for_a_gaussian_likelihood():
    model = _model()
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="bernoulli"):
        model.fit((_data(16) > 0).astype(np.float32), epochs=1, verbose=0)
