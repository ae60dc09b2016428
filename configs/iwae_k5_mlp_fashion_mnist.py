"""IWAE with K=5 importance samples and the plain IWAE gradient, MLP, Fashion-MNIST."""
from tfdgm.config import base_config


def get_config():
    return base_config("iwae", num_samples=5)
