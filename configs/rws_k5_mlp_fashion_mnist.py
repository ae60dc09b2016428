"""Reweighted wake-sleep, K=5, wake-phase q update, Gaussian latents (50) and the Burda et al. MLP,
on binarised Fashion-MNIST (Le et al. 2019)."""
from tfdgm.config import base_config


def get_config():
    return base_config("rws", num_samples=5)
