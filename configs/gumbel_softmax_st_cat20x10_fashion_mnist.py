"""Straight-through Gumbel-softmax VAE (Jang et al. 2017): as gumbel_softmax_cat20x10, with the
hard one-hot sample in the forward pass and the relaxed sample's gradient in the backward pass."""
from tfdgm.config import base_config


def get_config():
    config = base_config("gumbel_softmax", num_samples=1)
    config.model.update(latent="categorical", latent_dim=20, num_classes=10, hidden_units=(512, 256),
                        temperature=1.0, min_temperature=0.5, anneal_rate=1e-4, anneal_every=500,
                        straight_through=True)
    return config
