"""Gumbel-softmax VAE (Jang et al. 2017, Table 1's VAE setting): 20 categorical variables of 10
classes, 784-512-256 MLP encoder and mirrored decoder (tanh), relaxed ELBO with the discrete KL,
tau = max(0.5, exp(-1e-4 * t)) updated every 500 steps, on binarised Fashion-MNIST."""
from tfdgm.config import base_config


def get_config():
    config = base_config("gumbel_softmax", num_samples=1)
    config.model.update(latent="categorical", latent_dim=20, num_classes=10, hidden_units=(512, 256),
                        temperature=1.0, min_temperature=0.5, anneal_rate=1e-4, anneal_every=500)
    return config
