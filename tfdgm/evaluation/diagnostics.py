"""Posterior-collapse diagnostics: active units, KL per dimension and mutual information.

A collapsed latent dimension has q(z_i|x) = p(z_i) for every x: it carries no information about
x, its KL term is 0 and its posterior mean does not move with x. These functions measure that
from one pass of the encoder over a data set (`posterior_statistics`):

  - active units (Burda, Grosse & Salakhutdinov 2016, sec. 5.2): Cov_x(E_q[z_i|x]) > 0.01;
  - the analytic KL(q(z_i|x) || p(z_i)) per dimension, averaged over x;
  - the mutual information I_q(x; z) under q(x, z) = p_data(x) q(z|x), by Monte Carlo against the
    aggregate posterior q(z) = (1/N) sum_n q(z|x_n) (Hoffman & Johnson 2016, "ELBO surgery";
    the estimator of He et al. 2019, "Lagging inference networks"), with its two bounds:
      * E_x KL(q(z|x) || p(z)) = I_q(x; z) + KL(q(z) || p(z)) >= I_q(x; z) (Hoffman & Johnson);
      * the lower bound of CS294-158 lecture 4 ("Estimating Mutual Information", Barber &
        Agakov 2003) on the *model's* information I_p(x; z) under p(z) p(x|z):
        I_p(z; x) = H(z) - H(z|x) >= H(z) + E_{p(z) p(x|z)}[log q(z|x)].

Every estimate uses stateless random numbers from `seed`, so a call is deterministic.
"""
import collections
import math

import numpy as np
import tensorflow as tf

from tfdgm import distributions as dists
from tfdgm.evaluation.common import batches, mean_and_stderr
from tfdgm.mcmc.annealing import require

__all__ = [
    "PosteriorStatistics",
    "active_units",
    "kl_per_dimension",
    "latent_diagnostics",
    "mutual_information",
    "posterior_statistics",
]

PosteriorStatistics = collections.namedtuple("PosteriorStatistics", ["loc", "scale", "kl"])
PosteriorStatistics.__doc__ = """q(z|x_n) for a data set: loc and scale [N, D] and KL(q(z_i|x_n) || p(z_i)) [N, D],
float64 numpy arrays."""

_LOG_2PI = math.log(2.0 * math.pi)


def _posterior_params(model, x):
    """(loc, scale) [B, D] of q(z|x) in float32 (mixed_bfloat16 encoders emit bfloat16, too coarse
    for the small variances and log-densities computed here)."""
    q = model.posterior(tf.cast(x, tf.float32))
    return tf.cast(q.mean(), tf.float32), tf.cast(q.stddev(), tf.float32)


def posterior_statistics(model, data, batch_size=100):
    """One encoder pass over data (array [N, ...] or tf.data.Dataset): a `PosteriorStatistics`.

    Every other function here takes `statistics=` so that several diagnostics share this pass.
    """
    require(model, "has_encoder", "Latent diagnostics (q(z|x) from model.posterior)")
    require(model, "has_posterior", "Latent diagnostics (q(z|x) from model.posterior)")
    prior = model.prior().distribution  # the per-dimension Normal under the Independent wrapper
    locs, scales, kls = [], [], []
    for x in batches(data, batch_size):
        loc, scale = _posterior_params(model, x)
        kl = dists.diagonal_gaussian(loc, scale).distribution.kl_divergence(prior)
        locs.append(loc.numpy())
        scales.append(scale.numpy())
        kls.append(kl.numpy())
    if not locs or sum(len(loc) for loc in locs) == 0:
        raise ValueError("Latent diagnostics got an empty data set: there is nothing to evaluate.")
    return PosteriorStatistics(*(np.concatenate(parts).astype(np.float64) for parts in (locs, scales, kls)))


def _statistics(model, data, batch_size, statistics):
    return statistics if statistics is not None else posterior_statistics(model, data, batch_size)


