"""Annealed importance sampling with HMC transitions (Neal 2001; Wu et al. 2017), forward or reverse.

For a path of unnormalised densities f_beta from f_{beta_0} to f_{beta_T}, AIS starts chains at
exact draws from f_{beta_0} and, for t = 1..T, multiplies each chain's weight by
f_{beta_t}(z) / f_{beta_{t-1}}(z) and then moves z with an HMC kernel that leaves f_{beta_t}
invariant. E[w] = Z_{beta_T} / Z_{beta_0}. Run with betas 0 -> 1 from the prior (or q(z|x)) it
estimates p(x) from below; run with betas 1 -> 0 from an exact posterior sample (reverse AIS) it
estimates 1 / p(x), i.e. log p(x) from above: the two halves of BDMC (Grosse et al. 2015).

The chain is not differentiated through; nothing of length T is kept except the [T-1, B]
acceptance and step-size traces, so memory does not grow with the number of steps.
"""
import collections

import tensorflow as tf
import tensorflow_probability as tfp

from tfdgm.mcmc import hmc

AISTrace = collections.namedtuple("AISTrace", ["log_weights", "state", "accept_prob", "step_size"])
AISTrace.__doc__ = """The result of `ais`.

log_weights: [C, B] log AIS weights; logmeanexp over chains estimates log Z_{beta_T}/Z_{beta_0}.
state: the chains after the last weight increment (approximate draws from f_{beta_T}).
accept_prob: [T-1, B] HMC acceptance probability per transition, averaged over chains.
step_size: [T-1, B] the leapfrog step size each transition used.
"""


def _broadcastable(step_size, state):
    """[B] step sizes -> [1, B, 1, ...] so they broadcast against a [C, B, ...] state."""
    rank = state.shape.rank
    return tf.reshape(step_size, [1, -1] + [1] * (rank - 2))


def ais(annealed_log_prob_fn, initial_state, betas, *, seed, num_leapfrog_steps=10, step_size=0.05,
        adapt_step_size=True, target_accept_prob=0.65, min_step_size=1e-4, max_step_size=1.0):
    """Runs AIS chains along `betas` and returns an `AISTrace`.

    Args:
      annealed_log_prob_fn: (state [C, B, ...], beta scalar) -> log f_beta(state) [C, B].
      initial_state: [C, B, ...] exact draws from f_{betas[0]} (C chains for each of B examples).
      betas: [T + 1] inverse temperatures, increasing (forward AIS) or decreasing (reverse AIS).
      seed: a stateless seed, shape [2] integers.
      num_leapfrog_steps: L, leapfrog steps per HMC transition.
      step_size: a scalar or [B] initial step sizes, adapted after every transition toward
        `target_accept_prob` when adapt_step_size (per example, `hmc.adapt_step_size`); or a
        [T - 1, B] array of step sizes to use as given (adapt_step_size must then be False),
        e.g. a forward run's trace reversed for reverse AIS.
    """
    state = tf.convert_to_tensor(initial_state, tf.float32)
    betas = tf.cast(tf.convert_to_tensor(betas), tf.float32)
    # T weight increments (one per beta after the first) and T - 1 HMC moves between them.
    num_increments = betas.shape[0] - 1 if betas.shape[0] is not None else tf.shape(betas)[0] - 1
    batch = tf.shape(state)[1]
    step_size = tf.cast(tf.convert_to_tensor(step_size), tf.float32)
    fixed_steps = step_size.shape.rank == 2
    if fixed_steps and adapt_step_size:
        raise ValueError("A per-transition step-size array is used as given: pass adapt_step_size=False.")
    initial_step = tf.zeros([batch]) if fixed_steps else tf.broadcast_to(step_size, [batch])
    seed = tf.cast(seed, tf.int32)

    def transition(i, state, log_w, current_log_prob, step, seed, accept_trace, step_trace):
        beta = betas[i]
        step = step_size[i - 1] if fixed_steps else step
        kernel = hmc.hmc_kernel(lambda s: annealed_log_prob_fn(s, beta), _broadcastable(step, state),
                                num_leapfrog_steps)
        # Bootstrapping scores the unchanged chains under f_beta_i (and its gradient, which the
        # first leapfrog needs): the difference to f_beta_{i-1} is this step's weight increment.
        results = kernel.bootstrap_results(state)
        log_w += results.accepted_results.target_log_prob - current_log_prob
        seed, step_seed = tfp.random.split_seed(seed)
        state, results = kernel.one_step(state, results, seed=step_seed)
        accept = tf.reduce_mean(hmc.acceptance_probability(results), axis=0)
        accept_trace = accept_trace.write(i - 1, accept)
        step_trace = step_trace.write(i - 1, step)
        if adapt_step_size:
            step = hmc.adapt_step_size(step, accept, target_accept_prob, min_step_size=min_step_size,
                                       max_step_size=max_step_size)
        return (i + 1, state, log_w, results.accepted_results.target_log_prob, step, seed, accept_trace,
                step_trace)

    current_log_prob = annealed_log_prob_fn(state, betas[0])
    loop_vars = (
        tf.constant(1), state, tf.zeros_like(current_log_prob), current_log_prob, initial_step, seed,
        tf.TensorArray(tf.float32, size=num_increments - 1, element_shape=[None]),
        tf.TensorArray(tf.float32, size=num_increments - 1, element_shape=[None]),
    )
    _, state, log_w, current_log_prob, _, _, accept_trace, step_trace = tf.while_loop(
        lambda i, *_: i < num_increments, transition, loop_vars)
    # The last increment needs no move after it: z is not used again.
    log_w += annealed_log_prob_fn(state, betas[-1]) - current_log_prob
    return AISTrace(
        log_weights=log_w,
        state=state,
        accept_prob=_stack(accept_trace, batch),
        step_size=_stack(step_trace, batch),
    )


def _stack(trace, batch):
    return tf.reshape(trace.stack(), [-1, batch])
