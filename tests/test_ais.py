"""AIS and BDMC against exact answers: a linear-Gaussian model and a 1-D latent model by quadrature."""
import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfdgm import evaluation, mcmc
from tfdgm.evaluation.ais import result_from_traces
from tfdgm.mcmc import annealed_log_prob_fn, initial_state
from tests.harness import binary_images, tiny_model
from tests.test_evaluation import _exact_log_px

tfd = tfp.distributions


class LinearGaussianModel:
    """p(z) = N(0, I_d), p(x|z) = N(W z + b, s^2 I_n), with log p(x) = log N(x; b, W W^T + s^2 I).

    Implements the protocol AIS and BDMC need from a tfdgm model (example_shape, prior,
    posterior, log_prior_and_likelihood, sample_joint). q(z|x) is the exact posterior's mean
    with an inflated diagonal scale, so AIS from it still has work to do.
    """

    def __init__(self, n=8, d=3, noise=0.6, inflate=1.5, seed=0):
        rng = np.random.default_rng(seed)
        self.w = rng.normal(size=(n, d)).astype(np.float32)
        self.b = rng.normal(size=n).astype(np.float32)
        self.noise, self.inflate = noise, inflate
        self.latent_dim, self.example_shape = d, (n,)
        self.marginal = tfd.MultivariateNormalFullCovariance(self.b, self.w @ self.w.T + noise**2 * np.eye(n, dtype=np.float32))
        self.post_cov = np.linalg.inv(np.eye(d) + self.w.T @ self.w / noise**2).astype(np.float32)

    def exact_log_px(self, x):
        return self.marginal.log_prob(x).numpy().astype(np.float64)

    def encoder(self, x):
        loc = tf.linalg.matvec(self.post_cov @ self.w.T / self.noise**2, x - self.b)
        scale = self.inflate * tf.sqrt(tf.linalg.diag_part(self.post_cov)) * tf.ones_like(loc)
        return loc, scale

    def prior(self):
        return tfd.Independent(tfd.Normal(tf.zeros(self.latent_dim), 1.0), 1)

    def posterior(self, x):
        loc, scale = self.encoder(x)
        return tfd.Independent(tfd.Normal(loc, scale), 1)

    def log_prior_and_likelihood(self, z, x):
        log_pz = tfd.Independent(tfd.Normal(tf.zeros(self.latent_dim), 1.0), 1).log_prob(z)
        mean = tf.linalg.matvec(self.w, z) + self.b
        return log_pz, tfd.Independent(tfd.Normal(mean, self.noise), 1).log_prob(x)

    def sample_joint(self, num, seed):
        z = tf.random.stateless_normal([num, self.latent_dim], seed=seed)
        x = tf.linalg.matvec(self.w, z) + self.b + self.noise * tf.random.stateless_normal(
            [num, len(self.b)], seed=tf.reverse(seed, [0]))
        return z, x


def _mean_se(values):
    return values.mean(), values.std(ddof=1) / math.sqrt(len(values))


@pytest.fixture(scope="module")
def linear_gaussian():
    model = LinearGaussianModel()
    _, x = model.sample_joint(60, seed=tf.constant([5, 6]))
    return model, x.numpy()


@pytest.mark.parametrize("start", ["prior", "encoder"])
def test_ais_is_within_three_standard_errors_of_the_exact_log_likelihood(linear_gaussian, start):
    model, x = linear_gaussian
    result = evaluation.ais_log_likelihoods(model, x, num_steps=1000, num_chains=16, leapfrog_steps=10,
                                            start=start, seed=1, verbose=False)
    gap, se = _mean_se(model.exact_log_px(x) - result.log_px)
    # AIS is a stochastic lower bound: its bias at this budget, measured over 3x180 examples, is
    # 0.003-0.01 nats (smaller than the standard error from the prior, comparable from the encoder,
    # whose chains barely disagree), hence the 0.01 allowance above, none below.
    assert -3 * se < gap < 3 * se + 0.01, f"AIS from {start}: mean error {gap:.4f}, standard error {se:.4f}"
    assert 0.55 < result.accept_prob.mean() < 0.8, result.accept_prob.mean()
    assert result.log_px_stderr.shape == (60,) and np.all(np.isfinite(result.log_px_stderr))
    assert result.summary()["num_chains"] == 16


