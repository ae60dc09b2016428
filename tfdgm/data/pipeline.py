"""tf.data pipelines that yield image batches for unsupervised ``model.fit(ds)``.

Design: the whole split lives in memory as one tensor (uint8 for 8-bit data).
Each epoch has one int64 "epoch seed": with repeat=True (one endless stream,
what `tfdgm train` uses) epoch i's seed is a stateless function of (seed, i),
the same wherever the pipeline is built; a finite dataset, which Keras iterates
once per epoch, draws it from ``Dataset.random(seed, rerandomize_each_iteration=True)``.
All randomness of that epoch (the permutation and the dynamic binarisation of
every batch) is derived from it with stateless RNG ops, so runs are exactly
reproducible and the per-example work is a single gather per batch.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from . import sources
from . import validation as V


def _static_binarize(arr: np.ndarray, divisor: float, seed) -> np.ndarray:
    """One fixed Bernoulli(intensity) draw of the whole array, as uint8 0/1."""
    rng = np.random.default_rng(seed)
    out = np.empty(arr.shape, np.uint8)
    # Chunked to bound the float32 temporaries; one generator keeps it reproducible.
    for start in range(0, len(arr), 8192):
        p = arr[start:start + 8192].astype(np.float32) / np.float32(divisor)
        out[start:start + 8192] = rng.random(p.shape, dtype=np.float32) < p
    return out


def _build(arr, divisor, *, binarize, batch_size, shuffle, seed, drop_remainder, repeat,
           prefetch) -> tf.data.Dataset:
    n = len(arr)
    if drop_remainder and n < batch_size:
        raise ValueError(f"drop_remainder=True with batch_size={batch_size} but only {n} "
                         "examples: the dataset would be empty.")
    if binarize == "static":
        arr, divisor, binarize = _static_binarize(arr, divisor, seed), 1.0, "none"
    num_batches = n // batch_size if drop_remainder else math.ceil(n / batch_size)
    images = tf.constant(arr)
    dynamic = binarize == "dynamic"

    def epoch(epoch_seed):
        order = tf.range(n, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(
                order, seed=tf.stack([epoch_seed, tf.constant(0, tf.int64)]))

        def batch_indices(b):
            return order[b * batch_size:tf.minimum((b + 1) * batch_size, n)], \
                tf.stack([epoch_seed, b + 1])

        return tf.data.Dataset.range(num_batches).map(batch_indices)

    def load_batch(idx, key):
        x = tf.cast(tf.gather(images, idx), tf.float32)
        if divisor != 1.0:
            x = x / divisor
        if dynamic:
            x = tf.cast(tf.random.stateless_uniform(tf.shape(x), seed=key) < x, tf.float32)
        if drop_remainder:
            x = tf.ensure_shape(x, (batch_size,) + tuple(arr.shape[1:]))
        return x

    if repeat:
        # One endless stream: epoch i's seed is a stateless function of (seed, i). Unlike
        # Dataset.random it does not depend on the graph the pipeline is built or rebuilt in,
        # so tf.distribute workers, which re-create the pipeline, draw the same epochs.
        def epoch_seed(i):
            return tf.random.stateless_uniform([], seed=tf.stack([tf.constant(seed, tf.int64), i]),
                                               minval=None, maxval=None, dtype=tf.int64)

        ds = tf.data.Dataset.range(2**62).map(epoch_seed).flat_map(epoch)
        ds = ds.map(load_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
    else:
        # Iterated once per Keras epoch: rerandomize_each_iteration gives each pass a new seed.
        ds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
        ds = ds.flat_map(epoch)
        ds = ds.map(load_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        # flat_map hides the length; restore it so Keras can show steps per epoch.
        ds = ds.apply(tf.data.experimental.assert_cardinality(num_batches))
    if prefetch:
        ds = ds.prefetch(tf.data.AUTOTUNE)
    return V.mark_validated(ds)


def from_array(x, *, binarize="dynamic", batch_size=100, shuffle=True, seed=0,
               likelihood="bernoulli", drop_remainder=False, repeat=False, prefetch=True,
               name="data") -> tf.data.Dataset:
    """Dataset of float32 image batches ``[B, H, W, C]`` from an in-memory array.

    ``x`` is validated first (see :func:`tfdgm.data.validate`). ``binarize``:
    'dynamic' draws fresh Bernoulli(intensity) pixels every epoch, 'static'
    draws them once with ``np.random.default_rng(seed)``, 'none' keeps the
    intensities. With the same ``seed`` (and TF global seed) two datasets yield
    identical batches epoch by epoch; ``shuffle`` reshuffles every epoch.
    """
    binarize = V.check_binarize(binarize)
    batch_size = V.check_batch_size(batch_size)
    arr, divisor = V.prepare(x, likelihood=likelihood, binarize=binarize, name=name)
    return _build(arr, divisor, binarize=binarize, batch_size=batch_size, shuffle=shuffle,
                  seed=seed, drop_remainder=drop_remainder, repeat=repeat, prefetch=prefetch)


def load(name, split="train", *, binarize="dynamic", batch_size=100, shuffle=None, seed=0,
         data_dir=None, validation_size=0, likelihood="bernoulli", drop_remainder=False,
         repeat=False, prefetch=True) -> tf.data.Dataset:
    """Dataset of image batches for a known data set name or a local path.

    ``shuffle`` defaults to True for "train" and False otherwise. With
    ``validation_size > 0`` the last ``validation_size`` training images form
    split "validation". "binarized_mnist" is already binary and is never
    re-binarised. Known names other than local copies (``LOCAL_DIRS``, used when
    ``data_dir`` is None, e.g. /usr/share/datasets/fashion-mnist) go through
    ``tfds.load(name, split=..., data_dir=data_dir)``. See :func:`from_array`
    for the other arguments.
    """
    # Cheap argument checks first, so mistakes do not wait for a data download.
    binarize = V.check_binarize(binarize)
    batch_size = V.check_batch_size(batch_size)
    likelihood = V.check_likelihood(likelihood)
    V.check_split(split)
    kind, key = sources.resolve(name)
    if kind == "known" and key == "binarized_mnist":
        binarize = "none"
    arr, divisor = sources.get_split(name, split, data_dir, validation_size)
    V.check_values(arr, divisor, likelihood, binarize, name=f"{key} {split!r} split")
    if shuffle is None:
        shuffle = split == "train"
    return _build(arr, divisor, binarize=binarize, batch_size=batch_size, shuffle=shuffle,
                  seed=seed, drop_remainder=drop_remainder, repeat=repeat, prefetch=prefetch)
