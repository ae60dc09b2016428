"""Reweighted wake-sleep, K=50, wake-phase q update, on a two-layer sigmoid belief net (200-200
Bernoulli units) on binarised Fashion-MNIST (Bornschein & Bengio 2015)."""
from tfdgm.config import base_config


def get_config():
    config = base_config("rws", num_samples=50)
    config.model.update(latent="bernoulli", latent_dim=200, top_latent_dim=200, hidden_units=(), phi_update="wake")
    return config
