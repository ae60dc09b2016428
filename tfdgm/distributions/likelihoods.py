"""Pluggable likelihoods p(x|z): Keras layers that turn raw decoder outputs into log-densities.

A decoder emits `[..., *example_shape[:-1], C * params_per_channel]` raw parameters for data with
C channels; parameter p of channel c sits at index `p * C + c` of the last axis (the P blocks of C
are split with `tf.split`, so a conv decoder's last layer just has P*C filters).

Every likelihood is a registered Keras layer whose config is its constructor arguments, so a model
holding one round-trips through `.keras` files with safe_mode=True. A model uses one like this:

    self.likelihood = get_likelihood(likelihood)        # in __init__; name, layer or dict
    self.likelihood.build(example_shape)                # now, before compile (idempotent)
    decoder channels: self.likelihood.num_params(example_shape[-1])
    log p(x|z): self.likelihood.log_prob(self.decoder(z), x, event_ndims)
    get_config: likelihood=keras.saving.serialize_keras_object(self.likelihood)

`build` creates the weights of a likelihood that has some (the learned Gaussian scale), so they
are in `model.trainable_variables` when the optimizer is built.

References:
  Salimans, Karpathy, Chen & Kingma (2017), PixelCNN++: Improving the PixelCNN with Discretized
  Logistic Mixture Likelihood and Other Modifications (the discretised logistic).
"""
import math

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfdgm.distributions.heads import bernoulli_log_prob

tfd = tfp.distributions

_REGISTRY = {}


def _register(cls):
    cls = keras.saving.register_keras_serializable(package="tfdgm")(cls)
    _REGISTRY[cls.registry_name] = cls
    return cls


def _f32(t):
    # Decoders may run in bfloat16; densities over hundreds of pixels need float32 sums.
    return tf.cast(t, tf.float32)


def _sum_event(t, event_ndims):
    return tf.reduce_sum(t, axis=tf.range(-event_ndims, 0)) if event_ndims else t


def _seed(seed):
    return tf.cast(tf.convert_to_tensor(seed), tf.int64)


class Likelihood(keras.layers.Layer):
    """Base class. Subclasses set `registry_name` and `params_per_channel` and implement the methods.

    Calling the layer on raw parameters returns `mean(params)`.
    """

    registry_name = None
    params_per_channel = 1

    def __init__(self, **kwargs):
        # Densities and any weights stay float32 under a mixed-precision global policy.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    @property
    def data_name(self):
        """The name `tfdgm.data.validate` checks data against."""
        return self.registry_name

    def num_params(self, channels):
        """Channels of the decoder output for data with `channels` channels."""
        return int(channels) * self.params_per_channel

    def call(self, params):
        return self.mean(params)

    def log_prob(self, params, x, event_ndims):
        """log p(x|z) summed over the last `event_ndims` axes; x [B, ...] vs params [..., B, ...]."""
        raise NotImplementedError

    def mean(self, params):
        """E[x|z], with the data's shape."""
        raise NotImplementedError

    def sample(self, params, event_ndims, seed):
        """One stateless draw x ~ p(x|z), float32; `seed` an int [2] tensor."""
        raise NotImplementedError

    def distribution(self, params, event_ndims):
        """p(x|z) as a TFP distribution whose event is the last `event_ndims` axes."""
        raise NotImplementedError


@_register
class BernoulliLikelihood(Likelihood):
    """Independent Bernoulli pixels; params are logits. Data must be binary."""

    registry_name = "bernoulli"

    def log_prob(self, params, x, event_ndims):
        # The fused training hot path (one softplus per pixel, hand-written gradient).
        return bernoulli_log_prob(params, x, event_ndims)

    def mean(self, params):
        return tf.sigmoid(_f32(params))

    def sample(self, params, event_ndims, seed):
        probs = self.mean(params)
        u = tf.random.stateless_uniform(tf.shape(probs), seed=_seed(seed), alg="philox")
        return tf.cast(u < probs, tf.float32)

    def distribution(self, params, event_ndims):
        return tfd.Independent(tfd.Bernoulli(logits=_f32(params), dtype=tf.float32), event_ndims)


