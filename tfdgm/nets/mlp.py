"""The Burda et al. (2016) MLP: 784-200-200 tanh encoder to a diagonal Gaussian, mirrored decoder.

Reference: Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, section 5.
"""
import math

import keras
from keras import ops

# The smallest posterior standard deviation; keeps log q finite when the encoder saturates.
MIN_SCALE = 1e-4


@keras.saving.register_keras_serializable(package="tfdgm")
class MLPEncoder(keras.layers.Layer):
    """Maps images [B, ...] to the (loc, scale) of a diagonal Gaussian q(z|x), each [B, latent_dim]."""

    def __init__(self, latent_dim=50, hidden_units=(200, 200), activation="tanh", **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = latent_dim
        self.hidden_units = tuple(hidden_units)
        self.activation = activation
        self.hidden = [
            keras.layers.Dense(units, activation=activation, dtype=self.dtype_policy, name=f"hidden_{i}")
            for i, units in enumerate(self.hidden_units)
        ]
        self.loc = keras.layers.Dense(latent_dim, dtype=self.dtype_policy, name="loc")
        self.scale = keras.layers.Dense(latent_dim, dtype=self.dtype_policy, name="scale")

    def build(self, input_shape):
        width = math.prod(input_shape[1:])
        for layer in self.hidden:
            layer.build((None, width))
            width = layer.units
        self.loc.build((None, width))
        self.scale.build((None, width))

    def call(self, x):
        h = ops.reshape(x, (ops.shape(x)[0], -1))
        for layer in self.hidden:
            h = layer(h)
        loc = ops.cast(self.loc(h), "float32")
        scale = ops.softplus(ops.cast(self.scale(h), "float32")) + MIN_SCALE
        return loc, scale

    def get_config(self):
        config = super().get_config()
        config.update(latent_dim=self.latent_dim, hidden_units=list(self.hidden_units), activation=self.activation)
        return config


@keras.saving.register_keras_serializable(package="tfdgm")
class MLPDecoder(keras.layers.Layer):
    """Maps latents [..., latent_dim] (any leading dims, e.g. [K, B]) to logits [..., *output_shape]."""

    def __init__(self, output_shape=(28, 28, 1), hidden_units=(200, 200), activation="tanh", **kwargs):
        super().__init__(**kwargs)
        self.event_shape = tuple(output_shape)
        self.hidden_units = tuple(hidden_units)
        self.activation = activation
        self.hidden = [
            keras.layers.Dense(units, activation=activation, dtype=self.dtype_policy, name=f"hidden_{i}")
            for i, units in enumerate(reversed(self.hidden_units))
        ]
        self.logits = keras.layers.Dense(math.prod(self.event_shape), dtype=self.dtype_policy, name="logits")

    def build(self, input_shape):
        width = input_shape[-1]
        for layer in self.hidden:
            layer.build((None, width))
            width = layer.units
        self.logits.build((None, width))

    def call(self, z):
        # Fold the sample and batch axes into one so every Dense is a plain 2-D matmul.
        leading = ops.shape(z)[:-1]
        h = ops.reshape(z, (-1, ops.shape(z)[-1]))
        for layer in self.hidden:
            h = layer(h)
        logits = ops.cast(self.logits(h), "float32")
        return ops.reshape(logits, tuple(leading) + self.event_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            output_shape=list(self.event_shape), hidden_units=list(self.hidden_units), activation=self.activation
        )
        return config
