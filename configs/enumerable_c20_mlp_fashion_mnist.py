"""A mixture of 20 components (the 200-200 MLP decoder from one-hot z) trained on the exact log p(x)
= logsumexp over the components, on binarised Fashion-MNIST (CS294-158 lecture 4)."""
from tfdgm.config import base_config


def get_config():
    config = base_config("enumerable")
    config.model.update(latent="categorical", latent_dim=20)
    return config