@_register
class GaussianLikelihood(Likelihood):
    """Independent Normal(mean, scale) pixels; params are the means.

    Args:
      scale: a fixed positive standard deviation, or "learned": one trainable scale per channel,
        `min_scale + softplus(raw)`, created by `build(example_shape)` (only the channel axis,
        the last, is read). The lower bound keeps the density from blowing up on constant pixels.
      min_scale: lower bound of a learned scale.
      init_scale: the learned scale's initial value.
    """

    registry_name = "gaussian"

    def __init__(self, scale=0.1, min_scale=1e-3, init_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        if scale != "learned" and not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0):
            raise ValueError(f"GaussianLikelihood scale must be a positive number or 'learned', got {scale!r}.")
        if not 0 < min_scale < init_scale:
            raise ValueError(f"Need 0 < min_scale < init_scale, got {min_scale!r} and {init_scale!r}.")
        self.scale = scale if scale == "learned" else float(scale)
        self.min_scale = float(min_scale)
        self.init_scale = float(init_scale)
        self.raw_scale = None

    @property
    def learned(self):
        return self.scale == "learned"

    def build(self, input_shape):
        # Idempotent: a deserialised layer arrives built (Keras replays its build config), and the
        # model's constructor then builds it again.
        if self.learned and self.raw_scale is None:
            channels = int(input_shape[-1])
            # Inverse softplus, so the first step starts at init_scale.
            raw = math.log(math.expm1(self.init_scale - self.min_scale))
            self.raw_scale = self.add_weight(
                shape=(channels,), initializer=keras.initializers.Constant(raw), name="raw_scale"
            )

    def stddev(self):
        """The scale: a float32 scalar, or [C] when learned."""
        if not self.learned:
            return tf.constant(self.scale, tf.float32)
        if self.raw_scale is None:
            raise ValueError(
                "GaussianLikelihood(scale='learned') has no weights yet: call "
                "likelihood.build(example_shape) first (the model constructor does)."
            )
        return self.min_scale + tf.math.softplus(_f32(self.raw_scale))

    def log_prob(self, params, x, event_ndims):
        if self.learned and not self.built:  # eager convenience; models build in __init__
            self.build(x.shape)
        scale = self.stddev()
        x = _f32(x)
        z = (x - _f32(params)) / scale
        # The normaliser depends on the event only, not on the K samples: sum it once.
        event_shape = tf.shape(x)[tf.rank(x) - event_ndims:]
        normaliser = tf.reduce_sum(tf.broadcast_to(tf.math.log(scale) + 0.5 * math.log(2 * math.pi), event_shape))
        return _sum_event(-0.5 * tf.square(z), event_ndims) - normaliser

    def mean(self, params):
        return _f32(params)

    def sample(self, params, event_ndims, seed):
        loc = self.mean(params)
        eps = tf.random.stateless_normal(tf.shape(loc), seed=_seed(seed), alg="philox")
        return loc + self.stddev() * eps

    def distribution(self, params, event_ndims):
        loc = self.mean(params)
        return tfd.Independent(tfd.Normal(loc, self.stddev() * tf.ones_like(loc)), event_ndims)

    def get_config(self):
        config = super().get_config()
        config.update(scale=self.scale, min_scale=self.min_scale, init_scale=self.init_scale)
        return config


@_register
class PredictedScaleGaussianLikelihood(Likelihood):
    """Independent Normal(loc, scale) pixels whose scale the decoder predicts per pixel (and per
    latent: a mixture's components each get their own diagonal covariance).

    params: [..., 2C], loc then raw scale; scale = min_scale + softplus(raw), so the density
    cannot blow up on a collapsing component.
    """

    registry_name = "gaussian_predicted_scale"
    params_per_channel = 2

    def __init__(self, min_scale=1e-3, **kwargs):
        super().__init__(**kwargs)
        if not min_scale > 0:
            raise ValueError(f"min_scale must be > 0, got {min_scale!r}.")
        self.min_scale = float(min_scale)

    @property
    def data_name(self):
        return "gaussian"  # the same data as a Gaussian likelihood: continuous values

    def split(self, params):
        """(loc, scale), float32, each with the data's shape."""
        loc, raw = tf.split(_f32(params), 2, axis=-1)
        return loc, self.min_scale + tf.math.softplus(raw)

    def log_prob(self, params, x, event_ndims):
        loc, scale = self.split(params)
        z = (_f32(x) - loc) / scale
        return _sum_event(-0.5 * tf.square(z) - tf.math.log(scale) - 0.5 * math.log(2 * math.pi), event_ndims)

    def mean(self, params):
        return self.split(params)[0]

    def sample(self, params, event_ndims, seed):
        loc, scale = self.split(params)
        return loc + scale * tf.random.stateless_normal(tf.shape(loc), seed=_seed(seed), alg="philox")

    def distribution(self, params, event_ndims):
        return tfd.Independent(tfd.Normal(*self.split(params)), event_ndims)

    def get_config(self):
        return dict(super().get_config(), min_scale=self.min_scale)


def _log1mexp(d):
    """log(1 - exp(-d)) for d > 0, accurate at both ends (Maechler 2012); both branches stay finite."""
    small = tf.minimum(d, math.log(2.0))
    large = tf.maximum(d, math.log(2.0))
    return tf.where(d < math.log(2.0), tf.math.log(-tf.math.expm1(-small)), tf.math.log1p(-tf.exp(-large)))


