"""Wake-sleep on a two-layer sigmoid belief net, 200-200 Bernoulli units (z2 -> z1 -> x, each a
linear sigmoid layer), on binarised Fashion-MNIST (Hinton et al. 1995; Bornschein & Bengio 2015)."""
from tfdgm.config import base_config


def get_config():
    config = base_config("wake_sleep", num_samples=1)
    config.model.update(latent="bernoulli", latent_dim=200, top_latent_dim=200, hidden_units=())
    return config
