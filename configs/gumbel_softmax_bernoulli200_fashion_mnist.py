"""Gumbel-softmax (relaxed Bernoulli / binary Concrete) VAE, Jang et al. 2017's Bernoulli setting:
200 relaxed Bernoulli units, 784-512-256 MLP encoder and mirrored decoder, on binarised
Fashion-MNIST. Densities are of the logistic pre-sigmoid variable (finite at any temperature)."""
from tfdgm.config import base_config


def get_config():
    config = base_config("gumbel_softmax", num_samples=1)
    config.model.update(latent="bernoulli", latent_dim=200, hidden_units=(512, 256),
                        temperature=1.0, min_temperature=0.5, anneal_rate=1e-4, anneal_every=500)
    return config
