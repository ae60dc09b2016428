"""VAE on 8-bit (not binarised) Fashion-MNIST: a discretised logistic likelihood over the 256 grey
levels (Salimans et al. 2017), Burda et al. MLP. Reports nats per image; bits/dim = nats / (784 ln 2)."""
from tfdgm.config import base_config


def get_config():
    config = base_config("vae", num_samples=1)
    config.data.binarize = "none"
    config.data.test_binarize = "none"
    config.model.likelihood = "discretized_logistic"
    return config
