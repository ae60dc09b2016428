"""Models: one file per objective, each registered by name."""
from tfdgm.models.ais_vae import AISVAE, sample_implicit_posterior
from tfdgm.models.base import LatentVariableModel, get_model_class, register, registered_models
from tfdgm.models.iwae import IWAE, IWAEDReG
from tfdgm.models.vae import VAE

__all__ = ["AISVAE", "IWAE", "IWAEDReG", "LatentVariableModel", "VAE", "get_model_class", "register", "registered_models",
           "sample_implicit_posterior"]
