"""The importance weighted autoencoder, with the IWAE or the doubly reparameterised gradient.

References:
  Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders.
  Tucker, Lawson, Gu & Maddison (2019), Doubly Reparameterized Gradient Estimators for Monte
  Carlo Objectives.
"""
import tensorflow as tf

from tfdgm import estimators
from tfdgm.models.amortized import AmortizedModel
from tfdgm.models.base import average_loss, register

GRADIENT_ESTIMATORS = ("iwae", "dreg")


@register("iwae")
class IWAE(AmortizedModel):
    """IWAE: maximises  log (1/K) sum_k p(x, z_k) / q(z_k|x),  z_k ~ q(z|x) reparameterised.

    Args:
      num_samples: K. With K=1 the objective is the ELBO.
      gradient_estimator: "iwae" (the plain reparameterised gradient) or "dreg" (Tucker et al.:
        the decoder gets the IWAE gradient, the encoder sum_k w~_k^2 dlog w_k/dz dz/dphi, whose
        signal-to-noise ratio does not vanish as K grows; `estimators.dreg_surrogate`).
      **kwargs: see `AmortizedModel`.

    Example:
      >>> model = tfdgm.models.IWAE(num_samples=50, gradient_estimator="dreg")
      >>> model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-4), jit_compile=True)
    """
    splits_by_example = True

    metric_names = AmortizedModel.metric_names + ("iwae_bound", "ess")

    def __init__(self, num_samples=5, gradient_estimator="iwae", **kwargs):
        super().__init__(num_samples=num_samples, **kwargs)
        if gradient_estimator not in GRADIENT_ESTIMATORS:
            raise ValueError(
                f"Unknown gradient_estimator {gradient_estimator!r}; choose one of {GRADIENT_ESTIMATORS}."
            )
        self.gradient_estimator = gradient_estimator

    def metrics_from(self, out):
        """(IWAE surrogate [B], metrics) of a `log_weights` result."""
        loss = estimators.iwae_surrogate(out["log_w"])
        metrics = self.base_metrics(out, loss)
        metrics.update(iwae_bound=-loss, ess=estimators.effective_sample_size(out["log_w"]))
        return loss, metrics

    def surrogates(self, x, samples=None, training=True):
        out = self.log_weights(x, self.num_samples, stop_q_params=self.gradient_estimator == "dreg")
        loss, metrics = self.metrics_from(out)
        if self.gradient_estimator == "iwae":
            return self.shared_loss(loss), metrics, None
        # The DReG encoder surrogate, for callers that differentiate surrogates() themselves;
        # training uses the one-pass equivalent in compute_gradients.
        return {"p": loss, "q": estimators.dreg_surrogate(out["log_w"])}, metrics, out

    def compute_gradients(self, x):
        if self.gradient_estimator == "iwae":
            return super().compute_gradients(x)
        # DReG in one backward pass through the decoder. With q's parameters stopped inside log q,
        # the IWAE surrogate's gradient w.r.t. z_k is w~_k dlog w_k/dz_k and its gradient w.r.t. p
        # is exactly IWAE's. The gradient of dreg_surrogate w.r.t. q is sum_k w~_k^2 dlog w_k/dz_k
        # dz_k/dphi, so dL/dz_k is reweighted by w~_k once more and pushed back through the
        # (K-times cheaper) encoder only, instead of a second pass through the decoder.
        groups = self.group_variables()
        with tf.GradientTape(persistent=True) as tape:
            losses, metrics, out = self.surrogates(x)
            loss = average_loss(losses["p"])
        *p_grads, grad_z = tape.gradient(loss, groups["p"] + [out["z"]])
        weights = tf.stop_gradient(estimators.normalized_weights(out["log_w"]))
        q_grads = tape.gradient(out["z"], groups["q"], output_gradients=grad_z * weights[..., None])
        del tape
        return {"p": p_grads, "q": q_grads}, metrics, None

    def get_config(self):
        config = super().get_config()
        config.update(gradient_estimator=self.gradient_estimator)
        return config


@register("iwae_dreg")
class IWAEDReG(IWAE):
    """`IWAE` with `gradient_estimator="dreg"` by default (Tucker et al. 2019)."""

    def __init__(self, gradient_estimator="dreg", **kwargs):
        super().__init__(gradient_estimator=gradient_estimator, **kwargs)
