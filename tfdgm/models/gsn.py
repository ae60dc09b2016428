"""Denoising autoencoders and generative stochastic networks (GSNs) trained with walkback.

A corruption process C(x~|x) and a reconstruction distribution p(x|h), h = f(x~) the encoder's
hidden state. Training maximises log p(x | f(x~)) for x ~ D, x~ ~ C(x~|x) (Bengio et al. 2013);
Bachman & Precup (2015, §2) read this as minimising KL(q || p) between the "forward" joint
q(x, x~) = D(x) C(x~|x) and the "backward" one, whose optimum is the true posterior
p(x|x~) = D(x|x~). Sampling alternates the two conditionals, x -> x~ ~ C(x~|x) -> x ~ p(x|f(x~)),
a Markov chain whose stationary distribution is D when p(x|x~) = D(x|x~) (Bengio et al. 2013,
Theorem 1; tests/test_gsn.py checks this on an enumerable case).

Walkback (Bengio et al. 2013, §3.4): the chain run from a training example visits spurious modes
that training from x~ ~ C(.|x) alone never sees, so from each x run `walkback_steps` steps of the
chain itself, x_0 = x -> x~_0 -> x_1 ~ p(.|f(x~_0)) -> x~_1 -> ..., and train the reconstruction of
the *original* x from every corrupted state x~_0 .. x~_K (the loss is their mean). The chain states
are drawn in `draw`, outside the gradient tape: no gradient flows through the sampled x_t.
`walkback_steps=0` is the plain denoising autoencoder. `hidden_noise` > 0 adds Gaussian noise to
every hidden pre-activation, the stochastic hidden units of Bengio et al. (2014)'s GSN.

All training noise is one row of standard normal draws per example from
`tfdgm.distributions.gaussian_sample` (the package's one noise source), so a replica's noise is
its slice of the global batch's under the test harness's fixed noise.

References:
  Vincent, Larochelle, Bengio & Manzagol (2008), Extracting and composing robust features with
    denoising autoencoders.
  Bengio, Yao, Alain & Vincent (2013), Generalized denoising auto-encoders as generative models
    (NIPS 2013; walkback, §3.4).
  Bengio, Thibodeau-Laufer, Alain & Yosinski (2014), Deep generative stochastic networks trainable
    by backprop (ICML 2014).
  Bachman & Precup (2015), Variations on the theme of variational inference (§2).
"""
import math

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfdgm.distributions import discrete, get_likelihood
from tfdgm.models.base import GenerativeModel, register

tfd = tfp.distributions

CORRUPTIONS = ("salt_and_pepper", "gaussian")
SUPPORTED_LIKELIHOODS = ("bernoulli", "gaussian")


class Corruption:
    """A corruption process C(x~|x) picked by name; `corrupt` is a function of standard normal noise.

    "salt_and_pepper" (level p): each pixel, with probability p, is replaced by a fair coin (so it
      is flipped with probability p / 2); on binary data C(x~_i = 1 | x_i) = (1 - p) x_i + p / 2.
    "gaussian" (level sigma): x~ = x + sigma * eps, eps ~ N(0, 1) per pixel.
    """

    def __init__(self, name, level):
        if name not in CORRUPTIONS:
            raise ValueError(f"Unknown corruption {name!r}; choose one of {CORRUPTIONS}.")
        level = float(level)
        if name == "salt_and_pepper" and not 0.0 <= level <= 1.0:
            raise ValueError(f"corruption_level of salt_and_pepper is a probability in [0, 1], got {level!r}.")
        if name == "gaussian" and not level >= 0.0:
            raise ValueError(f"corruption_level of gaussian noise is a standard deviation >= 0, got {level!r}.")
        self.name, self.level = name, level

    def noise_width(self, num_pixels):
        """Standard normal draws per example: a mask and a coin per pixel, or one eps per pixel."""
        return 2 * num_pixels if self.name == "salt_and_pepper" else num_pixels

    def corrupt(self, x, eps):
        """x~ for flat x [B, D] from eps [B, noise_width(D)]."""
        if self.name == "gaussian":
            return x + self.level * eps
        d = x.shape[-1]
        mask_logit = math.log(self.level) - math.log1p(-self.level) if 0 < self.level < 1 else (
            math.inf if self.level == 1 else -math.inf)
        mask = discrete.bernoulli_from_noise(tf.fill(tf.shape(x), tf.constant(mask_logit, tf.float32)), eps[:, :d])
        coin = discrete.bernoulli_from_noise(tf.zeros_like(x), eps[:, d:])
        return mask * coin + (1.0 - mask) * x

    def distribution(self, x):
        """C(. | x) per pixel as a TFP distribution (salt-and-pepper: of binary x only)."""
        x = tf.cast(x, tf.float32)
        if self.name == "gaussian":
            return tfd.Normal(x, self.level)
        return tfd.Bernoulli(probs=(1.0 - self.level) * x + 0.5 * self.level, dtype=tf.float32)


