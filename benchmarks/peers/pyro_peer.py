"""Pyro VAE / IWAE: SVI with Trace_ELBO (K = 1) or RenyiELBO(alpha=0, num_particles=K,
vectorize_particles=True), which is the IWAE bound, and pyro.optim.Adam.

Validation of distribution arguments is switched off (pyro.enable_validation(False)), as one would
for speed once a model works; it only makes Pyro faster.
"""
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, RenyiELBO, Trace_ELBO

from torch_child import Decoder, Encoder, Peer


def build(k, seed=0):
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    pyro.enable_validation(False)
    enc, dec = Encoder(), Decoder()

    def model(x):
        pyro.module("decoder", dec)
        with pyro.plate("data", x.shape[0]):
            zeros = x.new_zeros(x.shape[0], 50)
            z = pyro.sample("z", dist.Normal(zeros, torch.ones_like(zeros)).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=dec(z)).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", enc)
        with pyro.plate("data", x.shape[0]):
            loc, scale = enc(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    if k == 1:
        loss = Trace_ELBO()
    else:
        loss = RenyiELBO(alpha=0, num_particles=k, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3, "eps": 1e-4}), loss=loss)

    def step(x):
        return svi.step(x) / x.shape[0]  # SVI returns the summed loss, a float

    return Peer(step, enc, dec,
                "Pyro SVI, " + ("Trace_ELBO" if k == 1 else f"RenyiELBO(alpha=0, num_particles={k}, vectorized)"))
