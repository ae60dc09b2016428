"""Score-function (likelihood-ratio, REINFORCE) estimators on [K, B] tensors, for discrete latents.

With z ~ q(z|x) held fixed (no gradient through the sample), f(z) = log p(x, z) - log q(z|x):

  grad_phi E_q[f] = E_q[(f(z) - b) grad_phi log q(z|x)] + E_q[grad_phi f(z)]

for any baseline b that does not depend on z (E_q[grad log q] = 0). Each surrogate below is a
per-example loss [B] whose gradient, descended, is that estimator: the learning signal enters
through `tf.stop_gradient`, times log q(z|x) (as log q - stop(log q), so that the surrogate's
value is the bound itself), plus the pathwise part (f itself, which also gives
p its ordinary gradient of log p(x, z)).

  REINFORCE  signal f(z) - b                       (Williams 1992; b = 0: the plain estimator)
  NVIL       (f(z) - b(x) - c) / max(1, sigma)     (Mnih & Gregor 2014: input-dependent baseline b(x),
                                                    running mean c and running std sigma)
  VIMCO      L - L_{-k}, K samples                 (Mnih & Rezende 2016: leave-one-out baselines of
                                                    the IWAE bound L, log w_k replaced by the
                                                    geometric mean of the other K - 1 weights)

References:
  Williams (1992), Simple statistical gradient-following algorithms for connectionist RL.
  Mnih & Gregor (2014), Neural Variational Inference and Learning in Belief Networks.
  Mnih & Rezende (2016), Variational inference for Monte Carlo objectives.
"""
import tensorflow as tf

from tfdgm.estimators.bounds import _as_float, log_mean_exp


def reinforce_surrogate(log_weights, log_q, signal=None):
    """-mean_k [stop(signal_k) log q(z_k|x) + log w_k]: the score-function ELBO loss [B].

    Args:
      log_weights: log w = log p(x, z) - log q(z|x), [K, B], z held fixed.
      log_q: log q(z|x) at those fixed z, [K, B], differentiable in q's parameters.
      signal: the learning signal [K, B] (held fixed here); default log_weights (plain REINFORCE).
        A centred signal (`nvil_learning_signal`, or log_weights minus any z-independent baseline)
        leaves the gradient's expectation unchanged.

    The gradient's expectation is -grad ELBO in every parameter (K independent samples averaged);
    its value is exactly -ELBO (the score term enters as signal * (log q - stop(log q))).
    """
    log_weights, log_q = _as_float(log_weights), _as_float(log_q)
    signal = log_weights if signal is None else _as_float(signal)
    return -tf.reduce_mean(tf.stop_gradient(signal) * _zero_valued(log_q) + log_weights, axis=0)


def _zero_valued(log_q):
    """log q - stop(log q): value 0, gradient grad log q, so a surrogate's value is its bound."""
    return log_q - tf.stop_gradient(log_q)


def nvil_learning_signal(log_weights, baseline, mean, variance):
    """NVIL's centred and normalised signal (f - b(x) - c) / max(1, sqrt(v)), held fixed. [K, B].

    Args:
      log_weights: f = log w, [K, B].
      baseline: b(x), the baseline network's prediction per example, [B] (no gradient flows to it).
      mean, variance: running mean c and variance v of f (scalars; not learned by gradient).

    Mnih & Gregor divide by the running standard deviation only when it exceeds 1, so the step
    size adapts without blowing up small signals. Centring keeps the estimator unbiased; the
    division rescales the score part of the q-gradient by a positive factor, common to the batch.
    """
    log_weights = _as_float(log_weights)
    centred = log_weights - tf.cast(baseline, log_weights.dtype)[None] - tf.cast(mean, log_weights.dtype)
    scale = tf.maximum(1.0, tf.sqrt(tf.cast(variance, log_weights.dtype)))
    return tf.stop_gradient(centred / scale)


