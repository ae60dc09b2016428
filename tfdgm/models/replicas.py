"""What a train_step needs to be right under `tf.distribute`: global batch sizes, seeds, step logs.

- the loss is summed over the replica's examples and divided by the *global* batch size (summed
  across replicas, so uneven last batches are weighted right), and the optimizer sums gradients
  across replicas: the result is the single-device gradient;
- every replica folds its replica id into the seeds it draws, so replicas sample distinct noise
  (Keras's SeedGenerator is mirrored: without this every replica would draw the same numbers).
"""
import tensorflow as tf


def to_seed(seed):
    """A stateless seed (shape [2] int64) from an int, a [2] tensor or a SeedGenerator draw.

    A given seed reproduces the same draws within one compile mode: XLA's stateless RNG kernels
    produce other numbers than TensorFlow's CPU kernels for the same seed (TF 2.21).
    """
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank == 0:
        seed = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
    return tf.cast(seed, tf.int64)


def replica_context():
    """The replica context when training on several replicas, else None."""
    ctx = tf.distribute.get_replica_context()
    return ctx if ctx is not None and ctx.num_replicas_in_sync > 1 else None


def replica_seed(seed):
    """seed with the replica id folded in when there are several replicas; unchanged on one device."""
    ctx = replica_context()
    if ctx is None:
        return seed
    replica_id = tf.cast(ctx.replica_id_in_sync_group, tf.int64)
    return tf.random.experimental.stateless_fold_in(seed, replica_id, alg="philox")


def global_batch_size(per_example):
    """Examples in this step across all replicas (the local batch size on one device)."""
    local = tf.cast(tf.shape(per_example)[0], tf.float32)
    ctx = replica_context()
    return local if ctx is None else ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(local))


def average_loss(per_example_loss):
    """sum(per-example loss on this replica) / global batch size.

    Like `tf.nn.compute_average_loss`, but the global batch size is all-reduced rather than
    taken as local size x replicas, which is wrong for a last batch split unevenly (7 = 4 + 3).
    """
    return tf.reduce_sum(per_example_loss) / global_batch_size(per_example_loss)


def global_mean(values, axis=0):
    """Mean over the batch axis across all replicas (a batch statistic, e.g. free bits')."""
    ctx = replica_context()
    if ctx is None:
        return tf.reduce_mean(values, axis=axis)
    total = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(values, axis=axis))
    return total / global_batch_size(values)


def step_logs(results):
    """A train_step's {name: scalar} logs in the form this strategy's Keras reduction accepts."""
    strategy = tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode():
        # Keras 3.15 reduces multi-worker step logs with strategy.reduce(MEAN, v, axis=0),
        # which fails on scalars ("Invalid reduction dimension 0"): give them that axis.
        return {name: tf.reshape(value, [1]) for name, value in results.items()}
    return results
