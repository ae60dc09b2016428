"""A minimal hand-written PyTorch VAE / IWAE: torch.distributions, logsumexp, a plain Adam loop.

K = 1: the VAE (one-sample reconstruction term, analytic KL, as tfdgm.models.VAE).
K > 1: the IWAE bound  logsumexp_k(log p(x, z_k) - log q(z_k|x)) - log K,  z_k ~ q reparameterised.
"""
import math

import torch
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from torch_child import Decoder, Encoder, Peer, adam


def build(k, seed=0):
    torch.manual_seed(seed)
    enc, dec = Encoder(), Decoder()
    opt = adam(list(enc.parameters()) + list(dec.parameters()))
    prior = Independent(Normal(torch.zeros(50), torch.ones(50)), 1)

    def loss_fn(x):
        loc, scale = enc(x)
        q = Independent(Normal(loc, scale), 1)
        z = q.rsample((k,))  # [K, B, 50]
        log_px_z = Independent(Bernoulli(logits=dec(z)), 1).log_prob(x)  # [K, B]
        if k == 1:
            return -(log_px_z.mean(0) - kl_divergence(q, prior)).mean()
        log_w = log_px_z + prior.log_prob(z) - q.log_prob(z)
        return -(torch.logsumexp(log_w, 0) - math.log(k)).mean()

    def step(x):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(x)
        loss.backward()
        opt.step()
        return loss.detach()

    return Peer(step, enc, dec,
                "hand-written PyTorch: torch.distributions, " + ("analytic KL" if k == 1 else "logsumexp IWAE bound"))