def test_bdmc_sandwiches_the_exact_log_likelihood_and_its_gap_shrinks_with_steps():
    model = LinearGaussianModel(d=4, noise=0.6, seed=2)
    gaps = []
    for steps in (10, 100, 1000):
        result = evaluation.bdmc(model, 40, num_steps=steps, num_chains=4, leapfrog_steps=5, seed=3, verbose=False)
        exact = model.exact_log_px(result.data)
        below, below_se = _mean_se(exact - result.lower.log_px)
        above, above_se = _mean_se(result.upper.log_px - exact)
        assert below > -3 * below_se and above > -3 * above_se, (steps, below, below_se, above, above_se)
        gaps.append(result.gap)
    assert gaps[0] > gaps[1] > gaps[2] > 0 and gaps[2] < 0.2, gaps
    summary = result.summary()
    assert summary["lower"] <= summary["upper"] and summary["gap"] == pytest.approx(gaps[2])


def test_ais_with_a_single_step_from_the_encoder_is_the_iwae_estimate():
    model = tiny_model("iwae")
    x = tf.constant(binary_images(6))
    seed = tf.constant([4, 2], tf.int64)
    z = initial_state(model, x, "encoder", 7, seed)
    trace = mcmc.ais(annealed_log_prob_fn(model, x, "encoder"), z, [0.0, 1.0], seed=[0, 0])
    np.testing.assert_allclose(trace.log_weights, model.log_weights(x, 7, seed=seed)["log_w"], rtol=1e-5, atol=1e-4)
    assert trace.accept_prob.shape == (0, 6)


def test_ais_matches_quadrature_on_a_one_dimensional_latent_model():
    model = tiny_model("vae", latent_dim=1)
    x = binary_images(30, seed=4)
    result = evaluation.ais_log_likelihoods(model, x, num_steps=100, num_chains=8, leapfrog_steps=5, seed=0,
                                            verbose=False)
    gap, se = _mean_se(_exact_log_px(model, x) - result.log_px)
    assert abs(gap) < 3 * se + 1e-3, (gap, se)
    mean, stderr = evaluation.ais_nll(model, tf.data.Dataset.from_tensor_slices(x).batch(7), num_steps=100,
                                      num_chains=8, leapfrog_steps=5, verbose=False)
    assert abs(mean + result.log_px.mean()) < 3 * stderr


def test_same_seed_same_estimate_and_graph_agrees_with_xla(linear_gaussian):
    model, x = linear_gaussian
    kwargs = dict(num_steps=50, num_chains=4, leapfrog_steps=3, verbose=False)
    first = evaluation.ais_log_likelihoods(model, x, seed=7, **kwargs)
    again = evaluation.ais_log_likelihoods(model, x, seed=7, **kwargs)
    other = evaluation.ais_log_likelihoods(model, x, seed=8, **kwargs)
    np.testing.assert_array_equal(first.log_px, again.log_px)
    assert not np.allclose(first.log_px, other.log_px)
    xla = evaluation.ais_log_likelihoods(model, x, seed=7, jit_compile=True, **kwargs)
    # XLA draws other random numbers for the same seed, so compare as independent estimates.
    diff, se = _mean_se(first.log_px - xla.log_px)
    assert abs(diff) < 3 * se + 1e-3, (diff, se)


