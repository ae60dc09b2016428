"""Wake-sleep and RWS train on binarised Fashion-MNIST: the held-out IWAE bound improves."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdgm import models
from tfdgm.data.sources import read_idx

# Minutes of training: outside the default run, run by CI as `pytest -m slow` (see .ci/run).
pytestmark = pytest.mark.slow

DATA = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


@pytest.fixture(scope="module")
def images():
    if not os.path.exists(DATA):
        pytest.fail(f"no Fashion-MNIST at {DATA}: apt-get install -y dataset-fashion-mnist (as .ci/run does)")
    raw = read_idx(DATA)[:1200].astype(np.float32) / 255.0
    rng = np.random.default_rng(0)
    x = (rng.uniform(size=raw.shape) < raw).astype(np.float32)[..., None]
    return x[:1000], x[1000:]


@pytest.mark.parametrize("name, kwargs", [
    ("wake_sleep", dict(latent="bernoulli", latent_dim=200, hidden_units=())),
    ("rws", dict(latent="bernoulli", latent_dim=200, hidden_units=(), num_samples=5, phi_update="wake")),
    ("rws", dict(latent="bernoulli", latent_dim=200, hidden_units=(), num_samples=5, phi_update="both")),
    ("wake_sleep", dict(latent="gaussian", latent_dim=20, hidden_units=(100,))),
    ("rws", dict(latent="gaussian", latent_dim=20, hidden_units=(100,), num_samples=5, phi_update="sleep")),
    ("wake_sleep", dict(latent="categorical", latent_dim=20, num_classes=10, hidden_units=())),
    ("rws", dict(latent="categorical", latent_dim=20, num_classes=10, hidden_units=(), num_samples=5)),
], ids=["ws-sbn", "rws-sbn-wake", "rws-sbn-both", "ws-gaussian", "rws-gaussian-sleep", "ws-categorical",
        "rws-categorical-wake"])
def test_training_improves_the_held_out_iwae_bound(name, kwargs, images):
    train, held_out = images
    keras.utils.set_random_seed(0)
    model = models.get_model_class(name)(input_shape=(28, 28, 1), seed=0, **kwargs)

    def bound():
        return float(tf.reduce_mean(model.log_likelihood_bound(held_out, 20, seed=tf.constant([0, 1]))))

    before = bound()
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=True)
    model.fit(train, batch_size=50, epochs=3, verbose=0)
    after = bound()
    assert after > before + 100.0, (before, after)
