"""Pyro's NVIL: SVI with `TraceGraph_ELBO` and an `nn_baseline`, on Jang et al.'s VAE settings.

The model tfdgm's `NVIL` trains (Bernoulli 200 or categorical 20x10 latents with learned prior
logits; 784-512-256 tanh encoder giving q's logits; 256-512 tanh decoder giving Bernoulli pixel
logits), written as a Pyro user would: `pyro.module`s, a `pyro.plate` over the batch, the guide's
latent site with `infer={"baseline": {"nn_baseline": ..., "nn_baseline_input": x}}` (Pyro's
input-dependent baseline, trained on its squared error; library defaults otherwise: no decaying
average, no variance normalisation), and `pyro.optim.Adam(lr 1e-3, eps 1e-4)` for all parameters.

Run by benchmarks/discrete_peers.py in the peers' venv (PyTorch 2.13 CPU + pyro-ppl) as a
persistent child: it reads commands on stdin and answers one JSON line each, so the driver can
interleave short timed windows of Pyro with tfdgm's and TFP's:
  train N    -> N optimizer steps on the next N batches of the shared stream; {"seconds": wall}
  export P   -> weights as P (.npz: Dense-layout kernels [in, out], tfdgm's variable order) plus,
                for a fixed batch of z ~ q(z|x) on the first test images, Pyro's own log p(x, z) and
                log q(z|x) (so the driver can check its copy of the weights in tfdgm)
  quit
"""
import argparse
import json
import sys
import time

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, TraceGraph_ELBO
from torch import nn


def mlp(sizes, last_activation=False):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--latent", choices=("bernoulli", "categorical"), required=True)
    parser.add_argument("--stream", required=True, help=".npz with packed [steps, batch, 784] training bits")
    parser.add_argument("--test", required=True, help=".npy float32 [N, 784] test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)  # 2 spin-wait badly on the shared CPU (measured: 10x slower at load 15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()
    variables, classes = (200, 1) if args.latent == "bernoulli" else (20, 10)
    width = variables * classes
    enc, dec, base = mlp([784, 512, 256, width]), mlp([width, 256, 512, 784]), mlp([784, 100, 1])
    packed = np.load(args.stream)["bits"]  # [steps, batch, 98] uint8
    test = torch.from_numpy(np.load(args.test))

    def latent_dist(logits):
        if args.latent == "bernoulli":
            return dist.Bernoulli(logits=logits).to_event(1)
        return dist.OneHotCategorical(logits=logits.reshape(logits.shape[:-1] + (variables, classes))).to_event(1)

    def model(x):
        pyro.module("decoder", dec)
        prior_logits = pyro.param("prior_logits", torch.zeros(width))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", latent_dist(prior_logits.expand(x.shape[0], width)))
            pyro.sample("x", dist.Bernoulli(logits=dec(z.reshape(x.shape[0], width))).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", enc)
        pyro.module("baseline", base)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", latent_dist(enc(x)),
                        infer={"baseline": {"nn_baseline": lambda v: base(v).squeeze(-1), "nn_baseline_input": x}})

    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3, "eps": 1e-4}), loss=TraceGraph_ELBO())
    position = 0
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "train":
            steps = int(cmd[1])
            batches = [torch.from_numpy(np.unpackbits(packed[(position + i) % len(packed)], axis=-1)
                                        .astype(np.float32)) for i in range(steps)]
            t0 = time.time()
            loss = 0.0
            for x in batches:
                loss = svi.step(x) / x.shape[0]
            position += steps
            reply = {"seconds": time.time() - t0, "loss": loss, "position": position}
        elif cmd[0] == "export":
            with torch.no_grad():
                x = test[:100]
                q = latent_dist(enc(x))
                z = q.sample(torch.Size([5]))  # [5, 100, V(, C)]
                log_q = q.log_prob(z)
                prior_logits = pyro.param("prior_logits").detach()
                log_pz = latent_dist(prior_logits.expand(100, width)).log_prob(z)
                log_px = dist.Bernoulli(logits=dec(z.reshape(5, 100, width))).to_event(1).log_prob(x)
            arrays = {"z": z.reshape(5, 100, width).numpy(), "log_qz": log_q.numpy(),
                      "log_pz": log_pz.numpy(), "log_px_z": log_px.numpy(), "prior_logits": prior_logits.numpy()}
            for name, net in (("encoder", enc), ("decoder", dec)):
                linears = [m for m in net if isinstance(m, nn.Linear)]
                for i, m in enumerate(linears):
                    arrays[f"{name}_w{i}"] = m.weight.detach().numpy().T.copy()
                    arrays[f"{name}_b{i}"] = m.bias.detach().numpy().copy()
            np.savez(cmd[1], **arrays)
            reply = {"exported": cmd[1]}
        elif cmd[0] == "quit":
            break
        else:
            reply = {"error": f"unknown command {cmd[0]!r}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
