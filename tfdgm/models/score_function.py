"""NVIL and plain REINFORCE: score-function training of a Helmholtz machine's inference network.

References:
  Williams (1992), Simple statistical gradient-following algorithms for connectionist RL.
  Mnih & Gregor (2014), Neural Variational Inference and Learning in Belief Networks.
"""
import math

import keras
import tensorflow as tf

from tfdgm import estimators
from tfdgm.models.amortized import _python_random_seeded
from tfdgm.models.base import global_mean, register
from tfdgm.models.wake_sleep import HelmholtzModel

ESTIMATORS = ("reinforce", "nvil")


@register("nvil")
class NVIL(HelmholtzModel):
    """The ELBO with z ~ q(z|x) held fixed: p by grad log p(x, z), q by the score function.

    - estimator="reinforce": signal log w = log p(x, z) - log q(z|x), no baseline (Williams 1992).
    - estimator="nvil" (Mnih & Gregor 2014): signal (log w - b(x) - c) / max(1, sigma), with b(x)
      a baseline network (x -> `baseline_units` tanh -> 1; the paper's 100 units) in its own
      parameter group "baseline", trained on (log w - c - b(x))^2, and c, sigma^2 the running
      mean and variance of log w (decay `moment_decay`, a plain average over the first steps),
      updated after each step.

    Discrete latents by default (`latent="bernoulli"`: the SBN; "categorical" and a second
    Bernoulli layer, `top_latent_dim`, work too). With `num_samples` K > 1 the estimate averages K
    independent draws per example. Reported `loss` is -ELBO (mean over the K draws).

    Example:
      >>> model = tfdgm.models.NVIL(latent="bernoulli", latent_dim=200, hidden_units=())
      >>> model.compile(optimizer=keras.optimizers.Adam(3e-4))
    """
    splits_by_example = False  # NVIL's learning-signal moments (aux) are batch statistics

    metric_names = HelmholtzModel.metric_names + ("baseline_error", "signal_mean", "signal_std")

    def __init__(self, estimator="nvil", baseline_units=(100,), moment_decay=0.8, latent="bernoulli", num_samples=1,
                 seed=None, **kwargs):
        if estimator not in ESTIMATORS:
            raise ValueError(f"Unknown estimator {estimator!r}; choose one of {ESTIMATORS}.")
        if not 0.0 <= float(moment_decay) < 1.0:
            raise ValueError(f"moment_decay must be in [0, 1), got {moment_decay!r}.")
        super().__init__(latent=latent, num_samples=num_samples, seed=seed, **kwargs)
        self.estimator = estimator
        self.baseline_units = tuple(int(u) for u in baseline_units)
        self.moment_decay = float(moment_decay)
        if estimator == "nvil":
            # Each Dense layer's input is scaled by 1/sqrt(its width), so the squared-error loss has
            # curvature O(1) in every layer whatever the image size and width: the baseline then
            # trains stably at the learning rate of p and q (SGD(0.1) on raw 784-pixel inputs
            # diverges: curvature ~2|x|^2).
            layers, width = [keras.layers.Flatten()], math.prod(self.example_shape)
            for units, activation in [(u, "tanh") for u in self.baseline_units] + [(1, None)]:
                layers += [keras.layers.Rescaling(1.0 / math.sqrt(width)),
                           keras.layers.Dense(units, activation=activation)]
                width = units
            with _python_random_seeded(None if seed is None else seed + 2):
                self.baseline = keras.Sequential(layers, name="baseline")
            self.baseline.build((None,) + self.example_shape)
        # Running statistics of the centred signal; every replica computes the same global update.
        self.signal_mean = self.add_weight(shape=(), initializer="zeros", trainable=False, name="signal_mean",
                                           aggregation="only_first_replica")
        self.signal_variance = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                               name="signal_variance", aggregation="only_first_replica")

    def parameter_groups(self):
        groups = super().parameter_groups()
        if self.estimator == "nvil":
            groups["baseline"] = list(self.baseline.trainable_variables)
        return groups

    def predict_baseline(self, x):
        """b(x) [B] (zeros for plain REINFORCE)."""
        if self.estimator != "nvil":
            return tf.zeros(tf.shape(x)[:1])
        return tf.cast(tf.squeeze(self.baseline(tf.cast(x, tf.float32)), axis=-1), tf.float32)

    def surrogates(self, x, samples=None, training=True):
        out = self.log_weights(x, self.num_samples, reparameterize=False)
        log_w = out["log_w"]
        elbo = estimators.elbo(log_w)
        metrics = self.base_metrics(out, -elbo)
        metrics.update(iwae_bound=estimators.iwae_bound(log_w), ess=estimators.effective_sample_size(log_w))
        baseline = self.predict_baseline(x)
        mean, variance = tf.convert_to_tensor(self.signal_mean), tf.convert_to_tensor(self.signal_variance)
        if self.estimator == "nvil":
            signal = estimators.nvil_learning_signal(log_w, tf.stop_gradient(baseline), mean, variance)
        else:
            signal = log_w
        loss = estimators.reinforce_surrogate(log_w, out["log_qz"], signal)
        losses = {"p": loss, "q": loss}
        # c and sigma^2 track the raw signal's moments (Mnih & Gregor's Algorithm 1), not those
        # of log w - b(x): b(x) learns the rest, and the two estimates are not chasing each other.
        raw = tf.stop_gradient(log_w)
        baseline_error = tf.reduce_mean(tf.square(raw - mean - tf.stop_gradient(baseline)[None]), axis=0)
        metrics.update(baseline_error=baseline_error, signal_mean=tf.fill(tf.shape(elbo), mean),
                       signal_std=tf.fill(tf.shape(elbo), tf.sqrt(variance)))
        if self.estimator != "nvil":
            return losses, metrics, None
        losses["baseline"] = estimators.nvil_baseline_loss(log_w, baseline, mean)
        # Moments of the deviation from the current c: E[d^2] - E[d]^2 without the cancellation of
        # E[l^2] - E[l]^2 at |l| of hundreds of nats (float32 rounding of which would differ
        # between replica layouts and be amplified by the division by sigma).
        deviation = raw - mean
        shift = global_mean(tf.reduce_mean(deviation, axis=0))
        spread = global_mean(tf.reduce_mean(tf.square(deviation - shift), axis=0))
        moments = (mean + shift, spread)
        return losses, metrics, moments

    def after_step(self, moments):
        if moments is None:
            return
        # A running average of the first t + 1 batches until that is longer than the decay's
        # horizon: step 0 starts c at the batch mean rather than at 0 (a zero-initialised average
        # would hand the baseline network a target of -ELBO, hundreds of nats, to learn first).
        step = tf.cast(self.step_counter, tf.float32)
        decay = tf.minimum(self.moment_decay, step / (step + 1.0))
        mean, variance = estimators.update_moments(self.signal_mean, self.signal_variance, *moments, decay=decay)
        self.signal_mean.assign(mean)
        self.signal_variance.assign(variance)

    def get_config(self):
        return dict(super().get_config(), estimator=self.estimator, baseline_units=list(self.baseline_units),
                    moment_decay=self.moment_decay)
