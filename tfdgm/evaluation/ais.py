"""log p(x) by annealed importance sampling with HMC (Wu, Burda, Salakhutdinov & Grosse 2017).

The reference estimate for decoder-based models: C chains per example anneal from the prior (or
from q(z|x), "AIS with encoder") to the posterior along f_beta(z) = f_0(z)^(1-beta) p(x, z)^beta
(`tfdgm.mcmc.annealing`). Each chain's weight is exactly unbiased for p(x) (Neal 2001): the HMC
step sizes are adapted on separate pilot chains and only replayed by the weighted ones
(`tfdgm.mcmc.ais`). So log of their mean is a stochastic lower bound that tightens as the number
of intermediate distributions grows; unlike IWAE it does not rely on the encoder being good.
"""
import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from tfdgm import estimators, mcmc
from tfdgm.evaluation.common import batches, mean_and_stderr, validated
# Re-exported: models/ais_vae.py imports them from here until it is ported to tfdgm.mcmc.
from tfdgm.mcmc.annealing import STARTS, annealed_log_prob_fn, check_start, initial_state, require

# The default budget (`tfdgm evaluate --method ais`): sized so 1,000 Fashion-MNIST test images of
# a Burda-MLP model take under 15 minutes on 2 CPU cores (BENCHMARKS.md). Wu et al. used 16
# chains, 10 leapfrog steps and up to 10,000 steps: raise num_steps where time allows.
DEFAULT_AIS = dict(num_steps=500, num_chains=16, leapfrog_steps=10, schedule="sigmoidal", start="prior")


@dataclasses.dataclass
class AISResult:
    """Per-example AIS estimates and the diagnostics to judge them by.

    log_px: [N] log of the mean AIS weight over chains (a stochastic lower bound on log p(x),
      or an upper bound for reverse AIS in `bdmc`).
    log_px_stderr: [N] Monte Carlo standard error of each log_px over chains (delta method).
    log_weights: [N, C] the chains' log weights; log_weight_var is their variance per example.
    ess: [N] effective number of chains (Kish).
    accept_prob: [T-1] mean HMC acceptance probability per transition over examples and chains.
    step_size: [T-1] median leapfrog step size per transition over examples.
    collapsed: examples whose step size reached its floor or acceptance stayed near zero.
    """

    log_px: np.ndarray
    log_px_stderr: np.ndarray
    log_weights: np.ndarray
    accept_prob: np.ndarray
    step_size: np.ndarray
    collapsed: int = 0

    @property
    def log_weight_var(self):
        return self.log_weights.var(axis=1, ddof=1) if self.log_weights.shape[1] > 1 else np.zeros(len(self.log_px))

    @property
    def ess(self):
        return estimators.effective_sample_size(self.log_weights.T).numpy()

    def nll(self):
        """(mean NLL, standard error over examples) in nats; the latter includes the chains' noise."""
        return mean_and_stderr(-self.log_px)

    def summary(self):
        """A JSON-serialisable digest (means over examples and transitions)."""
        nll, stderr = self.nll()
        return {
            "nll": nll, "nll_stderr": stderr, "num_examples": int(len(self.log_px)),
            "num_chains": int(self.log_weights.shape[1]),
            "mean_chain_stderr": float(np.nanmean(self.log_px_stderr)),
            "mean_log_weight_var": float(self.log_weight_var.mean()), "mean_ess": float(self.ess.mean()),
            "accept_prob": float(self.accept_prob.mean()) if self.accept_prob.size else None,
            "final_step_size": float(self.step_size[-1]) if self.step_size.size else None,
            "collapsed_step_sizes": int(self.collapsed),
        }


