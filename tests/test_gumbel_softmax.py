"""GumbelSoftmaxVAE and the relaxed latents it trains with (tfdgm.distributions.relaxed).

Sampling is checked against its distribution (chi-square, with a fixed seed), the reported ELBO
and bound against exact enumeration of a tiny model's latents, the temperature schedule against
its formula across save, load and resume.
"""
import itertools
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.harness import binary_images, tiny_model
from tfdgm.distributions import relaxed
from tfdgm.models.gumbel_softmax import GumbelSoftmaxVAE, expected_temperature


def chi_square_critical_value(df, z=3.0902):
    """The (1 - 0.001) quantile of chi-square(df) by Wilson-Hilferty (z: the normal 0.999 quantile)."""
    return df * (1.0 - 2.0 / (9.0 * df) + z * math.sqrt(2.0 / (9.0 * df))) ** 3


def _eps(shape, seed=0):
    return tf.random.stateless_normal(shape, seed=[seed, 17])


def test_gumbel_max_samples_follow_softmax():
    logits = tf.constant([-2.0, 0.0, 1.0, 3.0, 0.5])
    n = 40000
    hard = relaxed.relax("categorical", tf.broadcast_to(logits, [n, 5]), _eps([n, 5]), 1.0)["hard"].numpy()
    assert np.all(hard.sum(-1) == 1) and set(np.unique(hard)) == {0.0, 1.0}
    counts = hard.sum(0)

    def chi2(probs):
        expected = n * probs
        return float(np.sum((counts - expected) ** 2 / expected))

    critical = chi_square_critical_value(4)
    assert chi2(tf.nn.softmax(logits).numpy()) < critical
    # The test has power: the same draws reject a slightly different distribution.
    assert chi2(tf.nn.softmax(logits + [0.0, 0.0, 0.1, 0.0, 0.0]).numpy()) > critical


def test_hard_bernoulli_units_follow_sigmoid():
    logits = tf.constant([-3.0, -0.5, 0.0, 2.0])
    n = 40000
    hard = relaxed.relax("bernoulli", tf.broadcast_to(logits, [n, 4]), _eps([n, 4]), 1.0)["hard"].numpy()
    p = tf.sigmoid(logits).numpy()
    z = (hard.mean(0) - p) / np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(z) < 4.0), z


@pytest.mark.parametrize("latent", ["categorical", "bernoulli"])
def test_relaxed_samples_approach_the_hard_sample_as_temperature_falls(latent):
    shape = [5000, 6] if latent == "categorical" else [5000]
    logits = tf.random.stateless_normal(shape, seed=[1, 2])
    eps = _eps(shape)
    gaps = []
    for tau in (2.0, 1.0, 0.5, 0.1, 0.01):
        draw = relaxed.relax(latent, logits, eps, tau)
        gaps.append(float(tf.reduce_mean(tf.abs(draw["relaxed"] - draw["hard"]))))
        if latent == "categorical":  # the relaxed sample's mode is the Gumbel-max sample
            np.testing.assert_array_equal(tf.argmax(draw["relaxed"], -1), tf.argmax(draw["hard"], -1))
    assert all(a > b for a, b in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] < 0.01 and gaps[0] > 0.1, gaps


@pytest.mark.parametrize("latent", ["categorical", "bernoulli"])
def test_relaxed_log_densities_are_finite_for_extreme_logits_at_small_temperature(latent):
    values = tf.constant([-80.0, -20.0, -1.0, 0.0, 1.0, 20.0, 80.0])
    logits = tf.stack([values, -values, tf.zeros(7)], axis=-1) if latent == "categorical" else values
    eps = _eps([1000] + logits.shape.as_list())
    with tf.GradientTape() as tape:
        tape.watch(logits)
        draw = relaxed.relax(latent, logits, eps, 0.1)
        log_q = relaxed.relaxed_log_prob(latent, logits, draw["free"], 0.1)
        log_p = relaxed.relaxed_log_prob(latent, tf.zeros_like(logits), draw["free"], 0.1)
        total = tf.reduce_sum(log_q - log_p) + tf.reduce_sum(draw["relaxed"] * tf.random.stateless_normal(
            draw["relaxed"].shape, seed=[3, 4]))
    grad = tape.gradient(total, logits)
    for t in (log_q, log_p, draw["relaxed"], grad):
        assert np.all(np.isfinite(t.numpy()))


