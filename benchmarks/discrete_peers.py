"""tfdgm's NVIL and VIMCO-5 side by side with Pyro's NVIL (SVI + TraceGraph_ELBO + nn_baseline,
benchmarks/peers/pyro_nvil.py, in the peers' venv) and TFP's own VIMCO-5, interleaved.

Same model (Jang et al.'s VAE setting: Bernoulli 200 or categorical 20x10, 784-512-256 tanh MLPs,
learned prior logits), same data: one epoch of the 60k training images, dynamically binarised once
here and fed to every run in the same order (Pyro reads the same bits from a file), batch 100,
Adam(1e-3, eps 1e-4). Training runs in ROUNDS rounds; in each round every run trains its next
STEPS_PER_WINDOW steps in one timed window (the order rotates between rounds), so all runs see
the same machine load over the whole measurement. examples/s: median over windows (the first
round, which compiles, excluded); a tfdgm window is timed from the end of its first compiled
execution to the end of its last (ExecutionClock), which leaves out the set-up of its `fit` call
that a user's single `fit` pays once. Two VIMCO-5 levers run beside the default (XLA, float32):
mixed bfloat16 under XLA and in graph mode (oneDNN, whose bf16 matmuls use AMX where present). -ELBO of every trained model on the first N_TEST test images
(one fixed binarisation), evaluated in tfdgm (mean of 100 single-sample log-weights per image;
Pyro's weights are copied into the same tfdgm architecture, and its own log p(x, z) and
log q(z|x) at 5 x 100 fixed z are checked against tfdgm's at the same z first).

Example (the BENCHMARKS.md rows):
  PYTHONPATH=. python benchmarks/discrete_peers.py bernoulli 60000 300 12
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from tfdgm import estimators, models
from tfdgm.data.sources import read_idx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tfp_vimco import tfp_vimco_trainer  # noqa: E402

LATENT, N_TRAIN, N_TEST, ROUNDS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
BATCH = 100
STEPS = N_TRAIN // BATCH
STEPS_PER_WINDOW = STEPS // ROUNDS
PEER_PYTHON = "/work/main/benchmarks/peers/.venv/bin/python"
SIZES = dict(latent="bernoulli", latent_dim=200) if LATENT == "bernoulli" else dict(
    latent="categorical", latent_dim=20, num_classes=10)

rng = np.random.default_rng(0)
tr = read_idx("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")[:N_TRAIN] / 255.0
te = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")[:N_TEST] / 255.0
x_te = (rng.uniform(size=te.shape) < te).astype(np.float32)[..., None]
x_tr = (np.random.default_rng(1).uniform(size=tr.shape) < tr).astype(np.float32)[..., None]
x_tr = x_tr[np.random.default_rng(0).permutation(len(x_tr))]
batches = x_tr[: STEPS * BATCH].reshape(STEPS, BATCH, 28, 28, 1)
tmp = tempfile.mkdtemp(prefix="discrete_peers_")
np.savez(f"{tmp}/stream.npz", bits=np.packbits(batches.reshape(STEPS, BATCH, 784).astype(np.uint8), axis=-1))
np.save(f"{tmp}/test.npy", x_te.reshape(-1, 784))


def build(name, **kw):
    keras.utils.set_random_seed(0)
    return models.get_model_class(name)(**SIZES, hidden_units=(512, 256), seed=0, **kw)


class ExecutionClock(keras.callbacks.Callback):
    """Wall time from the end of a window's first compiled execution to the end of its last, so
    that `fit`'s per-call set-up (data adapter, callbacks: ~1 s on this CPU), which a user's one
    `fit` per run pays once and not every 50 steps, is not counted as training time."""

    def on_train_begin(self, logs=None):
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append((batch, time.perf_counter()))


class TfdgmRun:
    """model.fit on the next window's batches (Keras's own loop: steps_per_execution, XLA); the
    window's time is its steady-state rate (ExecutionClock) times its steps."""

    def __init__(self, name, jit_compile=True, **kw):
        self.model = build(name, **kw)
        self.model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-4), jit_compile=jit_compile)
        self.position = 0
        self.clock = ExecutionClock()

    def train(self, steps):
        x = batches[self.position:self.position + steps].reshape(-1, 28, 28, 1)
        self.model.fit(x, batch_size=BATCH, epochs=1, verbose=0, shuffle=False, callbacks=[self.clock])
        self.position += steps
        (first_step, first_end), (last_step, last_end) = self.clock.ends[0], self.clock.ends[-1]
        return (last_end - first_end) / (last_step - first_step) * steps


class TfpRun:
    def __init__(self):
        self.model = build("vimco", num_samples=5)
        self.step = tfp_vimco_trainer(self.model, keras.optimizers.Adam(1e-3, epsilon=1e-4))
        self.position = 0

    def train(self, steps):
        t0 = time.time()
        loss = None
        for i in range(self.position, self.position + steps):
            loss = self.step(tf.constant(batches[i]))
        float(loss)  # wait for the last step
        self.position += steps
        return time.time() - t0


