"""Estimator identities and numerical safety, and the IWAE bound on an exact linear-Gaussian model."""
import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfdgm import estimators

tfd = tfp.distributions


def test_iwae_with_one_sample_is_the_elbo():
    log_w = tf.random.stateless_normal([1, 7], seed=[1, 2]) * 30.0
    np.testing.assert_allclose(estimators.iwae_bound(log_w), estimators.elbo(log_w), rtol=0, atol=1e-6)
    np.testing.assert_allclose(estimators.effective_sample_size(log_w), np.ones(7), atol=1e-6)


def test_iwae_bound_matches_direct_formula():
    log_w = tf.random.stateless_normal([5, 3], seed=[3, 4], dtype=tf.float64)
    expected = np.log(np.mean(np.exp(log_w.numpy()), axis=0))
    np.testing.assert_allclose(estimators.iwae_bound(log_w), expected, rtol=1e-12)


def test_ess_of_equal_weights_is_k_and_of_one_dominant_weight_is_one():
    np.testing.assert_allclose(estimators.effective_sample_size(tf.zeros([8, 2])), [8.0, 8.0], rtol=1e-6)
    log_w = tf.constant([[0.0], [-1e4], [-1e4]])
    np.testing.assert_allclose(estimators.effective_sample_size(log_w), [1.0], rtol=1e-6)


@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_extreme_log_weights_and_many_samples_stay_finite(scale):
    k = 5000
    log_w = scale + tf.random.stateless_normal([k, 4], seed=[5, 6]) * 50.0
    bound = estimators.iwae_bound(log_w)
    assert np.all(np.isfinite(bound))
    # The bound lies between the mean and the max of the log-weights.
    assert np.all(bound.numpy() >= estimators.elbo(log_w).numpy() - 1e-2)
    assert np.all(bound.numpy() <= tf.reduce_max(log_w, 0).numpy() + 1e-2)
    ess = estimators.effective_sample_size(log_w).numpy()
    assert np.all((ess >= 1.0 - 1e-4) & (ess <= k + 1e-2))
    constant = tf.fill([k, 2], scale)
    np.testing.assert_allclose(estimators.iwae_bound(constant), [scale, scale], rtol=1e-6)
    variable = tf.Variable(log_w)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(estimators.dreg_surrogate(variable)) + tf.reduce_sum(estimators.iwae_surrogate(variable))
    assert np.all(np.isfinite(tape.gradient(loss, variable).numpy()))


def test_bfloat16_log_weights_are_reduced_in_float32():
    log_w = tf.cast(tf.constant([[1000.0], [1000.5]]), tf.bfloat16)
    assert estimators.iwae_bound(log_w).dtype == tf.float32


def test_iwae_surrogate_gradient_is_normalised_weights():
    log_w = tf.Variable(tf.random.stateless_normal([6, 3], seed=[7, 8]))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(estimators.iwae_surrogate(log_w))
    np.testing.assert_allclose(tape.gradient(loss, log_w), -tf.nn.softmax(log_w, axis=0), atol=1e-6)


def test_dreg_surrogate_gradient_is_squared_normalised_weights():
    log_w = tf.Variable(tf.random.stateless_normal([6, 3], seed=[9, 10]))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(estimators.dreg_surrogate(log_w))
    np.testing.assert_allclose(tape.gradient(loss, log_w), -tf.nn.softmax(log_w, axis=0) ** 2, atol=1e-6)


