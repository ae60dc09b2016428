"""Annealed importance sampling (Neal 2001; Wu et al. 2017), forward or reverse, with any kernel.

For a path of unnormalised densities f_beta from f_{beta_0} to f_{beta_T}, AIS starts chains at
exact draws from f_{beta_0} and, for t = 1..T, multiplies each chain's weight by
f_{beta_t}(z) / f_{beta_{t-1}}(z) and then moves z with a kernel that leaves f_{beta_t}
invariant (HMC by default). E[w] = Z_{beta_T} / Z_{beta_0} exactly, provided the kernels do not
depend on the chains being weighted. Run with betas 0 -> 1 from the prior (or q(z|x)) it
estimates p(x) from below; run with betas 1 -> 0 from an exact posterior sample (reverse AIS) it
estimates 1 / p(x), i.e. log p(x) from above: the two halves of BDMC (Grosse et al. 2015).

Step-size adaptation keeps E[w] = Z: the step sizes are tuned on separate pilot chains (their
own exact starting draws, their own random numbers), never on the chains that are weighted.
The pilot runs in lockstep with the estimating chains, in the same kernel call: at transition t
both use the pilot's step s_t, and s_{t+1} is set from the pilot's acceptance only. That is the
same as a pilot pass run first whose [T-1, B] step trace is frozen and replayed (the estimating
chains never feed back), for one loop instead of two. Adapting from the weighted chains
themselves, as Wu et al.'s code does, makes the kernel path-dependent and biases E[w].

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
state: the chains after the last weight increment (approximate draws from f_{beta_T}), in the
  structure of `initial_state`.
accept_prob: [T-1, B] acceptance probability per transition, averaged over the (estimating)
  chains; 1 for kernels that report none (Gibbs).
step_size: [T-1, B] the step size each transition used (NaN for step_size=None).
"""


def _per_part(step, parts):
    """[B] step sizes -> one [1, B, 1, ...] tensor per state part, in its dtype."""
    return [tf.cast(tf.reshape(step, [1, -1] + [1] * (p.shape.rank - 2)),
                    p.dtype if p.dtype.is_floating else step.dtype) for p in parts]


def _as_parts(state):
    parts = [tf.convert_to_tensor(p, dtype_hint=tf.float32) for p in tf.nest.flatten(state)]
    # Float64 arrays from numpy become float32 like the models; integer/bool states (RBMs) stay.
    return [tf.cast(p, tf.float32) if p.dtype.is_floating else p for p in parts]


