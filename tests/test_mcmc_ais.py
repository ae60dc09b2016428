"""mcmc.ais as an estimator: exactly unbiased with step-size adaptation on, any kernel, nested states.

Exact answers come from the linear-Gaussian model of test_ais.py, whose log p(x) is closed form.
Tolerances are 3 standard errors of the quantity tested; seeds are fixed, so the tests are
deterministic.
"""
import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfdgm import evaluation, mcmc
from tests.test_ais import LinearGaussianModel


def _mean_se(values):
    return values.mean(), values.std(ddof=1) / math.sqrt(len(values))


def unbiasedness_check(seed=4, num_examples=16000):
    """(mean of p^(x) / p(x), its standard error, the AISResult) over 16,000 independent AIS runs."""
    model = LinearGaussianModel(n=2, d=1, noise=0.3, seed=1)  # posterior sd 0.32
    _, x = model.sample_joint(num_examples, seed=tf.constant([3, 99]))
    x = x.numpy()
    result = evaluation.ais_log_likelihoods(model, x, num_steps=100, num_chains=1, leapfrog_steps=2,
                                            schedule="linear", step_size=1.0, batch_size=len(x), seed=seed,
                                            verbose=False)
    ratio, se = _mean_se(np.exp(result.log_px - model.exact_log_px(x)))
    return ratio, se, result


def test_adapted_ais_is_unbiased_for_the_likelihood():
    # One chain per example (16,000 examples: 16,000 independent runs of AIS) and a far too large
    # initial step, so the steps adapt a lot within each run. E[p^(x) / p(x)] must be 1 exactly.
    # Adapting each example's steps from its own chain, as mcmc.ais did before the pilot chains,
    # measured 1.025 +- 0.0036 here (7 standard errors high; 9 with seed=5); with the pilot
    # chains, 1.0014 +- 0.0036.
    ratio, se, result = unbiasedness_check()
    assert abs(ratio - 1.0) < 3 * se, (ratio, se)
    assert se < 0.005  # the tolerance is a real test: the old bias was ~0.03
    assert result.step_size[0] == 1.0 and result.step_size[-1] < 0.7, result.step_size  # adaptation was on


def _random_walk_kernel(target_log_prob_fn, step_size, beta):
    """Random-walk Metropolis whose proposal scale is the adapted step size."""
    del beta
    return tfp.mcmc.RandomWalkMetropolis(target_log_prob_fn, new_state_fn=tfp.mcmc.random_walk_normal_fn(step_size))


class ExactGibbs(tfp.mcmc.TransitionKernel):
    """Gibbs sweeps over the state parts (one latent coordinate each) of the linear-Gaussian
    model's tempered posterior f_beta(z) = N(z; 0, I) N(x; W z + b, s^2 I)^beta, a Gaussian with
    precision L = I + beta W^T W / s^2 and natural mean h = beta W^T (x - b) / s^2. Draws each
    z_i | z_-i exactly: no step size, no rejection, nothing in its results, like an RBM's."""

    def __init__(self, model, x, beta):
        w = tf.constant(model.w)
        self._precision = tf.eye(w.shape[1]) + beta * tf.matmul(w, w, transpose_a=True) / model.noise**2
        self._h = beta * tf.linalg.matvec(w, x - model.b, transpose_a=True) / model.noise**2  # [B, D]

    @property
    def is_calibrated(self):
        return True

    def bootstrap_results(self, init_state):
        return ()

    def one_step(self, current_state, previous_kernel_results, seed=None):
        parts = list(current_state)
        seeds = tfp.random.split_seed(seed, n=len(parts))
        for i in range(len(parts)):
            others = sum(self._precision[i, j] * parts[j][..., 0] for j in range(len(parts)) if j != i)
            mean = (self._h[:, i] - others) / self._precision[i, i]
            noise = tf.random.stateless_normal(tf.shape(mean), seeds[i])
            parts[i] = (mean + noise / tf.sqrt(self._precision[i, i]))[..., None]
        return parts, ()


def _split(z):
    """[C, B, 2] -> a nested state {"a": [C, B, 1], "b": ([C, B, 1],)} (every part: chain axis 0, batch axis 1)."""
    return {"a": z[..., :1], "b": (z[..., 1:],)}


def _joined_log_prob(model, x):
    annealed = mcmc.annealed_log_prob_fn(model, x, "prior")
    return lambda state, beta: annealed(tf.concat([state["a"], state["b"][0]], axis=-1), beta)


@pytest.fixture(scope="module")
def two_latents():
    model = LinearGaussianModel(n=3, d=2, noise=0.8, seed=1)  # easy enough for random-walk Metropolis
    x = model.sample_joint(200, seed=tf.constant([7, 8]))[1]
    return model, x