class LinearGaussian:
    """p(z) = N(0, I_d), p(x|z) = N(W z + b, s^2 I_n): log p(x) = log N(x; b, W W^T + s^2 I) exactly.

    q(z|x) is the exact posterior with its scale inflated, so the bound is strictly loose at K=1.
    """

    def __init__(self, n=6, d=2, noise=0.5, inflate=1.8, seed=0):
        rng = np.random.default_rng(seed)
        self.w = rng.normal(size=(n, d))
        self.b = rng.normal(size=n)
        self.noise = noise
        self.inflate = inflate
        cov = self.w @ self.w.T + noise**2 * np.eye(n)
        self.marginal = tfd.MultivariateNormalFullCovariance(self.b, cov)
        self.post_cov = np.linalg.inv(np.eye(d) + self.w.T @ self.w / noise**2)
        self.d = d

    def sample_x(self, num, seed):
        return self.marginal.sample(num, seed=seed)

    def log_weights(self, x, k, seed):
        post_mean = tf.linalg.matvec(self.post_cov @ self.w.T / self.noise**2, x - self.b)
        q = tfd.MultivariateNormalTriL(post_mean, self.inflate * np.linalg.cholesky(self.post_cov))
        z = q.sample(k, seed=seed)
        prior = tfd.MultivariateNormalDiag(tf.zeros(self.d, tf.float64), tf.ones(self.d, tf.float64))
        lik = tfd.Independent(tfd.Normal(tf.linalg.matvec(self.w, z) + self.b, self.noise), 1)
        return prior.log_prob(z) + lik.log_prob(x) - q.log_prob(z)


def test_iwae_bound_on_linear_gaussian_model_approaches_exact_log_likelihood():
    model = LinearGaussian()
    x = model.sample_x(200, seed=[0, 1])
    exact = model.marginal.log_prob(x).numpy()
    gaps = {}
    for i, k in enumerate([1, 10, 100, 5000]):
        bound = estimators.iwae_bound(model.log_weights(x, k, seed=[11, i])).numpy()
        gap = exact - bound  # >= 0 in expectation
        gaps[k] = (gap.mean(), gap.std(ddof=1) / math.sqrt(len(gap)))
    for k, (mean, se) in gaps.items():
        assert mean > -3 * se, f"K={k}: the IWAE bound exceeds log p(x) by {-mean:.4f} (se {se:.4f})"
    means = [gaps[k][0] for k in (1, 10, 100, 5000)]
    assert means[0] > 0.1, "the proposal should make K=1 visibly loose"
    assert all(a > b for a, b in zip(means, means[1:])), f"the bound must rise with K: gaps {means}"
    mean, se = gaps[5000]
    assert abs(mean) < 3 * se, f"K=5000 gap {mean:.5f} not within 3 standard errors ({se:.5f})"


def test_fused_bernoulli_log_prob_and_gradient_equal_tfp():
    from tfdgm import distributions as dists

    logits = tf.Variable(tf.random.stateless_normal([3, 4, 5, 5, 1], seed=[1, 1]) * 4.0)
    x = tf.cast(tf.random.stateless_uniform([4, 5, 5, 1], seed=[2, 2]) < 0.5, tf.float32)
    upstream = tf.random.stateless_normal([3, 4], seed=[3, 3])
    with tf.GradientTape(persistent=True) as tape:
        ours = dists.likelihood_log_prob("bernoulli", logits, x, event_ndims=3)
        reference = dists.likelihood_distribution("bernoulli", logits, event_ndims=3).log_prob(x)
        ours_loss, reference_loss = tf.reduce_sum(ours * upstream), tf.reduce_sum(reference * upstream)
    np.testing.assert_allclose(ours, reference, rtol=1e-5)
    np.testing.assert_allclose(tape.gradient(ours_loss, logits), tape.gradient(reference_loss, logits), rtol=1e-4, atol=1e-6)


def test_ess_keeps_float32_precision_at_huge_log_weights():
    rng = np.random.default_rng(0)
    for offset in (1e6, -1e6):
        log_w = (offset + rng.normal(size=(64, 5)) * 2.0).astype(np.float32)
        reference = log_w.astype(np.float64) - log_w.max(axis=0)  # same float32 inputs, float64 maths
        reference = np.exp(reference).sum(0) ** 2 / np.exp(2 * reference).sum(0)
        np.testing.assert_allclose(estimators.effective_sample_size(log_w), reference, rtol=1e-5)


def test_all_zero_weights_give_zero_weights_and_zero_ess_not_nan():
    log_w = tf.constant([[-np.inf, 0.0], [-np.inf, 1.0]])
    np.testing.assert_allclose(estimators.normalized_weights(log_w)[:, 0], [0.0, 0.0])
    np.testing.assert_allclose(estimators.effective_sample_size(log_w), [0.0, 1.0 / (1 / (1 + np.e) ** 2 + (np.e / (1 + np.e)) ** 2)], rtol=1e-6)


