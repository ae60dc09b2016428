"""Sigmoid belief net layers: networks whose output is the logits of independent Bernoulli units.

With no hidden layers a `LogitsEncoder` is one sigmoid belief layer q(z|x) = sigmoid(W x + b), and
`MLPDecoder(hidden_units=())` is its generative mirror p(x|z) = sigmoid(V z + c): together with a
learned `BernoulliPrior` they make the SBN of Neal (1992), Mnih & Gregor (2014) and Bornschein &
Bengio (2015) (200 units on MNIST).
"""
import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfdgm")
class LogitsEncoder(keras.layers.Layer):
    """x [B, ...] -> logits [B, latent_dim] (float32) of q(z|x), through tanh hidden layers (maybe none)."""

    def __init__(self, latent_dim=200, hidden_units=(), activation="tanh", **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = activation
        self.hidden = [keras.layers.Dense(u, activation=activation, dtype=self.dtype_policy, name=f"hidden_{i}")
                       for i, u in enumerate(self.hidden_units)]
        self.logits = keras.layers.Dense(self.latent_dim, dtype=self.dtype_policy, name="logits")

    def build(self, input_shape):
        width = math.prod(input_shape[1:])
        for layer in self.hidden:
            layer.build((None, width))
            width = layer.units
        self.logits.build((None, width))

    def call(self, x):
        h = ops.reshape(x, (ops.shape(x)[0], -1))
        for layer in self.hidden:
            h = layer(h)
        return ops.cast(self.logits(h), "float32")

    def get_config(self):
        return dict(super().get_config(), latent_dim=self.latent_dim, hidden_units=list(self.hidden_units),
                    activation=self.activation)
