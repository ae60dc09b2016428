"""Wake-sleep, reweighted wake-sleep, exact and prior-sampling estimators on [K, B] tensors.

Each surrogate is a per-example loss [B] whose gradient (descended) is the estimator:
  wake-theta   -sum_k w~_k grad_theta log p(x, z_k),  z_k ~ q(z|x)      (RWS; K = 1: wake-sleep's)
  wake-phi     -sum_k w~_k grad_phi log q(z_k|x),     z_k held fixed  ~ grad_phi KL(p(z|x) || q(z|x))
  sleep-phi    -grad_phi log q(z|x),  (z, x) ~ p(z) p(x|z) dreamed    = grad_phi E_p(x) KL(p(z|x) || q)
with w~ the self-normalised importance weights of log w = log p(x, z) - log q(z|x).

References:
  Hinton, Dayan, Frey & Neal (1995), The wake-sleep algorithm for unsupervised neural networks.
  Bornschein & Bengio (2015), Reweighted Wake-Sleep.
  Le, Kosiorek, Siddharth, Teh & Wood (2019), Revisiting Reweighted Wake-Sleep for Models with
  Stochastic Control Flow.
  Tucker, Lawson, Gu & Maddison (2019), Doubly Reparameterized Gradient Estimators (RWS-DReG).
"""
import tensorflow as tf

from tfdgm.estimators.bounds import _as_float, _weighted_sum, log_mean_exp, normalized_weights
from tfdgm.estimators.bounds import weighted_log_prob_surrogate


def wake_theta_surrogate(log_weights, log_joint):
    """-sum_k stop(w~_k) log p(x, z_k): the RWS generative-model loss (its value is not a bound).

    As K grows its gradient tends to -grad_theta log p(x) (self-normalised importance sampling:
    biased, O(1/K)). With K = 1 it is the wake phase of wake-sleep, -grad log p(x, z), z ~ q.
    """
    return weighted_log_prob_surrogate(log_weights, log_joint)


def wake_phi_surrogate(log_weights, log_q_fixed):
    """-sum_k stop(w~_k) log q(stop(z_k)|x): the RWS wake-phase inference loss.

    `log_q_fixed` must be log q at samples carrying no gradient. With K = 1 the weight is 1 and
    the gradient -grad log q(z|x), z ~ q, has expectation 0: q does not learn.
    """
    return weighted_log_prob_surrogate(log_weights, log_q_fixed)


def sleep_phi_surrogate(log_q_dreams):
    """-log q(z|x) at dreamed pairs (z, x) ~ p: the sleep-phase inference loss, unbiased."""
    return -_as_float(log_q_dreams)


def rws_dreg_surrogate(log_weights_stopped_q):
    """-sum_k stop(w~_k - w~_k^2) log w_k: the doubly reparameterised wake-phi (Tucker et al. 2019).

    `log_weights_stopped_q`: reparameterised z_k, log q evaluated with q's parameters stopped (as
    for `dreg_surrogate`). Its q-gradient has the expectation of the wake-phi gradient.
    """
    log_weights_stopped_q = _as_float(log_weights_stopped_q)
    w = tf.stop_gradient(normalized_weights(log_weights_stopped_q))
    return -_weighted_sum(w - tf.square(w), log_weights_stopped_q)


def wake_sleep_theta_surrogate(log_joint):
    """-mean_k log p(x, z_k), z_k ~ q held fixed: wake-sleep's generative loss (uniform weights)."""
    return -tf.reduce_mean(_as_float(log_joint), axis=0)


def exact_log_likelihood(log_joint, axis=0):
    """log p(x) = logsumexp over every latent configuration of log p(x, z) (an enumeration axis)."""
    return tf.reduce_logsumexp(_as_float(log_joint), axis=axis)


def prior_sampling_bound(log_likelihoods):
    """log (1/K) sum_k p(x|z_k), z_k ~ p(z): a stochastic lower bound on log p(x) whose exp is
    unbiased for p(x) (importance sampling with the prior as proposal). [K, B] -> [B]."""
    return log_mean_exp(log_likelihoods, axis=0)


def prior_sampling_surrogate(log_likelihoods, log_prior):
    """-sum_k stop(w~_k) (log p(z_k) + log p(x|z_k)), w~ proportional to p(x|z_k): the prior-sampling
    objective's gradient for the decoder (exactly that of `prior_sampling_bound`) and its
    self-normalised estimate for a learned discrete prior, which samples cannot be differentiated through."""
    log_likelihoods = _as_float(log_likelihoods)
    return weighted_log_prob_surrogate(log_likelihoods, log_likelihoods + _as_float(log_prior))
