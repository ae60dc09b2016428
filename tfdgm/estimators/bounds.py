"""Bounds and surrogate losses on log-weights of shape [K, B] (samples first).

References:
  Kingma & Welling (2014), Auto-Encoding Variational Bayes.
  Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders.
  Tucker, Lawson, Gu & Maddison (2019), Doubly Reparameterized Gradient Estimators for
  Monte Carlo Objectives (DReG).
  Bornschein & Bengio (2015), Reweighted Wake-Sleep.

All reductions subtract the maximum first (``tf.reduce_logsumexp`` or explicitly), so log-weights
of +-1e6 and K in the thousands neither overflow nor underflow, and a log-weight of -inf (a
zero-probability sample) gets weight 0 without NaN in values or gradients.
"""
import math

import tensorflow as tf


def _as_float(log_weights):
    log_weights = tf.convert_to_tensor(log_weights)
    # Importance weights span hundreds of nats; keep them in float32 even under mixed precision.
    if log_weights.dtype in (tf.float16, tf.bfloat16):
        log_weights = tf.cast(log_weights, tf.float32)
    return log_weights


def log_mean_exp(log_weights, axis=0):
    """log (1/K) sum_k exp(log_weights[k]) along `axis`, computed stably."""
    log_weights = _as_float(log_weights)
    num = tf.cast(tf.shape(log_weights)[axis], log_weights.dtype)
    return tf.reduce_logsumexp(log_weights, axis=axis) - tf.math.log(num)


def elbo(log_weights):
    """Monte Carlo ELBO per example: mean_k log w_k. Returns shape [B]."""
    return tf.reduce_mean(_as_float(log_weights), axis=0)


def iwae_bound(log_weights):
    """IWAE bound per example: log (1/K) sum_k w_k (Burda et al. 2016). Returns shape [B].

    With K = 1 it is exactly the single-sample ELBO.
    """
    return log_mean_exp(log_weights, axis=0)


def _finite_max(log_weights):
    """max_k log w_k, held fixed, and 0 where every log-weight is -inf (so shifting stays finite)."""
    top = tf.stop_gradient(tf.reduce_max(log_weights, axis=0, keepdims=True))
    return tf.where(tf.math.is_finite(top), top, tf.zeros_like(top))


def normalized_weights(log_weights):
    """Self-normalised importance weights w~_k = w_k / sum_j w_j along the sample axis.

    A softmax, except that an example whose log-weights are all -inf gets weights 0, not NaN.
    """
    log_weights = _as_float(log_weights)
    # tf.nn.softmax where any weight is positive (the usual case, and the same numbers as ever);
    # its input is made finite elsewhere so that neither the value nor the gradient is NaN.
    empty = tf.reduce_all(tf.math.is_inf(log_weights) & (log_weights < 0), axis=0, keepdims=True)
    weights = tf.nn.softmax(tf.where(empty, tf.zeros_like(log_weights), log_weights), axis=0)
    return tf.where(empty, tf.zeros_like(weights), weights)


def effective_sample_size(log_weights):
    """Kish's effective sample size 1 / sum_k w~_k^2 per example, in [1, K]. Returns [B].

    0 for an example whose weights are all zero.
    """
    log_weights = _as_float(log_weights)
    # Shift by the max first: at |log w| ~ 1e6 float32 resolves 2 * lse(l) only to ~0.25 nats.
    shifted = log_weights - _finite_max(log_weights)
    # exp(2 lse(l) - lse(2l)) = (sum w)^2 / sum w^2 without forming the weights themselves.
    log_ess = 2.0 * tf.reduce_logsumexp(shifted, axis=0) - tf.reduce_logsumexp(2.0 * shifted, axis=0)
    return tf.where(tf.math.is_finite(log_ess), tf.exp(log_ess), tf.zeros_like(log_ess))


def iwae_surrogate(log_weights):
    """Per-example loss whose gradient is minus the IWAE gradient (reparameterised samples).

    Its value is -iwae_bound; differentiating it gives -sum_k w~_k grad log w_k.
    """
    return -iwae_bound(log_weights)


def dreg_surrogate(log_weights_stopped_q):
    """Per-example DReG surrogate for the inference network (Tucker et al. 2019, eq. 5).

    Args:
      log_weights_stopped_q: [K, B] log-weights in which the samples z_k depend on q's
        parameters through the reparameterisation, but log q(z_k|x) is evaluated with q's
        parameters held fixed (stop_gradient on the distribution parameters, *not* on z_k).

    Returns:
      [B] loss; its gradient w.r.t. q's parameters is
      -sum_k stop(w~_k^2) d log w_k / dz_k dz_k/dphi, the doubly reparameterised IWAE gradient.
      Its value is not a bound: report `iwae_bound` alongside.
    """
    log_weights_stopped_q = _as_float(log_weights_stopped_q)
    weights_sq = tf.stop_gradient(tf.square(normalized_weights(log_weights_stopped_q)))
    return -_weighted_sum(weights_sq, log_weights_stopped_q)


def _weighted_sum(weights, values):
    """sum_k weights_k * values_k over the sample axis, where a zero weight ignores its value.

    A zero-probability sample has log w = -inf and weight 0; 0 * -inf would be NaN in the value
    and in the gradient, so such entries are masked out (their gradient is exactly 0).
    """
    values = tf.where(weights > 0, values, tf.zeros_like(values))
    return tf.reduce_sum(weights * values, axis=0)


def weighted_log_prob_surrogate(log_weights, log_prob):
    """-sum_k stop(w~_k) log_prob_k per example [B], with w~ = normalized_weights(log_weights).

    Its gradient is minus the self-normalised importance-sampling estimate of
    E_posterior[grad log_prob]. One formula serves:
      * AIS training's decoder loss: log_weights the AIS log-weights, log_prob = log p(x, z_k);
      * reweighted wake-sleep (Bornschein & Bengio 2015), wake-theta: log_prob = log p(x, z_k);
        wake-phi: log_prob = log q(stop(z_k)|x), the samples held fixed.
    The weights carry no gradient, so log_weights may be the same tensor as log_prob.
    """
    weights = tf.stop_gradient(normalized_weights(log_weights))
    return -_weighted_sum(weights, _as_float(log_prob))


# Exposed so tests and benchmarks can build exact log-likelihoods with the same constant.
LOG_2PI = math.log(2.0 * math.pi)
