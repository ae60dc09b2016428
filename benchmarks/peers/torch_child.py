"""Runs one PyTorch peer (hand-written torch, Pyro or pythae) in this process, in the peers' venv.

Shared by the PyTorch peers: the Burda MLP in torch, the training stream written by run.py (the exact
dynamically binarised batches tfdgm's pipeline yields, bit-packed), the timing loop and the weight export.

  --mode throughput: `--warmup_steps` untimed steps, then `--chunks` windows of `--steps` steps, each
    timed (wall clock and process CPU time); prints one JSON line prefixed RESULT.
  --mode train: `--train_steps` steps from a fresh model, then writes the weights as an .npz of
    Dense-layout kernels [in, out] (w0..w6, b0..b6: encoder hidden 0, 1, loc, scale; decoder hidden
    0, 1, logits) that run.py loads into a tfdgm model for the common IWAE-5000 evaluation.

Peers: torch_peer.py, pyro_peer.py, pythae_peer.py, each with build(k, seed) -> Peer.
"""
import argparse
import importlib
import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # benchmarks/: throughput.py's RSS helpers (no TensorFlow import)

RESULT_PREFIX = "PEER_RESULT "
MIN_SCALE = 1e-4  # as tfdgm.nets.mlp: scale = softplus(.) + 1e-4
PEER_MODULES = {"torch": "torch_peer", "pyro": "pyro_peer", "pythae": "pythae_peer"}


class Encoder(nn.Module):
    """784-200-200 tanh -> (loc, scale) of a diagonal Gaussian, scale = softplus + 1e-4."""

    def __init__(self, data_dim=784, hidden=200, latent_dim=50):
        super().__init__()
        self.h0, self.h1 = nn.Linear(data_dim, hidden), nn.Linear(hidden, hidden)
        self.loc, self.scale = nn.Linear(hidden, latent_dim), nn.Linear(hidden, latent_dim)

    def forward(self, x):
        h = torch.tanh(self.h1(torch.tanh(self.h0(x))))
        return self.loc(h), nn.functional.softplus(self.scale(h)) + MIN_SCALE

    def linears(self):
        return [self.h0, self.h1, self.loc, self.scale]


class Decoder(nn.Module):
    """50-200-200 tanh -> 784 Bernoulli logits; any leading dims ([K, B, 50] -> [K, B, 784])."""

    def __init__(self, data_dim=784, hidden=200, latent_dim=50):
        super().__init__()
        self.h0, self.h1 = nn.Linear(latent_dim, hidden), nn.Linear(hidden, hidden)
        self.logits = nn.Linear(hidden, data_dim)

    def forward(self, z):
        return self.logits(torch.tanh(self.h1(torch.tanh(self.h0(z)))))

    def linears(self):
        return [self.h0, self.h1, self.logits]


class Peer:
    """step(x [B, 784] float32) runs one optimizer step and returns the loss; encoder / decoder are
    the peer's trained `Encoder` / `Decoder` modules."""

    def __init__(self, step, encoder, decoder, description):
        self.step, self.encoder, self.decoder, self.description = step, encoder, decoder, description

    def linears(self):
        """The 7 Linear layers in export order (encoder h0, h1, loc, scale; decoder h0, h1, logits)."""
        return self.encoder.linears() + self.decoder.linears()


def adam(params):
    return torch.optim.Adam(params, lr=1e-3, eps=1e-4)


class Stream:
    """The training batches of run.py's stream file, in order, cycling; float32 [B, 784] 0/1."""

    def __init__(self, path):
        with np.load(path) as f:
            self.packed = f["packed"]  # [S, B, 98] uint8
        self.i = 0

    def next(self):
        bits = np.unpackbits(self.packed[self.i % len(self.packed)], axis=-1, count=784)
        self.i += 1
        return torch.from_numpy(bits.astype(np.float32))


def export_weights(peer, path, x):
    """Writes the Dense-layout weights plus the peer's own outputs on x (check_*), with which the
    evaluator verifies the conversion: loc, scale = encoder(x); logits = decoder(loc)."""
    arrays = {}
    for i, layer in enumerate(peer.linears()):
        arrays[f"w{i}"] = layer.weight.detach().numpy().T.copy()  # torch [out, in] -> Dense [in, out]
        arrays[f"b{i}"] = layer.bias.detach().numpy().copy()
    with torch.no_grad():
        loc, scale = peer.encoder(x)
        logits = peer.decoder(loc)
    arrays.update(check_x=x.numpy(), check_loc=loc.numpy(), check_scale=scale.numpy(), check_logits=logits.numpy())
    np.savez(path, **arrays)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", required=True, choices=sorted(PEER_MODULES))
    parser.add_argument("--k", type=int, required=True)
    parser.add_argument("--mode", required=True, choices=["throughput", "train"])
    parser.add_argument("--stream", required=True, help="bit-packed training batches written by run.py")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=2)
    parser.add_argument("--warmup_steps", type=int, default=20)
    parser.add_argument("--train_steps", type=int, default=600)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights_out", default=None)
    args = parser.parse_args()

    import lockstep
    from throughput import _rss_mb, _ru_maxrss_mb

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    rss_imported = _rss_mb()
    stream = Stream(args.stream)
    peer = importlib.import_module(PEER_MODULES[args.peer]).build(args.k, args.seed)
    result = {"peer": args.peer, "k": args.k, "mode": args.mode, "description": peer.description,
              "threads": torch.get_num_threads(), "torch": torch.__version__}

    if args.mode == "throughput":
        start = time.perf_counter()
        for _ in range(args.warmup_steps):
            peer.step(stream.next())
        result["warmup_s"] = time.perf_counter() - start
        wall, cpu = [], []
        batch = stream.packed.shape[1]
        turn = lockstep.Turnstile.from_env()  # run by benchmarks/lockstep.py: wait for the turn
        for _ in range(args.chunks):
            if turn:
                turn.wait()
            t = os.times()
            w0, c0 = time.perf_counter(), t.user + t.system
            for _ in range(args.steps):
                loss = peer.step(stream.next())
            t = os.times()
            wall.append(time.perf_counter() - w0)
            cpu.append(t.user + t.system - c0)
            if turn:
                turn.done({"examples_per_s": args.steps * batch / wall[-1], "wall_s": wall[-1],
                           "cores_busy": cpu[-1] / wall[-1]})
        result.update(steps=args.steps, batch_size=batch, epoch_wall_s=wall,
                      examples_per_s=[args.steps * batch / w for w in wall],
                      cores_busy=[c / w for c, w in zip(cpu, wall)], final_loss=float(loss))
    else:
        start = time.perf_counter()
        losses = []
        for i in range(args.train_steps):
            loss = peer.step(stream.next())
            if i % 100 == 99:
                losses.append(float(loss))
        result.update(train_steps=args.train_steps, train_wall_s=time.perf_counter() - start, losses=losses)
        stream.i = 0
        export_weights(peer, args.weights_out, stream.next())
        result["weights"] = args.weights_out
    result.update(rss_after_import_mb=rss_imported, peak_rss_mb=_rss_mb(), ru_maxrss_mb=_ru_maxrss_mb())
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
