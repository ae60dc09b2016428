"""Discrete latents: Bernoulli and categorical posteriors and priors, sampled from Gaussian noise.

Every draw here is a deterministic function of standard normal noise from
`tfdgm.distributions.gaussian_sample` (the one noise source of the package): a Bernoulli unit is
1 when logit(Phi(eps)) < logit (tested as eps < Phi^-1(sigmoid(logit))), a categorical takes the
argmax of logits + Gumbel(Phi(eps)). So a seed means the same stream on every backend, and the
tests' fixed-noise stand-ins (which replace only `gaussian_sample`) fix the noise of discrete models too.

References:
  Neal (1992), Connectionist learning of belief networks (sigmoid belief nets).
  Hinton, Dayan, Frey & Neal (1995), The wake-sleep algorithm for unsupervised neural networks.
"""
import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfdgm.distributions import heads

tfd = tfp.distributions
_SQRT_HALF = math.sqrt(0.5)


def _noise(like, num_samples, seed):
    from tfdgm import distributions as package  # looked up at call time, so tests can patch it

    zeros = tf.zeros_like(like, dtype=tf.float32)
    return package.gaussian_sample(zeros, tf.ones_like(zeros), num_samples, tf.cast(seed, tf.int64))


def logistic_of_noise(eps):
    """logit(Phi(eps)) for standard normal eps: a standard logistic draw, stable in both tails."""
    return tf.math.log(tf.math.erfc(-eps * _SQRT_HALF)) - tf.math.log(tf.math.erfc(eps * _SQRT_HALF))


def normal_threshold(logits):
    """Phi^-1(sigmoid(logits)): eps < threshold exactly when logit(Phi(eps)) < logits.

    Written as -sign(l) * Phi^-1(sigmoid(-|l|)) so the probability passed to Phi^-1 is never
    rounded towards 1, which would cost float32 digits in the upper tail.
    """
    logits = tf.cast(logits, tf.float32)
    return -tf.math.sign(logits) * tf.math.ndtri(tf.math.sigmoid(-tf.abs(logits)))


def bernoulli_from_noise(logits, eps):
    """Bernoulli(sigmoid(logits)) draws, float32, from standard normal eps of a broadcastable shape.

    The unit is 1 when logit(Phi(eps)) < logits. Comparing eps with `normal_threshold(logits)`
    gives the same draws without transforming every noise value (two erfc and two logs each):
    the threshold is computed once per logit, which the K samples of an estimator share.
    """
    return tf.cast(tf.cast(eps, tf.float32) < normal_threshold(logits), tf.float32)


def categorical_from_noise(logits, eps):
    """One-hot draws from softmax(logits) by Gumbel-max; eps standard normal, same shape as logits."""
    log_u = tf.math.log(0.5 * tf.math.erfc(-eps * _SQRT_HALF))
    gumbel = -tf.math.log(tf.maximum(-log_u, 1e-30))
    index = tf.argmax(tf.cast(logits, tf.float32) + gumbel, axis=-1)
    return tf.one_hot(index, tf.shape(logits)[-1], dtype=tf.float32)


def independent_bernoulli(logits):
    """A TFP distribution with event shape [D] of independent Bernoulli units (float32 values)."""
    return tfd.Independent(tfd.Bernoulli(logits=tf.cast(logits, tf.float32), dtype=tf.float32), 1)


def one_hot_categorical(logits):
    """A TFP one-hot categorical with event shape [C] (float32 values)."""
    return tfd.OneHotCategorical(logits=tf.cast(logits, tf.float32), dtype=tf.float32)


def sample(distribution, num_samples, seed):
    """[num_samples, *batch, *event] draws: Bernoulli and one-hot categoricals from Gaussian noise
    (see the module docstring), anything else by `tfdgm.distributions.sample`."""
    classes = flat_categorical_classes(distribution)
    if classes is not None:
        logits = _flat_logits(distribution)
        return flat_categorical_from_noise(logits, _noise(logits, num_samples, seed), classes)
    inner = distribution.distribution if isinstance(distribution, tfd.Independent) else distribution
    if isinstance(inner, tfd.Bernoulli):
        logits = inner.logits_parameter()
        return bernoulli_from_noise(logits, _noise(logits, num_samples, seed))
    if isinstance(inner, tfd.OneHotCategorical):
        logits = inner.logits_parameter()
        return categorical_from_noise(logits, _noise(logits, num_samples, seed))
    return heads.sample(distribution, num_samples, seed)


def _flat_logits(distribution):
    """The flattened logits [..., N * C] of a `flat_categorical` distribution."""
    inner = distribution.distribution.distribution
    logits = inner.logits_parameter()
    return tf.reshape(logits, tf.concat([tf.shape(logits)[:-2], [-1]], axis=0))


def is_discrete(distribution):
    if flat_categorical_classes(distribution) is not None:
        return True
    inner = distribution.distribution if isinstance(distribution, tfd.Independent) else distribution
    return isinstance(inner, (tfd.Bernoulli, tfd.OneHotCategorical))


