"""TEMPORARY (integration placeholder, replaced by the likelihoods branch): Bernoulli only."""
import keras
import tensorflow as tf

from tfdgm.distributions import heads

LIKELIHOOD_NAMES = ("bernoulli",)


@keras.saving.register_keras_serializable(package="tfdgm")
class BernoulliLikelihood(keras.layers.Layer):
    params_per_channel = 1
    data_name = "bernoulli"

    def log_prob(self, params, x, event_ndims):
        return heads.bernoulli_log_prob(params, x, event_ndims)

    def mean(self, params):
        return tf.sigmoid(tf.cast(params, tf.float32))

    def distribution(self, params, event_ndims):
        return heads.likelihood_distribution("bernoulli", tf.cast(params, tf.float32), event_ndims)

    def sample(self, params, event_ndims, seed):
        u = tf.random.stateless_uniform(tf.shape(params), tf.cast(seed, tf.int64), alg="philox")
        return tf.cast(u < self.mean(params), tf.float32)


def get_likelihood(spec):
    if isinstance(spec, keras.layers.Layer):
        return spec
    if isinstance(spec, dict):
        return keras.saving.deserialize_keras_object(spec)
    if spec == "bernoulli":
        return BernoulliLikelihood(name="likelihood")
    raise ValueError(f"Unknown likelihood {spec!r}; choose one of {LIKELIHOOD_NAMES}.")