@_register
class DiscretizedLogisticLikelihood(Likelihood):
    """8-bit intensities k/255 in [0, 1]: a Logistic(loc, scale) integrated over each of 256 bins
    of width 1/255, the edge bins taking the tails (Salimans et al. 2017, without the mixture).

    params: [..., 2C], loc then log-scale. The log-scale is clipped below at `min_log_scale`
    (PixelCNN++ uses -7) and above at `max_log_scale` so neither the density nor its gradient
    can overflow.
    """

    registry_name = "discretized_logistic"
    params_per_channel = 2
    num_bins = 256

    def __init__(self, min_log_scale=-7.0, max_log_scale=7.0, **kwargs):
        super().__init__(**kwargs)
        if not min_log_scale < max_log_scale:
            raise ValueError(f"Need min_log_scale < max_log_scale, got {min_log_scale!r}, {max_log_scale!r}.")
        self.min_log_scale = float(min_log_scale)
        self.max_log_scale = float(max_log_scale)

    def split(self, params):
        """(loc, log_scale), float32, each with the data's shape."""
        loc, log_scale = tf.split(_f32(params), 2, axis=-1)
        return loc, tf.clip_by_value(log_scale, self.min_log_scale, self.max_log_scale)

    def _log_prob_elementwise(self, params, x):
        loc, log_scale = self.split(params)
        x = _f32(x)
        half = 0.5 / (self.num_bins - 1)
        inv_scale = tf.exp(-log_scale)
        upper = inv_scale * (x - loc + half)  # standardised bin edges
        lower = inv_scale * (x - loc - half)
        # log(sigmoid(u) - sigmoid(l)) = log sigmoid(u) + log(1 - sigmoid(l)) + log(1 - e^(l-u)),
        # exact in log space. It cannot underflow the way PixelCNN++'s CDF difference does, so
        # their mid-bin pdf approximation is not needed; u - l = inv_scale / 255 > 0.
        log_cdf_upper = -tf.math.softplus(-upper)
        log_sf_lower = -tf.math.softplus(lower)
        interior = log_cdf_upper + log_sf_lower + _log1mexp(inv_scale * (2 * half))
        # Edge bins hold the tails: P(X <= 0 + half) and P(X > 1 - half). Every branch is finite,
        # so tf.where passes no NaN gradient.
        return tf.where(x < half, log_cdf_upper, tf.where(x > 1 - half, log_sf_lower, interior))

    def log_prob(self, params, x, event_ndims):
        return _sum_event(self._log_prob_elementwise(params, x), event_ndims)

    def mean(self, params):
        # The loc clipped to the support: the exact mean shifts mass only through the edge bins.
        return tf.clip_by_value(self.split(params)[0], 0.0, 1.0)

    def sample(self, params, event_ndims, seed):
        loc, log_scale = self.split(params)
        tiny = 1e-6  # keeps log(u) and log(1 - u) finite
        u = tf.random.stateless_uniform(tf.shape(loc), seed=_seed(seed), minval=tiny, maxval=1 - tiny, alg="philox")
        draw = loc + tf.exp(log_scale) * (tf.math.log(u) - tf.math.log1p(-u))  # inverse CDF
        top = float(self.num_bins - 1)
        return tf.clip_by_value(tf.round(draw * top), 0.0, top) / top

    def distribution(self, params, event_ndims):
        # A FiniteDiscrete over the 256 grid values k/255: exact, but holds [..., 256] logits.
        top = self.num_bins - 1
        grid = tf.constant(np.arange(self.num_bins) / top, tf.float32)
        logits = self._log_prob_elementwise(params[..., None, :], tf.reshape(grid, [-1, 1]))
        logits = tf.experimental.numpy.moveaxis(logits, -2, -1)  # [..., C, 256]
        return tfd.Independent(tfd.FiniteDiscrete(grid, logits=logits, atol=0.25 / top), event_ndims)

    def get_config(self):
        config = super().get_config()
        config.update(min_log_scale=self.min_log_scale, max_log_scale=self.max_log_scale)
        return config


LIKELIHOOD_NAMES = tuple(_REGISTRY)


def get_likelihood(spec):
    """A Likelihood from a registry name, a Likelihood (returned as is), a Keras-serialised dict,
    or a config-file dict {"name": registry name, **constructor arguments}."""
    if isinstance(spec, Likelihood):
        return spec
    if isinstance(spec, dict) and "class_name" not in spec and isinstance(spec.get("name"), str):
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        return _REGISTRY[_check_name(spec["name"])](**kwargs)
    if isinstance(spec, dict):
        layer = keras.saving.deserialize_keras_object(spec)
        if not isinstance(layer, Likelihood):
            raise ValueError(f"The serialised object {spec!r} is a {type(layer).__name__}, not a Likelihood.")
        return layer
    return _REGISTRY[_check_name(spec)]()


def _check_name(name):
    if isinstance(name, str) and name.lower() in _REGISTRY:
        return name.lower()
    raise ValueError(f"Unknown likelihood {name!r}; choose one of {LIKELIHOOD_NAMES} or pass a Likelihood.")
