"""`AmortizedModel`: an encoder q(z|x), a decoder, a prior p(z) and a likelihood p(x|z), all pluggable.

Each of the four is a built-in name or any Keras layer a user passes; layers are serialised with
`keras.saving.serialize_keras_object`, so `.keras` files with custom networks round-trip under
`safe_mode=True` when their classes are registered (`keras.saving.register_keras_serializable`).

- encoder: x [B, ...] -> (loc, scale) of a diagonal Gaussian q(z|x), or one tensor [B, 2 * latent_dim]
  read as (loc, raw scale), scale = softplus(raw) + 1e-4. Subclasses with other posteriors override
  `posterior_from_params`.
- decoder: z [N, latent_dim] (the model folds sample and batch axes into N) -> the likelihood's parameters,
  reshaped to [..., *input_shape[:-1], likelihood.num_params(channels)].
- prior: "normal", "learned_gaussian" or a layer with `distribution()` (tfdgm.distributions.priors).
- likelihood: "bernoulli", "gaussian", "discretized_logistic" or a likelihood layer
  (tfdgm.distributions.likelihoods).

Parameter groups: "p" (decoder, likelihood and prior variables) and "q" (encoder).
"""
import contextlib
import random

import keras
import numpy as np
import tensorflow as tf

from tfdgm import distributions as dists
from tfdgm import estimators
from tfdgm.distributions.likelihoods import get_likelihood
from tfdgm.distributions.priors import get_prior
from tfdgm.models.base import GenerativeModel
from tfdgm.nets import ARCHITECTURES, make_networks

MIN_SCALE = 1e-4
PRECISIONS = ("float32", "mixed_bfloat16")
_ATTRS = {"encoder": "encoder", "decoder": "decoder", "likelihood": "likelihood", "prior": "prior_layer"}
_COMPONENTS = tuple(_ATTRS.values())


@contextlib.contextmanager
def _python_random_seeded(seed):
    """Keras draws unseeded initializers' seeds from Python's `random`: seed it for the networks
    built here only, and restore the caller's state afterwards."""
    if seed is None:
        yield
        return
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


