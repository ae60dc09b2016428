"""A small convolutional encoder/decoder pair (two stride-2 convolutions each way).

Image sides must be divisible by 4 (28x28 and 32x32 both are).
"""
import keras
from keras import ops

from tfdgm.nets.mlp import MIN_SCALE


def _conv_widths(hidden_units):
    # The first hidden width sets the channel counts; the last sets the dense bottleneck.
    base = max(8, int(hidden_units[0]) // 8) if hidden_units else 32
    return base, 2 * base


@keras.saving.register_keras_serializable(package="tfdgm")
class ConvEncoder(keras.layers.Layer):
    """Images [B, H, W, C] -> (loc, scale) of a diagonal Gaussian q(z|x), each [B, latent_dim]."""

    def __init__(self, latent_dim=50, hidden_units=(256,), **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = latent_dim
        self.hidden_units = tuple(hidden_units)
        c1, c2 = _conv_widths(self.hidden_units)
        policy = self.dtype_policy
        self.convs = [
            keras.layers.Conv2D(c1, 3, strides=2, padding="same", activation="relu", dtype=policy, name="conv_0"),
            keras.layers.Conv2D(c2, 3, strides=2, padding="same", activation="relu", dtype=policy, name="conv_1"),
        ]
        self.flatten = keras.layers.Flatten(dtype=policy)
        self.dense = keras.layers.Dense(self.hidden_units[-1], activation="relu", dtype=policy, name="dense")
        self.loc = keras.layers.Dense(latent_dim, dtype=policy, name="loc")
        self.scale = keras.layers.Dense(latent_dim, dtype=policy, name="scale")

    def build(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        if h % 4 or w % 4:
            raise ValueError(f"ConvEncoder needs image sides divisible by 4, got {h}x{w}; use architecture='mlp'.")
        shape = (None,) + tuple(input_shape[1:])
        for conv in self.convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        self.dense.build((None, shape[1] * shape[2] * shape[3]))
        self.loc.build((None, self.dense.units))
        self.scale.build((None, self.dense.units))

    def call(self, x):
        h = x
        for conv in self.convs:
            h = conv(h)
        h = self.dense(self.flatten(h))
        loc = ops.cast(self.loc(h), "float32")
        scale = ops.softplus(ops.cast(self.scale(h), "float32")) + MIN_SCALE
        return loc, scale

    def get_config(self):
        config = super().get_config()
        config.update(latent_dim=self.latent_dim, hidden_units=list(self.hidden_units))
        return config


@keras.saving.register_keras_serializable(package="tfdgm")
class ConvDecoder(keras.layers.Layer):
    """Latents [..., latent_dim] -> logits [..., H, W, C] via a dense layer and two transposed convs."""

    def __init__(self, output_shape=(28, 28, 1), hidden_units=(256,), **kwargs):
        super().__init__(**kwargs)
        self.event_shape = tuple(output_shape)
        self.hidden_units = tuple(hidden_units)
        h, w, c = self.event_shape
        if h % 4 or w % 4:
            raise ValueError(f"ConvDecoder needs image sides divisible by 4, got {h}x{w}; use architecture='mlp'.")
        c1, c2 = _conv_widths(self.hidden_units)
        self._grid = (h // 4, w // 4, c2)
        policy = self.dtype_policy
        self.dense = keras.layers.Dense(self.hidden_units[-1], activation="relu", dtype=policy, name="dense")
        self.project = keras.layers.Dense(h // 4 * w // 4 * c2, activation="relu", dtype=policy, name="project")
        self.deconvs = [
            keras.layers.Conv2DTranspose(c1, 3, strides=2, padding="same", activation="relu", dtype=policy, name="deconv_0"),
            keras.layers.Conv2DTranspose(c, 3, strides=2, padding="same", dtype=policy, name="deconv_1"),
        ]

    def build(self, input_shape):
        self.dense.build((None, input_shape[-1]))
        self.project.build((None, self.dense.units))
        shape = (None,) + self._grid
        for deconv in self.deconvs:
            deconv.build(shape)
            shape = deconv.compute_output_shape(shape)

    def call(self, z):
        leading = ops.shape(z)[:-1]
        h = ops.reshape(z, (-1, ops.shape(z)[-1]))
        h = ops.reshape(self.project(self.dense(h)), (-1,) + self._grid)
        for deconv in self.deconvs:
            h = deconv(h)
        return ops.reshape(ops.cast(h, "float32"), tuple(leading) + self.event_shape)

    def get_config(self):
        config = super().get_config()
        config.update(output_shape=list(self.event_shape), hidden_units=list(self.hidden_units))
        return config