@pytest.mark.parametrize("kernel", ["gibbs", "random_walk", "hmc"])
def test_other_kernels_and_nested_states_give_the_exact_log_likelihood(two_latents, kernel):
    model, x = two_latents
    start = mcmc.initial_state(model, x, "prior", 4, tf.constant([1, 2]))
    pilot = mcmc.initial_state(model, x, "prior", 2, tf.constant([1, 3]))
    # Adaptation on for the kernels with a step (the random walk's proposal scale, tuned toward
    # the acceptance rate of Roberts, Gelman & Gilks 1997).
    kwargs = dict(step_size=0.3, pilot_state=_split(pilot), target_accept_prob=0.3 if kernel == "random_walk" else 0.65)
    if kernel == "gibbs":
        kernel_fn = lambda f, step_size, beta: ExactGibbs(model, x, beta)  # noqa: E731
        kwargs = dict(step_size=None)
    elif kernel == "random_walk":
        kernel_fn = _random_walk_kernel
    else:
        kernel_fn = None  # the default, HMC, over the nested state
    betas = mcmc.annealing_schedule("linear", 100)
    run = tf.function(lambda: mcmc.ais(_joined_log_prob(model, x), _split(start), betas, seed=[5, 6],
                                       kernel_fn=kernel_fn, num_leapfrog_steps=3, **kwargs))
    trace = run()
    assert trace.state["a"].shape == (4, 200, 1) and trace.state["b"][0].shape == (4, 200, 1)
    log_px = tf.reduce_logsumexp(trace.log_weights, axis=0).numpy() - math.log(4)
    exact = model.exact_log_px(x.numpy())
    # Unbiased for p(x) whatever the kernel's efficiency: the mean of p^(x) / p(x) is 1, with no
    # allowance. Its log is a stochastic lower bound (biased by how well the kernel mixes).
    ratio, ratio_se = _mean_se(np.exp(log_px - exact))
    gap, se = _mean_se(exact - log_px)
    print(f"{kernel}: p^/p = {ratio:.4f} +- {ratio_se:.4f}, exact - AIS = {gap:.4f} +- {se:.4f}")
    assert abs(ratio - 1.0) < 3 * ratio_se and ratio_se < 0.05, (kernel, ratio, ratio_se)
    assert -3 * se < gap < 0.15 and se < 0.05, (kernel, gap, se)
    if kernel == "gibbs":
        np.testing.assert_array_equal(trace.accept_prob, 1.0)  # no acceptance to report
        assert np.all(np.isnan(trace.step_size))
    else:
        assert trace.step_size.shape == (99, 200) and not np.allclose(trace.step_size[-1], 0.3)  # adapted
        assert 0.2 < trace.accept_prob.numpy()[-20:].mean() < 0.9


def test_adaptation_without_pilot_chains_is_refused():
    model = LinearGaussianModel()
    x = model.sample_joint(3, seed=tf.constant([1, 1]))[1]
    z = mcmc.initial_state(model, x, "prior", 2, tf.constant([0, 0]))
    with pytest.raises(ValueError, match="pilot_state"):
        mcmc.ais(mcmc.annealed_log_prob_fn(model, x, "prior"), z, [0.0, 0.5, 1.0], seed=[0, 0])
    with pytest.raises(ValueError, match="adapt_step_size=False"):
        mcmc.ais(mcmc.annealed_log_prob_fn(model, x, "prior"), z, [0.0, 0.5, 1.0], seed=[0, 0],
                 step_size=tf.ones([1, 3]))


@pytest.mark.parametrize("flag, call, match", [
    ("has_encoder", lambda m, x: evaluation.ais_log_likelihoods(m, x, start="encoder", verbose=False), "has_encoder"),
    ("has_joint", lambda m, x: evaluation.ais_log_likelihoods(m, x, verbose=False), "has_joint"),
    ("has_joint", lambda m, x: evaluation.bdmc(m, 2, verbose=False), "has_joint"),
    ("has_continuous_latents", lambda m, x: evaluation.ais_log_likelihoods(m, x, verbose=False),
     "has_continuous_latents"),
    ("has_bound", lambda m, x: evaluation.iwae_log_likelihoods(m, x, verbose=False), "has_bound"),
    ("has_encoder", lambda m, x: evaluation.latent_diagnostics(m, x), "has_encoder"),
    ("has_encoder", lambda m, x: mcmc.initial_state(m, x, "encoder", 2, tf.constant([0, 0])), "has_encoder"),
])
def test_a_missing_capability_is_named(flag, call, match):
    model = LinearGaussianModel()
    setattr(model, flag, False)
    with pytest.raises(ValueError, match=match):
        call(model, model.sample_joint(2, seed=tf.constant([0, 0]))[1].numpy())
