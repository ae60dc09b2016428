"""Shared fixtures: tiny models of every registered class, built the same way for every test."""
import keras
import numpy as np

from tfdgm import models

TINY = dict(input_shape=(8, 8, 1), latent_dim=3, hidden_units=(16, 16), seed=7)


def tiny_model(name, **overrides):
    kwargs = dict(TINY, num_samples=3)
    kwargs.update(overrides)
    keras.utils.set_random_seed(0)  # same initial weights every time
    return models.get_model_class(name)(**kwargs)


def binary_images(num=32, shape=(8, 8, 1), seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.uniform(0.1, 0.9, size=(1,) + shape)
    return (rng.uniform(size=(num,) + shape) < probs).astype("float32")


ALL_MODELS = sorted(models.registered_models())