def test_nan_proposals_are_rejected_and_a_collapsing_step_size_is_reported(capsys):
    model = LinearGaussianModel()
    x = tf.constant(model.sample_joint(5, seed=tf.constant([1, 1]))[1])
    annealed = annealed_log_prob_fn(model, x, "prior")

    def nan_outside_the_unit_ball(z, beta):
        # Any proposal leaving |z| < 1.5 scores NaN: HMC must reject it and keep a finite chain.
        value = annealed(z, beta)
        return tf.where(tf.norm(z, axis=-1) < 1.5, value, tf.fill(tf.shape(value), np.nan))

    z0 = 0.1 * tf.random.stateless_normal([4, 5, 3], seed=[0, 1])
    pilot = 0.1 * tf.random.stateless_normal([2, 5, 3], seed=[0, 2])
    run_ais = tf.function(mcmc.ais)  # eager would step the 400-move loop in Python
    trace = run_ais(nan_outside_the_unit_ball, z0, mcmc.annealing_schedule("linear", 30), seed=[1, 2],
                     step_size=2.0, num_leapfrog_steps=5, pilot_state=pilot)
    assert np.all(np.isfinite(trace.log_weights)) and np.all(np.isfinite(trace.state))
    assert np.all(tf.norm(trace.state, axis=-1) < 1.5)
    assert trace.accept_prob.numpy().min() < 0.5

    def nowhere_but_the_start(z, beta):
        # Every move is divergent: acceptance 0 drives the step size down to its floor.
        value = annealed(z, beta)
        start = tf.concat([pilot, z0], axis=0)  # ais runs the pilot chains first, in the same call
        return tf.where(tf.reduce_all(z == start, axis=-1), value, tf.fill(tf.shape(value), np.nan))

    trace = run_ais(nowhere_but_the_start, z0, mcmc.annealing_schedule("linear", 400), seed=[1, 2],
                     step_size=1e-3, min_step_size=1e-4, pilot_state=pilot)
    result = result_from_traces([trace.log_weights], [trace.accept_prob], [trace.step_size], min_step_size=1e-4)
    assert result.collapsed == 5 and result.summary()["collapsed_step_sizes"] == 5
    evaluation.ais._warn_if_collapsed(result)
    assert "collapsed" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["linear", "geometric", "sigmoidal"])
def test_schedules_run_monotonically_from_zero_to_one(name):
    betas = mcmc.annealing_schedule(name, 37)
    assert len(betas) == 38 and betas[0] == 0.0 and betas[-1] == 1.0 and np.all(np.diff(betas) >= 0)


def test_bad_schedules_and_settings_are_refused():
    with pytest.raises(ValueError, match="start at beta=0"):
        mcmc.annealing_schedule([0.1, 0.5, 1.0])
    with pytest.raises(ValueError, match="non-decreasing"):
        mcmc.annealing_schedule([0.0, 0.6, 0.5, 1.0])
    with pytest.raises(ValueError, match="Unknown annealing schedule"):
        mcmc.annealing_schedule("cosine", 10)
    with pytest.raises(ValueError, match="Unknown AIS start"):
        evaluation.ais_log_likelihoods(tiny_model("vae"), binary_images(2), start="posterior", verbose=False)
    with pytest.raises(ValueError, match="empty"):
        evaluation.ais_nll(tiny_model("vae"), np.zeros((0, 8, 8, 1), np.float32), num_steps=5, verbose=False)


def test_sample_joint_draws_binary_images_and_bdmc_runs_on_a_real_model():
    model = tiny_model("iwae")
    z, x = model.sample_joint(5, seed=3)
    assert z.shape == (5, 3) and x.shape == (5, 8, 8, 1)
    assert set(np.unique(x.numpy())) <= {0.0, 1.0}
    np.testing.assert_array_equal(x, model.sample_joint(5, seed=3)[1])
    result = evaluation.bdmc(model, 5, num_steps=20, num_chains=2, leapfrog_steps=2, verbose=False)
    assert np.all(np.isfinite(result.lower.log_px)) and np.all(np.isfinite(result.upper.log_px))


def test_eager_and_graph_ais_give_the_same_numbers(linear_gaussian):
    model, x = linear_gaussian
    x = tf.constant(x[:6])
    z0 = initial_state(model, x, "prior", 3, tf.constant([2, 3]))
    pilot = initial_state(model, x, "prior", 2, tf.constant([2, 4]))
    run = lambda: mcmc.ais(annealed_log_prob_fn(model, x, "prior"), z0, mcmc.annealing_schedule("linear", 8),  # noqa: E731
                           seed=[5, 5], num_leapfrog_steps=3, pilot_state=pilot)
    eager, graph = run(), tf.function(run)()
    for a, b in zip(eager, graph):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