def _with_minus_inf():
    """[K=4, B=3] log-weights; example 0 has one zero-probability sample, example 2 has only those."""
    log_w = tf.random.stateless_normal([4, 3], seed=[12, 13]).numpy()
    log_w[1, 0] = -np.inf
    log_w[:, 2] = -np.inf
    return tf.Variable(log_w)


def test_dreg_surrogate_has_no_nan_with_minus_inf_log_weights():
    log_w = _with_minus_inf()
    with tf.GradientTape() as tape:
        loss = estimators.dreg_surrogate(log_w)
        total = tf.reduce_sum(loss)
    grad = tape.gradient(total, log_w).numpy()
    assert np.all(np.isfinite(loss.numpy())) and np.all(np.isfinite(grad))
    finite = tf.constant(np.delete(log_w.numpy()[:, 0], 1))
    np.testing.assert_allclose(loss[0], -np.sum(tf.nn.softmax(finite) ** 2 * finite), rtol=1e-6)
    np.testing.assert_allclose(np.delete(grad[:, 0], 1), -tf.nn.softmax(finite) ** 2, atol=1e-6)
    assert grad[1, 0] == 0.0 and np.all(grad[:, 2] == 0.0) and loss[2] == 0.0


def test_weighted_log_prob_surrogate_gradient_is_the_weighted_average_of_gradients():
    # log_prob_k = log N(theta_k; mu, 1) for a shared mu: a parameter every sample depends on.
    mu = tf.Variable([0.3, -0.2])
    theta = tf.random.stateless_normal([5, 2], seed=[14, 15])
    log_w = tf.random.stateless_normal([5, 2], seed=[16, 17]) * 3.0
    with tf.GradientTape(persistent=True) as tape:
        log_prob = -0.5 * tf.square(theta - mu)
        loss = estimators.weighted_log_prob_surrogate(log_w, log_prob)
        total = tf.reduce_sum(loss)
        per_sample = [log_prob[k] for k in range(5)]
    assert loss.shape == (2,)
    weights = tf.nn.softmax(log_w, axis=0)
    np.testing.assert_allclose(loss, -tf.reduce_sum(weights * log_prob, axis=0), rtol=1e-6)
    expected = -sum(weights[k] * tape.jacobian(per_sample[k], mu).numpy().diagonal() for k in range(5))
    np.testing.assert_allclose(tape.gradient(total, mu), expected, rtol=1e-5, atol=1e-7)
    # The weights carry no gradient, even when they are the same tensor as log_prob.
    with tf.GradientTape() as tape:
        log_prob = -0.5 * tf.square(theta - mu)
        total = tf.reduce_sum(estimators.weighted_log_prob_surrogate(log_prob, log_prob))
    weights = tf.nn.softmax(-0.5 * tf.square(theta - mu), axis=0)
    np.testing.assert_allclose(tape.gradient(total, mu),
                               -tf.reduce_sum(weights * (theta - mu), axis=0), rtol=1e-5, atol=1e-7)


def test_weighted_log_prob_surrogate_with_minus_inf_log_weights():
    log_w = _with_minus_inf()
    # A zero-probability sample typically also has log_prob = -inf: it must not poison the sum.
    log_prob = tf.Variable(tf.where(tf.math.is_finite(log_w), log_w - 1.0, -np.inf * tf.ones_like(log_w)))
    with tf.GradientTape() as tape:
        loss = estimators.weighted_log_prob_surrogate(log_w, log_prob)
        total = tf.reduce_sum(loss)
    grad = tape.gradient(total, log_prob).numpy()
    assert np.all(np.isfinite(loss.numpy())) and np.all(np.isfinite(grad))
    finite = tf.constant(np.delete(log_w.numpy()[:, 0], 1))
    np.testing.assert_allclose(np.delete(grad[:, 0], 1), -tf.nn.softmax(finite), atol=1e-6)
    np.testing.assert_allclose(grad.sum(axis=0)[:2], [-1.0, -1.0], rtol=1e-6)  # weights sum to 1
    assert grad[1, 0] == 0.0 and np.all(grad[:, 2] == 0.0) and loss[2] == 0.0
    assert estimators.weighted_log_prob_surrogate(tf.cast(log_w, tf.bfloat16), log_prob).dtype == tf.float32
