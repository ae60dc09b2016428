"""pythae VAE (K = 1) / IWAE (K > 1, pythae.models.IWAE, number_samples=K), reconstruction_loss="bce",
with Burda-MLP encoder/decoder written as pythae BaseEncoder / BaseDecoder subclasses.

pythae's encoder returns a log-variance: here 2 log(softplus(.) + 1e-4), so the posterior scale is
exactly the one of tfdgm's MLP; its decoder returns probabilities (sigmoid of the logits), which
pythae's "bce" loss expects. The model's forward + loss are pythae's; the loop is the body of
pythae's BaseTrainer.train_step (model(inputs) -> loss.backward() -> Adam step) fed with the shared
batches, instead of pythae's DataLoader.
"""
import torch
from pythae.models import IWAE, VAE, IWAEConfig, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder

from torch_child import Decoder, Encoder, Peer, adam


class BurdaEncoder(BaseEncoder):
    def __init__(self):
        BaseEncoder.__init__(self)
        self.net = Encoder()

    def forward(self, x):
        loc, scale = self.net(x.reshape(x.shape[0], -1))
        return ModelOutput(embedding=loc, log_covariance=2.0 * torch.log(scale))


class BurdaDecoder(BaseDecoder):
    def __init__(self):
        BaseDecoder.__init__(self)
        self.net = Decoder()

    def forward(self, z):
        return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))


def build(k, seed=0):
    torch.manual_seed(seed)
    enc, dec = BurdaEncoder(), BurdaDecoder()
    if k == 1:
        model = VAE(VAEConfig(input_dim=(784,), latent_dim=50, reconstruction_loss="bce"), encoder=enc, decoder=dec)
    else:
        model = IWAE(IWAEConfig(input_dim=(784,), latent_dim=50, reconstruction_loss="bce", number_samples=k),
                     encoder=enc, decoder=dec)
    model.train()
    opt = adam(model.parameters())

    def step(x):
        out = model({"data": x})
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        return out.loss.detach()

    return Peer(step, enc.net, dec.net,
                f"pythae {type(model).__name__}" + ("" if k == 1 else f"(number_samples={k})") + ", bce")
