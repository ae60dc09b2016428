"""log Z of models with a free energy (RBMs) by AIS from a base-rate model (Salakhutdinov & Murray 2008).

The path runs from the base-rate model (independent visibles of logits a, the data's pixel
marginals: an RBM with W = 0, Z_0 = 2^H prod_i (1 + e^{a_i})) to the model f_1(v) = exp(-F(v)),
through the joints exp((1 - beta) a'v + beta (b'v + c'h + v'Wh)) with h summed out
(`model.annealed_log_prob`; not the geometric mean of the two marginals, which no Gibbs step
samples); each transition is a Gibbs step v -> h -> v' that leaves f_beta invariant
(`model.annealed_gibbs_step`), plugged into `tfdgm.mcmc.ais` as a kernel that reports no
acceptance. E[w] = Z_1 / Z_0, so log Z_0 + log mean w is a stochastic lower bound on log Z.

Reverse AIS (the BDMC pattern of Grosse et al. 2015) runs the same kernels from beta = 1 to 0,
starting at draws from the model: with exact draws (`model.exact_samples`, enumerable models) its
weights are unbiased for Z_0 / Z_1, so log Z_0 - log mean w is a stochastic *upper* bound on log Z
and the two bracket it. For large models the reverse chains start where the forward chains ended
(approximate draws from the model), and the upper estimate is then a diagnostic, not a bound.

Test log-likelihoods are log p(x) = -F(x) - log Z: the forward log Z gives the usual (slightly
optimistic) estimate, the reverse one a conservative one.
"""
import dataclasses
import math
import time

import numpy as np
import tensorflow as tf

from tfdgm import mcmc
from tfdgm.evaluation.common import batches, mean_and_stderr, validated
from tfdgm.mcmc.annealing import require

DEFAULT_PARTITION_AIS = dict(num_steps=1000, num_chains=100, schedule="linear")


class AnnealedGibbsKernel:
    """A tfp.mcmc-style kernel: one Gibbs step of the tempered model at inverse temperature beta.

    Its results carry the target's log density at the state (so `ais` need not rescore it) and no
    acceptance ratio (every move is taken).
    """

    def __init__(self, model, base_logits, target_log_prob_fn, beta):
        self.model, self.base_logits, self.target_log_prob_fn, self.beta = model, base_logits, target_log_prob_fn, beta

    @property
    def is_calibrated(self):
        return True

    def bootstrap_results(self, parts):
        return _Results(target_log_prob=self.target_log_prob_fn(*parts))

    def one_step(self, parts, results, seed=None):
        v = parts[0]
        shape = tf.concat([tf.shape(v)[:-1], [self.model.num_hidden + self.model.num_visible]], 0)
        uniform = tf.random.stateless_uniform(shape, seed=tf.cast(seed, tf.int32))
        v = self.model.annealed_gibbs_step(v, self.beta, self.base_logits, uniform)
        return [v], _Results(target_log_prob=self.target_log_prob_fn(v))


class _Results(dict):
    """Dict results with attribute access, as `tfdgm.mcmc.hmc.target_log_prob` reads them."""

    def __getattr__(self, name):
        return self.get(name)


def gibbs_kernel_fn(model, base_logits):
    """kernel_fn(target_log_prob_fn, step_size, beta) for `tfdgm.mcmc.ais`."""
    def kernel_fn(target_log_prob_fn, step_size, beta):
        del step_size  # Gibbs has none
        return AnnealedGibbsKernel(model, base_logits, target_log_prob_fn, beta)
    return kernel_fn


def base_rate_logits(data, num_visible, pseudo_count=0.05):
    """Logits of the pixel marginals of binary data [N, ...] (smoothed by pseudo_count examples of
    each value, so no pixel is exactly 0 or 1): the base-rate model of Salakhutdinov & Murray."""
    x = np.asarray(data, np.float64).reshape(len(data), -1)
    if x.shape[1] != num_visible:
        raise ValueError(f"base-rate data has {x.shape[1]} pixels per example, the model {num_visible}.")
    p = (x.sum(0) + pseudo_count) / (len(x) + 2 * pseudo_count)
    return np.log(p) - np.log1p(-p)


@dataclasses.dataclass
class PartitionResult:
    """log Z by forward AIS (a stochastic lower bound) and by reverse AIS (an upper one from exact draws).

    log_z_stderr: delta-method standard error over the chains; log_weights: [C] each direction's.
    reverse_from: "exact" (a bound) or "forward" (the forward chains' end states; a diagnostic).
    """

    log_z: float
    log_z_stderr: float
    log_z_reverse: float | None
    log_z_reverse_stderr: float | None
    log_weights: np.ndarray
    reverse_log_weights: np.ndarray | None
    num_steps: int
    num_chains: int
    reverse_from: str | None
    time_s: float

    @property
    def gap(self):
        return None if self.log_z_reverse is None else self.log_z_reverse - self.log_z

    def summary(self):
        return {"log_z": self.log_z, "log_z_stderr": self.log_z_stderr, "log_z_reverse": self.log_z_reverse,
                "log_z_reverse_stderr": self.log_z_reverse_stderr, "log_z_gap": self.gap,
                "ais_num_steps": self.num_steps, "ais_num_chains": self.num_chains,
                "reverse_from": self.reverse_from, "log_z_time_s": self.time_s}


def _log_mean_and_stderr(log_w):
    """(log mean exp(log_w), its delta-method standard error sd(w) / (sqrt(C) mean(w)))."""
    log_w = np.asarray(log_w, np.float64).reshape(-1)
    log_mean = np.logaddexp.reduce(log_w) - math.log(len(log_w))
    scaled = np.exp(log_w - log_mean)
    stderr = scaled.std(ddof=1) / math.sqrt(len(log_w)) if len(log_w) > 1 else float("nan")
    return float(log_mean), float(stderr)