def ais(annealed_log_prob_fn, initial_state, betas, *, seed, kernel_fn=None, num_leapfrog_steps=10,
        step_size=0.05, adapt_step_size=True, pilot_state=None, target_accept_prob=0.65, min_step_size=1e-4,
        max_step_size=1.0):
    """Runs AIS chains along `betas` and returns an `AISTrace`. Unbiased for Z_T / Z_0.

    Args:
      annealed_log_prob_fn: (state, beta scalar) -> log f_beta(state) [N, B]; when adapting it
        sees the pilot and weighted chains together (N = P + C, pilot first).
      initial_state: exact draws from f_{betas[0]}: a tensor or a tf.nest structure of tensors,
        each with chain axis 0 and batch axis 1 ([C, B, ...]).
      betas: [T + 1] inverse temperatures, increasing (forward AIS) or decreasing (reverse AIS).
      seed: a stateless seed, shape [2] integers.
      kernel_fn: (target_log_prob_fn, step_size, beta) -> tfp.mcmc.TransitionKernel, see
        `tfdgm.mcmc.hmc`; default `hmc_kernel_fn(num_leapfrog_steps)`.
      num_leapfrog_steps: L, leapfrog steps per HMC transition (default kernel only).
      step_size: a scalar or [B] initial step sizes; or a [T - 1, B] array used as given
        (adapt_step_size must then be False), e.g. a forward run's trace reversed for reverse
        AIS; or None for kernels without a step size (adaptation is then skipped).
      adapt_step_size: tune the step per example and transition toward `target_accept_prob`
        (`hmc.adapt_step_size`, clipped to [min_step_size, max_step_size]) on `pilot_state`.
        Skipped for kernels whose results carry no acceptance ratio.
      pilot_state: [P, B, ...] exact draws from f_{betas[0]}, independent of initial_state, in
        its structure: the pilot chains that adaptation reads (their moves use other elements of
        each step's random draws, so they are independent too). Required when adapting; their
        weights and states are not returned.
    """
    parts = _as_parts(initial_state)
    structure = initial_state
    betas = tf.cast(tf.convert_to_tensor(betas), tf.float32)
    # T weight increments (one per beta after the first) and T - 1 moves between them.
    num_increments = betas.shape[0] - 1 if betas.shape[0] is not None else tf.shape(betas)[0] - 1
    batch = tf.shape(parts[0])[1]
    kernel_fn = kernel_fn or hmc.hmc_kernel_fn(num_leapfrog_steps)
    has_step = step_size is not None
    step_size = tf.cast(tf.convert_to_tensor(step_size if has_step else 0.0), tf.float32)
    fixed_steps = step_size.shape.rank == 2
    if fixed_steps and adapt_step_size:
        raise ValueError("A per-transition step-size array is used as given: pass adapt_step_size=False.")
    adapt = adapt_step_size and has_step and not (isinstance(num_increments, int) and num_increments < 2)
    num_pilot = 0
    if adapt:
        if pilot_state is None:
            raise ValueError("Step-size adaptation needs pilot_state: exact draws from the start of the path, "
                             "independent of initial_state, that tune the steps (adapting on the weighted chains "
                             "biases AIS). Or pass adapt_step_size=False.")
        tf.nest.assert_same_structure(initial_state, pilot_state)
        pilot_parts = _as_parts(pilot_state)
        num_pilot = tf.shape(pilot_parts[0])[0]
        parts = [tf.concat([p, q], axis=0) for p, q in zip(pilot_parts, parts)]
    initial_step = tf.zeros([batch]) if fixed_steps else tf.broadcast_to(step_size, [batch])
    seed = tf.cast(seed, tf.int32)

    def target_at(beta):
        return lambda *p: annealed_log_prob_fn(tf.nest.pack_sequence_as(structure, list(p)), beta)

    def transition(i, parts, log_w, current_log_prob, step, seed, accept_trace, step_trace):
        beta = betas[i]
        step = step_size[i - 1] if fixed_steps else step
        target = target_at(beta)
        kernel = kernel_fn(target, _per_part(step, parts) if has_step else None, beta)
        # Bootstrapping scores the unchanged chains under f_beta_i (and its gradient, which the
        # first leapfrog needs): the difference to f_beta_{i-1} is this step's weight increment.
        results = kernel.bootstrap_results(parts)
        log_prob = hmc.target_log_prob(results)
        log_w += (target(*parts) if log_prob is None else log_prob) - current_log_prob
        seed, step_seed = tfp.random.split_seed(seed)
        parts, results = kernel.one_step(parts, results, seed=step_seed)
        parts = list(parts) if isinstance(parts, (list, tuple)) else [parts]
        log_prob = hmc.target_log_prob(results)
        log_prob = target(*parts) if log_prob is None else log_prob
        accept = hmc.acceptance_probability(results)
        step_trace = step_trace.write(i - 1, step if has_step else tf.fill([batch], float("nan")))
        if accept is None:  # e.g. Gibbs: every move is taken, and there is nothing to adapt on
            accept = tf.ones_like(log_prob)
        elif adapt:
            # The pilot chains alone set the next step: the weighted chains never feed back.
            step = hmc.adapt_step_size(step, tf.reduce_mean(accept[:num_pilot], axis=0), target_accept_prob,
                                       min_step_size=min_step_size, max_step_size=max_step_size)
        accept_trace = accept_trace.write(i - 1, tf.reduce_mean(accept[num_pilot:], axis=0))
        return i + 1, parts, log_w, log_prob, step, seed, accept_trace, step_trace

    current_log_prob = annealed_log_prob_fn(tf.nest.pack_sequence_as(structure, parts), betas[0])
    loop_vars = (
        tf.constant(1), parts, tf.zeros_like(current_log_prob), current_log_prob, initial_step, seed,
        tf.TensorArray(tf.float32, size=num_increments - 1, element_shape=[None]),
        tf.TensorArray(tf.float32, size=num_increments - 1, element_shape=[None]),
    )
    _, parts, log_w, current_log_prob, _, _, accept_trace, step_trace = tf.while_loop(
        lambda i, *_: i < num_increments, transition, loop_vars)
    # The last increment needs no move after it: z is not used again.
    log_w += annealed_log_prob_fn(tf.nest.pack_sequence_as(structure, parts), betas[-1]) - current_log_prob
    # Only the estimating chains are returned; the pilot's weights are not independent of the steps.
    state = tf.nest.pack_sequence_as(structure, [p[num_pilot:] for p in parts])
    return AISTrace(log_weights=log_w[num_pilot:], state=state, accept_prob=_stack(accept_trace, batch),
                    step_size=_stack(step_trace, batch))


def _stack(trace, batch):
    return tf.reshape(trace.stack(), [-1, batch])
