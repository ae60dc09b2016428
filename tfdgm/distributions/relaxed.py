"""Relaxed (Concrete / Gumbel-softmax) categorical and Bernoulli latents, from Gaussian noise.

Like `tfdgm.distributions.discrete`, every draw is a deterministic function of standard normal
noise eps (so the tests' fixed-noise stand-ins of `gaussian_sample` fix these draws too):

- categorical: Gumbel noise g = -log(-log Phi(eps)); the hard draw is one_hot(argmax(logits + g))
  (Gumbel-max: exactly Categorical(softmax(logits))), the relaxed one softmax((logits + g) / tau).
- Bernoulli: logistic noise L = logit(Phi(eps)); the relaxed unit is sigmoid((logits + L) / tau),
  the hard one [logits + L > 0] (exactly Bernoulli(sigmoid(logits))).

Densities are of the unconstrained variables, which are numerically safe at any temperature:
the log-space relaxed categorical log y (TFP's `ExpRelaxedOneHotCategorical`) and the logistic
pre-sigmoid variable s = (logits + L) / tau ~ Logistic(logits / tau, 1 / tau). TFP's
`RelaxedBernoulli.log_prob(y)` instead evaluates at y = sigmoid(s), which rounds to exactly 0 or 1
in float32 at small tau and returns inf or NaN (tensorflow/probability #1738). The log-density
ratio log q(y) - log p(y) that a relaxed KL needs is the same for y and for these variables (the
Jacobian of the map is common to q and p and cancels).

References:
  Jang, Gu & Poole (2017), Categorical Reparameterization with Gumbel-Softmax.
  Maddison, Mnih & Teh (2017), The Concrete Distribution.
  Bengio, Leonard & Courville (2013), straight-through estimators.
"""
import tensorflow as tf
import tensorflow_probability as tfp

from tfdgm.distributions.discrete import logistic_of_noise

tfd = tfp.distributions
LATENTS = ("categorical", "bernoulli")


def gumbel_of_noise(eps):
    """-log(-log Phi(eps)): a standard Gumbel draw for standard normal eps, finite in both tails."""
    # Normal.log_cdf is log_ndtr: accurate for very negative eps (where Phi underflows) and, via
    # log1p(-Phi(-eps)), for positive eps (where log Phi rounds to 0 in float32 otherwise).
    neg_log_u = -tfd.Normal(0.0, 1.0).log_cdf(tf.cast(eps, tf.float32))
    return -tf.math.log(tf.maximum(neg_log_u, 1e-37))


def relax(latent, logits, eps, temperature):
    """Relaxed and hard draws sharing one noise draw.

    Args:
      latent: "categorical" (logits [..., C]) or "bernoulli" (logits [...]).
      logits: float32 logits of the discrete distribution.
      eps: standard normal noise, broadcastable to logits.
      temperature: tau > 0.

    Returns a dict: `relaxed` (the Concrete sample y), `hard` (the discrete sample, exactly one-hot
    or binary), `free` (the unconstrained variable the densities are of: log y for categorical,
    the pre-sigmoid s for Bernoulli).
    """
    logits = tf.cast(logits, tf.float32)
    tau = tf.cast(temperature, tf.float32)
    if latent == "categorical":
        perturbed = logits + gumbel_of_noise(eps)
        log_y = tf.nn.log_softmax(perturbed / tau, axis=-1)
        hard = tf.one_hot(tf.argmax(perturbed, axis=-1), tf.shape(logits)[-1], dtype=tf.float32)
        return {"relaxed": tf.exp(log_y), "hard": hard, "free": log_y}
    if latent == "bernoulli":
        s = (logits + logistic_of_noise(tf.cast(eps, tf.float32))) / tau
        return {"relaxed": tf.sigmoid(s), "hard": tf.cast(s > 0, tf.float32), "free": s}
    raise ValueError(f"Unknown latent {latent!r}; choose one of {LATENTS}.")


def straight_through(hard, relaxed):
    """hard in the forward pass (bit for bit: hard + 0), the gradient of relaxed in the backward pass."""
    return hard + (relaxed - tf.stop_gradient(relaxed))


def relaxed_log_prob(latent, logits, free, temperature):
    """log-density of the unconstrained relaxed variable `free` (see `relax`), summed over the
    last axis for categorical (the class axis) and elementwise for Bernoulli."""
    logits = tf.cast(logits, tf.float32)
    tau = tf.cast(temperature, tf.float32)
    if latent == "categorical":
        return tfd.ExpRelaxedOneHotCategorical(tau, logits=logits).log_prob(free)
    if latent == "bernoulli":
        return tfd.Logistic(loc=logits / tau, scale=1.0 / tau).log_prob(free)
    raise ValueError(f"Unknown latent {latent!r}; choose one of {LATENTS}.")
