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


def validated(model, data, what):
    """data checked by `model.validate_data` before any evaluation work: an array or tensor entirely
    (returned as float32), a tf.data.Dataset by its first batch (unless `tfdgm.data` built it from
    validated arrays). Empty data is a ValueError naming `what`."""
    from tfdgm.data import is_validated

    check = getattr(model, "validate_data", None)
    if isinstance(data, tf.data.Dataset):
        if is_validated(data):
            return data
        first = next(iter(data.take(1)), None)
        if first is None:
            raise ValueError(f"{what} got an empty data set: there is nothing to evaluate.")
        sample = first[0] if isinstance(first, (tuple, list)) else first
    else:
        if hasattr(data, "numpy") and not isinstance(data, np.ndarray):
            data = data.numpy()
        data = np.asarray(data)
        if len(data) == 0:
            raise ValueError(f"{what} got an empty data set: there is nothing to evaluate.")
        sample = data
    if check is not None:
        try:
            checked = check(sample)
        except ValueError as error:
            where = "the first batch of the dataset" if isinstance(data, tf.data.Dataset) else "the data"
            raise ValueError(f"{what}: {where} is invalid for this model: {error}") from None
        if not isinstance(data, tf.data.Dataset):
            data = checked
    return data


def mean_and_stderr(values):
    """(mean, standard error of the mean) of per-example values; the error is NaN for one value."""
    values = np.asarray(values, np.float64)
    stderr = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return float(values.mean()), float(stderr)
