"""AIS training (Ding & Freedman): its special cases, Algorithm 2 / Figure 1, step sizes, optimizers.

The shared harness (test_models.py) covers fit, save/load, export and configs of `ais_vae` like
every other model; this file checks what is particular to it.
"""
import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdgm import config as cfg
from tfdgm import distributions as dists
from tfdgm import models
from tfdgm.models.ais_vae import run_chains, sample_implicit_posterior, training_betas
from tests.harness import binary_images, gradients_by_path, fixed_replica_noise, noise_table, table_gaussian_sample, tiny_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def fixed_noise(monkeypatch):
    """q's reparameterisation noise from a fixed table: two models then score the same z."""
    monkeypatch.setattr(dists, "gaussian_sample", table_gaussian_sample(noise_table()))


def _copy_networks(source, target):
    target.encoder.set_weights(source.encoder.get_weights())
    target.decoder.set_weights(source.decoder.get_weights())


# ---------------------------------------------------------------------------- special cases
def test_one_temperature_without_move_is_iwae_for_the_decoder_and_vae_for_the_encoder(fixed_noise):
    x = tf.constant(binary_images(6))
    model = tiny_model("ais_vae", num_samples=4, num_temperatures=1, final_move=False)
    assert model.num_moves == 0
    iwae = tiny_model("iwae", num_samples=4)
    vae = tiny_model("vae", num_samples=1)
    for other in (iwae, vae):
        _copy_networks(model, other)
    ours, metrics = gradients_by_path(model, x)
    theirs, iwae_metrics = gradients_by_path(iwae, x)
    elbo_grads, vae_metrics = gradients_by_path(vae, x)
    # Same z (fixed noise), w = p(x,z)/q(z|x): the AIS weight of one increment equals the IS weight
    # up to float32 rounding of log q + (log p - log q) - log q, so a relative 1e-5.
    for v in model.decoder.trainable_variables:
        np.testing.assert_allclose(ours[v.path], theirs[v.path], rtol=1e-5, atol=1e-6, err_msg=v.path)
    for v in model.encoder.trainable_variables:
        np.testing.assert_allclose(ours[v.path], elbo_grads[v.path], rtol=1e-5, atol=1e-6, err_msg=v.path)
    np.testing.assert_allclose(metrics["ais_bound"], iwae_metrics["iwae_bound"], rtol=1e-5)
    np.testing.assert_allclose(metrics["ess"], iwae_metrics["ess"], rtol=1e-4)
    np.testing.assert_allclose(metrics["elbo"], vae_metrics["elbo"], rtol=1e-6)


def test_k1_with_betas_0_1_1_1_is_hoffmans_mh_hmc(fixed_noise):
    """K=1, beta = 0, 1, 1, 1: z0 ~ q, then HMC moves that leave p(z|x) invariant, and the decoder
    follows grad log p(x, z_T) of the refined sample: the weight (one chain) carries no information."""
    x = tf.constant(binary_images(6))
    model = tiny_model("ais_vae", num_samples=1, schedule=[0.0, 1.0, 1.0, 1.0], initial_step_size=0.3)
    assert model.num_temperatures == 3 and model.num_moves == 3  # 2 at beta=1, and the final move
    state = model.seed_generator.state.numpy()
    ours, metrics = gradients_by_path(model, x)
    # Replay the same chain (same seed) to get z_T.
    model.seed_generator.state.assign(state)
    chain_seed, _ = tf.unstack(tf.random.experimental.stateless_split(model._next_seed(), 2))
    trace = run_chains(model, x, model.betas, 1, leapfrog_steps=model.leapfrog_steps, step_size=model.step_sizes,
                       seed=chain_seed)
    # Every increment after the first is log f_1 - log f_1 = 0: log w is the IS weight of z0.
    np.testing.assert_allclose(trace.log_weights, model.log_weights(x, 1)["log_w"], rtol=1e-5)
    z0 = model.log_weights(x, 1)["z"]
    assert np.abs(trace.state - z0).max() > 0.05 and np.mean(trace.accept_prob) > 0.2  # it did move
    np.testing.assert_allclose(metrics["ess"], 1.0)
    with tf.GradientTape() as tape:
        log_pz, log_px_z = model.log_prior_and_likelihood(trace.state, x)
        loss = -tf.reduce_mean(log_pz + log_px_z)
    expected = tape.gradient(loss, model.decoder.trainable_variables)
    for v, g in zip(model.decoder.trainable_variables, expected):
        np.testing.assert_allclose(ours[v.path], g, rtol=1e-5, atol=1e-6, err_msg=v.path)


