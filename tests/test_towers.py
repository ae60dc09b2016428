"""compile(towers=N): a batch split into towers trains exactly as the whole batch would.

The exact objective of an enumerable model has no sampling noise in its gradient, so one optimizer
step with any number of towers must give the weights of one step without towers, also when the
parts are unequal (7 = 4 + 3) or empty (a batch of 1 in 3 towers).
"""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdgm


def _enumerable():
    return tfdgm.models.EnumerableLatentModel(input_shape=(4, 4, 1), latent_dim=3, hidden_units=(8,), seed=3)


def _weights_after_one_step(towers, batch, static_batch):
    model = _enumerable()
    initial = [v.numpy() for v in model.trainable_variables]
    model.compile(optimizer=keras.optimizers.SGD(0.5), towers=towers, steps_per_execution=1)
    assert model.towers == towers
    x = (np.random.default_rng(0).random((batch, 4, 4, 1)) < 0.4).astype("float32")
    data = tf.data.Dataset.from_tensor_slices(x).batch(batch, drop_remainder=static_batch)
    model.fit(data, epochs=1, verbose=0)
    return initial, [v.numpy() for v in model.trainable_variables]


@pytest.mark.parametrize("batch,static_batch", [(8, True), (7, True), (7, False), (1, False)])
def test_towers_give_the_whole_batch_step(batch, static_batch):
    initial, reference = _weights_after_one_step(1, batch, static_batch)
    moved = max(float(np.abs(a - b).max()) for a, b in zip(initial, reference))
    assert moved > 1e-3, "the step did not change the weights, so the comparison would prove nothing"
    for towers in (2, 3):
        _, got = _weights_after_one_step(towers, batch, static_batch)
        for ref, value in zip(reference, got):
            np.testing.assert_allclose(value, ref, rtol=2e-5, atol=2e-6)


def test_auto_towers_follow_the_model_and_the_machine():
    vae = tfdgm.models.VAE(input_shape=(4, 4, 1), latent_dim=2, hidden_units=(8,), seed=0)
    vae.compile(optimizer="adam")
    assert vae.towers == (2 if (os.cpu_count() or 1) > 1 else 1)
    # Free bits clamp the batch mean of the KL: the examples are coupled, so no towers.
    coupled = tfdgm.models.VAE(input_shape=(4, 4, 1), latent_dim=2, hidden_units=(8,), free_bits=0.5, seed=0)
    coupled.compile(optimizer="adam")
    assert coupled.towers == 1
    with pytest.raises(ValueError, match="does not split by example"):
        coupled.compile(optimizer="adam", towers=2)


@pytest.mark.parametrize("towers", [0, -1, 1.5, "two", True])
def test_bad_tower_counts_are_refused(towers):
    model = _enumerable()
    with pytest.raises(ValueError, match="towers must be 'auto' or an integer >= 1"):
        model.compile(optimizer="adam", towers=towers)
