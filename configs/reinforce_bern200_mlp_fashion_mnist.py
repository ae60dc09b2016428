"""Plain REINFORCE (the score function with no baseline; Williams 1992), on a VAE with 200 Bernoulli units
(Jang et al. 2017's setting: 784-512-256 tanh encoder and 256-512 decoder around one stochastic
layer) on binarised Fashion-MNIST."""
from tfdgm.config import base_config


def get_config():
    config = base_config("nvil", num_samples=1)
    config.model.update(estimator="reinforce", latent="bernoulli", latent_dim=200, hidden_units=(512, 256))
    return config
