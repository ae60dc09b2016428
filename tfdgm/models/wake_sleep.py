"""Wake-sleep (the Helmholtz machine), and the base it shares with reweighted wake-sleep.

`HelmholtzModel` adds to `AmortizedModel` a choice of latent (`"gaussian"` or `"bernoulli"`, the
latter a sigmoid belief layer with a learned Bernoulli prior), samples that carry no gradient
into the decoder's loss, and dreams: (z, x) ~ p(z) p(x|z) drawn in `draw`, before the gradient tape,
for the sleep phase. All noise comes from `tfdgm.distributions.gaussian_sample` (discrete units
threshold it, `tfdgm.distributions.discrete`).

References:
  Hinton, Dayan, Frey & Neal (1995), The wake-sleep algorithm for unsupervised neural networks.
  Dayan, Hinton, Neal & Zemel (1995), The Helmholtz machine.
"""
import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfdgm import estimators
from tfdgm.distributions import discrete
from tfdgm.distributions.likelihoods import BernoulliLikelihood, GaussianLikelihood
from tfdgm.models.amortized import AmortizedModel, _python_random_seeded
from tfdgm.models.base import register
from tfdgm.nets.sbn import LogitsEncoder

tfd = tfp.distributions
LATENTS = ("gaussian", "bernoulli", "categorical")
DISCRETE_LATENTS = ("bernoulli", "categorical")


