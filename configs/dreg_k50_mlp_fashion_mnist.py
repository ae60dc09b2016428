"""IWAE objective with K=50 and the doubly reparameterised (DReG) encoder gradient, MLP, Fashion-MNIST."""
from tfdgm.config import base_config


def get_config():
    return base_config("iwae_dreg", num_samples=50)