def active_units(model, data, threshold=1e-2, batch_size=100, statistics=None):
    """Burda et al. (2016): unit i is active if A_i = Cov_x(E_q[z_i|x]) > threshold.

    Returns (number of active units, A [D] as a float64 array). A is the population variance
    over the data set of the posterior means.
    """
    stats = _statistics(model, data, batch_size, statistics)
    activity = stats.loc.var(axis=0)
    return int(np.sum(activity > threshold)), activity


def kl_per_dimension(model, data, batch_size=100, statistics=None):
    """E_x KL(q(z_i|x) || p(z_i)) per latent dimension [D], analytic; sums to the mean total KL."""
    return _statistics(model, data, batch_size, statistics).kl.mean(axis=0)


def _gaussian_log_density_matrix(z, loc, scale):
    """log N(z_m; loc_n, diag(scale_n^2)) for every pair (m, n): [M, N], float64.

    Expanding (z - loc)^2 / scale^2 turns the [M, N, D] broadcast into two matrix products, so
    memory is M*N rather than M*N*D; in float64 the cancellation this invites is negligible
    (relative error ~1e-16 of terms z^2/scale^2, which stay far below 1e8 for any sane encoder).
    """
    precision = 1.0 / tf.square(scale)  # [N, D]
    quadratic = (
        tf.matmul(tf.square(z), precision, transpose_b=True)
        - 2.0 * tf.matmul(z, loc * precision, transpose_b=True)
        + tf.reduce_sum(tf.square(loc) * precision, axis=1)[None, :]
    )
    log_norm = -tf.reduce_sum(tf.math.log(scale), axis=1) - 0.5 * z.shape[-1] * _LOG_2PI  # [N]
    return -0.5 * quadratic + log_norm[None, :]


