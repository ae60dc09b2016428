"""A model registered outside the package, for the tests that a config file importing it trains.

It declares no encoder and no bound (capability flags), so the experiment must skip what needs
them (reconstructions, latent diagnostics, the IWAE-K test NLL) instead of assuming them, and it
adds a constructor argument that `config.base_config` must pick up from `default_config()`.
"""
from tfdgm.models import VAE, register

NAME = "test_vae_without_encoder"


@register(NAME)
class VAEWithoutEncoder(VAE):
    has_encoder = False
    has_bound = False

    def __init__(self, note="declared by the class", **kwargs):
        super().__init__(**kwargs)
        self.note = note

    def get_config(self):
        return dict(super().get_config(), note=self.note)
