"""Reweighted wake-sleep, K=5, q updated by wake- and sleep-phi, mixed half and half (insomnia 0.5): a
one-layer sigmoid belief net of 200 Bernoulli units on binarised Fashion-MNIST (Bornschein & Bengio 2015)."""
from tfdgm.config import base_config


def get_config():
    config = base_config("rws", num_samples=5)
    config.model.update(latent="bernoulli", latent_dim=200, hidden_units=(), phi_update="both")
    return config