def _log_aggregate_posterior(z, loc, scale, max_elements):
    """log q(z) = logsumexp_n log q(z|x_n) - log N for each z [M, D]: [M], float64.

    Chunks over both the M points and the N posteriors so no [m, n] block exceeds `max_elements`,
    and combines the chunks over n with a running log-sum-exp, which is exact. Blocks are kept
    roughly square (or all N wide when that fits) so that their number, each an eager call, stays
    near M*N / max_elements.
    """
    num_points, num_posteriors = int(z.shape[0]), int(loc.shape[0])
    max_elements = max(1, int(max_elements))
    n_chunk = min(num_posteriors, max(math.isqrt(max_elements), max_elements // num_points))
    m_chunk = max(1, max_elements // n_chunk)
    out = []
    for m in range(0, num_points, m_chunk):
        acc = tf.fill([min(m_chunk, num_points - m)], tf.constant(-np.inf, tf.float64))
        for n in range(0, num_posteriors, n_chunk):
            block = _gaussian_log_density_matrix(z[m : m + m_chunk], loc[n : n + n_chunk], scale[n : n + n_chunk])
            acc = tf.reduce_logsumexp(tf.stack([acc, tf.reduce_logsumexp(block, axis=1)]), axis=0)
        out.append(acc)
    return tf.concat(out, axis=0) - math.log(num_posteriors)


def _barber_agakov_bound(model, num_samples, batch_size, seed):
    """The lecture's lower bound H(z) + E_{p(z) p(x|z)}[log q(z|x)] <= I_p(x; z), with its stderr.

    Ancestral samples z ~ p(z), x ~ p(x|z) (the model's joint, not q's), scored by the encoder.
    """
    prior = model.prior()
    terms = []
    for step, start in enumerate(range(0, num_samples, batch_size)):
        z, x = model.sample_joint(min(batch_size, num_samples - start), seed=tf.constant([seed, 2 + step]))
        terms.append(dists.diagonal_gaussian(*_posterior_params(model, x)).log_prob(z).numpy())
    return mean_and_stderr(float(prior.entropy()) + np.concatenate(terms))


def mutual_information(model, data, num_samples=1, num_prior_samples=1000, batch_size=100, seed=0,
                       max_elements=2**22, statistics=None):
    """I_q(x; z) for q(x, z) = p_data(x) q(z|x), its KL bounds and the lecture's bound. A dict:

      mutual_information, _stderr: mean over n and num_samples draws z ~ q(z|x_n) of
          log q(z|x_n) - log q(z), with q(z) = (1/N) sum_m q(z|x_m) over the whole data set. It is
          exact for the empirical p_data up to Monte-Carlo error, hence never above log N: use N
          well beyond exp(expected MI). The stderr is over examples (std / sqrt(N)).
      kl_aggregate_posterior_to_prior, _stderr: KL(q(z) || p(z)) = E_q(z)[log q(z) - log p(z)]
          from the same draws: the gap in E_x KL(q(z|x) || p(z)) = I_q(x; z) + KL(q(z) || p(z)).
      mutual_information_upper_bound: E_x KL(q(z|x) || p(z)) (analytic) >= I_q(x; z).
      model_mutual_information_lower_bound, _stderr: the lecture's H(z) + E_{p(z)p(x|z)}[log q(z|x)]
          <= I_p(x; z) over num_prior_samples ancestral samples (skipped when 0).
    """
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    stats = _statistics(model, data, batch_size, statistics)
    loc, scale = tf.constant(stats.loc), tf.constant(stats.scale)
    num_examples, latent_dim = stats.loc.shape
    # All draws at once from the statistics, so the result does not depend on batch_size.
    eps = tf.random.stateless_normal([num_samples, num_examples, latent_dim], seed=[seed, 0], dtype=tf.float64,
                                     alg="philox")
    z = tf.reshape(loc + scale * eps, [-1, latent_dim])  # [S*N, D], sample-major
    log_q_z_x = -0.5 * tf.reduce_sum(tf.square(eps), axis=-1) - tf.reduce_sum(tf.math.log(scale), axis=-1) \
        - 0.5 * latent_dim * _LOG_2PI  # [S, N], log q(z|x_n) at its own draws: no need for the matrix
    log_q_z = tf.reshape(_log_aggregate_posterior(z, loc, scale, max_elements), [num_samples, num_examples])
    log_p_z = tf.reshape(tf.cast(model.prior().log_prob(tf.cast(z, tf.float32)), tf.float64),
                         [num_samples, num_examples])
    # Average the S draws of each example first: the stderr is then over independent examples.
    mi, mi_stderr = mean_and_stderr(tf.reduce_mean(log_q_z_x - log_q_z, axis=0))
    kl_agg, kl_agg_stderr = mean_and_stderr(tf.reduce_mean(log_q_z - log_p_z, axis=0))
    result = {
        "mutual_information": mi,
        "mutual_information_stderr": mi_stderr,
        "kl_aggregate_posterior_to_prior": kl_agg,
        "kl_aggregate_posterior_to_prior_stderr": kl_agg_stderr,
        "mutual_information_upper_bound": float(stats.kl.sum(axis=1).mean()),
    }
    if num_prior_samples:
        bound, stderr = _barber_agakov_bound(model, int(num_prior_samples), batch_size, seed)
        result["model_mutual_information_lower_bound"] = bound
        result["model_mutual_information_lower_bound_stderr"] = stderr
    return result


def latent_diagnostics(model, data, threshold=1e-2, num_samples=1, num_prior_samples=1000, batch_size=100,
                       seed=0, max_elements=2**22):
    """Every diagnostic above from one encoder pass, as a JSON-serialisable dict of floats/lists.

    Keys: num_examples, active_units, activity_per_dim, kl_per_dim, kl (E_x KL(q(z|x) || p(z))),
    and the entries of `mutual_information`. Posterior collapse shows as active_units == 0,
    kl_per_dim ~ 0 and mutual_information ~ 0.
    """
    stats = posterior_statistics(model, data, batch_size)
    count, activity = active_units(model, None, threshold, statistics=stats)
    kl_dims = kl_per_dimension(model, None, statistics=stats)
    result = {
        "num_examples": int(stats.loc.shape[0]),
        "active_units": count,
        "activity_per_dim": activity.tolist(),
        "kl_per_dim": kl_dims.tolist(),
        "kl": float(kl_dims.sum()),
    }
    result.update(mutual_information(model, None, num_samples, num_prior_samples, batch_size, seed, max_elements,
                                     statistics=stats))
    return result
