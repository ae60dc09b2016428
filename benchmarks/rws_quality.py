"""SBN-200 (and SBN-200-200) on dynamically binarised Fashion-MNIST: wake-sleep vs RWS variants, equal epochs.

Trains each run on the first N_TRAIN images for EPOCHS epochs (batch 100, Adam(1e-3, eps 1e-4),
XLA), then reports the IWAE-K_EVAL test NLL on the first N_TEST test images (one fixed
binarisation), examples/s, and paired differences of per-image log-likelihoods between runs.

Example (the BENCHMARKS.md rows; ~40 min on 2 cores):
  python benchmarks/rws_quality.py 60000 1000 2 1000 ws,rws5-wake,rws5-sleep,rws5-both,rws50-wake
  python benchmarks/rws_quality.py 60000 1000 2 1000 ws-sbn2,rws5-wake-sbn2
"""
import json, sys, time
import numpy as np, keras, tensorflow as tf
from tfdgm import models
from tfdgm.data.sources import read_idx
from tfdgm.evaluation.iwae import iwae_log_likelihoods

N_TRAIN, N_TEST, EPOCHS, K_EVAL = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
runs = sys.argv[5].split(",")
rng = np.random.default_rng(0)
tr = read_idx("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")[:N_TRAIN] / 255.0
te = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")[:N_TEST] / 255.0
x_te = (rng.uniform(size=te.shape) < te).astype(np.float32)[..., None]
SPECS = {
    "ws": ("wake_sleep", dict(num_samples=1)),
    "rws5-wake": ("rws", dict(num_samples=5, phi_update="wake")),
    "rws5-sleep": ("rws", dict(num_samples=5, phi_update="sleep")),
    "rws5-both": ("rws", dict(num_samples=5, phi_update="both")),
    "rws50-wake": ("rws", dict(num_samples=50, phi_update="wake")),
    "rws5-wake-sbn2": ("rws", dict(num_samples=5, phi_update="wake", top_latent_dim=200)),
    "ws-sbn2": ("wake_sleep", dict(num_samples=1, top_latent_dim=200)),
}
out = {}
for run in runs:
    name, kw = SPECS[run]
    keras.utils.set_random_seed(0)
    model = models.get_model_class(name)(latent="bernoulli", latent_dim=200, hidden_units=(), seed=0, **kw)
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-4), jit_compile=True)
    data_rng = np.random.default_rng(1)
    t0 = time.time(); steps = 0
    for epoch in range(EPOCHS):  # dynamic binarisation
        x = (data_rng.uniform(size=tr.shape) < tr).astype(np.float32)[..., None]
        h = model.fit(x, batch_size=100, epochs=1, verbose=0, shuffle=True)
    train_s = time.time() - t0
    ll = iwae_log_likelihoods(model, x_te, num_samples=K_EVAL, seed=0, verbose=False)
    out[run] = dict(nll=float(-ll.mean()), stderr=float(ll.std(ddof=1) / np.sqrt(len(ll))),
                    examples_per_s=EPOCHS * N_TRAIN / train_s, train_loss=float(h.history["loss"][-1]), ll=ll.tolist())
    print(run, {k: v for k, v in out[run].items() if k != "ll"}, flush=True)
names = list(out)
for a in names:
    for b in names:
        if a < b:
            d = np.array(out[a]["ll"]) - np.array(out[b]["ll"])
            print(f"paired {a} - {b}: {d.mean():+.2f} +- {d.std(ddof=1)/np.sqrt(len(d)):.2f} nats (log-lik)")
json.dump({k: {kk: vv for kk, vv in v.items() if kk != "ll"} for k, v in out.items()}, open(f"benchmarks/results/rws_quality_{len(out)}runs.json", "w"), indent=1)