def result_from_traces(log_weights, accept_probs, step_sizes, sign=1.0, min_step_size=1e-4):
    """Assembles an AISResult from per-batch [C, B] log weights and [T-1, B] traces.

    sign=-1 turns reverse-AIS weights (estimates of 1/p(x)) into upper bounds on log p(x).
    """
    log_w = np.concatenate([np.asarray(w, np.float64).T for w in log_weights])  # [N, C]
    num_chains = log_w.shape[1]
    log_mean = np.logaddexp.reduce(log_w, axis=1) - math.log(num_chains)
    # Delta method: sd(log mean w) ~ sd(w) / (sqrt(C) mean(w)), with w scaled so mean(w) = 1.
    scaled = np.exp(log_w - log_mean[:, None])
    chain_stderr = scaled.std(axis=1, ddof=1) / math.sqrt(num_chains) if num_chains > 1 else np.full(len(log_w), np.nan)
    accept = np.concatenate([np.asarray(a) for a in accept_probs], axis=1)  # [T-1, N]
    steps = np.concatenate([np.asarray(s) for s in step_sizes], axis=1)
    collapsed = 0
    if accept.size:
        collapsed = int(np.sum((steps[-1] <= min_step_size * 1.0001) | (accept.mean(axis=0) < 0.01)))
    return AISResult(
        log_px=sign * log_mean, log_px_stderr=chain_stderr, log_weights=sign * log_w,
        accept_prob=accept.mean(axis=1) if accept.size else np.zeros([0]),
        step_size=np.median(steps, axis=1) if steps.size else np.zeros([0]), collapsed=collapsed)