class HelmholtzModel(AmortizedModel):
    """An `AmortizedModel` with Gaussian or Bernoulli latents, trained by wake and sleep phases.

    Args:
      latent: "gaussian" (q a diagonal Gaussian, prior as `prior`), "bernoulli" (q(z|x) =
        Bernoulli(sigmoid(encoder(x))), a `LogitsEncoder` unless `encoder=` is given, which must
        return logits [B, latent_dim]) or "categorical" (latent_dim independent one-hot
        categoricals of `num_classes` classes, z their concatenation [latent_dim * num_classes],
        `code_size`; the encoder returns logits of that width). As in `GumbelSoftmaxVAE`,
        latent_dim counts latent variables: Jang et al.'s 20 x 10 is latent_dim=20, num_classes=10.
      prior: "auto" ("normal" for Gaussian latents, "bernoulli", a learned Bernoulli prior, for
        Bernoulli ones, "categorical", learned logits per variable, for categorical ones), or any
        prior `AmortizedModel` accepts.
      num_classes: classes of each categorical variable (latent="categorical" only).
      top_latent_dim: with Bernoulli latents, a second stochastic layer of this many units above
        the first: p(z2) p(z1|z2) p(x|z1) and q(z1|x) q(z2|z1), each conditional one sigmoid belief
        layer (Bornschein & Bengio's SBN 200-200); z is [z1, z2]. 0: one layer.
      **kwargs: see `AmortizedModel`. With Bernoulli latents and `hidden_units=()` the model is a
        sigmoid belief net (linear logits both ways).
    """
    splits_by_example = True

    metric_names = AmortizedModel.metric_names + ("iwae_bound", "ess")
    uses_dreams = False  # whether draw() dreams (set by subclasses from their phi update)

    def __init__(self, latent="gaussian", prior="auto", top_latent_dim=0, latent_dim=50, hidden_units=(200, 200),
                 num_classes=10, seed=None, precision="float32", encoder=None, **kwargs):
        if latent not in LATENTS:
            raise ValueError(f"Unknown latent {latent!r}; choose one of {LATENTS}.")
        if int(top_latent_dim) < 0 or (top_latent_dim and latent != "bernoulli"):
            raise ValueError(f"top_latent_dim must be 0, or > 0 with latent='bernoulli'; got {top_latent_dim!r}.")
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes!r}.")
        spec = {"gaussian": "normal"}.get(latent, latent) if prior == "auto" else prior
        prior_arg = spec
        if latent in DISCRETE_LATENTS and isinstance(spec, str) and spec != latent:
            raise ValueError(f"{latent} latents need prior='auto', {latent!r} or a prior layer, got {spec!r}.")
        if spec in DISCRETE_LATENTS and spec != latent:
            raise ValueError(f"prior={spec!r} needs latent={spec!r}.")
        if int(latent_dim) < 1:
            raise ValueError(f"latent_dim must be >= 1 (the number of latent variables), got {latent_dim!r}.")
        # One convention for every discrete model: latent_dim variables, each of num_classes classes
        # (categorical); the decoder sees their flat one-hot code of width code_size.
        code_size = int(latent_dim) * (int(num_classes) if latent == "categorical" else 1)
        if spec == "bernoulli":
            prior_arg = discrete.BernoulliPrior(code_size, name="prior")
        elif spec == "categorical":
            prior_arg = discrete.FactorizedCategoricalPrior(int(latent_dim), num_classes, name="prior")
        built_encoder = latent in DISCRETE_LATENTS and encoder is None
        if built_encoder:
            with _python_random_seeded(seed):
                encoder = LogitsEncoder(code_size, hidden_units, dtype=precision, name="encoder")
        # AmortizedModel builds the decoder for inputs of its latent_dim: the flat code.
        super().__init__(latent_dim=code_size, hidden_units=hidden_units, seed=seed, precision=precision,
                         prior=prior_arg, encoder=encoder, **kwargs)
        # From here on latent_dim is the number of variables, as in the config.
        self.latent_dim, self._code_size = int(latent_dim), code_size
        self.latent = latent
        self.num_classes = int(num_classes)
        self.top_latent_dim = int(top_latent_dim)
        # Written back by get_config as names (the components are rebuilt from them), not layers.
        if prior_arg is not spec:
            self._built_in["prior"] = (id(self.prior_layer), spec)
        if built_encoder:
            self._built_in["encoder"] = (id(self.encoder), None)
        if self.top_latent_dim:  # p(z1|z2) = sigmoid(W z2 + b), b the first layer's prior logits
            with _python_random_seeded(None if seed is None else seed + 1):
                self.top_prior = discrete.BernoulliPrior(self.top_latent_dim, name="top_prior")
                self.conditional_prior = keras.layers.Dense(code_size, use_bias=False, name="conditional_prior")
                self.top_encoder = keras.layers.Dense(self.top_latent_dim, dtype=precision, name="top_encoder")
            self.conditional_prior.build((None, self.top_latent_dim))
            self.top_encoder.build((None, code_size))

    @property
    def num_variables(self):
        """Number of latent variables of the first layer (= latent_dim)."""
        return self.latent_dim

    @property
    def has_continuous_latents(self):
        # Active units, per-dimension KL and HMC-based AIS are for continuous latents.
        return self.latent == "gaussian"

    @property
    def total_latent_dim(self):
        return self.code_size + self.top_latent_dim

    def parameter_groups(self):
        groups = super().parameter_groups()
        if self.top_latent_dim:
            groups["p"] += self.top_prior.trainable_variables + self.conditional_prior.trainable_variables
            groups["q"] += self.top_encoder.trainable_variables
        return groups

    # ------------------------------------------------------------------ distributions
    def posterior_params(self, x):
        if self.latent == "gaussian":
            return super().posterior_params(x)
        return tf.cast(self.encoder(tf.cast(x, tf.float32)), tf.float32)

    def posterior_from_params(self, params):
        if self.latent == "gaussian":
            return super().posterior_from_params(params)
        width = params.shape[-1]
        if width is not None and width != self.code_size:
            # Most likely an encoder= built for the old convention (latent_dim = code width).
            raise ValueError(
                f"The encoder returned logits of width {width}, but latent={self.latent!r} with latent_dim="
                f"{self.latent_dim} (variables) and num_classes={self.num_classes} needs code_size={self.code_size}"
                " (latent_dim x num_classes for categorical latents). latent_dim counts latent variables: for 20 "
                "categoricals of 10 classes pass latent_dim=20, num_classes=10, and an encoder of 200 outputs.")
        if self.latent == "categorical":
            return discrete.flat_categorical(params, self.num_classes)
        return discrete.independent_bernoulli(params)

    def _top_logits(self, z1):
        return tf.cast(self.top_encoder(z1), tf.float32)

    def posterior_log_prob(self, x, z, posterior=None):
        """log q(z|x) for z [..., B, total_latent_dim] (two layers: log q(z1|x) + log q(z2|z1));
        `posterior`: q(z1|x) if already at hand."""
        z1 = z[..., : self.code_size]
        log_q = (self.posterior(x) if posterior is None else posterior).log_prob(z1)
        if self.top_latent_dim:
            log_q += discrete.independent_bernoulli(self._top_logits(z1)).log_prob(z[..., self.code_size:])
        return log_q

    def decode_params(self, z):
        return super().decode_params(z[..., : self.code_size])  # x depends on the first layer only

    def log_prior_and_likelihood(self, z, x):
        if not self.top_latent_dim:
            return super().log_prior_and_likelihood(z, x)
        z1, z2 = z[..., : self.code_size], z[..., self.code_size:]
        log_px_z = self.likelihood.log_prob(self.decode_params(z1), tf.cast(x, tf.float32), self.event_ndims)
        log_pz = self.top_prior.distribution().log_prob(z2) + discrete.independent_bernoulli(
            self._conditional_logits(z2)).log_prob(z1)
        return log_pz, log_px_z

    def _conditional_logits(self, z2):
        return self.conditional_prior(z2) + self.prior_layer.logits

    def kl_divergence(self, posterior, out=None):
        if self.top_latent_dim:  # KL(q(z1, z2|x) || p(z1, z2)) by Monte Carlo
            return tf.reduce_mean(out["log_qz"] - out["log_pz"], axis=0)
        return super().kl_divergence(posterior, out)

    def log_weights(self, x, num_samples, seed=None, stop_q_params=False, reparameterize=True):
        """`AmortizedModel.log_weights` for every latent; reparameterize=False holds z fixed (no
        gradient through the samples, so log_qz is log q(stop(z)|x), wake-phi's term)."""
        x = tf.cast(x, tf.float32)
        params = self.posterior_params(x)
        q = self.posterior_from_params(params)
        seed = self._next_seed(seed)
        if self.top_latent_dim:
            eps = discrete._noise(tf.zeros(tf.stack([tf.shape(x)[0], self.total_latent_dim])), num_samples, seed)
            z1 = discrete.bernoulli_from_noise(params, eps[..., : self.code_size])
            z2 = discrete.bernoulli_from_noise(self._top_logits(z1), eps[..., self.code_size:])
            z = tf.concat([z1, z2], axis=-1)
        else:
            z = discrete.sample(q, num_samples, seed)
        if not reparameterize:
            z = tf.stop_gradient(z)
        if stop_q_params:
            log_qz = self.posterior_from_params(tf.nest.map_structure(tf.stop_gradient, params)).log_prob(z)
        else:
            log_qz = self.posterior_log_prob(x, z, q)
        log_pz, log_px_z = self.log_prior_and_likelihood(z, x)
        return {"log_w": log_px_z + log_pz - log_qz, "log_px_z": log_px_z, "log_pz": log_pz, "log_qz": log_qz,
                "z": z, "posterior": q}

    def prior_from_noise(self, eps):
        """z ~ p(z) [N, total_latent_dim] from standard normal eps of that shape."""
        if self.top_latent_dim:
            z2 = discrete.bernoulli_from_noise(self.top_prior.logits, eps[:, self.code_size:])
            z1 = discrete.bernoulli_from_noise(self._conditional_logits(z2), eps[:, : self.code_size])
            return tf.concat([z1, z2], axis=-1)
        prior = self.prior()
        inner = getattr(prior, "distribution", prior)
        if self.latent == "categorical":
            return discrete.flat_categorical_from_noise(self.prior_layer.logits, eps, self.num_classes)
        if discrete.is_discrete(prior):
            return discrete.bernoulli_from_noise(inner.logits_parameter(), eps)
        if isinstance(inner, tfd.Normal):
            return inner.loc + inner.scale * eps
        raise NotImplementedError(f"{type(self).__name__} draws from Normal or Bernoulli priors, not {prior}.")

    def sample(self, num_samples, seed=None):
        shape = tf.stack([tf.cast(num_samples, tf.int32), self.total_latent_dim])
        return self.decode(self.prior_from_noise(discrete._noise(tf.zeros(shape), 1, self._next_seed(seed))[0]))

    def sample_joint(self, num_samples, seed=None):
        return self.dream(num_samples, seed)

    def dream(self, num_samples, seed=None):
        """(z, x) ~ p(z) p(x|z): [N, total_latent_dim], [N, *input_shape], x a draw, not the mean.

        One Gaussian noise draw of shape [N, total_latent_dim + pixels] (a per-example row, so each
        replica's dreams are its slice of the global batch's under the tests' fixed noise).
        """
        seed = self._next_seed(seed)
        pixels, dim = math.prod(self.example_shape), self.total_latent_dim
        eps = discrete._noise(tf.zeros(tf.stack([tf.cast(num_samples, tf.int32), dim + pixels])), 1, seed)[0]
        z = self.prior_from_noise(eps[:, :dim])
        params = tf.cast(self.decode_params(z), tf.float32)
        eps_x = tf.reshape(eps[:, dim:], tf.shape(params)) if self.likelihood.params_per_channel == 1 else None
        if isinstance(self.likelihood, BernoulliLikelihood):
            x = discrete.bernoulli_from_noise(params, eps_x)
        elif isinstance(self.likelihood, GaussianLikelihood):
            x = self.likelihood.mean(params) + self.likelihood.stddev() * eps_x
        else:
            x = self.likelihood.sample(params, self.event_ndims, tf.random.experimental.stateless_fold_in(seed, 1))
        return tf.stop_gradient(z), tf.stop_gradient(x)

    # ------------------------------------------------------------------ phases
    def draw(self, x):
        if not self.uses_dreams:
            return None
        z, dreamed = self.dream(tf.shape(x)[0])
        return {"z": z, "x": dreamed}

    def sleep_phi_loss(self, dreams):
        """Sleep-phase q loss per dream [N]: -log q(z|x) at (z, x) ~ p."""
        return estimators.sleep_phi_surrogate(self.posterior_log_prob(dreams["x"], dreams["z"]))

    def metrics_from(self, out):
        """(-IWAE-K bound [B], metrics) of a `log_weights` result."""
        bound = estimators.iwae_bound(out["log_w"])
        metrics = self.base_metrics(out, -bound)
        metrics.update(iwae_bound=bound, ess=estimators.effective_sample_size(out["log_w"]))
        return -bound, metrics

    def get_config(self):
        config = super().get_config()
        config.update(latent=self.latent, top_latent_dim=self.top_latent_dim, num_classes=self.num_classes)
        return config