def test_chains_are_not_differentiated_through():
    model = tiny_model("ais_vae", num_temperatures=3)
    x = tf.constant(binary_images(4))
    with tf.GradientTape() as tape:
        trace = run_chains(model, x, model.betas, 2, leapfrog_steps=2, step_size=0.1, seed=tf.constant([1, 2]))
        total = tf.reduce_sum(trace.state) + tf.reduce_sum(trace.log_weights)
    assert all(g is None for g in tape.gradient(total, model.trainable_variables))


def test_schedules_and_bad_settings():
    betas, moves = training_betas("linear", 4, final_move=True)
    np.testing.assert_allclose(betas, [0, 0.25, 0.5, 0.75, 1, 1])
    assert moves == 4
    assert training_betas("linear", 4, final_move=False)[1] == 3
    np.testing.assert_array_equal(training_betas("mh_hmc", 3, final_move=False)[0], [0, 1, 1, 1])
    model = tiny_model("ais_vae", schedule=[0, 0.1, 1])
    assert model.num_temperatures == 2 and model.get_config()["schedule"] == [0.0, 0.1, 1.0]
    assert model.step_sizes.shape == (2,)
    for bad in (dict(schedule=[0.5, 1.0]), dict(num_temperatures=0), dict(leapfrog_steps=0),
                dict(target_accept_prob=1.0), dict(initial_step_size=0.0)):
        with pytest.raises(ValueError):
            tiny_model("ais_vae", **bad)
    with pytest.raises(ValueError, match="method"):
        model.sample_posterior(binary_images(2), method="mcmc")


# ---------------------------------------------------------------------------- step sizes, optimizers
def test_step_sizes_move_toward_the_target_acceptance_every_step():
    model = tiny_model("ais_vae", num_temperatures=2, initial_step_size=0.1)  # 2 moves
    accept = tf.constant([[0.9, 0.9, 0.1, 0.1], [0.2, 0.3, 0.4, 0.5]])  # [M, B]: means 0.5, 0.35
    model._adapt_step_sizes(tf.constant([[0.9, 0.9, 0.9, 0.1], [0.2, 0.3, 0.4, 0.5]]))  # 0.7 > 0.65
    np.testing.assert_allclose(model.step_sizes.numpy(), [0.1 * 1.02, 0.1 / 1.02], rtol=1e-6)
    model._adapt_step_sizes(accept)
    np.testing.assert_allclose(model.step_sizes.numpy(), [0.1, 0.1 / 1.02**2], rtol=1e-6)
    # In training: one factor per optimizer step and move, so log(step/initial)/log(1.02) is an
    # integer of the parity of the number of steps; a too-small start grows (acceptance ~1).
    model = tiny_model("ais_vae", initial_step_size=0.01)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    model.fit(binary_images(40), batch_size=8, epochs=1, verbose=0)
    exponents = np.log(model.step_sizes.numpy() / 0.01) / np.log(1.02)
    np.testing.assert_allclose(exponents, np.round(exponents), atol=1e-3)
    assert np.all(np.round(exponents) % 2 == 1) and np.all(exponents > 0)


