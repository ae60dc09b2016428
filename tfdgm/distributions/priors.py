"""Priors p(z) as Keras layers: a fixed standard normal, or a learned diagonal Gaussian.

A prior layer has `distribution()` -> a TFP distribution with event shape [latent_dim] and no batch
shape; its variables (if any) train with the generative model's parameter group.
"""
import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfdgm.distributions import heads

tfd = tfp.distributions
MIN_SCALE = 1e-4


@keras.saving.register_keras_serializable(package="tfdgm")
class StandardNormalPrior(keras.layers.Layer):
    """p(z) = N(0, I)."""

    def __init__(self, latent_dim, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)

    def distribution(self):
        return heads.standard_normal(self.latent_dim)

    def get_config(self):
        return dict(super().get_config(), latent_dim=self.latent_dim)


@keras.saving.register_keras_serializable(package="tfdgm")
class LearnedGaussianPrior(keras.layers.Layer):
    """p(z) = N(mu, diag(sigma^2)) with mu and sigma learned (sigma = softplus(rho) + 1e-4), from N(0, I)."""

    def __init__(self, latent_dim, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.loc = self.add_weight(shape=(self.latent_dim,), initializer="zeros", name="loc")
        # softplus(0.5413) + 1e-4 ~= 1: the prior starts at N(0, I).
        self.raw_scale = self.add_weight(shape=(self.latent_dim,), initializer=keras.initializers.Constant(0.5413),
                                         name="raw_scale")

    def distribution(self):
        scale = tf.math.softplus(tf.convert_to_tensor(self.raw_scale)) + MIN_SCALE
        return heads.diagonal_gaussian(tf.convert_to_tensor(self.loc), scale)

    def get_config(self):
        return dict(super().get_config(), latent_dim=self.latent_dim)


PRIORS = {"normal": StandardNormalPrior, "learned_gaussian": LearnedGaussianPrior}


def get_prior(spec, latent_dim):
    """A prior layer from a name in PRIORS, a serialised dict, or a layer (returned as is)."""
    if isinstance(spec, keras.layers.Layer):
        return spec
    if isinstance(spec, dict):
        return keras.saving.deserialize_keras_object(spec)
    if spec not in PRIORS:
        raise ValueError(f"Unknown prior {spec!r}; choose one of {sorted(PRIORS)} or pass a Keras layer with a "
                         "distribution() method.")
    return PRIORS[spec](latent_dim, name="prior")
