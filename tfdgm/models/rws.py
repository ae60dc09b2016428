"""Reweighted wake-sleep: K particles from q(z|x), self-normalised importance weights.

References:
  Bornschein & Bengio (2015), Reweighted Wake-Sleep.
  Le, Kosiorek, Siddharth, Teh & Wood (2019), Revisiting Reweighted Wake-Sleep for Models with
  Stochastic Control Flow.
  Tucker, Lawson, Gu & Maddison (2019), Doubly Reparameterized Gradient Estimators (RWS-DReG).
"""
from tfdgm import estimators
from tfdgm.models.base import register
from tfdgm.models.wake_sleep import HelmholtzModel

PHI_UPDATES = ("wake", "sleep", "both", "wake_dreg")


@register("rws")
class RWS(HelmholtzModel):
    """RWS: theta by wake-theta, -sum_k w~_k grad log p(x, z_k), z_k ~ q(z|x) (no gradient through
    the samples, so discrete latents work); phi by

    - "wake": wake-phi, -sum_k w~_k grad log q(z_k|x), estimating grad KL(p(z|x) || q(z|x)) on data;
    - "sleep": sleep-phi, -grad log q(z|x) at one dream (z, x) ~ p per example (as wake-sleep);
    - "both": insomnia * wake-phi + (1 - insomnia) * sleep-phi (Pyro's `insomnia`: 1 is pure wake);
    - "wake_dreg": wake-phi's doubly reparameterised form (Gaussian latents only; Tucker et al.).

    Weights are per example (every example has its own K particles), so mini-batches are exact.
    p and q are separate parameter groups, so `compile(optimizers={"q": ...})` gives q its own
    optimizer. With K = 1 and phi_update="sleep" this is wake-sleep (Bornschein & Bengio 2015);
    with K = 1 and "wake" the q-gradient has mean zero. Reported `loss` is minus the IWAE-K bound.

    Example:
      >>> model = tfdgm.models.RWS(latent="bernoulli", latent_dim=200, hidden_units=(), num_samples=5)
      >>> model.compile(optimizer=keras.optimizers.Adam(1e-3))
    """

    def __init__(self, num_samples=5, phi_update="wake", insomnia=0.5, **kwargs):
        if phi_update not in PHI_UPDATES:
            raise ValueError(f"Unknown phi_update {phi_update!r}; choose one of {PHI_UPDATES}.")
        if not 0.0 <= float(insomnia) <= 1.0:
            raise ValueError(f"insomnia must be in [0, 1], got {insomnia!r}.")
        if phi_update == "wake_dreg" and kwargs.get("latent", "gaussian") != "gaussian":
            raise ValueError("phi_update='wake_dreg' needs reparameterised samples: latent='gaussian'.")
        super().__init__(num_samples=num_samples, **kwargs)
        self.phi_update = phi_update
        self.insomnia = float(insomnia)

    @property
    def uses_dreams(self):
        return self.phi_update in ("sleep", "both")

    def surrogates(self, x, samples=None, training=True):
        dreg = self.phi_update == "wake_dreg"
        out = self.log_weights(x, self.num_samples, stop_q_params=dreg, reparameterize=dreg)
        loss, metrics = self.metrics_from(out)
        log_w = out["log_w"]
        p_loss = estimators.wake_theta_surrogate(log_w, out["log_pz"] + out["log_px_z"])
        if dreg:
            return {"p": p_loss, "q": estimators.rws_dreg_surrogate(log_w)}, metrics, None
        if self.uses_dreams and samples is None:
            samples = self.draw(x)
        if self.phi_update == "wake":
            q_loss = estimators.wake_phi_surrogate(log_w, out["log_qz"])
        elif self.phi_update == "sleep":
            q_loss = self.sleep_phi_loss(samples)
        else:
            q_loss = (self.insomnia * estimators.wake_phi_surrogate(log_w, out["log_qz"])
                      + (1.0 - self.insomnia) * self.sleep_phi_loss(samples))
        return {"p": p_loss, "q": q_loss}, metrics, None

    def get_config(self):
        config = super().get_config()
        config.update(phi_update=self.phi_update, insomnia=self.insomnia)
        return config
