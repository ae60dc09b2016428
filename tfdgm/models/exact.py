"""Latent-variable models whose latent is enumerable: the exact likelihood and prior sampling.

z is one of C mixture components (one-hot) or D <= 16 Bernoulli units (2^D configurations), so
log p(x) = logsumexp_z [log p(z) + log p(x|z)] exactly, and the posterior p(z|x) is a softmax over
the configurations: the model needs no encoder. The lecture's first two objectives:
  "exact": maximise log p(x);
  "prior_sampling": maximise log (1/K) sum_k p(x|z_k), z_k ~ p(z) (fails when few z explain x).

Reference: Abbeel, Chen, Ho & Srinivas, CS294-158 Lecture 4, Latent Variable Models (2019).
"""
import keras
import numpy as np
import tensorflow as tf

from tfdgm import estimators
from tfdgm.distributions import discrete
from tfdgm.distributions.likelihoods import BernoulliLikelihood, get_likelihood
from tfdgm.models.amortized import PRECISIONS, _python_random_seeded
from tfdgm.models.base import GenerativeModel, register
from tfdgm.nets import ARCHITECTURES

LATENTS = ("categorical", "bernoulli")
OBJECTIVES = ("exact", "prior_sampling")
MAX_BERNOULLI_UNITS = 16


