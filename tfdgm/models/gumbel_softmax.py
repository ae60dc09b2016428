"""The Gumbel-softmax (Concrete) VAE, with the straight-through variant.

Discrete latents (V categorical variables of C classes, or V Bernoulli units) are relaxed to
continuous ones for training, so the decoder's gradient reaches the encoder by the pathwise
(reparameterised) route; the reported ELBO and bounds use the discrete distributions.

References:
  Jang, Gu & Poole (2017), Categorical Reparameterization with Gumbel-Softmax (the relaxed ELBO
  with the discrete KL; the temperature schedule; ST Gumbel-softmax).
  Maddison, Mnih & Teh (2017), The Concrete Distribution (the relaxed ELBO with relaxed densities).
"""
import math

import tensorflow as tf
import tensorflow_probability as tfp

from tfdgm.distributions import discrete, relaxed
from tfdgm.models.amortized import AmortizedModel, _python_random_seeded
from tfdgm.models.base import register
from tfdgm.nets.sbn import LogitsEncoder

tfd = tfp.distributions
KL_ESTIMATES = ("discrete", "relaxed")


@register("gumbel_softmax")
class GumbelSoftmaxVAE(AmortizedModel):
    """A VAE with relaxed discrete latents, trained on the relaxed ELBO.

    Training loss per example (z~ the relaxed sample at temperature tau, decoded as a flat vector):

    - kl="discrete" (Jang et al. 2017):  -( E[log p(x | z~)] - KL(q(z|x) || p(z)) ), the KL between
      the discrete q and the discrete uniform prior, analytic;
    - kl="relaxed" (Maddison et al. 2017):  -E[ log p(x | z~) + log p_tau(z~) - log q_tau(z~|x) ],
      the densities of the Concrete distributions at the same tau (prior logits uniform).

    With straight_through=True the decoder sees the hard one-hot (or binary) sample in the forward
    pass and the relaxed sample's gradient in the backward pass (Jang et al.'s ST Gumbel-softmax).

    Reported `elbo`, `recon`, `kl` and `log_likelihood_bound(x, K)` use the *discrete* model: hard
    samples z ~ q(z|x) (Gumbel-max of the same noise), the discrete q and prior, the decoder at
    one-hot z. So the IWAE-K bound is a valid lower bound on log p(x) of the discrete model, and
    `tfdgm evaluate` and IWAE evaluation work unchanged.

    Temperature: tau_t = max(min_temperature, temperature * exp(-anneal_rate * N * floor(t / N))),
    N = anneal_every, t the model's `step_counter` (so it is saved, loaded and resumed with it).

    Args:
      latent: "categorical" (latent_dim variables of num_classes classes; the decoder sees the
        flattened [latent_dim * num_classes] code) or "bernoulli" (latent_dim units).
      latent_dim: number of latent variables V (not the decoder's input width; see `code_size`).
      num_classes: C, classes of each categorical variable (ignored for Bernoulli).
      temperature, min_temperature, anneal_rate, anneal_every: the schedule above (Jang et al.:
        tau0 = 1, tau_min = 0.5, r in {1e-5, 1e-4}, N in {500, 1000}).
      straight_through: hard forward, relaxed backward.
      kl: "discrete" or "relaxed", the KL term of the training loss (above).
      prior: "uniform", the only prior (fixed, as in both papers).
      hidden_units: widths of the MLP encoder (`LogitsEncoder`, tanh) and of the decoder.
      **kwargs: see `AmortizedModel` (architecture chooses the decoder; the encoder is an MLP).
    """
    splits_by_example = True

    metric_names = ("loss", "elbo", "kl", "recon", "temperature")
    has_encoder = has_bound = True
    # No continuous latents (active units, HMC-based AIS) and no joint for AIS/BDMC's HMC moves.
    has_joint = has_continuous_latents = False

    def __init__(self, latent="categorical", latent_dim=20, num_classes=10, temperature=1.0, min_temperature=0.5,
                 anneal_rate=1e-4, anneal_every=500, straight_through=False, kl="discrete", prior="uniform",
                 hidden_units=(512, 256), seed=None, precision="float32", encoder=None, **kwargs):
        if latent not in relaxed.LATENTS:
            raise ValueError(f"Unknown latent {latent!r}; choose one of {relaxed.LATENTS}.")
        if kl not in KL_ESTIMATES:
            raise ValueError(f"Unknown kl {kl!r}; choose one of {KL_ESTIMATES}.")
        if prior != "uniform":
            raise ValueError(f"GumbelSoftmaxVAE has a fixed uniform prior: prior must be 'uniform', got {prior!r}.")
        if int(latent_dim) < 1 or (latent == "categorical" and int(num_classes) < 2):
            raise ValueError(f"latent_dim must be >= 1 and num_classes >= 2, got {latent_dim!r} and {num_classes!r}.")
        if not (float(temperature) > 0 and float(min_temperature) > 0):
            raise ValueError(f"temperature and min_temperature must be > 0, got {temperature!r}, {min_temperature!r}.")
        if float(anneal_rate) < 0 or int(anneal_every) < 1:
            raise ValueError(f"anneal_rate must be >= 0 and anneal_every >= 1, got {anneal_rate!r}, {anneal_every!r}.")
        self.latent = latent
        self.num_variables = int(latent_dim)
        self.num_classes = int(num_classes)
        code_size = self.num_variables * (self.num_classes if latent == "categorical" else 1)
        built_encoder = encoder is None
        if built_encoder:
            with _python_random_seeded(seed):
                encoder = LogitsEncoder(code_size, hidden_units, dtype=precision, name="encoder")
        # The prior layer holds fixed zero logits (uniform); prior() broadcasts them to every variable.
        prior_layer = (discrete.CategoricalPrior(self.num_classes, learned=False, name="prior")
                       if latent == "categorical" else discrete.BernoulliPrior(code_size, learned=False, name="prior"))
        # AmortizedModel builds the decoder for inputs of width latent_dim: the flattened code.
        super().__init__(latent_dim=code_size, hidden_units=hidden_units, seed=seed, precision=precision,
                         prior=prior_layer, encoder=encoder, **kwargs)
        # From here on latent_dim is V, as in the config; the decoder's input width is code_size.
        self.latent_dim = self.num_variables
        self._code_size = code_size
        self._built_in["prior"] = (id(self.prior_layer), "uniform")
        if built_encoder:
            self._built_in["encoder"] = (id(self.encoder), None)
        self.initial_temperature = float(temperature)
        self.min_temperature = float(min_temperature)
        self.anneal_rate = float(anneal_rate)
        self.anneal_every = int(anneal_every)
        self.straight_through = bool(straight_through)
        self.kl = kl

    @property
    def code_size(self):
        """Width of the flattened latent code the decoder sees: V * C (categorical) or V (Bernoulli)."""
        return self._code_size

    @property
    def _latent_shape(self):
        return [self.num_variables, self.num_classes] if self.latent == "categorical" else [self.num_variables]

    def _unflatten(self, z):
        return tf.reshape(z, tf.concat([tf.shape(z)[:-1], self._latent_shape], axis=0))

    def _flatten(self, z):
        extra = len(self._latent_shape)
        return tf.reshape(z, tf.concat([tf.shape(z)[:-extra], [self.code_size]], axis=0))

    # ------------------------------------------------------------------ temperature
    def temperature(self, step=None):
        """tau at training step `step` (default: the model's step counter), float32 scalar."""
        step = self.step_counter if step is None else step
        updates = tf.math.floordiv(tf.cast(step, tf.int64), self.anneal_every) * self.anneal_every
        decayed = self.initial_temperature * tf.exp(-self.anneal_rate * tf.cast(updates, tf.float32))
        return tf.maximum(tf.constant(self.min_temperature, tf.float32), decayed)

    # ------------------------------------------------------------------ distributions
    def posterior_params(self, x):
        """Logits of q(z|x): [B, V, C] (categorical) or [B, V] (Bernoulli), float32."""
        return self._unflatten(tf.cast(self.encoder(tf.cast(x, tf.float32)), tf.float32))

    def posterior_from_params(self, logits):
        """The discrete q(z|x), event shape [V, C] or [V]."""
        if self.latent == "categorical":
            return tfd.Independent(discrete.one_hot_categorical(logits), 1)
        return discrete.independent_bernoulli(logits)

    def _prior_logits(self):
        logits = tf.convert_to_tensor(self.prior_layer.logits)
        if self.latent == "categorical":
            return tf.broadcast_to(logits, self._latent_shape)
        return logits

    def prior(self):
        """The discrete uniform prior p(z), event shape [V, C] or [V]."""
        return self.posterior_from_params(self._prior_logits())

    def kl_divergence(self, posterior, out=None):
        """KL(q(z|x) || p(z)) of the discrete distributions, analytic, per example [B]."""
        inner = posterior.distribution
        prior = self.prior().distribution
        return tf.reduce_sum(tfd.kl_divergence(inner, prior), axis=-1)

    def sample_latents(self, x, num_samples=1, seed=None, logits=None):
        """One noise draw of K latents per example: a dict of [K, B, V, C] (or [K, B, V]) tensors
        `relaxed`, `hard`, `free` (see `relaxed.relax`) and `decoder_input` (relaxed, or hard with the
        relaxed gradient when straight_through), plus `logits` and `temperature`."""
        if logits is None:
            logits = self.posterior_params(x)
        flat = self._flatten(logits)
        eps = self._unflatten(discrete._noise(flat, num_samples, self._next_seed(seed)))
        tau = self.temperature()
        out = relaxed.relax(self.latent, logits, eps, tau)
        out["decoder_input"] = (relaxed.straight_through(out["hard"], out["relaxed"]) if self.straight_through
                                else out["relaxed"])
        out.update(logits=logits, temperature=tau)
        return out

    def _relaxed_log_ratio(self, logits, free, tau):
        """log q_tau(z~|x) - log p_tau(z~) per sample [K, B], of the unconstrained variables."""
        log_q = relaxed.relaxed_log_prob(self.latent, logits, free, tau)
        log_p = relaxed.relaxed_log_prob(self.latent, self._prior_logits(), free, tau)
        return tf.reduce_sum(log_q - log_p, axis=-1)

    def decode_params(self, z):
        """The likelihood's parameters for flat codes z [..., code_size]: [..., *param_shape]."""
        out = self.decoder(tf.reshape(z, [-1, self.code_size]))
        return tf.reshape(out, tf.concat([tf.shape(z)[:-1], self.param_shape], axis=0))

    def log_prior_and_likelihood(self, z, x):
        """(log p(z), log p(x|z)) for flat one-hot (or binary) z [..., B, code_size]."""
        log_px_z = self.likelihood.log_prob(self.decode_params(z), tf.cast(x, tf.float32), self.event_ndims)
        return self.prior().log_prob(self._unflatten(z)), log_px_z

    def log_weights(self, x, num_samples, seed=None, stop_q_params=False):
        """K hard samples z ~ q(z|x) (Gumbel-max) scored by the discrete model: [K, B] log_w etc.,
        z flat [K, B, code_size]. No gradient flows through z (discrete); the bound is exact in law."""
        x = tf.cast(x, tf.float32)
        logits = self.posterior_params(x)
        q = self.posterior_from_params(logits)
        hard = tf.stop_gradient(self.sample_latents(x, num_samples, seed=seed, logits=logits)["hard"])
        q_scored = self.posterior_from_params(tf.stop_gradient(logits)) if stop_q_params else q
        log_qz = q_scored.log_prob(hard)
        z = self._flatten(hard)
        log_pz, log_px_z = self.log_prior_and_likelihood(z, x)
        return {"log_w": log_px_z + log_pz - log_qz, "log_px_z": log_px_z, "log_pz": log_pz, "log_qz": log_qz,
                "z": z, "posterior": q}

    # ------------------------------------------------------------------ training
    def surrogates(self, x, samples=None, training=True):
        x = tf.cast(x, tf.float32)
        draws = self.sample_latents(x, self.num_samples)
        logits, tau = draws["logits"], draws["temperature"]
        q = self.posterior_from_params(logits)
        log_px_relaxed = self.likelihood.log_prob(self.decode_params(self._flatten(draws["decoder_input"])), x,
                                                  self.event_ndims)  # [K, B]
        kl = self.kl_divergence(q)
        if self.kl == "discrete":
            loss = -(tf.reduce_mean(log_px_relaxed, axis=0) - kl)
        else:
            loss = -tf.reduce_mean(log_px_relaxed - self._relaxed_log_ratio(logits, draws["free"], tau), axis=0)
        if self.straight_through:  # the decoder already saw the hard sample
            log_px_hard = tf.stop_gradient(log_px_relaxed)
        else:
            log_px_hard = self.likelihood.log_prob(self.decode_params(self._flatten(tf.stop_gradient(draws["hard"]))),
                                                   x, self.event_ndims)
        recon = tf.reduce_mean(log_px_hard, axis=0)
        metrics = {"loss": loss, "elbo": recon - kl, "kl": kl, "recon": recon,
                   "temperature": tf.fill(tf.shape(loss), tau)}
        return self.shared_loss(loss), metrics, None

    # ------------------------------------------------------------------ inference API
    def encode(self, x):
        """E_q[z|x] as the flat code [B, code_size] (class probabilities, or unit probabilities)."""
        return self._flatten(self.posterior(x).mean())

    def sample(self, num_samples, seed=None):
        """z ~ p(z) (hard, by Gumbel-max of Gaussian-made noise), then the mean of p(x|z)."""
        shape = tf.stack([tf.cast(num_samples, tf.int32), self.code_size])
        eps = self._unflatten(discrete._noise(tf.zeros(shape), 1, self._next_seed(seed))[0])
        z = relaxed.relax(self.latent, self._prior_logits(), eps, 1.0)["hard"]
        return self.decode(self._flatten(z))

    def get_config(self):
        config = super().get_config()
        config.update(latent=self.latent, latent_dim=self.num_variables, num_classes=self.num_classes,
                      temperature=self.initial_temperature, min_temperature=self.min_temperature,
                      anneal_rate=self.anneal_rate, anneal_every=self.anneal_every,
                      straight_through=self.straight_through, kl=self.kl)
        return config


def expected_temperature(step, temperature=1.0, min_temperature=0.5, anneal_rate=1e-4, anneal_every=500):
    """The schedule in plain Python (float), for checks and plots."""
    return max(min_temperature, temperature * math.exp(-anneal_rate * anneal_every * (step // anneal_every)))