class AmortizedModel(GenerativeModel):
    """Base of models with an inference network: x -> q(z|x) -> K samples -> log-weights [K, B].

    Args:
      input_shape: shape of one example, e.g. (28, 28, 1) or (D,) for vectors.
      latent_dim: size of z.
      architecture: built-in networks, "mlp" (Burda et al. 784-200-200 tanh) or "conv", used for
        whichever of encoder/decoder is not given.
      hidden_units: hidden widths of the built-in networks.
      likelihood, prior, encoder, decoder: see the module docstring.
      num_samples: K, the samples per example used in training.
      seed: see `GenerativeModel` (noise, and initial weights of the built-in networks).
      precision: "float32" or "mixed_bfloat16" (built-in networks in bfloat16, log-weights in float32).
    """

    metric_names = ("loss", "elbo", "kl", "recon")
    has_encoder = has_bound = has_joint = has_continuous_latents = True
    not_configurable = ("encoder", "decoder")

    def __init__(self, input_shape=(28, 28, 1), latent_dim=50, architecture="mlp", hidden_units=(200, 200),
                 likelihood="bernoulli", prior="normal", num_samples=1, seed=None, precision="float32",
                 encoder=None, decoder=None, **kwargs):
        super().__init__(input_shape=input_shape, seed=seed, **kwargs)
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
        if architecture not in ARCHITECTURES:
            raise ValueError(f"Unknown architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)}, or "
                             "pass your own encoder= and decoder= layers.")
        self.latent_dim = int(latent_dim)
        self.architecture = architecture
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.num_samples = int(num_samples)
        self.precision = precision
        self.likelihood = get_likelihood(likelihood)
        self.prior_layer = get_prior(prior, self.latent_dim)
        channels = self.likelihood.num_params(self.example_shape[-1])
        self.param_shape = self.example_shape[:-1] + (channels,)
        encoder, decoder = (keras.saving.deserialize_keras_object(n) if isinstance(n, dict) else n
                            for n in (encoder, decoder))
        built_in = {}
        if encoder is None or decoder is None:
            with _python_random_seeded(seed):
                built_encoder, built_decoder = make_networks(architecture, self.param_shape, self.latent_dim,
                                                             self.hidden_units, dtype=precision)
            if encoder is None:
                encoder, built_in["encoder"] = built_encoder, None
            if decoder is None:
                decoder, built_in["decoder"] = built_decoder, None
        self.encoder, self.decoder = encoder, decoder
        for name, spec, attr in (("likelihood", likelihood, "likelihood"), ("prior", prior, "prior_layer")):
            if isinstance(spec, str):
                built_in[name] = spec
        # What get_config writes for a component while it is the one built from a name or by
        # default (ids, not objects: Keras would track a second reference); others are serialised.
        self._built_in = {name: (id(getattr(self, _ATTRS[name])), spec) for name, spec in built_in.items()}
        # Fixed input shapes, so build now: compile, saving, loading and export need no data. A
        # network the user built already keeps its weights (Keras's Dense.build would add new ones).
        for network, shape in ((self.encoder, self.example_shape), (self.decoder, (self.latent_dim,))):
            if not network.built:
                network.build((None,) + tuple(shape))
        self.likelihood.build((None,) + self.example_shape)
        self.built = True

    def __setattr__(self, name, value):
        # Swapping a component (model.encoder = other) must drop the old one's variables, or they
        # would stay in trainable_variables, untrained.
        old = self.__dict__.get(name) if name in _COMPONENTS else None
        if isinstance(old, keras.layers.Layer) and old is not value and old in getattr(self, "_layers", []):
            self._layers.remove(old)
        super().__setattr__(name, value)

    def parameter_groups(self):
        p = self.decoder.trainable_variables + self.likelihood.trainable_variables
        return {"p": p + self.prior_layer.trainable_variables, "q": list(self.encoder.trainable_variables)}

    # ------------------------------------------------------------------ distributions
    @property
    def event_ndims(self):
        return len(self.example_shape)

    def prior(self):
        return self.prior_layer.distribution()

    def posterior_params(self, x):
        """The encoder's output for x, as the (loc, scale) of q(z|x) in float32."""
        out = self.encoder(tf.cast(x, tf.float32))
        if isinstance(out, (tuple, list)):
            loc, scale = out
            return tf.cast(loc, tf.float32), tf.cast(scale, tf.float32)
        loc, raw = tf.split(tf.cast(out, tf.float32), 2, axis=-1)
        return loc, tf.math.softplus(raw) + MIN_SCALE

    def posterior_from_params(self, params):
        return dists.diagonal_gaussian(*params)

    def posterior(self, x):
        return self.posterior_from_params(self.posterior_params(x))

    @property
    def code_size(self):
        """Width of z as the decoder sees it: latent_dim, except for categorical latents, whose
        latent_dim variables of num_classes classes are a flat one-hot code [latent_dim * num_classes]."""
        return getattr(self, "_code_size", self.latent_dim)

    def decode_params(self, z):
        """The likelihood's parameters for latents z [..., code_size]: [..., *param_shape].

        The decoder sees one batch axis (sample and batch axes folded together), so any Keras
        network built for inputs [None, latent_dim] works.
        """
        out = self.decoder(tf.reshape(z, [-1, self.code_size]))
        return tf.reshape(out, tf.concat([tf.shape(z)[:-1], self.param_shape], axis=0))

    def log_prior_and_likelihood(self, z, x):
        """(log p(z), log p(x|z)) for latents z [..., B, latent_dim] and data x [B, ...].

        The hook AIS, BDMC and MCMC-based training use (hierarchical models override it).
        """
        x = tf.cast(x, tf.float32)
        log_px_z = self.likelihood.log_prob(self.decode_params(z), x, self.event_ndims)
        return self.prior().log_prob(z), log_px_z

    def log_weights(self, x, num_samples, seed=None, stop_q_params=False):
        """Draws K reparameterised z ~ q(z|x) and scores them.

        Returns a dict of [K, B] tensors: log_w, log_px_z, log_pz, log_qz, and z [K, B, D], plus
        `posterior` (q). With stop_q_params, log q(z|x) is evaluated with q's parameters held fixed
        while z still depends on them (DReG; Tucker et al. 2019).
        """
        x = tf.cast(x, tf.float32)
        params = self.posterior_params(x)
        q = self.posterior_from_params(params)
        z = dists.sample(q, num_samples, self._next_seed(seed))
        q_scored = self.posterior_from_params(tf.nest.map_structure(tf.stop_gradient, params)) if stop_q_params else q
        log_qz = q_scored.log_prob(z)
        log_pz, log_px_z = self.log_prior_and_likelihood(z, x)
        return {"log_w": log_px_z + log_pz - log_qz, "log_px_z": log_px_z, "log_pz": log_pz, "log_qz": log_qz,
                "z": z, "posterior": q}

    def kl_divergence(self, posterior, out=None):
        """KL(q(z|x) || p(z)) per example [B]: analytic where TFP has it, else the Monte Carlo mean
        of log q - log p over the samples in `out` (a `log_weights` result)."""
        try:
            return posterior.kl_divergence(self.prior())
        except NotImplementedError:
            if out is None:
                raise
            return tf.reduce_mean(out["log_qz"] - out["log_pz"], axis=0)

    def base_metrics(self, out, loss):
        """loss, elbo, kl and recon (nats per example) from a `log_weights` result."""
        kl = self.kl_divergence(out["posterior"], out)
        recon = tf.reduce_mean(out["log_px_z"], axis=0)
        return {"loss": loss, "elbo": recon - kl, "kl": kl, "recon": recon}

    def validate_data(self, x):
        from tfdgm.data import validate

        return validate(x, likelihood=self.likelihood, name="x")

    # ------------------------------------------------------------------ inference API
    def call(self, x, training=False):
        """Reconstruction: the mean of p(x|z) at the posterior mean of z."""
        return self.reconstruct(x)

    def encode(self, x):
        """Posterior mean E_q[z|x], [B, latent_dim]."""
        return self.posterior(x).mean()

    def decode(self, z):
        """Mean of p(x|z) for latents [..., latent_dim]."""
        return self.likelihood.mean(self.decode_params(z))

    def reconstruct(self, x):
        return self.decode(self.encode(x))

    def sample(self, num_samples, seed=None):
        """Examples drawn from the model: z ~ p(z), then the mean of p(x|z). [N, *input_shape]."""
        return self.decode(dists.sample(self.prior(), num_samples, self._next_seed(seed)))

    def sample_joint(self, num_samples, seed=None):
        """(z, x) ~ p(z) p(x|z), x a draw (not the mean): simulated data whose latents are exact
        posterior samples, as BDMC needs. Shapes [N, latent_dim], [N, *input_shape]."""
        z_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(self._next_seed(seed), 2))
        z = dists.sample(self.prior(), num_samples, z_seed)
        return z, self.likelihood.sample(self.decode_params(z), self.event_ndims, x_seed)

    def log_likelihood_bound(self, x, num_samples=None, seed=None):
        """The IWAE-K lower bound on log p(x) per example [B] (K defaults to training K).

        Arrays and eager tensors are validated first (`validate_data`): data the likelihood cannot
        model is an error, not a NaN bound.
        """
        if isinstance(x, np.ndarray) or (tf.is_tensor(x) and tf.executing_eagerly()):
            x = self.validate_data(x)
        out = self.log_weights(x, self.num_samples if num_samples is None else num_samples, seed=seed)
        return estimators.iwae_bound(out["log_w"])

    # ------------------------------------------------------------------ serialisation
    def get_config(self):
        config = super().get_config()
        config.update(latent_dim=self.latent_dim, architecture=self.architecture,
                      hidden_units=list(self.hidden_units), num_samples=self.num_samples, precision=self.precision,
                      **{name: self._component_config(name) for name in _ATTRS})
        return config

    def _component_config(self, name):
        component = getattr(self, _ATTRS[name])
        identity, spec = self._built_in.get(name, (None, None))
        return spec if id(component) == identity else keras.saving.serialize_keras_object(component)
