"""The variational autoencoder: ELBO, beta-VAE, KL warm-up and free bits.

References:
  Kingma & Welling (2014), Auto-Encoding Variational Bayes.
  Higgins et al. (2017), beta-VAE.
  Bowman et al. (2016) and Sonderby et al. (2016), KL annealing / warm-up.
  Kingma et al. (2016), Improved Variational Inference with Inverse Autoregressive Flow (free bits).
"""
import tensorflow as tf

from tfdgm.models.amortized import AmortizedModel
from tfdgm.models.base import global_mean, register


@register("vae")
class VAE(AmortizedModel):
    """VAE trained on  E_q[log p(x|z)] - beta_t * KL(q(z|x) || p(z)),  KL analytic where TFP has it.

    Args:
      beta: weight of the KL term (beta-VAE); 1 gives the ELBO.
      kl_warmup_steps: beta_t rises linearly from 0 to beta over this many training steps (the
        model's `step_counter`).
      free_bits: nats per latent dimension below which the (batch-averaged) KL of that
        dimension is not penalised, so the posterior is not pushed to collapse onto the prior.
        Needs a per-dimension analytic KL (Gaussian posterior and prior).
      **kwargs: see `AmortizedModel` (num_samples is the Monte Carlo samples of recon).

    Example:
      >>> model = tfdgm.models.VAE(latent_dim=50)
      >>> model.compile(optimizer="adam")
      >>> model.fit(tfdgm.data.load("fashion_mnist"), epochs=1)  # doctest: +SKIP
    """

    @property
    def splits_by_example(self):
        return not self.free_bits  # free bits clamp the KL's batch mean, which couples the examples

    def __init__(self, beta=1.0, kl_warmup_steps=0, free_bits=0.0, **kwargs):
        super().__init__(**kwargs)
        if beta < 0 or kl_warmup_steps < 0 or free_bits < 0:
            raise ValueError("beta, kl_warmup_steps and free_bits must be non-negative.")
        self.beta = float(beta)
        self.kl_warmup_steps = int(kl_warmup_steps)
        self.free_bits = float(free_bits)

    def kl_weight(self):
        """beta_t: beta times the linear warm-up factor at the current training step."""
        if not self.kl_warmup_steps:
            return tf.constant(self.beta, tf.float32)
        step = tf.cast(self.step_counter, tf.float32)
        return self.beta * tf.minimum(1.0, step / float(self.kl_warmup_steps))

    def penalised_kl(self, posterior, out=None):
        """Per-example KL with free bits: equals, averaged over the batch, sum_d max(KL_d, lambda)
        where KL_d is the batch mean of dimension d (Kingma et al. 2016)."""
        if not self.free_bits:
            return self.kl_divergence(posterior, out)
        kl_per_dim = posterior.distribution.kl_divergence(self.prior().distribution)  # [B, D]
        # The batch mean over the *global* batch: under tf.distribute a replica's half-batch
        # would switch dimensions on and off differently from the single-device run.
        active = global_mean(kl_per_dim, axis=0) > self.free_bits  # [D]
        clamped = tf.where(active, kl_per_dim, tf.stop_gradient(tf.zeros_like(kl_per_dim) + self.free_bits))
        return tf.reduce_sum(clamped, axis=-1)

    def surrogates(self, x, samples=None, training=True):
        out = self.log_weights(x, self.num_samples)
        recon = tf.reduce_mean(out["log_px_z"], axis=0)
        weight = self.kl_weight() if training else tf.constant(1.0, tf.float32)
        loss = -(recon - weight * self.penalised_kl(out["posterior"], out))
        return self.shared_loss(loss), self.base_metrics(out, loss), None

    def get_config(self):
        config = super().get_config()
        config.update(beta=self.beta, kl_warmup_steps=self.kl_warmup_steps, free_bits=self.free_bits)
        return config
