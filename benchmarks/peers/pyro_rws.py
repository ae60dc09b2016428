"""Pyro's ReweightedWakeSleep on the SBN-200 of benchmarks/rws_quality.py (peers' venv: PyTorch + pyro-ppl).

The model p(z) p(x|z): 200 Bernoulli units with learned prior logits, x ~ Bernoulli(sigmoid(W z + c));
the guide q(z|x) = Bernoulli(sigmoid(V x + b)): one `nn.Linear` each way, library default
initialisation, `pyro.infer.ReweightedWakeSleep(num_particles=K)` with its defaults (insomnia=1.0,
i.e. wake-phi; vectorised particles), `SVI` with `pyro.optim.Adam(lr 1e-3, eps 1e-4)` (tfdgm's
settings), validation off. The batches are run.py's stream (tfdgm's dynamically binarised
pipeline, bit-packed), read `--batch_size` images at a time:

- batch 100: one `pyro.plate` of 100 images, as a user would write it. Pyro sums every site's
  log-prob over the particle's whole trace (`site["log_prob"].reshape(K, -1).sum(-1)` in
  pyro/infer/rws.py), so a particle gets ONE weight for the 100 images together.
- batch 1: the same code on one image per step: per-image RWS, as the algorithm is defined.

--mode throughput: `--warmup_steps` untimed steps, then `--chunks` timed windows of `--steps` steps
  (in lockstep with other processes when run by benchmarks/lockstep.py, as rws_lockstep.py does).
--mode train: `--train_steps` steps; every `--ess_every` steps the effective sample size of the
  weights Pyro uses (1 / sum w~^2 over the K particles of the trace, measured through Pyro's own
  `_get_traces`) and, for contrast, the mean per-image ESS of the same particles; then writes the
  weights (.npz, Dense layout [in, out]) and check values (Pyro's log p(x, z) and log q(z|x) per
  image at fixed z) for the tfdgm evaluator (rws_peer.py --mode evaluate).
Prints one JSON line prefixed PEER_RESULT.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, ReweightedWakeSleep
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from torch_child import RESULT_PREFIX, Stream  # noqa: E402
from lockstep import Turnstile  # noqa: E402

LATENT, PIXELS = 200, 784


def build(k, seed=0):
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    pyro.enable_validation(False)  # as one would for speed; it only makes Pyro faster
    enc, dec = nn.Linear(PIXELS, LATENT), nn.Linear(LATENT, PIXELS)

    def model(x):
        pyro.module("decoder", dec)
        prior_logits = pyro.param("prior_logits", torch.zeros(LATENT))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(logits=prior_logits.expand(x.shape[0], LATENT)).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=dec(z)).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", enc)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Bernoulli(logits=enc(x)).to_event(1))

    loss = ReweightedWakeSleep(num_particles=k, max_plate_nesting=1)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3, "eps": 1e-4}), loss=loss)
    return svi, loss, model, guide, enc, dec


def ess(log_w, dim=0):
    w = torch.softmax(log_w, dim=dim)
    return 1.0 / (w ** 2).sum(dim)


def measured_ess(loss, model, guide, x):
    """(ESS of Pyro's weights, mean per-image ESS of the same particles), from Pyro's own traces."""
    with torch.no_grad():
        for model_trace, guide_trace in loss._get_traces(model, guide, (x,), {}):
            k = loss.num_particles
            log_p = sum(s["log_prob"].reshape(k, -1) for s in model_trace.nodes.values() if s["type"] == "sample")
            log_q = sum(s["log_prob"].reshape(k, -1) for s in guide_trace.nodes.values() if s["type"] == "sample")
            per_image = log_p - log_q  # [K, B]
            return float(ess(per_image.sum(-1))), float(ess(per_image).mean())


def export(path, model, guide, enc, dec, x, seed=0):
    """Weights in Dense layout plus Pyro's own log p(x, z), log q(z|x) at z ~ q for the conversion check."""
    with torch.no_grad():
        g = pyro.poutine.trace(guide).get_trace(x)
        m = pyro.poutine.trace(pyro.poutine.replay(model, trace=g)).get_trace(x)
        g.compute_log_prob()
        m.compute_log_prob()
        log_pxz = m.nodes["z"]["log_prob"] + m.nodes["x"]["log_prob"]
        log_qz = g.nodes["z"]["log_prob"]
        np.savez(path, enc_w=enc.weight.numpy().T.copy(), enc_b=enc.bias.numpy().copy(),
                 dec_w=dec.weight.numpy().T.copy(), dec_b=dec.bias.numpy().copy(),
                 prior_logits=pyro.param("prior_logits").detach().numpy().copy(),
                 check_x=x.numpy(), check_z=g.nodes["z"]["value"].numpy(), check_log_pxz=log_pxz.numpy(),
                 check_log_qz=log_qz.numpy())


class Batches:
    """The stream's images, `size` at a time, in order (batch 1 walks through each batch of 100)."""

    def __init__(self, stream, size):
        self.stream, self.size, self.current, self.j = stream, size, None, 0

    def next(self):
        if self.current is None or self.j >= len(self.current):
            self.current, self.j = self.stream.next(), 0
        x = self.current[self.j:self.j + self.size]
        self.j += self.size
        return x


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", required=True, choices=["throughput", "train", "ess"])
    parser.add_argument("--stream", required=True)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=100, choices=[1, 100])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--warmup_steps", type=int, default=10)
    parser.add_argument("--train_steps", type=int, default=600)
    parser.add_argument("--ess_every", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights_out", default=None)
    parser.add_argument("--weights", default=None, help="ess: an exported .npz whose ESS to measure")
    parser.add_argument("--ess_batches", type=int, default=10)
    parser.add_argument("--export_at", default="", help="train: also export after these many steps, e.g. 30,300")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    svi, loss, model, guide, enc, dec = build(args.k, args.seed)
    batches = Batches(Stream(args.stream), args.batch_size)
    result = {"peer": "pyro_rws", "k": args.k, "batch_size": args.batch_size, "mode": args.mode,
              "torch": torch.__version__, "pyro": pyro.__version__, "threads": torch.get_num_threads()}
    if args.mode == "ess":  # the ESS Pyro's weights have for a trained model, on --ess_batches batches
        with np.load(args.weights) as f, torch.no_grad():
            enc.weight.copy_(torch.from_numpy(f["enc_w"].T)), enc.bias.copy_(torch.from_numpy(f["enc_b"]))
            dec.weight.copy_(torch.from_numpy(f["dec_w"].T)), dec.bias.copy_(torch.from_numpy(f["dec_b"]))
            model(batches.next())  # creates the prior_logits param, then overwrite it
            pyro.param("prior_logits").copy_(torch.from_numpy(f["prior_logits"]))
        pairs = [measured_ess(loss, model, guide, batches.next()) for _ in range(args.ess_batches)]
        result.update(weights=args.weights, ess_pyro_weights=[a for a, _ in pairs],
                      ess_per_image_same_particles=[b for _, b in pairs])
    elif args.mode == "throughput":
        for _ in range(args.warmup_steps):
            svi.step(batches.next())
        wall, cpu, turn = [], [], Turnstile.from_env()  # turn: None unless run by benchmarks/lockstep.py
        for _ in range(args.chunks):
            if turn:
                turn.wait()
            t = os.times()
            w0, c0 = time.perf_counter(), t.user + t.system
            for _ in range(args.steps):
                svi.step(batches.next())
            t = os.times()
            wall.append(time.perf_counter() - w0)
            cpu.append(t.user + t.system - c0)
            if turn:
                turn.done({"wall_s": wall[-1], "examples_per_s": args.steps * args.batch_size / wall[-1],
                           "cores_busy": cpu[-1] / wall[-1]})
        result.update(steps=args.steps, examples_per_s=[args.steps * args.batch_size / w for w in wall],
                      cores_busy=[c / w for c, w in zip(cpu, wall)])
    else:
        start, ess_pyro, ess_image, losses = time.perf_counter(), [], [], []
        export_at, exported = {int(s) for s in args.export_at.split(",") if s}, {}
        for i in range(args.train_steps):
            if i in export_at:  # the weights after i steps (i * batch_size images), for equal-data comparisons
                exported[i] = args.weights_out.replace(".npz", f"_at{i}.npz")
                position = batches.stream.i
                batches.stream.i = 0
                export(exported[i], model, guide, enc, dec, batches.stream.next())
                batches.stream.i = position
            x = batches.next()
            if i % args.ess_every == 0 and args.batch_size > 1:
                a, b = measured_ess(loss, model, guide, x)
                ess_pyro.append(a)
                ess_image.append(b)
            theta_loss, _ = svi.step(x)
            losses.append(theta_loss / len(x))
        result.update(train_steps=args.train_steps, examples=args.train_steps * args.batch_size,
                      train_wall_s=time.perf_counter() - start, ess_pyro_weights=ess_pyro,
                      ess_per_image_same_particles=ess_image,
                      mean_wake_theta_loss_last_100=float(np.mean(losses[-100:])), weights=args.weights_out,
                      exported=exported)
        batches.stream.i = 0
        export(args.weights_out, model, guide, enc, dec, batches.stream.next())
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
