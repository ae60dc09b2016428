"""Pieces every estimator in tfdgm.evaluation shares: batching any data, mean and standard error."""
import math

import numpy as np
import tensorflow as tf


def batches(data, batch_size):
    """Yields batches of x from a numpy array (in slices of batch_size) or a batched tf.data.Dataset."""
    if isinstance(data, tf.data.Dataset):
        for batch in data:
            yield batch[0] if isinstance(batch, (tuple, list)) else batch
    else:
        data = np.asarray(data, np.float32)
        for start in range(0, len(data), batch_size):
            yield data[start : start + batch_size]


def mean_and_stderr(values):
    """(mean, standard error of the mean) of per-example values; the error is NaN for one value."""
    values = np.asarray(values, np.float64)
    stderr = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return float(values.mean()), float(stderr)
