"""Straight-through Gumbel-softmax VAE with 200 Bernoulli units (hard binary forward, relaxed
gradient), 784-512-256 MLPs, on binarised Fashion-MNIST."""
from tfdgm.config import base_config


def get_config():
    config = base_config("gumbel_softmax", num_samples=1)
    config.model.update(latent="bernoulli", latent_dim=200, hidden_units=(512, 256),
                        temperature=1.0, min_temperature=0.5, anneal_rate=1e-4, anneal_every=500,
                        straight_through=True)
    return config