def default_pilot_chains(num_chains):
    """C // 4 clipped to [2, 8] (and at most C): the +-2% step rule needs only the sign of the
    acceptance error, which the mean acceptance probability of a few chains gives reliably (one
    chain is too noisy: BDMC gaps grew 2-3x), so the pilot adds at most 25% to the chains' cost
    for C >= 8 (it runs in the same kernel call as the weighted chains)."""
    num_chains = int(num_chains)
    return min(num_chains, max(2, min(8, num_chains // 4)))


class AISRunner:
    """Compiles one AIS batch function for a model and settings; reused by `ais_*` and `bdmc`."""

    def __init__(self, model, *, num_steps, num_chains, leapfrog_steps, schedule, start, step_size,
                 target_accept_prob, min_step_size=1e-4, pilot_chains=None, kernel_fn=None, jit_compile=False):
        check_start(model, start)
        if kernel_fn is None:
            require(model, "has_continuous_latents", "AIS with HMC (the default kernel_fn)")
        if int(num_chains) < 1 or int(leapfrog_steps) < 1:
            raise ValueError(f"num_chains and leapfrog_steps must be >= 1, got {num_chains} and {leapfrog_steps}.")
        pilot_chains = default_pilot_chains(num_chains) if pilot_chains is None else int(pilot_chains)
        if pilot_chains < 1:
            raise ValueError(f"pilot_chains must be >= 1, got {pilot_chains}.")
        if not 0.0 < target_accept_prob < 1.0:
            raise ValueError(f"target_accept_prob must lie in (0, 1), got {target_accept_prob}.")
        self.model = model
        self.betas = mcmc.annealing_schedule(schedule, num_steps)
        self.num_chains, self.pilot_chains = int(num_chains), pilot_chains
        self.kernel_fn = kernel_fn or mcmc.hmc_kernel_fn(int(leapfrog_steps))
        self.start = start
        self.step_size = float(step_size)
        self.target_accept_prob = float(target_accept_prob)
        self.min_step_size = min_step_size
        self.forward = tf.function(self._forward, jit_compile=jit_compile)
        self.reverse = tf.function(self._reverse, jit_compile=jit_compile)

    def _forward(self, x, seed):
        init_seed, pilot_seed, chain_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
        z = initial_state(self.model, x, self.start, self.num_chains, init_seed)
        # The pilot's own exact starting draws: the steps it tunes must not depend on z.
        pilot = initial_state(self.model, x, self.start, self.pilot_chains, pilot_seed)
        return mcmc.ais(annealed_log_prob_fn(self.model, x, self.start), z, self.betas, seed=chain_seed,
                        kernel_fn=self.kernel_fn, step_size=self.step_size, pilot_state=pilot,
                        target_accept_prob=self.target_accept_prob, min_step_size=self.min_step_size)

    def _reverse(self, x, z_posterior, step_sizes, seed):
        """Reverse AIS from exact posterior draws z_posterior [B, D], replaying `step_sizes` [T-1, B]."""
        z = tf.tile(z_posterior[None], [self.num_chains, 1, 1])
        return mcmc.ais(annealed_log_prob_fn(self.model, x, self.start), z, self.betas[::-1], seed=seed,
                        kernel_fn=self.kernel_fn, step_size=step_sizes[::-1], adapt_step_size=False)


def default_batch_size(model, num_chains, max_elements=2**22):
    """Examples per batch so the decoder's [C * B, *x] output stays under max_elements floats."""
    return max(1, min(200, max_elements // (num_chains * math.prod(model.example_shape))))


def ais_log_likelihoods(model, data, *, num_steps=DEFAULT_AIS["num_steps"], num_chains=DEFAULT_AIS["num_chains"],
                        leapfrog_steps=DEFAULT_AIS["leapfrog_steps"], schedule=DEFAULT_AIS["schedule"],
                        start=DEFAULT_AIS["start"], step_size=0.05, target_accept_prob=0.65, pilot_chains=None,
                        kernel_fn=None, batch_size=None, seed=0, jit_compile=False, verbose=True):
    """Per-example AIS estimates of log p(x) for a model with a tractable log p(x, z); an AISResult.

    Args:
      num_steps: T intermediate distributions (weight increments); T - 1 HMC moves.
      num_chains: C independent chains per example; log p̂(x) = log mean of their weights.
      leapfrog_steps: L per HMC move. Cost: about C * (T - 1) * (L + 1) decoder
        forward-backward passes per example (the +1 scores each new temperature).
      schedule: "sigmoidal", "linear", "geometric" or an explicit array of betas (tfdgm.mcmc).
      start: "prior" (Wu et al.'s protocol; independent of the encoder) or "encoder" (q(z|x)).
      step_size, target_accept_prob: initial leapfrog step, adapted per example and transition
        on `pilot_chains` extra chains (default `default_pilot_chains`: C // 4 in [2, 8]) with
        their own starting draws; the C weighted chains replay the pilot's steps, so each weight
        stays exactly unbiased for p(x). The pilot's weights are discarded.
      kernel_fn: a `tfdgm.mcmc` kernel factory replacing HMC (leapfrog_steps is then unused).
    """
    runner = AISRunner(model, num_steps=num_steps, num_chains=num_chains, leapfrog_steps=leapfrog_steps,
                       schedule=schedule, start=start, step_size=step_size, target_accept_prob=target_accept_prob,
                       pilot_chains=pilot_chains, kernel_fn=kernel_fn, jit_compile=jit_compile)
    data = validated(model, data, "AIS")
    batch_size = batch_size or default_batch_size(model, num_chains)
    total = None if isinstance(data, tf.data.Dataset) else math.ceil(len(data) / batch_size)
    progress = keras.utils.Progbar(total, unit_name="batch") if verbose else None
    traces = []
    for step, x in enumerate(batches(data, batch_size)):
        trace = runner.forward(tf.convert_to_tensor(x, tf.float32), tf.constant([seed, step], tf.int32))
        traces.append(trace)
        if progress is not None:
            progress.update(step + 1)
    if not traces:
        raise ValueError("AIS got an empty data set: there is nothing to evaluate.")
    result = result_from_traces([t.log_weights for t in traces], [t.accept_prob for t in traces],
                                [t.step_size for t in traces])
    _warn_if_collapsed(result)
    return result


def _warn_if_collapsed(result):
    if result.collapsed:
        print(f"tfdgm AIS warning: the HMC step size collapsed (hit its floor or acceptance < 1%) for "
              f"{result.collapsed} of {len(result.log_px)} examples; their estimates are unreliable. "
              f"Try a smaller initial step_size or more leapfrog steps.")


def ais_nll(model, data, **kwargs):
    """Test NLL by AIS: returns (mean NLL, standard error over examples), nats.

    A stochastic upper bound on the true NLL (AIS weights are unbiased for p(x), so log of their
    mean is biased low by Jensen), tightening as num_steps grows. Keyword arguments as for
    `ais_log_likelihoods`.
    """
    return ais_log_likelihoods(model, data, **kwargs).nll()