def nvil_baseline_loss(log_weights, baseline, mean):
    """mean_k (stop(f_k - c) - b(x))^2 [B]: the squared-error loss the baseline network descends
    (Mnih & Gregor 2014, eq. 9), so that b(x) + c predicts the learning signal."""
    log_weights = _as_float(log_weights)
    target = tf.stop_gradient(log_weights - tf.cast(mean, log_weights.dtype))
    return tf.reduce_mean(tf.square(target - tf.cast(baseline, log_weights.dtype)[None]), axis=0)


def vimco_leave_one_out_bounds(log_weights):
    """L_{-k} = log (1/K) [sum_{j != k} w_j + exp(mean_{j != k} log w_j)], [K, B], held fixed.

    The IWAE-K bound with sample k's weight replaced by the geometric mean of the others (Mnih &
    Rezende 2016, eq. 9), in log space: a [K, K, B] table whose row k is log w with its k-th
    entry swapped, reduced by `tf.reduce_logsumexp`. (Not `tfp.stats.log_soomean_exp`, which is
    O(K) but returns NaN under XLA once log-weights spread by ~10 nats: it subtracts exponentials.)
    Log-weights are centred first (L_{-k} shifts with log w, and a common offset of 1e4 would
    otherwise eat float32's precision in the sums). Needs K >= 2.
    """
    log_weights = _as_float(log_weights)
    num = log_weights.shape[0]
    if num is not None and num < 2:
        raise ValueError(f"VIMCO's leave-one-out baselines need K >= 2 samples per example, got K={num}.")
    k = tf.cast(tf.shape(log_weights)[0], log_weights.dtype)
    shift = tf.stop_gradient(tf.reduce_mean(log_weights, axis=0, keepdims=True))
    centred = log_weights - shift
    others_mean = (tf.reduce_sum(centred, axis=0, keepdims=True) - centred) / (k - 1.0)
    eye = tf.eye(tf.shape(centred)[0], dtype=tf.bool)[:, :, None]  # [K (row), K (column), 1]
    table = tf.where(eye, others_mean[:, None, :], centred[None, :, :])
    return tf.stop_gradient(tf.reduce_logsumexp(table, axis=1) - tf.math.log(k) + shift)


def vimco_learning_signals(log_weights):
    """L - L_{-k}, [K, B], held fixed: VIMCO's per-sample learning signals."""
    log_weights = _as_float(log_weights)
    centred = log_weights - tf.stop_gradient(tf.reduce_mean(log_weights, axis=0, keepdims=True))
    return tf.stop_gradient(log_mean_exp(centred, axis=0)[None] - vimco_leave_one_out_bounds(centred))


def vimco_surrogate(log_weights, log_q):
    """-[sum_k stop(L - L_{-k}) log q(z_k|x) + L]: the VIMCO loss [B] (Mnih & Rezende 2016, eq. 10).

    L = log (1/K) sum_k w_k is the IWAE-K bound; its own gradient at fixed z is the pathwise part
    (sum_k w~_k grad log w_k: IWAE's gradient for p). The value is -L; the gradient's expectation
    is -grad E[L] in every parameter.
    """
    log_weights, log_q = _as_float(log_weights), _as_float(log_q)
    signals = vimco_learning_signals(log_weights)
    return -(tf.reduce_sum(signals * _zero_valued(log_q), axis=0) + log_mean_exp(log_weights, axis=0))


def update_moments(mean, variance, batch_mean, batch_variance, decay):
    """(mean, variance) moved towards a batch's by exponential averaging with `decay` (NVIL's
    running statistics of the learning signal). Returns new tensors."""
    return (decay * mean + (1.0 - decay) * batch_mean, decay * variance + (1.0 - decay) * batch_variance)


__all__ = [
    "nvil_baseline_loss",
    "nvil_learning_signal",
    "reinforce_surrogate",
    "update_moments",
    "vimco_leave_one_out_bounds",
    "vimco_learning_signals",
    "vimco_surrogate",
]
