"""tf.distribute strategies by name, and which process of a multi-worker job writes files.

`tfdgm train --strategy=NAME` builds its strategy here; every name goes through the same code
path afterwards (the model is built and compiled in `strategy.scope()`, Keras distributes the
data), so TPUStrategy, which cannot be tested on CPU, differs from the others only here.
"""
import json
import os
import socket

import tensorflow as tf

STRATEGIES = ("mirrored", "multiworker", "tpu", "default")

# A collective (gradient all-reduce) that waits longer than this fails with DeadlineExceeded
# instead of hanging. Generous, because the first step also waits for the slowest worker to
# start up, load data and trace the model.
DEFAULT_COLLECTIVE_TIMEOUT_S = 120


_MIRRORED = None  # the process's MirroredStrategy (see make_strategy)


def make_strategy(name="default", collective_timeout_s=DEFAULT_COLLECTIVE_TIMEOUT_S, tpu=None):
    """The strategy called `name`.

    - "default": no distribution (one device, TensorFlow's default strategy).
    - "mirrored": `MirroredStrategy` over every local GPU, or the local CPU(s) if none.
    - "multiworker": `MultiWorkerMirroredStrategy`; the cluster comes from the TF_CONFIG
      environment variable. A dead peer makes the others fail: the coordination service stops
      hearing its heartbeat, and collectives time out after `collective_timeout_s`.
    - "tpu": `TPUStrategy` on the TPU named by `tpu` ("" or None: the local or Colab/Cloud TPU).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        # One per process: every MirroredStrategy numbers its collectives (group and instance keys)
        # from the same start, so a second one in the same process (a second train() in a notebook,
        # a test session) can reuse a key the first already bound to another shape, and TF aborts
        # with "Shape mismatch in the collective instance N".
        global _MIRRORED
        if _MIRRORED is None:
            _MIRRORED = tf.distribute.MirroredStrategy()
        return _MIRRORED
    if name == "multiworker":
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=collective_timeout_s)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"Unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}.")


def task():
    """(task_type, task_id) of this process from TF_CONFIG, or (None, None) without a cluster."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task_info = config.get("task") or {}
    return task_info.get("type"), task_info.get("index")


def is_chief(strategy=None):
    """True for the process that writes checkpoints, exports and images.

    That is the "chief" task, or worker 0 when the cluster has no chief (the TF_CONFIG
    convention MultiWorkerMirroredStrategy follows); every single-process run is its own chief.
    """
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is not None and resolver.task_type is not None:
        task_type, task_id = resolver.task_type, resolver.task_id
        has_chief = "chief" in resolver.cluster_spec().as_dict()
    else:
        task_type, task_id = task()
        has_chief = "chief" in (json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster") or {})
    if task_type is None:
        return True
    return task_type == "chief" or (task_type == "worker" and int(task_id) == 0 and not has_chief)


def split_global_batches(strategy, make_dataset):
    """A dataset of global batches, distributed so replica g gets slice g of every batch.

    tf.data's auto-sharding decides for itself which examples each worker reads (for a dataset
    not made of files it shards elements before the global batch is formed), so a multi-worker
    run trains on other batches than a one-process run with the same seed. Here every input
    pipeline builds the same stream of global batches (`make_dataset()`) and keeps only its
    replicas' contiguous slices, split as MirroredStrategy splits a batch in one process
    (sizes differ by at most one when the batch does not divide evenly). So 1, N local and N
    remote replicas see the same examples at every step.
    """
    if strategy.num_replicas_in_sync == 1:
        return make_dataset()

    def dataset_fn(context):
        replicas = context.num_replicas_in_sync
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF

        def replica_slices(batch):
            size = tf.shape(batch, out_type=tf.int64)[0]
            return tf.data.Dataset.range(first, first + local).map(
                lambda g: batch[g * size // replicas : (g + 1) * size // replicas])

        return make_dataset().with_options(options).flat_map(replica_slices)

    return strategy.distribute_datasets_from_function(dataset_fn)


def free_local_ports(n):
    """n TCP ports on 127.0.0.1 free right now, for a local multi-worker cluster's TF_CONFIG."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
