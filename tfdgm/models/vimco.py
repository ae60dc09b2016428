"""VIMCO: the IWAE-K bound trained with per-sample leave-one-out score-function baselines.

Reference: Mnih & Rezende (2016), Variational inference for Monte Carlo objectives.
"""
from tfdgm import estimators
from tfdgm.models.base import register
from tfdgm.models.wake_sleep import HelmholtzModel


@register("vimco")
class VIMCO(HelmholtzModel):
    """The IWAE-K bound L = log (1/K) sum_k w_k with z_k ~ q(z|x) held fixed: p (and the pathwise
    part of q) by L's own gradient, q's score part by sum_k (L - L_{-k}) grad log q(z_k|x), where
    L_{-k} replaces w_k by the geometric mean of the other weights (Mnih & Rezende 2016). No
    baseline network and no running statistics: the other K - 1 samples are the baseline.

    Discrete latents by default (`latent="bernoulli"`; "categorical" and `top_latent_dim` work
    too). Needs K = `num_samples` >= 2. Reported `loss` is minus the IWAE-K bound.

    Example:
      >>> model = tfdgm.models.VIMCO(latent="bernoulli", latent_dim=200, hidden_units=(), num_samples=5)
      >>> model.compile(optimizer=keras.optimizers.Adam(3e-4))
    """

    def __init__(self, num_samples=5, latent="bernoulli", **kwargs):
        if int(num_samples) < 2:
            raise ValueError(f"VIMCO's leave-one-out baselines need num_samples >= 2, got {num_samples}; for one "
                             "sample use tfdgm.models.NVIL.")
        super().__init__(num_samples=num_samples, latent=latent, **kwargs)

    def surrogates(self, x, samples=None, training=True):
        out = self.log_weights(x, self.num_samples, reparameterize=False)
        _, metrics = self.metrics_from(out)
        loss = estimators.vimco_surrogate(out["log_w"], out["log_qz"])
        return {"p": loss, "q": loss}, metrics, None
