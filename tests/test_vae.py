"""VAE specifics: analytic KL, beta, KL warm-up and free bits."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.harness import binary_images, tiny_model


def _loss_and_metrics(model, x, seed=(1, 2)):
    model._next_seed = lambda _=None: tf.constant(seed, tf.int64)
    losses, metrics, _ = model.surrogates(tf.constant(x))
    return losses["q"], metrics


def test_beta_scales_only_the_kl_term():
    x = binary_images(8)
    loss1, m1 = _loss_and_metrics(tiny_model("vae", beta=1.0), x)
    loss3, m3 = _loss_and_metrics(tiny_model("vae", beta=3.0), x)
    np.testing.assert_allclose(loss1, -(m1["recon"] - m1["kl"]), rtol=1e-5)
    np.testing.assert_allclose(loss3, -(m3["recon"] - 3.0 * m3["kl"]), rtol=1e-5)


def test_analytic_kl_matches_monte_carlo():
    model = tiny_model("vae")
    x = binary_images(4)
    out = model.log_weights(x, 20000, seed=[3, 4])
    mc = tf.reduce_mean(out["log_qz"] - out["log_pz"], axis=0).numpy()
    analytic = model.kl_divergence(out["posterior"]).numpy()
    se = tf.math.reduce_std(out["log_qz"] - out["log_pz"], axis=0).numpy() / np.sqrt(20000)
    assert np.all(np.abs(mc - analytic) < 4 * se + 1e-6), (mc, analytic, se)


def test_kl_warmup_rises_linearly_from_zero():
    model = tiny_model("vae", kl_warmup_steps=10, beta=2.0)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    assert float(model.kl_weight()) == 0.0
    model.fit(binary_images(40), batch_size=8, epochs=1, verbose=0)  # 5 steps
    np.testing.assert_allclose(float(model.kl_weight()), 1.0)
    model.fit(binary_images(80), batch_size=8, epochs=1, verbose=0)  # 15 steps
    np.testing.assert_allclose(float(model.kl_weight()), 2.0)


def test_free_bits_stop_the_kl_gradient_of_dimensions_below_the_threshold():
    x = tf.constant(binary_images(8))
    model = tiny_model("vae", free_bits=1e3)  # every dimension is below: no KL gradient at all
    posterior = model.posterior(x)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model.penalised_kl(model.posterior(x)))
    grads = tape.gradient(loss, model.encoder.trainable_variables)
    assert all(g is None or float(tf.reduce_max(tf.abs(g))) == 0.0 for g in grads)
    np.testing.assert_allclose(loss, 1e3 * model.latent_dim, rtol=1e-6)
    # With a zero threshold the penalised KL is the plain KL.
    plain = tiny_model("vae", free_bits=0.0)
    np.testing.assert_allclose(plain.penalised_kl(posterior), plain.kl_divergence(posterior), rtol=1e-6)


def test_negative_hyperparameters_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        tiny_model("vae", beta=-1.0)