@pytest.mark.parametrize("latent", ["categorical", "bernoulli"])
def test_relaxed_log_ratio_equals_tfps_concrete_densities_where_those_are_finite(latent):
    # The KL term uses densities of the unconstrained variable; the change of variables to y is
    # common to q and p, so log q(y) - log p(y) must equal TFP's on y itself (moderate tau, logits).
    tfd = relaxed.tfd
    tau = 0.7
    logits = tf.random.stateless_normal([500, 4] if latent == "categorical" else [500], seed=[9, 9])
    prior_logits = tf.zeros_like(logits)
    draw = relaxed.relax(latent, logits, _eps(logits.shape), tau)
    ours = (relaxed.relaxed_log_prob(latent, logits, draw["free"], tau)
            - relaxed.relaxed_log_prob(latent, prior_logits, draw["free"], tau))
    concrete = tfd.RelaxedOneHotCategorical if latent == "categorical" else tfd.RelaxedBernoulli
    theirs = (concrete(tau, logits=logits).log_prob(draw["relaxed"])
              - concrete(tau, logits=prior_logits).log_prob(draw["relaxed"]))
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize("kwargs", [{}, {"kl": "relaxed"}, {"latent": "bernoulli", "kl": "relaxed"},
                                    {"latent": "bernoulli", "straight_through": True}], ids=str)
def test_training_loss_and_gradients_are_finite_with_saturated_encoder_at_temperature_0_1(kwargs):
    model = tiny_model("gumbel_softmax", temperature=0.1, min_temperature=0.1, **kwargs)
    bias = model.encoder.logits.bias
    bias.assign(np.where(np.arange(bias.shape[0]) % 2, 60.0, -60.0).astype("float32"))
    model.encoder.logits.kernel.assign(model.encoder.logits.kernel * 100.0)
    grads, metrics, _ = model.compute_gradients(binary_images(8))
    for name, value in metrics.items():
        assert np.all(np.isfinite(value.numpy())), name
    for group, gs in grads.items():
        for g in gs:
            assert g is None or np.all(np.isfinite(g.numpy())), group
    assert np.all(np.isfinite(model.log_likelihood_bound(binary_images(8), 5).numpy()))


def test_temperature_follows_the_schedule_across_save_load_and_resume(tmp_path):
    schedule = dict(temperature=1.0, min_temperature=0.5, anneal_rate=0.05, anneal_every=3)
    model = tiny_model("gumbel_softmax", **schedule)
    x = binary_images(64)  # 8 steps per epoch at batch 8
    model.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=1)
    history = model.fit(x, batch_size=8, epochs=1, verbose=0, shuffle=False).history
    # The epoch's metric is the mean of the temperatures used at steps 0..7.
    np.testing.assert_allclose(history["temperature"][0],
                               np.mean([expected_temperature(t, **schedule) for t in range(8)]), rtol=1e-6)
    assert float(model.temperature()) == pytest.approx(expected_temperature(8, **schedule), rel=1e-6)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert float(loaded.temperature()) == pytest.approx(expected_temperature(8, **schedule), rel=1e-6)
    history = loaded.fit(x, batch_size=8, epochs=1, verbose=0, shuffle=False).history
    np.testing.assert_allclose(history["temperature"][0],
                               np.mean([expected_temperature(t, **schedule) for t in range(8, 16)]), rtol=1e-6)
    loaded.step_counter.assign(10_000)
    assert float(loaded.temperature()) == 0.5  # the floor tau_min


def test_straight_through_forward_is_exactly_one_hot_and_has_gradients():
    model = tiny_model("gumbel_softmax", straight_through=True, num_classes=4)
    x = binary_images(8)
    weights = tf.random.stateless_normal([3, 8, 3, 4], seed=[5, 6])
    with tf.GradientTape() as tape:
        draws = model.sample_latents(x, 3)
        value = tf.reduce_sum(draws["decoder_input"] * weights)
    z = draws["decoder_input"].numpy()
    np.testing.assert_array_equal(z, draws["hard"].numpy())
    assert set(np.unique(z)) == {0.0, 1.0} and np.all(z.sum(-1) == 1.0)
    grads = tape.gradient(value, model.encoder.trainable_variables)
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)
    # The training gradient reaches the encoder.
    q_grads = model.compute_gradients(x)[0]["q"]
    assert max(float(tf.reduce_max(tf.abs(g))) for g in q_grads) > 0
    # Without straight-through the decoder sees the relaxed, not one-hot, sample.
    soft = tiny_model("gumbel_softmax", num_classes=4).sample_latents(x, 3)["decoder_input"].numpy()
    assert not set(np.unique(soft)) <= {0.0, 1.0}


