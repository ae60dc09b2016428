"""Transition kernels for AIS: the HMC default, and what `ais` reads from any kernel's results.

A kernel factory is `kernel_fn(target_log_prob_fn, step_size, beta) -> tfp.mcmc.TransitionKernel`.
The kernel sees the state as a flat list of tensors (TFP's multi-part convention, in
`tf.nest.flatten` order), `target_log_prob_fn(*parts)`, `step_size` a matching list of tensors
that broadcast against the parts (or None for kernels without one, e.g. Gibbs), and `beta` the
scalar inverse temperature (for kernels that sample the tempered conditionals exactly).

TFP's HMC already rejects divergent proposals: a NaN or -inf proposed log-density makes the
log acceptance ratio -inf (`mcmc_util.safe_sum`), so the chain stays where it was.
"""
import tensorflow as tf
import tensorflow_probability as tfp


def hmc_kernel(target_log_prob_fn, step_size, num_leapfrog_steps):
    """An HMC kernel (leapfrog + Metropolis correction) whose step size broadcasts against the state."""
    return tfp.mcmc.HamiltonianMonteCarlo(
        target_log_prob_fn=target_log_prob_fn, step_size=step_size, num_leapfrog_steps=int(num_leapfrog_steps))


def hmc_kernel_fn(num_leapfrog_steps=10):
    """The default kernel factory of `ais`: HMC with L leapfrog steps (Neal 2011; Wu et al. 2017)."""
    def kernel_fn(target_log_prob_fn, step_size, beta):
        del beta  # HMC needs only the tempered log-density and its gradient
        if step_size is None:
            raise ValueError("HMC needs a step size; step_size=None is for kernels without one.")
        return hmc_kernel(target_log_prob_fn, step_size, num_leapfrog_steps)
    return kernel_fn


def acceptance_probability(kernel_results):
    """min(1, exp(log acceptance ratio)) of a Metropolis-Hastings step; 0 for a NaN (rejected) proposal.

    None when the results carry no `log_accept_ratio` (anywhere down `inner_results`), as for a
    Gibbs kernel, which accepts every move. The probability rather than the 0/1 decision: it has
    lower variance as an adaptation signal.
    """
    log_ratio = _find(kernel_results, "log_accept_ratio")
    if log_ratio is None:
        return None
    prob = tf.exp(tf.minimum(log_ratio, 0.0))
    return tf.where(tf.math.is_nan(prob), tf.zeros_like(prob), prob)


def target_log_prob(kernel_results):
    """The target log-density at the kernel's current state, if its results record it (else None).

    HMC and random-walk Metropolis keep it in `accepted_results`; reusing it saves AIS one
    evaluation (and, for HMC, a gradient) per transition.
    """
    for path in (("accepted_results", "target_log_prob"), ("target_log_prob",)):
        value = kernel_results
        for name in path:
            value = getattr(value, name, None)
        if value is not None:
            return value
    inner = getattr(kernel_results, "inner_results", None)
    return None if inner is None else target_log_prob(inner)


def _find(results, name):
    while results is not None:
        if hasattr(results, name):
            return getattr(results, name)
        results = getattr(results, "inner_results", None)
    return None


def adapt_step_size(step_size, accept_prob, target_accept_prob=0.65, factor=1.02, min_step_size=1e-4,
                    max_step_size=1.0):
    """Multiplies the step size by `factor` where acceptance is above target, divides otherwise.

    The rule of Wu et al. (2017) and the BDMC code (steps grow 2% when acceptance exceeds 0.65),
    applied per example so posteriors of different widths get their own step size; clipped to
    [min_step_size, max_step_size] so one unlucky run cannot collapse or explode it.
    """
    step_size = tf.where(accept_prob > target_accept_prob, step_size * factor, step_size / factor)
    return tf.clip_by_value(step_size, min_step_size, max_step_size)