@register("gsn")
class GSN(GenerativeModel):
    """A denoising autoencoder / GSN with walkback training; sampling by its Markov chain.

    Args:
      hidden_units: widths of the encoder's hidden layers x~ -> h; the decoder is one affine map
        from the last hidden layer to p(x|h)'s parameters (Bengio et al. 2013's single-layer DAE
        when there is one hidden layer).
      activation: of the hidden layers.
      likelihood: p(x|h), "bernoulli" (binary data) or "gaussian" (a `GaussianLikelihood`, fixed or
        learned scale), by name, layer or dict, as in `AmortizedModel`.
      corruption: "salt_and_pepper" or "gaussian" (see `Corruption`).
      corruption_level: salt-and-pepper's probability p, or the Gaussian sigma.
      walkback_steps: K, chain steps from each example whose corrupted states are also trained to
        reconstruct it; 0 = a plain denoising autoencoder.
      hidden_noise: standard deviation of Gaussian noise added to every hidden pre-activation
        (training and sampling), 0 for deterministic hidden units.
      sample_steps: chain steps of `sample`.
    """

    metric_names = ("loss", "denoising_nll", "recon_error")
    # encode(x) (the deterministic hidden state of clean x) and reconstruct(x) exist; q(h|x) has no
    # density, there is no bound on log p(x), no joint and no prior over h.
    has_encoder = True
    has_posterior = False
    has_bound = has_joint = has_continuous_latents = False
    has_markov_chain_sampler = True  # sample_chain(x0, steps, seed)

    def __init__(self, hidden_units=(500,), activation="tanh", likelihood="bernoulli", corruption="salt_and_pepper",
                 corruption_level=0.4, walkback_steps=1, hidden_noise=0.0, sample_steps=100, input_shape=(28, 28, 1),
                 seed=None, **kwargs):
        hidden_units = tuple(hidden_units)
        if not hidden_units or any(isinstance(u, bool) or not isinstance(u, (int, np.integer)) or u < 1
                                   for u in hidden_units):
            raise ValueError(f"hidden_units must be a non-empty list of integers >= 1, got {hidden_units!r}.")
        for name, value in (("walkback_steps", walkback_steps), ("sample_steps", sample_steps)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}.")
        if not hidden_noise >= 0:
            raise ValueError(f"hidden_noise must be >= 0, got {hidden_noise!r}.")
        self.corruption_process = Corruption(corruption, corruption_level)
        super().__init__(input_shape=input_shape, seed=seed, **kwargs)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = activation
        self.walkback_steps = int(walkback_steps)
        self.hidden_noise = float(hidden_noise)
        self.sample_steps = int(sample_steps)
        self.likelihood = get_likelihood(likelihood)
        if self.likelihood.registry_name not in SUPPORTED_LIKELIHOODS:
            raise ValueError(f"GSN supports the likelihoods {SUPPORTED_LIKELIHOODS} (its chain samples x ~ p(x|h) "
                             f"from normal noise), got {self.likelihood.registry_name!r}.")
        self._likelihood_spec = likelihood if isinstance(likelihood, str) else None
        self.num_pixels = math.prod(self.example_shape)
        channels = self.likelihood.num_params(self.example_shape[-1])
        self.param_shape = self.example_shape[:-1] + (channels,)
        seeds = [None if seed is None else int(seed) + i for i in range(len(self.hidden_units) + 1)]
        self.hidden = [keras.layers.Dense(units, kernel_initializer=keras.initializers.GlorotUniform(seeds[i]),
                                          name=f"hidden_{i}") for i, units in enumerate(self.hidden_units)]
        self.output_layer = keras.layers.Dense(math.prod(self.param_shape),
                                               kernel_initializer=keras.initializers.GlorotUniform(seeds[-1]),
                                               name="decoder")
        width = self.num_pixels
        for layer in self.hidden:
            layer.build((None, width))
            width = layer.units
        self.output_layer.build((None, width))
        self.likelihood.build((None,) + self.example_shape)
        self.activation_fn = keras.activations.get(activation)
        self.built = True

    def parameter_groups(self):
        return {"gsn": list(self.trainable_variables)}

    def validate_data(self, x):
        from tfdgm.data import validate

        return validate(x, likelihood=self.likelihood, name="x")

    # ------------------------------------------------------------------ the two conditionals
    @property
    def event_ndims(self):
        return len(self.example_shape)

    def _flat(self, x):
        return tf.reshape(tf.cast(x, tf.float32), [-1, self.num_pixels])

    def _hidden(self, x_tilde, eps=None):
        """h = f(x~) of flat x~ [B, D]; eps [B, sum(hidden_units)] scaled by hidden_noise, or None."""
        h, start = x_tilde, 0
        for layer in self.hidden:
            pre = layer(h)
            if eps is not None and self.hidden_noise:
                pre += self.hidden_noise * eps[:, start:start + layer.units]
            start += layer.units
            h = self.activation_fn(pre)
        return h

    def _params(self, h):
        """p(x|h)'s raw parameters, [B, *param_shape]."""
        return tf.reshape(self.output_layer(h), (-1,) + self.param_shape)

    def _sample_x(self, params, eps):
        """x ~ p(x|h) from standard normal eps [B, D], flat [B, D]."""
        if self.likelihood.registry_name == "bernoulli":
            return discrete.bernoulli_from_noise(tf.reshape(params, [-1, self.num_pixels]), eps)
        mean = tf.reshape(self.likelihood.mean(params), [-1, self.num_pixels])
        scale = tf.reshape(self.likelihood.stddev() * tf.ones(self.example_shape), [self.num_pixels])
        return mean + scale * eps

    def _widths(self):
        """(corruption, hidden noise, sample) standard normal draws per example per chain step."""
        hidden = sum(self.hidden_units) if self.hidden_noise else 0
        return self.corruption_process.noise_width(self.num_pixels), hidden, self.num_pixels

    def _step_noise(self, num, seed):
        """One chain step's noise rows [num, corruption + hidden + sample]."""
        return discrete._noise(tf.zeros(tf.stack([num, sum(self._widths())])), 1, seed)[0]

    def _chain_step(self, x, eps):
        """x -> x~ ~ C(.|x) -> h = f(x~) -> x' ~ p(.|h), flat; returns (x', mean of p(.|h), x~)."""
        wc, wh, _ = self._widths()
        x_tilde = self.corruption_process.corrupt(x, eps[:, :wc])
        params = self._params(self._hidden(x_tilde, eps[:, wc:wc + wh] if wh else None))
        mean = tf.reshape(self.likelihood.mean(params), [-1, self.num_pixels])
        return self._sample_x(params, eps[:, wc + wh:]), mean, x_tilde

    def corrupt(self, x, seed=None):
        """x~ ~ C(x~|x) of images x [B, *input_shape], with the same shape; deterministic per seed."""
        flat = self._flat(x)
        eps = discrete._noise(tf.zeros(tf.stack([tf.shape(flat)[0], self._widths()[0]])), 1, self._next_seed(seed))[0]
        return tf.reshape(self.corruption_process.corrupt(flat, eps), tf.shape(x))

    def encode(self, x):
        """The hidden state f(x) of uncorrupted x (no hidden noise), [B, hidden_units[-1]]."""
        return self._hidden(self._flat(x))

    def reconstruct(self, x):
        """The mean of p(x | f(x)) for uncorrupted x, [B, *input_shape]."""
        return tf.reshape(self.likelihood.mean(self._params(self.encode(x))), (-1,) + self.example_shape)

    def reconstruction_distribution(self, x_tilde):
        """p(x | f(x~)) (no hidden noise) as a TFP distribution over examples, for x~ [B, *input_shape]."""
        return self.likelihood.distribution(self._params(self._hidden(self._flat(x_tilde))), self.event_ndims)

    # ------------------------------------------------------------------ training
    def draw(self, x):
        """The walkback chain from x, outside the tape: corrupted states x~_0 .. x~_K [K + 1, B, D] and
        their hidden noise [K + 1, B, H] (None without hidden noise)."""
        x = self._flat(x)
        wc, wh, ws = self._widths()
        steps = self.walkback_steps + 1
        row = discrete._noise(tf.zeros(tf.stack([tf.shape(x)[0], steps * (wc + wh + ws)])), 1, self._next_seed())[0]
        row = tf.reshape(row, [-1, steps, wc + wh + ws])
        corrupted, hidden = [], []
        for t in range(steps):
            eps = row[:, t]
            if t < steps - 1:
                x_next, _, x_tilde = self._chain_step(x, eps)
            else:  # the last state is only corrupted
                x_tilde = self.corruption_process.corrupt(x, eps[:, :wc])
            corrupted.append(x_tilde)
            hidden.append(eps[:, wc:wc + wh])
            if t < steps - 1:
                x = x_next
        return {"corrupted": tf.stop_gradient(tf.stack(corrupted)),
                "hidden_eps": tf.stack(hidden) if wh else None}

    def surrogates(self, x, samples=None, training=True):
        if samples is None:
            samples = self.draw(x)
        x = tf.cast(x, tf.float32)
        corrupted, hidden_eps = samples["corrupted"], samples["hidden_eps"]
        nlls = []
        for t in range(self.walkback_steps + 1):
            h = self._hidden(corrupted[t], None if hidden_eps is None else hidden_eps[t])
            nlls.append(-self.likelihood.log_prob(self._params(h), x, self.event_ndims))
        loss = tf.add_n(nlls) / float(len(nlls))
        recon_error = tf.reduce_sum(tf.square(self._flat(x) - self._flat(self.reconstruct(x))), axis=-1)
        return {"gsn": loss}, {"loss": loss, "denoising_nll": nlls[0], "recon_error": recon_error}, None

    # ------------------------------------------------------------------ sampling
    def _start(self, num, seed):
        """Chain starts: fair coins (Bernoulli) or N(0.5, 0.5^2) pixels (Gaussian), flat [num, D]."""
        eps = discrete._noise(tf.zeros(tf.stack([num, self.num_pixels])), 1, seed)[0]
        if self.likelihood.registry_name == "bernoulli":
            return discrete.bernoulli_from_noise(tf.zeros_like(eps), eps)
        return 0.5 + 0.5 * eps

    @staticmethod
    def _fold(seed, t):
        return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), tf.cast(t, tf.int64) + 1)

    def sample(self, num_samples, seed=None):
        """The decoder means p(x|h) of the last of `sample_steps` chain steps from random starts;
        [N, *input_shape]."""
        seed = self._next_seed(seed)
        n = tf.cast(num_samples, tf.int32)
        x = self._start(n, seed)

        def body(t, x, mean):
            x, mean, _ = self._chain_step(x, self._step_noise(n, self._fold(seed, t)))
            return t + 1, x, mean

        _, _, mean = tf.while_loop(lambda t, *_: t < self.sample_steps, body, (tf.constant(0), x, x))
        return tf.reshape(mean, tf.concat([[n], self.example_shape], 0))

    def sample_chain(self, x0=None, steps=None, seed=None, num_samples=None):
        """Every state of the chain: the decoder means of steps 1..steps, [steps, N, *input_shape].

        x0: start images [N, *input_shape] (e.g. test data), or None for `sample`'s random start of
        num_samples chains. steps defaults to sample_steps.
        """
        steps = self.sample_steps if steps is None else int(steps)
        seed = self._next_seed(seed)
        if x0 is None:
            if num_samples is None:
                raise ValueError("sample_chain needs a start x0 or num_samples chains from a random start.")
            x = self._start(tf.constant(int(num_samples)), seed)
        else:
            x = self._flat(self.validate_data(np.asarray(x0)) if not tf.is_tensor(x0) else x0)
        n = tf.shape(x)[0]
        means = []
        for t in range(steps):
            x, mean, _ = self._chain_step(x, self._step_noise(n, self._fold(seed, t)))
            means.append(mean)
        return tf.reshape(tf.stack(means), tf.concat([[steps, n], self.example_shape], 0))

    def get_config(self):
        config = super().get_config()
        config.update(hidden_units=list(self.hidden_units), activation=self.activation,
                      likelihood=self._likelihood_spec or keras.saving.serialize_keras_object(self.likelihood),
                      corruption=self.corruption_process.name, corruption_level=self.corruption_process.level,
                      walkback_steps=self.walkback_steps, hidden_noise=self.hidden_noise,
                      sample_steps=self.sample_steps)
        return config
