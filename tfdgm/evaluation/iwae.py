"""IWAE-k log-likelihood evaluation (Burda et al. 2016), memory-bounded by chunking K."""
import math

import keras
import numpy as np
import tensorflow as tf

from tfdgm.evaluation.common import batches, mean_and_stderr, validated
from tfdgm.mcmc.annealing import require


def iwae_log_likelihoods(model, data, num_samples=5000, chunk_size=None, batch_size=100, seed=0,
                         max_elements=2**24, verbose=True):
    """Per-example IWAE-k estimates of log p(x), as a float64 numpy array [N].

    log p(x) >= log (1/K) sum_k p(x, z_k)/q(z_k|x), from `model.log_likelihood_bound`. K samples
    are drawn in chunks so the [chunk, B, *x] tensor stays under `max_elements` floats; chunks
    are combined with a log-sum-exp of (bound + log k), which is exact (not an average of
    per-chunk bounds).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    require(model, "has_bound", "IWAE evaluation (log_likelihood_bound)")
    data = validated(model, data, "iwae_nll")
    example_size = math.prod(model.example_shape)

    @tf.function
    def chunk_log_sum(x, k, seed):
        # The chunk's bound is log mean_k w: adding log k gives its log-sum of weights.
        return model.log_likelihood_bound(x, k, seed=seed) + tf.math.log(tf.cast(k, tf.float32))

    results = []
    total = None if isinstance(data, tf.data.Dataset) else math.ceil(len(data) / batch_size)
    progress = keras.utils.Progbar(total, unit_name="batch") if verbose else None
    for step, x in enumerate(batches(data, batch_size)):
        x = tf.convert_to_tensor(x, tf.float32)
        size = int(x.shape[0])
        chunk = chunk_size or max(1, min(num_samples, max_elements // max(1, size * example_size)))
        parts, done = [], 0
        while done < num_samples:
            k = min(chunk, num_samples - done)
            parts.append(chunk_log_sum(x, tf.constant(k), tf.constant([seed, step * 100003 + done], tf.int32)))
            done += k
        log_px = tf.reduce_logsumexp(tf.stack(parts), axis=0) - math.log(num_samples)
        results.append(log_px.numpy().astype(np.float64))
        if progress is not None:
            progress.update(step + 1)
    if not results:
        raise ValueError("iwae_nll got an empty data set: there is nothing to evaluate.")
    return np.concatenate(results)


def iwae_nll(model, data, num_samples=5000, **kwargs):
    """Test negative log-likelihood by the IWAE-k bound: returns (mean NLL, standard error), nats.

    The standard error is over examples (std / sqrt(N)); the estimate is an upper bound on the
    true NLL in expectation, tightening as num_samples grows.
    """
    return mean_and_stderr(-iwae_log_likelihoods(model, data, num_samples=num_samples, **kwargs))
