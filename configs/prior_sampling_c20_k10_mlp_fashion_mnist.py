"""The same mixture of 20 components trained by prior sampling, log (1/K) sum_k p(x|z_k), z_k ~ p(z),
K=10: it learns worse than the exact objective (CS294-158 lecture 4, "Prior Sampling")."""
from tfdgm.config import base_config


def get_config():
    config = base_config("enumerable", num_samples=10)
    config.model.update(latent="categorical", latent_dim=20, objective="prior_sampling")
    return config
