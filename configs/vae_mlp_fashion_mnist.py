"""VAE (ELBO, one posterior sample) with the Burda et al. MLP on dynamically binarised Fashion-MNIST."""
from tfdgm.config import base_config


def get_config():
    return base_config("vae", num_samples=1)
