"""HMC transitions on `tfp.mcmc.HamiltonianMonteCarlo`, with step sizes adapted per chain group.

TFP's HMC already rejects divergent proposals: a NaN or -inf proposed log-density makes the
log acceptance ratio -inf (`mcmc_util.safe_sum`), so the chain stays where it was.
"""
import tensorflow as tf
import tensorflow_probability as tfp


def hmc_kernel(target_log_prob_fn, step_size, num_leapfrog_steps):
    """An HMC kernel (leapfrog + Metropolis correction) whose step size broadcasts against the state."""
    return tfp.mcmc.HamiltonianMonteCarlo(
        target_log_prob_fn=target_log_prob_fn, step_size=step_size, num_leapfrog_steps=int(num_leapfrog_steps))


def acceptance_probability(kernel_results):
    """min(1, exp(log acceptance ratio)) of an HMC step; 0 for a NaN (rejected) proposal.

    The probability rather than the 0/1 decision: it has lower variance as an adaptation signal.
    """
    log_ratio = kernel_results.log_accept_ratio
    prob = tf.exp(tf.minimum(log_ratio, 0.0))
    return tf.where(tf.math.is_nan(prob), tf.zeros_like(prob), prob)


def adapt_step_size(step_size, accept_prob, target_accept_prob=0.65, factor=1.02, min_step_size=1e-4,
                    max_step_size=1.0):
    """Multiplies the step size by `factor` where acceptance is above target, divides otherwise.

    The rule of Wu et al. (2017) and the BDMC code (steps grow 2% when acceptance exceeds 0.65),
    applied per example so posteriors of different widths get their own step size; clipped to
    [min_step_size, max_step_size] so one unlucky run cannot collapse or explode it.
    """
    step_size = tf.where(accept_prob > target_accept_prob, step_size * factor, step_size / factor)
    return tf.clip_by_value(step_size, min_step_size, max_step_size)
