"""Wake-sleep (the Helmholtz machine): a one-layer sigmoid belief net of 200 Bernoulli units,
linear logits both ways, on binarised Fashion-MNIST (Hinton et al. 1995)."""
from tfdgm.config import base_config


def get_config():
    config = base_config("wake_sleep", num_samples=1)
    config.model.update(latent="bernoulli", latent_dim=200, hidden_units=())
    return config