class PyroRun:
    def __init__(self):
        self.proc = subprocess.Popen(
            [PEER_PYTHON, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers", "pyro_nvil.py"),
             "--latent", LATENT, "--stream", f"{tmp}/stream.npz", "--test", f"{tmp}/test.npy"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def train(self, steps):
        return self.ask(f"train {steps}")["seconds"]

    def model_in_tfdgm(self):
        """Pyro's trained weights in tfdgm's NVIL architecture; checked on Pyro's own log-probs."""
        w = np.load(self.ask(f"export {tmp}/pyro.npz")["exported"])
        model = build("nvil", estimator="reinforce")
        enc = model.encoder.hidden + [model.encoder.logits]
        dec = model.decoder.hidden + [model.decoder.logits]
        for name, layers in (("encoder", enc), ("decoder", dec)):
            for i, layer in enumerate(layers):
                layer.set_weights([w[f"{name}_w{i}"], w[f"{name}_b{i}"]])
        model.prior_layer.logits.assign(w["prior_logits"])
        x = tf.constant(x_te[:100])
        z = tf.constant(w["z"])
        log_q = model.posterior_log_prob(x, z).numpy()
        log_pz, log_px_z = (t.numpy() for t in model.log_prior_and_likelihood(z, x))
        check = {k: float(np.abs(a - w[k]).max()) for k, a in
                 (("log_qz", log_q), ("log_pz", log_pz), ("log_px_z", log_px_z))}
        return model, check


def neg_elbo(model, x, draws=100):
    out = []
    for i in range(0, len(x), BATCH):
        lw = model.log_weights(tf.constant(x[i:i + BATCH]), draws, seed=tf.constant([0, i]),
                               reparameterize=False)["log_w"]
        out.append(estimators.elbo(lw).numpy())
    e = np.concatenate(out)
    return float(-e.mean()), float(e.std(ddof=1) / np.sqrt(len(e))), e


runs = {"tfdgm-nvil": TfdgmRun("nvil", estimator="nvil"), "pyro-nvil": PyroRun(),
        "tfdgm-vimco5": TfdgmRun("vimco", num_samples=5), "tfp-vimco5": TfpRun(),
        # Levers for VIMCO: bf16 matmuls (AMX) under XLA and in graph mode (oneDNN).
        "tfdgm-vimco5-bf16": TfdgmRun("vimco", num_samples=5, precision="mixed_bfloat16"),
        "tfdgm-vimco5-graph-bf16": TfdgmRun("vimco", num_samples=5, precision="mixed_bfloat16", jit_compile=False)}
names = list(runs)
seconds = {n: [] for n in names}
loads = []
for r in range(ROUNDS):
    order = names[r % len(names):] + names[:r % len(names)]
    for n in order:
        seconds[n].append(runs[n].train(STEPS_PER_WINDOW))
    loads.append(os.getloadavg()[0])
    print(f"round {r}: " + ", ".join(f"{n} {seconds[n][-1]:.1f}s" for n in names) + f", load {loads[-1]:.1f}",
          flush=True)
result = {"latent": LATENT, "steps": ROUNDS * STEPS_PER_WINDOW, "steps_per_window": STEPS_PER_WINDOW,
          "load_average_per_round": loads, "runs": {}}
pyro_model, check = runs["pyro-nvil"].model_in_tfdgm()
runs["pyro-nvil"].proc.communicate("quit\n", timeout=60)
result["pyro_weights_check_max_abs_nats"] = check
print("Pyro weights in tfdgm: max |log-prob difference| at Pyro's z:", check, flush=True)
trained = {n: (pyro_model if n == "pyro-nvil" else runs[n].model) for n in names}
per_image = {}
for n in names:
    rates = [STEPS_PER_WINDOW * BATCH / s for s in seconds[n][1:]]
    value, se, per_image[n] = neg_elbo(trained[n], x_te)
    result["runs"][n] = dict(examples_per_s_median=float(np.median(rates)), examples_per_s_min=float(min(rates)),
                             examples_per_s_max=float(max(rates)), neg_elbo=value, neg_elbo_se=se,
                             window_seconds=seconds[n])
    print(n, {k: round(v, 2) for k, v in result["runs"][n].items() if k != "window_seconds"}, flush=True)
for a, b in (("tfdgm-nvil", "pyro-nvil"), ("tfdgm-vimco5", "tfp-vimco5"), ("tfdgm-vimco5-bf16", "tfp-vimco5"),
             ("tfdgm-vimco5-graph-bf16", "tfp-vimco5")):
    d = per_image[a] - per_image[b]
    ratio = [sb / sa for sa, sb in zip(seconds[a][1:], seconds[b][1:])]  # same round: paired
    result[f"{a} vs {b}"] = dict(elbo_gain=float(d.mean()), elbo_gain_se=float(d.std(ddof=1) / np.sqrt(len(d))),
                                 speedup_median_paired=float(np.median(ratio)))
    print(f"{a} vs {b}:", result[f"{a} vs {b}"], flush=True)
json.dump(result, open(f"benchmarks/results/discrete_peers_{LATENT}.json", "w"), indent=1)
