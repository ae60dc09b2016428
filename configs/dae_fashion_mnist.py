"""A plain denoising autoencoder (Vincent et al. 2008; Bengio et al. 2013 without walkback) on
binarised Fashion-MNIST: the GSN of configs/gsn_walkback_fashion_mnist.py with walkback_steps=0
(784 - 500 tanh - 784 Bernoulli, salt-and-pepper p = 0.4, Adam 1e-3, batch 100)."""
from tfdgm.config import base_config


def get_config():
    config = base_config("gsn")
    config.model.update(hidden_units=(500,), corruption="salt_and_pepper", corruption_level=0.4, walkback_steps=0,
                        sample_steps=100)
    config.training.update(epochs=10, learning_rate=1e-3)
    config.eval.diagnostics_every_n_epochs = 0
    return config
