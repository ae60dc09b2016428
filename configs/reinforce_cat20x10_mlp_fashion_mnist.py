"""Plain REINFORCE (the score function with no baseline; Williams 1992), on a VAE with 20 categorical variables of 10 classes
(Jang et al. 2017's setting: 784-512-256 tanh encoder and 256-512 decoder around one stochastic
layer) on binarised Fashion-MNIST."""
from tfdgm.config import base_config


def get_config():
    config = base_config("nvil", num_samples=1)
    config.model.update(estimator="reinforce", latent="categorical", latent_dim=20, num_classes=10, hidden_units=(512, 256))
    return config
