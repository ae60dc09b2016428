"""Wake-sleep with Gaussian latents (50) and the Burda et al. MLP on binarised Fashion-MNIST."""
from tfdgm.config import base_config


def get_config():
    return base_config("wake_sleep", num_samples=1)
