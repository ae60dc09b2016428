"""Bidirectional Monte Carlo (Grosse, Ghahramani & Adams 2015; Wu et al. 2017): sandwich log p(x).

On data simulated from the model, (z*, x) ~ p(z) p(x|z), z* is an exact posterior sample of x.
Forward AIS from the prior gives a stochastic lower bound on log p(x); reverse AIS started at z*
and annealed back to the prior gives a stochastic upper bound. The gap between them bounds the
error of the forward estimate at the same budget on this model and data, so it says how many
steps the forward AIS on real data needs.

Both directions are exactly unbiased (for p(x) and 1/p(x)): the forward steps are adapted on
separate pilot chains (`tfdgm.mcmc.ais`), and the reverse pass replays that frozen trace.
"""
import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from tfdgm.evaluation.common import mean_and_stderr
from tfdgm.evaluation.ais import (DEFAULT_AIS, AISResult, AISRunner, _warn_if_collapsed, default_batch_size, require,
                                  result_from_traces)


@dataclasses.dataclass
class BDMCResult:
    """lower (forward AIS) and upper (reverse AIS) per-example bounds on log p(x) of simulated data."""

    lower: AISResult
    upper: AISResult
    data: np.ndarray

    @property
    def gap(self):
        """Mean (upper - lower) in nats: the sandwich's width; 0 at an exact estimate."""
        return float(np.mean(self.upper.log_px - self.lower.log_px))

    def summary(self):
        lower, lower_se = mean_and_stderr(self.lower.log_px)
        upper, upper_se = mean_and_stderr(self.upper.log_px)
        gap, gap_se = mean_and_stderr(self.upper.log_px - self.lower.log_px)
        return {"lower": lower, "lower_stderr": lower_se, "upper": upper, "upper_stderr": upper_se,
                "gap": gap, "gap_stderr": gap_se, "num_examples": int(len(self.data)),
                "accept_prob": float(self.lower.accept_prob.mean()) if self.lower.accept_prob.size else None,
                "collapsed_step_sizes": int(self.lower.collapsed)}


def bdmc(model, num_examples=100, *, num_steps=DEFAULT_AIS["num_steps"], num_chains=DEFAULT_AIS["num_chains"],
         leapfrog_steps=DEFAULT_AIS["leapfrog_steps"], schedule=DEFAULT_AIS["schedule"], start=DEFAULT_AIS["start"],
         step_size=0.05, target_accept_prob=0.65, pilot_chains=None, kernel_fn=None, batch_size=None, seed=0,
         jit_compile=False, verbose=True):
    """Lower and upper stochastic bounds on log p(x) for `num_examples` images simulated from `model`.

    The forward step sizes are adapted on `pilot_chains` separate chains and frozen (as in
    `ais_log_likelihoods`); the reverse chains replay that trace backwards (per example), so both
    directions use the same transition kernels, as the sandwich argument requires. Returns a
    BDMCResult; `.gap` is its width in nats.
    """
    if int(num_examples) < 1:
        raise ValueError(f"BDMC needs num_examples >= 1, got {num_examples}.")
    require(model, "has_joint", "BDMC (simulated data (z, x) ~ p(z) p(x|z) and log p(x, z))")
    runner = AISRunner(model, num_steps=num_steps, num_chains=num_chains, leapfrog_steps=leapfrog_steps,
                       schedule=schedule, start=start, step_size=step_size, target_accept_prob=target_accept_prob,
                       pilot_chains=pilot_chains, kernel_fn=kernel_fn, jit_compile=jit_compile)
    z_true, x_all = (t.numpy() for t in model.sample_joint(int(num_examples), seed=tf.constant([seed, 0])))
    batch_size = batch_size or default_batch_size(model, num_chains)
    total = math.ceil(len(x_all) / batch_size)
    progress = keras.utils.Progbar(total, unit_name="batch") if verbose else None
    forward, backward = [], []
    for step in range(total):
        x = tf.constant(x_all[step * batch_size : (step + 1) * batch_size])
        z = tf.constant(z_true[step * batch_size : (step + 1) * batch_size])
        fwd = runner.forward(x, tf.constant([seed, 2 * step + 1], tf.int32))
        rev = runner.reverse(x, z, fwd.step_size, tf.constant([seed, 2 * step + 2], tf.int32))
        forward.append(fwd)
        backward.append(rev)
        if progress is not None:
            progress.update(step + 1)
    lower = result_from_traces([t.log_weights for t in forward], [t.accept_prob for t in forward],
                               [t.step_size for t in forward])
    upper = result_from_traces([t.log_weights for t in backward], [t.accept_prob for t in backward],
                               [t.step_size for t in backward], sign=-1.0)
    _warn_if_collapsed(lower)
    return BDMCResult(lower=lower, upper=upper, data=x_all)