def _enumerated(model, x):
    """Exact (ELBO, log p(x), recon, KL) [B] of a model with few categorical latents, by enumeration."""
    v, c = model.num_variables, model.num_classes
    codes = np.array([np.eye(c)[list(idx)].reshape(-1) for idx in itertools.product(range(c), repeat=v)],
                     np.float32)  # [C^V, V*C]
    z = tf.broadcast_to(codes[:, None, :], [len(codes), len(x), v * c])
    log_pz, log_px_z = model.log_prior_and_likelihood(z, x)
    log_q = model.posterior(x).log_prob(model._unflatten(z))
    q = np.exp(log_q.numpy().astype(np.float64))
    log_joint = (log_pz + log_px_z).numpy().astype(np.float64)
    elbo = np.sum(q * (log_joint - log_q.numpy()), axis=0)
    recon = np.sum(q * log_px_z.numpy(), axis=0)
    kl = np.sum(q * (log_q.numpy() - log_pz.numpy()), axis=0)
    log_px = np.log(np.sum(np.exp(log_joint - log_joint.max(0)), axis=0)) + log_joint.max(0)
    return elbo, log_px, recon, kl


def test_reported_discrete_elbo_and_bound_match_exact_enumeration():
    num_samples = 4000
    model = tiny_model("gumbel_softmax", latent_dim=2, num_classes=3, num_samples=num_samples)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(binary_images(64), batch_size=16, epochs=3, verbose=0)  # away from the uniform init
    x = binary_images(6, seed=3)
    elbo, log_px, recon, kl = _enumerated(model, x)
    _, metrics, _ = model.surrogates(tf.constant(x), training=False)
    np.testing.assert_allclose(metrics["kl"], kl, rtol=1e-4, atol=1e-5)  # analytic
    # Monte Carlo recon over num_samples hard draws: within 4 standard errors of the exact value.
    out = model.log_weights(x, num_samples, seed=tf.constant([1, 2]))
    se_recon = out["log_px_z"].numpy().std(0) / np.sqrt(num_samples)
    assert np.all(np.abs(metrics["recon"].numpy() - recon) < 4 * se_recon + 1e-4), (metrics["recon"], recon)
    se_elbo = out["log_w"].numpy().std(0) / np.sqrt(num_samples)
    assert np.all(np.abs(out["log_w"].numpy().mean(0) - elbo) < 4 * se_elbo + 1e-4)
    np.testing.assert_allclose(metrics["elbo"], metrics["recon"] - metrics["kl"], rtol=1e-6)
    # The IWAE-K bound is log of a mean of K weights whose expectation is p(x): within 4 standard
    # errors (delta method: std(w) / (mean(w) sqrt(K))) of the exact log p(x) at K = 4000.
    seed = tf.constant([3, 4])
    bound = model.log_likelihood_bound(x, num_samples, seed=seed).numpy()
    w = np.exp(model.log_weights(x, num_samples, seed=seed)["log_w"].numpy().astype(np.float64) - log_px)
    se_bound = w.std(0) / (w.mean(0) * np.sqrt(num_samples))
    assert np.all(np.abs(bound - log_px) < 4 * se_bound + 1e-4), (bound, log_px, se_bound)
    assert np.all(log_px > elbo)


def test_training_improves_the_held_out_bound():
    data = binary_images(160)
    train, held_out = data[:128], data[128:]
    model = tiny_model("gumbel_softmax")
    seed = tf.constant([7, 8])
    before = model.log_likelihood_bound(held_out, 20, seed=seed).numpy()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(train, batch_size=16, epochs=8, verbose=0)
    after = model.log_likelihood_bound(held_out, 20, seed=seed).numpy()
    gain = after - before
    assert gain.mean() > 4 * gain.std() / np.sqrt(len(gain)) and gain.mean() > 1.0, gain.mean()


def test_bad_arguments_are_refused_clearly():
    for kwargs, match in [({"latent": "gaussian"}, "latent"), ({"kl": "analytic"}, "kl"), ({"prior": "normal"}, "prior"),
                          ({"temperature": 0.0}, "temperature"), ({"num_classes": 1}, "num_classes"),
                          ({"anneal_every": 0}, "anneal_every")]:
        with pytest.raises(ValueError, match=match):
            tiny_model("gumbel_softmax", **kwargs)


def test_config_reports_the_number_of_variables_not_the_code_width():
    model = GumbelSoftmaxVAE(input_shape=(8, 8, 1), latent_dim=4, num_classes=5, hidden_units=(8,))
    assert model.code_size == 20 and model.latent_dim == 4 and model.get_config()["latent_dim"] == 4
    assert model.encode(binary_images(2)).shape == (2, 20)
    np.testing.assert_allclose(model.encode(binary_images(2)).numpy().reshape(2, 4, 5).sum(-1), 1.0, rtol=1e-5)