def test_decoder_and_encoder_have_their_own_optimizers(tmp_path):
    x = binary_images(16)
    model = tiny_model("ais_vae")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), inference_optimizer=keras.optimizers.SGD(0.0),
                  jit_compile=False)
    encoder, decoder = model.encoder.get_weights(), model.decoder.get_weights()
    model.fit(x, batch_size=8, epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(encoder, model.encoder.get_weights()))
    assert not any(np.array_equal(a, b) for a, b in zip(decoder, model.decoder.get_weights()))
    assert int(model.optimizer.iterations) == int(model.inference_optimizer.iterations) == 2

    # By default the encoder's optimizer is a separate copy of the decoder's; both come back
    # from a .keras file with their state, as do the adapted step sizes.
    model = tiny_model("ais_vae")
    model.compile(optimizer=keras.optimizers.Adam(3e-3, epsilon=1e-4), jit_compile=False)
    assert model.inference_optimizer is not model.optimizer
    assert isinstance(model.inference_optimizer, keras.optimizers.Adam)
    assert float(model.inference_optimizer.learning_rate) == pytest.approx(3e-3)
    model.fit(x, batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert int(loaded.inference_optimizer.iterations) == 2
    for a, b in zip(loaded.inference_optimizer.variables, model.inference_optimizer.variables):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.step_sizes, model.step_sizes)
    assert not np.allclose(loaded.step_sizes, 0.05)


def _mirrored_check():
    """Run in a fresh process by `test_mirrored_training` (see there)."""
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfdgm import distribute
    from tests.test_distribute import ATOL, RTOL, _train

    mirrored = distribute.make_strategy("mirrored")
    assert mirrored.num_replicas_in_sync == 2
    dists.gaussian_sample = fixed_replica_noise()
    no_moves = dict(num_temperatures=1, final_move=False)
    single, single_history = _train("ais_vae", **no_moves)
    replicated, replicated_history = _train("ais_vae", mirrored, **no_moves)
    for a, b in zip(single.get_weights(), replicated.get_weights()):
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL)
    for key in single_history:
        np.testing.assert_allclose(replicated_history[key], single_history[key], rtol=RTOL, atol=ATOL, err_msg=key)
    replicated, history = _train("ais_vae", mirrored, epochs=1)
    per_replica = [v.numpy() for v in mirrored.experimental_local_results(replicated.step_sizes.value)]
    np.testing.assert_array_equal(per_replica[0], per_replica[1])
    assert not np.allclose(per_replica[0], 0.05) and np.all(np.isfinite(history["loss"]))
    print("MIRRORED OK")


