"""A GSN / walkback denoising autoencoder (Bengio et al. 2013) on binarised Fashion-MNIST.

784 - 500 tanh - 784 Bernoulli; salt-and-pepper corruption with p = 0.4 (each pixel replaced by a
fair coin with probability 0.4, the input noise of Bengio et al. 2014's MNIST GSN; from memory),
walkback over 2 chain steps from every training image (the reconstruction of the original image
is trained from the corrupted states x~_0, x~_1, x~_2), Adam 1e-3, batch 100. Samples by 100
steps of the chain x -> x~ -> x ~ p(x|f(x~)) from fair-coin images.
A GSN has no likelihood or bound: `tfdgm evaluate` has nothing to estimate for it; its card
reports the test denoising NLL and reconstruction error instead.
"""
from tfdgm.config import base_config


def get_config():
    config = base_config("gsn")
    config.model.update(hidden_units=(500,), corruption="salt_and_pepper", corruption_level=0.4, walkback_steps=2,
                        sample_steps=100)
    config.training.update(epochs=10, learning_rate=1e-3)
    config.eval.diagnostics_every_n_epochs = 0
    return config