def ais_log_partition(model, base_data=None, *, num_steps=DEFAULT_PARTITION_AIS["num_steps"],
                      num_chains=DEFAULT_PARTITION_AIS["num_chains"], schedule=DEFAULT_PARTITION_AIS["schedule"],
                      reverse=True, reverse_from="auto", seed=0, jit_compile=False):
    """log Z of a free-energy model by AIS with Gibbs transitions; a PartitionResult.

    Args:
      base_data: binary training examples whose pixel marginals define the base-rate model
        (Salakhutdinov & Murray); None uses sigmoid of the model's visible biases.
      num_steps: T intermediate distributions; num_chains: C chains (the usual: 100, 14,500 betas).
      schedule: "linear", "sigmoidal", "geometric", or an explicit array of betas; S&M used 500
        betas in [0, 0.5], 4,000 in [0.5, 0.9] and 10,000 in [0.9, 1] (`sm_schedule()`).
      reverse: also run reverse AIS; reverse_from "exact" (needs an enumerable model), "forward"
        (the forward chains' final states) or "auto" (exact where the model can enumerate).
    """
    require(model, "has_free_energy", "AIS for log Z (a free energy and Gibbs transitions)")
    if int(num_chains) < 2 or int(num_steps) < 1:
        raise ValueError(f"ais_log_partition needs num_chains >= 2 and num_steps >= 1, got {num_chains}, {num_steps}.")
    start = time.perf_counter()
    d = model.num_visible
    logits = (base_rate_logits(base_data, d) if base_data is not None
              else np.asarray(model.b_v.numpy(), np.float64))
    base = tf.constant(logits, tf.float32)
    log_z0 = float(model.annealed_log_partition_base(base))
    betas = mcmc.annealing_schedule(schedule, num_steps)

    def log_f(v, beta):  # v [C, 1, D] -> [C, 1]
        return model.annealed_log_prob(v, beta, base)

    kernel_fn = gibbs_kernel_fn(model, base)
    seeds = tf.random.experimental.stateless_split(tf.constant([seed, 0], tf.int64), 4)

    def run(state, betas, seed):
        return mcmc.ais(log_f, state, betas, seed=seed, kernel_fn=kernel_fn, step_size=None)

    run = tf.function(run, jit_compile=jit_compile)
    probs = tf.sigmoid(base)
    v0 = tf.cast(tf.random.stateless_uniform([int(num_chains), 1, d], seed=seeds[0]) < probs, tf.float32)
    fwd = run(v0, tf.constant(betas, tf.float32), seeds[1])
    log_z, log_z_se = _log_mean_and_stderr(fwd.log_weights.numpy())
    log_z += log_z0
    rev_z = rev_se = rev_w = source = None
    if reverse:
        source = reverse_from
        if reverse_from == "auto":
            try:
                model._enumerable()
                source = "exact"
            except ValueError:
                source = "forward"
        if source == "exact":
            start_state = model.exact_samples(int(num_chains), seeds[2])[:, None]
        elif source == "forward":
            start_state = fwd.state
        else:
            raise ValueError(f"reverse_from must be 'auto', 'exact' or 'forward', got {reverse_from!r}.")
        rev = run(start_state, tf.constant(betas[::-1].copy(), tf.float32), seeds[3])
        rev_w = rev.log_weights.numpy().reshape(-1)
        log_ratio, rev_se = _log_mean_and_stderr(rev_w)  # estimates log Z_0 / Z_1
        rev_z = log_z0 - log_ratio
    return PartitionResult(log_z=log_z, log_z_stderr=log_z_se, log_z_reverse=rev_z, log_z_reverse_stderr=rev_se,
                           log_weights=fwd.log_weights.numpy().reshape(-1), reverse_log_weights=rev_w,
                           num_steps=len(betas) - 1, num_chains=int(num_chains), reverse_from=source,
                           time_s=time.perf_counter() - start)


def sm_schedule():
    """Salakhutdinov & Murray's 14,500 betas: 500 in [0, 0.5), 4,000 in [0.5, 0.9), 10,000 in [0.9, 1]."""
    return np.concatenate([np.linspace(0.0, 0.5, 500, endpoint=False), np.linspace(0.5, 0.9, 4000, endpoint=False),
                           np.linspace(0.9, 1.0, 10001)])


def free_energy_log_likelihoods(model, data, partition, batch_size=500):
    """Per-example log p(x) = -F(x) - log Z [N] (forward log Z) for validated binary data."""
    data = validated(model, data, "free-energy log-likelihoods")
    free = np.concatenate([model.free_energy(tf.convert_to_tensor(x, tf.float32)).numpy()
                           for x in batches(data, batch_size)])
    return -free.astype(np.float64) - partition.log_z


def free_energy_nll(model, data, partition, batch_size=500):
    """{nll, nll_stderr, nll_reverse, ...}: the test NLL mean(F(x)) + log Z, its standard error
    combining the examples' spread and log Z's (independent) error, and the same with the reverse
    log Z (conservative), merged with the partition summary."""
    log_px = free_energy_log_likelihoods(model, data, partition, batch_size)
    nll, se = mean_and_stderr(-log_px)
    out = dict(partition.summary(), nll=nll, nll_stderr=float(math.sqrt(se ** 2 + partition.log_z_stderr ** 2)),
               num_examples=int(len(log_px)))
    if partition.log_z_reverse is not None:
        out.update(nll_reverse=nll + partition.gap,
                   nll_reverse_stderr=float(math.sqrt(se ** 2 + partition.log_z_reverse_stderr ** 2)))
    return out