@register("enumerable")
class EnumerableLatentModel(GenerativeModel):
    """p(z) p(x|z) with an enumerable z, trained on the exact log p(x) or by prior sampling.

    Args:
      input_shape: shape of one example.
      latent: "categorical" (a mixture of `latent_dim` components, learned weights) or "bernoulli"
        (`latent_dim` <= 16 units, learned prior logits).
      latent_dim: C components or D units.
      architecture, hidden_units, precision: the built-in decoder ("mlp" or "conv") from the
        one-hot or binary z to the likelihood's parameters.
      likelihood: as in `AmortizedModel`.
      objective: "exact" or "prior_sampling".
      num_samples: K of the prior-sampling estimator (trained on, and always reported).
      seed: see `GenerativeModel`.

    `log_likelihood_bound(x)` is the exact log p(x); `encode(x)` is E[z|x] under the exact posterior.
    """
    splits_by_example = True

    metric_names = ("loss", "log_likelihood", "prior_sampling_bound", "prior_sampling_ess")
    has_encoder = has_bound = True

    def __init__(self, input_shape=(28, 28, 1), latent="categorical", latent_dim=10, architecture="mlp",
                 hidden_units=(200, 200), likelihood="bernoulli", objective="exact", num_samples=10, seed=None,
                 precision="float32", **kwargs):
        super().__init__(input_shape=input_shape, seed=seed, **kwargs)
        for name, value, allowed in (("latent", latent, LATENTS), ("objective", objective, OBJECTIVES),
                                     ("architecture", architecture, tuple(ARCHITECTURES)),
                                     ("precision", precision, PRECISIONS)):
            if value not in allowed:
                raise ValueError(f"Unknown {name} {value!r}; choose one of {allowed}.")
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
        if latent == "bernoulli" and not 0 < int(latent_dim) <= MAX_BERNOULLI_UNITS:
            raise ValueError(f"latent='bernoulli' enumerates 2^latent_dim states: need 1 <= latent_dim <= "
                             f"{MAX_BERNOULLI_UNITS}, got {latent_dim}.")
        self.latent, self.latent_dim, self.architecture = latent, int(latent_dim), architecture
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.objective, self.num_samples, self.precision = objective, int(num_samples), precision
        self.likelihood = get_likelihood(likelihood)
        self._likelihood_spec = likelihood if isinstance(likelihood, str) else None
        prior_cls = discrete.CategoricalPrior if latent == "categorical" else discrete.BernoulliPrior
        self.prior_layer = prior_cls(self.latent_dim, name="prior")
        self.param_shape = self.example_shape[:-1] + (self.likelihood.num_params(self.example_shape[-1]),)
        with _python_random_seeded(seed):
            self.decoder = ARCHITECTURES[architecture][1](output_shape=self.param_shape, hidden_units=self.hidden_units,
                                                          dtype=precision, name="decoder")
        self.decoder.build((None, self.latent_dim))
        self.likelihood.build((None,) + self.example_shape)
        self.built = True

    def parameter_groups(self):
        return {"p": list(self.trainable_variables)}

    @property
    def event_ndims(self):
        return len(self.example_shape)

    def prior(self):
        return self.prior_layer.distribution()

    def configurations(self):
        """Every value of z, [M, latent_dim]: the C one-hot vectors or the 2^D binary ones."""
        if self.latent == "categorical":
            return tf.eye(self.latent_dim)
        return discrete.enumerate_bernoulli(self.latent_dim)

    def decode_params(self, z):
        out = self.decoder(tf.reshape(z, [-1, self.latent_dim]))
        return tf.reshape(out, tf.concat([tf.shape(z)[:-1], self.param_shape], axis=0))

    def log_joint_table(self, x):
        """log p(z_m) + log p(x_b|z_m) for every configuration m: [M, B]."""
        z = self.configurations()
        x = tf.cast(x, tf.float32)
        params = tf.cast(self.decode_params(z), tf.float32)  # [M, *param_shape]
        if isinstance(self.likelihood, BernoulliLikelihood):
            # sum_p x_p l_mp - softplus(l_mp) as one matmul, instead of an [M, B, pixels] tensor.
            logits = tf.reshape(params, [tf.shape(params)[0], -1])
            flat_x = tf.reshape(x, [tf.shape(x)[0], -1])
            log_px_z = tf.matmul(logits, flat_x, transpose_b=True) - tf.reduce_sum(
                tf.math.softplus(logits), axis=-1, keepdims=True)
        else:
            # [M, B, *param_shape]: the parameters' own last axis (2C for likelihoods with a loc and a
            # scale per channel), not the data's.
            shape = tf.concat([tf.shape(params)[:1], tf.shape(x)[:1], tf.shape(params)[1:]], axis=0)
            log_px_z = self.likelihood.log_prob(tf.broadcast_to(params[:, None], shape), x, self.event_ndims)
        return self.prior().log_prob(z)[:, None] + log_px_z

    def log_likelihood(self, x):
        """The exact log p(x) per example [B]."""
        return estimators.exact_log_likelihood(self.log_joint_table(x))

    def posterior_probs(self, x):
        """p(z_m|x_b), [M, B]."""
        return tf.nn.softmax(self.log_joint_table(x), axis=0)

    def prior_sampling(self, x, num_samples, seed=None):
        """(log p(x|z_k) [K, B], log p(z_k) [K, B]) with z_k ~ p(z), K draws per example."""
        x = tf.cast(x, tf.float32)
        batch = tf.stack([tf.shape(x)[0], self.latent_dim])
        logits = tf.broadcast_to(tf.convert_to_tensor(self.prior_layer.logits), batch)
        per_example = (discrete.one_hot_categorical(logits) if self.latent == "categorical"
                       else discrete.independent_bernoulli(logits))
        z = discrete.sample(per_example, num_samples, self._next_seed(seed))
        return self.likelihood.log_prob(self.decode_params(z), x, self.event_ndims), self.prior().log_prob(z)

    def surrogates(self, x, samples=None, training=True):
        log_px = self.log_likelihood(x)
        log_lik, log_prior = self.prior_sampling(x, self.num_samples)
        bound = estimators.prior_sampling_bound(log_lik)
        if self.objective == "exact":
            loss = -log_px
        else:
            loss = estimators.prior_sampling_surrogate(log_lik, log_prior)
        metrics = {"loss": -log_px if self.objective == "exact" else -bound, "log_likelihood": log_px,
                   "prior_sampling_bound": bound, "prior_sampling_ess": estimators.effective_sample_size(log_lik)}
        return {"p": loss}, metrics, None

    # ------------------------------------------------------------------ inference and generation
    def log_likelihood_bound(self, x, num_samples=None, seed=None):
        """The exact log p(x) (num_samples and seed are ignored): the tightest bound. Arrays and
        eager tensors are validated first, as `AmortizedModel.log_likelihood_bound` does."""
        if isinstance(x, np.ndarray) or (tf.is_tensor(x) and tf.executing_eagerly()):
            x = self.validate_data(x)
        return self.log_likelihood(x)

    def encode(self, x):
        """E[z|x] under the exact posterior, [B, latent_dim]."""
        return tf.einsum("mb,md->bd", self.posterior_probs(x), self.configurations())

    def reconstruct(self, x):
        """E[x|x] = sum_m p(z_m|x) E[x|z_m]."""
        means = self.likelihood.mean(self.decode_params(self.configurations()))
        return tf.tensordot(tf.transpose(self.posterior_probs(x)), means, axes=1)

    def call(self, x, training=False):
        return self.reconstruct(x)

    def decode(self, z):
        return self.likelihood.mean(self.decode_params(z))

    def sample(self, num_samples, seed=None):
        return self.decode(discrete.sample(self.prior(), num_samples, self._next_seed(seed)))

    def validate_data(self, x):
        from tfdgm.data import validate

        return validate(x, likelihood=self.likelihood, name="x")

    def get_config(self):
        config = super().get_config()
        likelihood = self._likelihood_spec or keras.saving.serialize_keras_object(self.likelihood)
        config.update(latent=self.latent, latent_dim=self.latent_dim, architecture=self.architecture,
                      hidden_units=list(self.hidden_units), likelihood=likelihood, objective=self.objective,
                      num_samples=self.num_samples, precision=self.precision)
        return config


def prior_sampling_evaluation(model, x, num_samples, seed):
    """(log (1/K) sum_k p(x|z_k) [B], effective sample size [B]) with z_k ~ p(z), for any model with
    `prior()` and `log_prior_and_likelihood(z, x)` (has_joint): the prior-sampling estimator as an
    evaluator, to set next to IWAE's bound (on images its ESS is ~1 and the bound is far below)."""
    x = tf.cast(x, tf.float32)
    batch = tf.shape(x)[0]
    z = discrete.sample(model.prior(), num_samples * batch, tf.convert_to_tensor(seed))  # K per example
    z = tf.reshape(z, tf.concat([[num_samples, batch], tf.shape(z)[1:]], axis=0))
    _, log_lik = model.log_prior_and_likelihood(z, x)
    return estimators.prior_sampling_bound(log_lik), estimators.effective_sample_size(log_lik)
