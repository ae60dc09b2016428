"""Score-function estimators and Gumbel-softmax on Jang et al.'s VAE settings, binarised
Fashion-MNIST, equal epochs, one protocol for every row.

Runs (Bernoulli 784-512-256-200 and categorical 20x10, tanh MLPs; every model takes the same
latent_dim = number of variables, num_classes): REINFORCE, NVIL, VIMCO K=5 and K=50,
Gumbel-softmax and ST Gumbel-softmax (tau = max(0.5, exp(-1e-4 t)) every 500 steps, the configs'
schedule), and the peer: TFP's own VIMCO (`tfp.vi.monte_carlo_variational_loss` with
`GradientEstimators.VIMCO`, K=5) training the very same tfdgm model's networks in a jit-compiled
loop (same data order, batch, Adam). Each run trains on the first N_TRAIN images for EPOCHS
epochs (dynamic binarisation, batch 100, Adam(1e-3, eps 1e-4)) and reports on the first N_TEST
test images (one fixed binarisation) -ELBO (K=1, averaged over 100 draws per image) and the
IWAE-K_EVAL NLL with standard errors over images, and training examples/s after the first
20 steps (which include compiling). Results are written after every run (per-image
log-likelihoods included, so paired differences can be recomputed from a partial run).

Example (the BENCHMARKS.md rows):
  PYTHONPATH=. python benchmarks/discrete.py 60000 500 1 5000 \
      reinforce,nvil,gumbel,gumbel-st,vimco5,tfp-vimco5,vimco50 bern200 full
"""
import json
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from tfdgm import estimators, models
from tfdgm.data.sources import read_idx
from tfdgm.evaluation.iwae import iwae_log_likelihoods

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tfp_vimco import tfp_vimco_trainer  # noqa: E402

N_TRAIN, N_TEST, EPOCHS, K_EVAL = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
RUNS, LATENTS = sys.argv[5].split(","), sys.argv[6].split(",")
TAG = sys.argv[7] if len(sys.argv) > 7 else "_".join(LATENTS)
BATCH = 100
rng = np.random.default_rng(0)
tr = read_idx("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")[:N_TRAIN] / 255.0
te = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")[:N_TEST] / 255.0
x_te = (rng.uniform(size=te.shape) < te).astype(np.float32)[..., None]
SPECS = {
    "reinforce": ("nvil", dict(estimator="reinforce", num_samples=1)),
    "nvil": ("nvil", dict(estimator="nvil", num_samples=1)),
    "vimco5": ("vimco", dict(num_samples=5)),
    "vimco50": ("vimco", dict(num_samples=50)),
    "tfp-vimco5": ("vimco", dict(num_samples=5)),
    "gumbel": ("gumbel_softmax", dict(temperature=1.0, min_temperature=0.5, anneal_rate=1e-4, anneal_every=500)),
    "gumbel-st": ("gumbel_softmax", dict(temperature=1.0, min_temperature=0.5, anneal_rate=1e-4, anneal_every=500,
                                         straight_through=True)),
}
WARM = 20  # steps excluded from examples/s (compiling)


class StepTimes(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_end(self, batch, logs=None):  # called once per steps_per_execution steps
        self.times.append((time.time(), (batch + 1) * BATCH))


def examples_per_s(times):
    """From (time, examples done this epoch) records: the rate after the first WARM steps."""
    (t0, n0), (t1, n1) = next(r for r in times if r[1] >= WARM * BATCH), times[-1]
    return (n1 - n0) / max(t1 - t0, 1e-9)
LATENT = {"bern200": dict(latent="bernoulli", latent_dim=200),
          "cat20x10": dict(latent="categorical", latent_dim=20, num_classes=10)}


def elbo_estimates(model, x, draws=100):
    """ELBO per image: the mean of `draws` single-sample log-weights (one fixed seed)."""
    out = []
    # Hard (discrete) samples for every model; the Gumbel-softmax VAE's log_weights are discrete.
    kw = {} if isinstance(model, models.GumbelSoftmaxVAE) else dict(reparameterize=False)
    for i in range(0, len(x), BATCH):
        lw = model.log_weights(tf.constant(x[i:i + BATCH]), draws, seed=tf.constant([0, i]), **kw)["log_w"]
        out.append(estimators.elbo(lw).numpy())
    return np.concatenate(out)


out = {}
for latent in LATENTS:
    for run in RUNS:
        name, kw = SPECS[run]
        keras.utils.set_random_seed(0)
        model = models.get_model_class(name)(**LATENT[latent], hidden_units=(512, 256), seed=0, **kw)
        optimizer = keras.optimizers.Adam(1e-3, epsilon=1e-4)
        peer = run.startswith("tfp-")
        if peer:
            step = tfp_vimco_trainer(model, optimizer)
        else:
            model.compile(optimizer=optimizer, jit_compile=True)
        data_rng = np.random.default_rng(1)
        rates, loss = [], float("nan")
        t_start = time.time()
        for epoch in range(EPOCHS):  # dynamic binarisation, the same draws for every run
            x = (data_rng.uniform(size=tr.shape) < tr).astype(np.float32)[..., None]
            order = np.random.default_rng(epoch).permutation(len(x))
            x = x[order]
            times = []
            if peer:
                for i in range(0, len(x) - BATCH + 1, BATCH):
                    loss = step(tf.constant(x[i:i + BATCH]))
                    if i // BATCH <= WARM or i + 2 * BATCH > len(x):
                        loss = float(loss)  # wait for the step (timing), not every step
                    times.append((time.time(), i + BATCH))
                loss = float(loss)
            else:
                timer = StepTimes()
                loss = model.fit(x, batch_size=BATCH, epochs=1, verbose=0, shuffle=False,
                                 callbacks=[timer]).history["loss"][-1]
                times = timer.times
            rates.append(examples_per_s(times))
        train_s = time.time() - t_start
        t0 = time.time()
        elbo = elbo_estimates(model, x_te)
        ll = iwae_log_likelihoods(model, x_te, num_samples=K_EVAL, seed=0, verbose=False)
        key = f"{run}-{latent}"
        out[key] = dict(neg_elbo=float(-elbo.mean()), neg_elbo_se=float(elbo.std(ddof=1) / np.sqrt(len(elbo))),
                        nll=float(-ll.mean()), nll_se=float(ll.std(ddof=1) / np.sqrt(len(ll))),
                        examples_per_s=float(np.median(rates)),
                        train_s=train_s, eval_s=time.time() - t0, train_loss=float(loss), ll=ll.tolist())
        print(key, {k: round(v, 3) for k, v in out[key].items() if k != "ll"}, flush=True)
        json.dump(out, open(f"benchmarks/results/discrete_{TAG}_raw.json", "w"))
keys = list(out)
for a in keys:
    for b in keys:
        if a < b and a.split("-")[-1] == b.split("-")[-1]:
            d = np.array(out[a]["ll"]) - np.array(out[b]["ll"])
            print(f"paired {a} - {b}: {d.mean():+.2f} +- {d.std(ddof=1) / np.sqrt(len(d)):.2f} nats (log-lik)")
summary = {k: {kk: vv for kk, vv in v.items() if kk != "ll"} for k, v in out.items()}
json.dump(summary, open(f"benchmarks/results/discrete_{TAG}.json", "w"), indent=1)
