"""Distribution heads shared by every model.

The decoder emits logits; `likelihood_distribution` wraps them in a TFP distribution for sampling
and means, while `likelihood_log_prob` is the hot path of training (a [K, B, 784] tensor at K=50)
and uses a fused formula that is tested to equal TFP's.
"""
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

LIKELIHOODS = ("bernoulli",)


def diagonal_gaussian(loc, scale):
    """q(z|x) as a TFP distribution with batch shape [B] and event shape [latent_dim]."""
    return tfd.Independent(tfd.Normal(loc=loc, scale=scale), reinterpreted_batch_ndims=1)


def gaussian_sample(loc, scale, num_samples, seed):
    """Reparameterised draws loc + scale * eps, eps ~ N(0, I), shape [num_samples, *loc.shape].

    Same law as `diagonal_gaussian(loc, scale).sample(num_samples, seed)`; the generator is
    named explicitly (Philox) so a seed means the same stream on every CPU and GPU backend
    rather than whatever "auto_select" picks, and an exported SavedModel reproduces it.
    """
    shape = tf.concat([[num_samples], tf.shape(loc)], axis=0)
    eps = tf.random.stateless_normal(shape, seed=seed, dtype=loc.dtype, alg="philox")
    return loc + scale * eps


def sample(distribution, sample_shape, seed):
    """Stateless draws of shape [*sample_shape, *batch, *event] from a TFP distribution.

    Reparameterised where the distribution allows it. A diagonal Gaussian (an `Independent`
    `Normal`, the usual prior and posterior) goes through `gaussian_sample`, the fast Philox path
    that tests can replace with fixed noise; everything else uses TFP's stateless `sample`.
    `seed`: a [2] integer tensor.
    """
    from tfdgm import distributions as package  # looked up at call time, so tests can patch it

    inner = distribution.distribution if isinstance(distribution, tfd.Independent) else None
    if isinstance(inner, tfd.Normal):
        if isinstance(sample_shape, int) or (tf.is_tensor(sample_shape) and sample_shape.shape.rank == 0):
            return package.gaussian_sample(inner.loc, inner.scale, sample_shape, tf.cast(seed, tf.int64))
        sample_shape = tf.reshape(tf.cast(sample_shape, tf.int32), [-1])
        flat = package.gaussian_sample(inner.loc, inner.scale, tf.reduce_prod(sample_shape), tf.cast(seed, tf.int64))
        return tf.reshape(flat, tf.concat([sample_shape, tf.shape(inner.loc)], axis=0))
    return distribution.sample(sample_shape, seed=tf.cast(seed, tf.int32))


def standard_normal(latent_dim, dtype=tf.float32):
    """The N(0, I) prior p(z) with event shape [latent_dim]."""
    zeros = tf.zeros([latent_dim], dtype=dtype)
    return tfd.Independent(tfd.Normal(loc=zeros, scale=tf.ones_like(zeros)), reinterpreted_batch_ndims=1)


def _check_likelihood(likelihood):
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"Unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}.")


def _layer(likelihood):
    """A `likelihoods.Likelihood` layer passed where a name is expected, else None."""
    if isinstance(likelihood, str):
        return None
    from tfdgm.distributions.likelihoods import get_likelihood  # that module imports this one

    return get_likelihood(likelihood)


def likelihood_distribution(likelihood, logits, event_ndims):
    """p(x|z) as a TFP distribution whose event is the last `event_ndims` axes of `logits`.

    `likelihood` may also be a `Likelihood` layer (then `logits` are its raw parameters).
    """
    if _layer(likelihood) is not None:
        return _layer(likelihood).distribution(logits, event_ndims)
    _check_likelihood(likelihood)
    return tfd.Independent(tfd.Bernoulli(logits=logits, dtype=tf.float32), reinterpreted_batch_ndims=event_ndims)


@tf.custom_gradient
def _bernoulli_log_prob_fused(logits, x):
    log_prob = tf.reduce_sum(x * logits - tf.math.softplus(logits), axis=[-1])

    def grad(upstream):
        # d/dl [x*l - softplus(l)] = x - sigmoid(l): one elementwise pass instead of the
        # softplus/multiply/broadcast chain autodiff would build. x gets no gradient (data).
        return upstream[..., None] * (x - tf.sigmoid(logits)), None

    return log_prob, grad


def bernoulli_log_prob(logits, x, event_ndims):
    """sum over the event of log Bernoulli(x | sigmoid(logits)) = x*l - softplus(l).

    The hot path of training: at K=50 the [K, B, 784] elementwise work is memory-bound. One
    softplus and one multiply per pixel (TFP's Bernoulli uses two softplus and two
    multiply_no_nan) and a hand-written gradient x - sigmoid(l); tests check both against TFP.
    """
    def flatten_event(t):
        t = tf.cast(t, tf.float32)
        return tf.reshape(t, tf.concat([tf.shape(t)[: tf.rank(t) - event_ndims], [-1]], axis=0))

    # x [B, ...] broadcasts against logits [K, B, ...] inside the fused op, never materialised.
    return _bernoulli_log_prob_fused(flatten_event(logits), flatten_event(x))


def likelihood_log_prob(likelihood, logits, x, event_ndims):
    """log p(x|z) summed over the event; x broadcasts against logits' leading sample axes.

    `likelihood` may also be a `Likelihood` layer (then `logits` are its raw parameters).
    """
    if _layer(likelihood) is not None:
        return _layer(likelihood).log_prob(logits, x, event_ndims)
    _check_likelihood(likelihood)
    return bernoulli_log_prob(logits, x, event_ndims)
