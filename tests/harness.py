"""Shared fixtures: tiny models of every registered class, built the same way for every test."""
import keras
import numpy as np

from tfdgm import models

TINY = dict(input_shape=(8, 8, 1), latent_dim=3, hidden_units=(16, 16), seed=7)


def tiny_model(name, **overrides):
    """A tiny model of a registered class: the TINY settings the class has (by its
    `default_config()`: an RBM has no latent_dim or num_samples), then `overrides` as given."""
    cls = models.get_model_class(name)
    accepted = set(cls.default_config()) | {"input_shape"}
    kwargs = {key: value for key, value in dict(TINY, num_samples=3).items() if key in accepted}
    kwargs.update(overrides)
    keras.utils.set_random_seed(0)  # same initial weights every time
    return cls(**kwargs)


def accepts(name, *arguments):
    """Whether a registered model's constructor has all these configurable arguments."""
    return set(arguments) <= set(models.get_model_class(name).default_config())


def binary_images(num=32, shape=(8, 8, 1), seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.uniform(0.1, 0.9, size=(1,) + shape)
    return (rng.uniform(size=(num,) + shape) < probs).astype("float32")


ALL_MODELS = sorted(models.registered_models())


def gradients_by_path(model, x):
    """({variable path: gradient} of the model's own training gradient, metrics) for a batch x."""
    grads, metrics, _ = model.compute_gradients(x)
    groups = model.group_variables()
    return {v.path: g for group, variables in groups.items() for v, g in zip(variables, grads[group])}, metrics


def fixed_replica_noise(table_size=1 << 16, seed=0):
    """A stand-in for `dists.gaussian_sample` whose noise does not depend on the replica layout.

    Draws eps for the *global* batch from a fixed table and gives each replica its slice (its
    examples' offset is the sum of the batch sizes of the replicas before it; tf.distribute
    splits a global batch into contiguous pieces in replica order). So one device and N
    replicas see the same eps for the same example, and training must agree up to float
    rounding. Real training draws distinct noise per replica instead (see
    `GenerativeModel._next_seed`), which makes the runs agree in law, not in value.
    """
    import tensorflow as tf

    # numpy, made a constant inside each traced call: creating a tensor here would start
    # TensorFlow's runtime, after which MultiWorkerMirroredStrategy can no longer be set up.
    values = np.random.default_rng(seed).normal(size=(table_size,)).astype(np.float32)

    def gaussian_sample(loc, scale, num_samples, seed):
        table = tf.constant(values)
        if loc.shape.rank == 1:  # model.sample: z ~ p(z), no batch
            shape = tf.stack([num_samples, tf.shape(loc)[0]])
            return loc + scale * tf.cast(tf.reshape(table[: tf.reduce_prod(shape)], shape), loc.dtype)
        local = tf.shape(loc)[0]
        offset, total = 0, local
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            sizes = ctx.all_gather(tf.reshape(local, [1]), axis=0)
            offset = tf.reduce_sum(sizes[: ctx.replica_id_in_sync_group])
            total = tf.reduce_sum(sizes)
        shape = tf.stack([num_samples, total, tf.shape(loc)[-1]])
        eps = tf.reshape(table[: tf.reduce_prod(shape)], shape)[:, offset : offset + local]
        return loc + scale * tf.cast(eps, loc.dtype)

    return gaussian_sample


def noise_table(size=1 << 15, seed=0):
    """A fixed float32 table of N(0, 1) draws, the noise of tests that must not depend on RNG kernels."""
    import tensorflow as tf

    return tf.constant(np.random.default_rng(seed).normal(size=(size,)), tf.float32)


def table_gaussian_sample(table):
    """A stand-in for `dists.gaussian_sample` that reads its eps from `table` (the same every call)."""
    import tensorflow as tf

    def gaussian_sample(loc, scale, num_samples, seed):
        shape = tf.concat([[num_samples], tf.shape(loc)], axis=0)
        return loc + scale * tf.reshape(table[: tf.reduce_prod(shape)], shape)

    return gaussian_sample


def unordered_variable_accesses(model, batch_size=8):
    """[(variable path, read op)] for reads of a trainable variable that the optimized `train_step`
    graph leaves unordered with a write of that variable: neither runs surely before the other.

    Runs Grappler (TensorFlow's graph optimizer, with the settings every tf.function runs under)
    on the traced step, since the ordering is lost there and not in the traced graph itself: such
    a read sometimes sees this step's update, and runs with all noise fixed then differ.
    """
    import tensorflow as tf
    from tensorflow.core.protobuf import config_pb2, meta_graph_pb2
    from tensorflow.python.grappler import tf_optimizer

    step = tf.function(model.train_step, autograph=False)
    concrete = step.get_concrete_function(tf.TensorSpec((batch_size,) + model.example_shape, tf.float32))
    graph = concrete.graph
    meta = tf.compat.v1.train.export_meta_graph(graph_def=graph.as_graph_def(add_shapes=True), graph=graph)
    fetch = meta_graph_pb2.CollectionDef()
    fetch.node_list.value.extend([t.op.name for t in concrete.outputs] + [op.name for op in graph.control_outputs])
    meta.collection_def["train_op"].CopyFrom(fetch)
    optimized = tf_optimizer.OptimizeGraph(config_pb2.ConfigProto(), meta)

    handles = {id(v.value.handle): v.path for v in model.trainable_variables}
    paths = {internal.op.name: handles[id(external)] for external, internal in graph.captures if id(external) in handles}
    nodes = {node.name: node for node in optimized.node}

    def source(name):
        return name.lstrip("^").split(":")[0]

    def ancestors(name):
        seen, stack = set(), [name]
        while stack:
            for parent in map(source, nodes[stack.pop()].input):
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return seen

    by_variable = {}
    for node in optimized.node:
        if node.input and source(node.input[0]) in paths:
            reads, writes = by_variable.setdefault(paths[source(node.input[0])], ([], []))
            (reads if node.op == "ReadVariableOp" else writes).append(node.name)
    assert any(writes for _, writes in by_variable.values()), "no optimizer writes found in the step"
    unordered = []
    for path, (reads, writes) in sorted(by_variable.items()):
        for write in writes:
            before = ancestors(write)
            unordered += [(path, read) for read in reads if read not in before and write not in ancestors(read)]
    return unordered