@register("wake_sleep")
class WakeSleep(HelmholtzModel):
    """Wake-sleep (Hinton et al. 1995): the wake phase ascends log p(x, z) in theta at z ~ q(z|x)
    (the ELBO's theta-gradient; the mean over `num_samples` draws, default 1); the sleep phase
    ascends log q(z|x) in phi at dreams (z, x) ~ p(z) p(x|z) (descends E_p(x) KL(p(z|x) || q)).

    With `latent="bernoulli"` this is the Helmholtz machine (Dayan et al. 1995). Reported `loss` is
    the negated IWAE-K bound at the training K (the ELBO for K = 1).

    Example:
      >>> model = tfdgm.models.WakeSleep(latent="bernoulli", latent_dim=200, hidden_units=())
      >>> model.compile(optimizer="adam", optimizers={"q": keras.optimizers.Adam(3e-4)})
    """

    uses_dreams = True

    def __init__(self, num_samples=1, **kwargs):
        super().__init__(num_samples=num_samples, **kwargs)

    def surrogates(self, x, samples=None, training=True):
        out = self.log_weights(x, self.num_samples, reparameterize=False)
        loss, metrics = self.metrics_from(out)
        p_loss = estimators.wake_sleep_theta_surrogate(out["log_pz"] + out["log_px_z"])
        if samples is None:  # a caller without draw(): dream here (still no gradient through dreams)
            samples = self.draw(x)
        return {"p": p_loss, "q": self.sleep_phi_loss(samples)}, metrics, None