def test_mirrored_training():
    """Without HMC moves (whose momenta each replica draws itself), 2 replicas train exactly like one
    device: both optimizers and the metrics see the global batch. With moves, the step sizes stay
    the same on every replica (they adapt to the all-reduced acceptance).

    In a fresh process: a second MirroredStrategy in the pytest process (test_distribute.py makes
    one) reuses its collective instance keys, and TF 2.21 then aborts every later collective with
    a shape mismatch."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", "from tests.test_ais_vae import _mirrored_check; _mirrored_check()"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "MIRRORED OK" in result.stdout, result.stderr[-3000:]


# ---------------------------------------------------------------------------- Algorithm 2, Figure 1
class CorrelatedGaussianTarget:
    """Figure 1's toy problem: p(z|x) = N(0, [[1, rho], [rho, 1]]) for every x, and q(z|x) its
    KL(q||p)-optimal factorised Gaussian, whose precisions are the diagonal of p's precision:
    variance 1 - rho^2 per coordinate. Provides what `sample_implicit_posterior` needs of a model."""

    latent_dim = 2

    def __init__(self, rho=0.9):
        self.cov = np.array([[1.0, rho], [rho, 1.0]])
        self.precision = np.linalg.inv(self.cov)
        self.q_scale = (1.0 / np.sqrt(np.diag(self.precision))).astype(np.float32)
        self._log_norm = -np.log(2 * np.pi) - 0.5 * np.log(np.linalg.det(self.cov))

    def encoder(self, x):
        loc = tf.zeros([tf.shape(x)[0], 2])
        return loc, loc + self.q_scale

    def posterior(self, x):
        return dists.diagonal_gaussian(*self.encoder(x))

    def log_prior_and_likelihood(self, z, x):
        log_p = -0.5 * tf.einsum("...i,ij,...j->...", z, tf.constant(self.precision, tf.float32), z) + self._log_norm
        return log_p, tf.zeros_like(log_p)


def gaussian_fit_kl(z, cov):
    """KL(N(mean(z), cov(z)) || N(0, cov)): how far a sample's first two moments are from p's."""
    mean, fitted = z.mean(axis=0), np.cov(z.T)
    inv = np.linalg.inv(cov)
    d = len(cov)
    return 0.5 * (np.trace(inv @ fitted) + mean @ inv @ mean - d + np.log(np.linalg.det(cov) / np.linalg.det(fitted)))


def bootstrap_stderr(z, cov, num=200, seed=0):
    rng = np.random.default_rng(seed)
    return float(np.std([gaussian_fit_kl(z[rng.integers(0, len(z), len(z))], cov) for _ in range(num)]))


def test_figure1_q_ais_is_closer_to_the_target_than_q_is_at_equal_cost():
    target = CorrelatedGaussianTarget(rho=0.9)
    x = tf.zeros([2000, 1])  # 2000 independent draws of each implicit distribution
    L, K, T = 5, 4, 5
    z_ais = sample_implicit_posterior(target, x, "ais", num_samples=K, num_temperatures=T, leapfrog_steps=L,
                                      step_size=0.2, seed=1).numpy()
    z_is = sample_implicit_posterior(target, x, "is", num_samples=L * K * T, seed=2).numpy()
    z_q = sample_implicit_posterior(target, x, "is", num_samples=1, seed=3).numpy()  # K=1: q itself
    kl = {name: gaussian_fit_kl(z, target.cov) for name, z in (("ais", z_ais), ("is", z_is), ("q", z_q))}
    se = {name: bootstrap_stderr(z, target.cov) for name, z in (("ais", z_ais), ("is", z_is), ("q", z_q))}
    # Measured (seeded): q 0.8, q_IS 0.20 +- 0.007, q_AIS 0.02 +- 0.004. Require a gap of 4
    # standard errors of the difference, and q_IS itself better than q.
    assert kl["is"] - kl["ais"] > 4 * np.hypot(se["is"], se["ais"]), (kl, se)
    assert kl["q"] - kl["is"] > 4 * np.hypot(se["q"], se["is"]), (kl, se)
    assert np.corrcoef(z_ais.T)[0, 1] > np.corrcoef(z_is.T)[0, 1] > np.corrcoef(z_q.T)[0, 1]


def test_sample_posterior_of_a_model():
    model = tiny_model("ais_vae", num_samples=3)
    x = binary_images(5)
    for method in ("is", "ais"):
        z = model.sample_posterior(x, method=method, seed=tf.constant([4, 5]))
        assert z.shape == (5, 3) and np.all(np.isfinite(z))
        np.testing.assert_array_equal(z, model.sample_posterior(x, method=method, seed=tf.constant([4, 5])))
    # q_AIS's draws are among its chains' end points; other settings override the model's.
    z = model.sample_posterior(x, method="ais", num_samples=2, num_temperatures=3, leapfrog_steps=1, step_size=0.2)
    assert z.shape == (5, 3)


# ---------------------------------------------------------------------------- configs
@pytest.mark.parametrize("t", [5, 11])
@pytest.mark.parametrize("k", [1, 5, 50])
def test_config_files(t, k):
    path = os.path.join(ROOT, "configs", f"ais_t{t}_k{k}_mlp_fashion_mnist.py")
    spec = importlib.util.spec_from_file_location("config_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = cfg.validate(module.get_config())
    assert config.model.name == "ais_vae" and config.data.name == "fashion_mnist"
    model = cfg.build_model(config, input_shape=(28, 28, 1))
    assert isinstance(model, models.AISVAE)
    assert (model.num_samples, model.num_temperatures, model.leapfrog_steps, model.schedule) == (k, t, 5, "linear")