def enumerate_bernoulli(num_units):
    """All 2^D binary vectors, [2^D, D] float32 (D <= 20)."""
    if not 0 < num_units <= 20:
        raise ValueError(f"Can enumerate 1 to 20 Bernoulli units, got {num_units}.")
    codes = tf.range(2 ** num_units)[:, None]
    return tf.cast(tf.bitwise.bitwise_and(tf.bitwise.right_shift(codes, tf.range(num_units)), 1), tf.float32)


@keras.saving.register_keras_serializable(package="tfdgm")
class BernoulliPrior(keras.layers.Layer):
    """p(z) = prod_d Bernoulli(z_d | sigmoid(b_d)), b learned (from 0: p = 1/2) unless learned=False."""

    def __init__(self, latent_dim, learned=True, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.learned = bool(learned)
        self.logits = self.add_weight(shape=(self.latent_dim,), initializer="zeros", name="logits",
                                      trainable=self.learned)

    def distribution(self):
        return independent_bernoulli(tf.convert_to_tensor(self.logits))

    def get_config(self):
        return dict(super().get_config(), latent_dim=self.latent_dim, learned=self.learned)


@keras.saving.register_keras_serializable(package="tfdgm")
class CategoricalPrior(keras.layers.Layer):
    """p(z) = Categorical(softmax(b)) over `num_classes` one-hot values, b learned unless learned=False."""

    def __init__(self, num_classes, learned=True, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.learned = bool(learned)
        self.logits = self.add_weight(shape=(self.num_classes,), initializer="zeros", name="logits",
                                      trainable=self.learned)

    def distribution(self):
        return one_hot_categorical(tf.convert_to_tensor(self.logits))

    def get_config(self):
        return dict(super().get_config(), num_classes=self.num_classes, learned=self.learned)


DISCRETE_PRIORS = {"bernoulli": BernoulliPrior, "categorical": CategoricalPrior}


def flat_categorical(logits, num_classes):
    """Independent one-hot categoricals of `num_classes` classes, flattened: logits [..., N * C] ->
    a distribution with event shape [N * C] (N variables, each one-hot over C classes, concatenated),
    so a categorical code is one vector like a Bernoulli one (Jang et al.'s 20 x 10 latent)."""
    logits = tf.cast(logits, tf.float32)
    width = logits.shape[-1]
    if width is None or width % int(num_classes):
        raise ValueError(f"Flattened categorical logits need a last axis that is a multiple of num_classes="
                         f"{num_classes}, got shape {logits.shape}.")
    shape = tf.concat([tf.shape(logits)[:-1], [width // int(num_classes), int(num_classes)]], axis=0)
    grouped = tfd.Independent(one_hot_categorical(tf.reshape(logits, shape)), 1)
    return tfd.TransformedDistribution(grouped, tfp.bijectors.Reshape([width], [width // int(num_classes),
                                                                                 int(num_classes)]))


def flat_categorical_from_noise(logits, eps, num_classes):
    """Draws of `flat_categorical(logits, num_classes)` by Gumbel-max, from standard normal eps
    [..., N * C] broadcastable to logits (one noise value per logit, so flat noise tables work)."""
    logits = tf.cast(logits, tf.float32)
    shape = tf.concat([tf.shape(eps)[:-1], [-1, int(num_classes)]], axis=0)
    grouped_logits = tf.reshape(logits, tf.concat([tf.shape(logits)[:-1], [-1, int(num_classes)]], axis=0))
    draws = categorical_from_noise(grouped_logits + tf.zeros_like(tf.reshape(eps, shape)), tf.reshape(eps, shape))
    return tf.reshape(draws, tf.shape(eps))


def flat_categorical_classes(distribution):
    """C of a `flat_categorical` distribution, or None for any other distribution."""
    if not isinstance(distribution, tfd.TransformedDistribution):
        return None
    inner = distribution.distribution
    inner = inner.distribution if isinstance(inner, tfd.Independent) else inner
    if not isinstance(inner, tfd.OneHotCategorical):
        return None
    return int(inner.event_shape[-1])


@keras.saving.register_keras_serializable(package="tfdgm")
class FactorizedCategoricalPrior(keras.layers.Layer):
    """p(z) = prod_n Categorical(z_n | softmax(b_n)) over N variables of C classes, z flattened to
    [N * C] (see `flat_categorical`); b learned (from 0: uniform) unless learned=False."""

    def __init__(self, num_variables, num_classes, learned=True, **kwargs):
        super().__init__(**kwargs)
        self.num_variables, self.num_classes = int(num_variables), int(num_classes)
        self.learned = bool(learned)
        self.logits = self.add_weight(shape=(self.num_variables * self.num_classes,), initializer="zeros",
                                      name="logits", trainable=self.learned)

    def distribution(self):
        return flat_categorical(tf.convert_to_tensor(self.logits), self.num_classes)

    def get_config(self):
        return dict(super().get_config(), num_variables=self.num_variables, num_classes=self.num_classes,
                    learned=self.learned)
