"""VIMCO, K=50 (leave-one-out baselines of the IWAE-50 bound; Mnih & Rezende 2016), on a VAE with 20 categorical variables of 10 classes
(Jang et al. 2017's setting: 784-512-256 tanh encoder and 256-512 decoder around one stochastic
layer) on binarised Fashion-MNIST."""
from tfdgm.config import base_config


def get_config():
    config = base_config("vimco", num_samples=50)
    config.model.update(latent="categorical", latent_dim=20, num_classes=10, hidden_units=(512, 256))
    return config
