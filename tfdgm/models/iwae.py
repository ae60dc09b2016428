"""The importance weighted autoencoder, with the IWAE or the doubly reparameterised gradient.

References:
  Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders.
  Tucker, Lawson, Gu & Maddison (2019), Doubly Reparameterized Gradient Estimators for Monte
  Carlo Objectives.
"""
import tensorflow as tf

from tfdgm import estimators
from tfdgm.models.base import LatentVariableModel, average_loss, register

GRADIENT_ESTIMATORS = ("iwae", "dreg")


@register("iwae")
class IWAE(LatentVariableModel):
    """IWAE: maximises  log (1/K) sum_k p(x, z_k) / q(z_k|x),  z_k ~ q(z|x) reparameterised.

    Args:
      num_samples: K. With K=1 the objective is the ELBO.
      gradient_estimator: "iwae" (the plain reparameterised gradient) or "dreg" (Tucker et al.:
        the decoder gets the IWAE gradient, the encoder sum_k w~_k^2 dlog w_k/dz dz/dphi, whose
        signal-to-noise ratio does not vanish as K grows).
      **kwargs: see `LatentVariableModel`.

    Example:
      >>> model = tfdgm.models.IWAE(num_samples=50, gradient_estimator="dreg")
      >>> model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-4), jit_compile=True)
    """

    extra_metrics = ("iwae_bound", "ess")

    def __init__(self, num_samples=5, gradient_estimator="iwae", **kwargs):
        super().__init__(num_samples=num_samples, **kwargs)
        if gradient_estimator not in GRADIENT_ESTIMATORS:
            raise ValueError(
                f"Unknown gradient_estimator {gradient_estimator!r}; choose one of {GRADIENT_ESTIMATORS}."
            )
        self.gradient_estimator = gradient_estimator

    def _losses_from(self, out):
        loss = estimators.iwae_surrogate(out["log_w"])
        metrics = self._base_metrics(out, loss)
        metrics["iwae_bound"] = -loss
        metrics["ess"] = estimators.effective_sample_size(out["log_w"])
        return loss, metrics

    def compute_losses(self, x, training=True):
        return self._losses_from(self.log_weights(x, self.num_samples))

    def compute_gradients(self, x):
        if self.gradient_estimator == "iwae":
            return super().compute_gradients(x)
        # DReG in one backward pass through the decoder. With q's parameters stopped inside
        # log q, the IWAE surrogate's gradient w.r.t. z_k is w~_k dlog w_k/dz_k, and its gradient
        # w.r.t. the decoder is exactly IWAE's. DReG's encoder gradient is
        # sum_k w~_k^2 dlog w_k/dz_k dz_k/dphi, so we reweight dL/dz_k by w~_k once more and
        # push it back through the (K-times cheaper) encoder only.
        with tf.GradientTape(persistent=True) as tape:
            out = self.log_weights(x, self.num_samples, stop_q_params=True)
            per_example_loss, metrics = self._losses_from(out)
            loss = average_loss(per_example_loss)  # / global batch size, as the base class
        decoder_vars = self.decoder.trainable_variables
        encoder_vars = self.encoder.trainable_variables
        *decoder_grads, grad_z = tape.gradient(loss, decoder_vars + [out["z"]])
        weights = tf.stop_gradient(estimators.normalized_weights(out["log_w"]))
        encoder_grads = tape.gradient(out["z"], encoder_vars, output_gradients=grad_z * weights[..., None])
        del tape
        by_var = {id(v): g for v, g in zip(decoder_vars + encoder_vars, decoder_grads + encoder_grads)}
        return [by_var.get(id(v)) for v in self.trainable_variables], metrics

    def get_config(self):
        config = super().get_config()
        config.update(gradient_estimator=self.gradient_estimator)
        return config


@register("iwae_dreg")
class IWAEDReG(IWAE):
    """`IWAE` with `gradient_estimator="dreg"` by default (Tucker et al. 2019)."""

    def __init__(self, gradient_estimator="dreg", **kwargs):
        super().__init__(gradient_estimator=gradient_estimator, **kwargs)
