"""Towers: one training batch split into parts whose passes are independent until their gradients
are averaged, so TensorFlow runs them side by side (`GenerativeModel.compile(towers=)`)."""
import os

import tensorflow as tf


def resolve(model, towers):
    """compile(towers=...) as a count: 'auto' or an int >= 1 (see GenerativeModel.compile)."""
    if towers == "auto":
        single_cpu_replica = (model.distribute_strategy.num_replicas_in_sync == 1
                              and not tf.config.list_logical_devices("GPU")
                              and not tf.config.list_logical_devices("TPU"))
        return 2 if model.splits_by_example and single_cpu_replica and (os.cpu_count() or 1) > 1 else 1
    if isinstance(towers, bool) or not isinstance(towers, int) or towers < 1:
        raise ValueError(f"towers must be 'auto' or an integer >= 1, got {towers!r}.")
    if towers > 1 and not model.splits_by_example:
        raise ValueError(f"towers={towers}: {type(model).__name__} does not split by example (its noise, "
                         "state or aux couple the examples of a batch); use towers=1.")
    return towers


def compute_gradients(model, x):
    """model.compute_gradients over `model.towers` parts of the batch, averaged by part size.

    The parts' graphs share nothing until the average, so their ops run concurrently.
    """
    towers = getattr(model, "towers", 1)
    if towers == 1:
        return model.compute_gradients(x)
    n = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]  # static where known (XLA)
    sizes = [(n + towers - 1 - i) // towers for i in range(towers)]  # sums to n, largest first
    parts = tf.split(x, sizes if isinstance(n, int) else tf.stack(sizes), num=towers)
    results = [model.compute_gradients(part) for part in parts]
    if any(aux is not None for _, _, aux in results):
        raise ValueError(f"{type(model).__name__} declares splits_by_example but returned aux from "
                         "compute_gradients; set splits_by_example = False.")
    # Each tower's gradient is the mean over its part; an empty part (n < towers) has NaN
    # means and weight 0, which multiply_no_nan turns into 0.
    weights = [tf.cast(size, tf.float32) / tf.cast(n, tf.float32) for size in sizes]
    grads = {}
    for group in results[0][0]:
        per_tower = [r[0][group] for r in results]
        grads[group] = [None if g[0] is None else tf.add_n([
            tf.math.multiply_no_nan(tf.convert_to_tensor(gi), tf.cast(w, gi.dtype)) for gi, w in zip(g, weights)])
            for g in zip(*per_tower)]
    metrics = {name: tf.concat([r[1][name] for r in results], 0) if results[0][1][name].shape.rank
               else results[0][1][name] for name in results[0][1]}
    return grads, metrics, None
