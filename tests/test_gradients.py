"""Gradient estimators: DReG versus IWAE on the same model and seeds (Tucker et al. 2019)."""
import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfdgm import estimators
from tests.harness import binary_images, gradients_by_path, tiny_model

K = 50
NUM_SEEDS = 200


def _grads(model, x, seed):
    """(decoder grads, encoder grads) of the model's own train-step gradient, flattened."""
    model._next_seed = lambda _=None: tf.cast(seed, tf.int64)  # pin the sample draw
    by_path, _ = gradients_by_path(model, x)
    flat = lambda vs: tf.concat([tf.reshape(by_path[v.path], [-1]) for v in vs], 0)
    return flat(model.decoder.trainable_variables), flat(model.encoder.trainable_variables)


def _trained_weights():
    """DReG's advantage is for a q near the posterior (Tucker et al. measure it during
    training); at random initialisation the score-function term is not the dominant noise."""
    model = tiny_model("iwae", num_samples=K)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(binary_images(64), batch_size=16, epochs=75, verbose=0)
    return [v.numpy() for v in model.trainable_variables]


def _gradient_samples(estimator, weights):
    model = tiny_model("iwae", num_samples=K, gradient_estimator=estimator)
    for variable, value in zip(model.trainable_variables, weights):
        variable.assign(value)
    x = tf.constant(binary_images(4))
    fn = tf.function(lambda seed: _grads(model, x, seed))
    dec, enc = zip(*[fn(tf.constant([s, 1], tf.int64)) for s in range(NUM_SEEDS)])
    return np.stack(dec), np.stack(enc)


def test_dreg_matches_iwae_on_the_decoder_and_reduces_encoder_variance():
    weights = _trained_weights()
    iwae_dec, iwae_enc = _gradient_samples("iwae", weights)
    dreg_dec, dreg_enc = _gradient_samples("dreg", weights)
    # Decoder: the same estimator, so the same numbers for the same seed.
    np.testing.assert_allclose(dreg_dec, iwae_dec, rtol=1e-4, atol=1e-6)
    # Encoder: both unbiased for the IWAE gradient. Paired over seeds, the mean difference of
    # every component is within 4 of its standard errors (no false alarm expected among ~1e3).
    diff = dreg_enc - iwae_enc
    stderr = diff.std(axis=0, ddof=1) / np.sqrt(NUM_SEEDS)
    z = np.abs(diff.mean(axis=0)) / np.maximum(stderr, 1e-12)
    assert np.max(z) < 4.5, f"encoder gradient means differ: max z = {np.max(z):.2f}"
    # Jointly: the components share the seeds, so they are correlated and the share of |z| > 2
    # has no fixed null rate; Hotelling's T^2 of the mean difference along 10 fixed random
    # directions has one, F(10, NUM_SEEDS - 10) after scaling. False-alarm rate 1e-4.
    directions = np.random.default_rng(0).normal(size=(diff.shape[1], 10))
    projected = diff @ directions
    mean, cov = projected.mean(axis=0), np.cov(projected, rowvar=False)
    t2 = NUM_SEEDS * mean @ np.linalg.solve(cov, mean)
    p, n = projected.shape[1], NUM_SEEDS
    # T^2 (n - p) / (p (n - 1)) ~ F(p, n - p), whose quantile is x / (1 - x) (n - p) / p for x the
    # Beta(p / 2, (n - p) / 2) quantile; so the T^2 limit is x / (1 - x) (n - 1).
    x = float(tfp.math.betaincinv(p / 2.0, (n - p) / 2.0, 1.0 - 1e-4))
    t2_limit = x / (1.0 - x) * (n - 1)
    assert t2 < t2_limit, (t2, t2_limit)
    # ... and DReG's variance is lower, in total and for most components.
    var_iwae, var_dreg = iwae_enc.var(axis=0), dreg_enc.var(axis=0)
    assert var_dreg.sum() < 0.75 * var_iwae.sum(), (var_dreg.sum(), var_iwae.sum())
    assert np.mean(var_dreg < var_iwae) > 0.7


def test_one_pass_dreg_equals_the_textbook_surrogate():
    """The model's single-decoder-pass DReG equals differentiating dreg_surrogate directly."""
    model = tiny_model("iwae", num_samples=7, gradient_estimator="dreg")
    x = tf.constant(binary_images(4))
    seed = tf.constant([5, 6], tf.int64)
    _, fast = _grads(model, x, seed)
    with tf.GradientTape() as tape:
        out = model.log_weights(x, 7, seed=seed, stop_q_params=True)
        loss = tf.nn.compute_average_loss(estimators.dreg_surrogate(out["log_w"]))
    slow = tape.gradient(loss, model.encoder.trainable_variables)
    slow = tf.concat([tf.reshape(g, [-1]) for g in slow], 0)
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-6)


def test_iwae_with_one_sample_reports_the_elbo():
    model = tiny_model("iwae", num_samples=1)
    x = binary_images(8)
    out = model.log_weights(x, 1, seed=[1, 2])
    loss, metrics = model.metrics_from(out)
    np.testing.assert_allclose(metrics["iwae_bound"], out["log_w"][0], rtol=1e-6)
    np.testing.assert_allclose(metrics["iwae_bound"], estimators.elbo(out["log_w"]), rtol=1e-6)
