"""Gumbel-softmax and ST Gumbel-softmax VAEs (Jang et al. 2017 Table 1 settings: categorical 20x10
and Bernoulli 200, 784-512-256 MLPs) on dynamically binarised Fashion-MNIST at equal epochs.

Trains each run on the first N_TRAIN images for EPOCHS epochs (batch 100, Adam(1e-3, eps 1e-4),
XLA; the configs' temperature schedule), then reports the discrete -ELBO (IWAE-1 bound, i.e.
hard samples, discrete KL) and the IWAE-K_EVAL NLL on the first N_TEST test images (one fixed
binarisation), each with its standard error over images, and examples/s.

Example (the BENCHMARKS.md rows):
  PYTHONPATH=. python benchmarks/gumbel_quality.py 60000 1000 3 1000 cat,cat-st,bern,bern-st
"""
import json, sys, time
import numpy as np, keras
from tfdgm import models
from tfdgm.data.sources import read_idx
from tfdgm.evaluation.iwae import iwae_log_likelihoods

N_TRAIN, N_TEST, EPOCHS, K_EVAL = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
runs = sys.argv[5].split(",")
rng = np.random.default_rng(0)
tr = read_idx("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")[:N_TRAIN] / 255.0
te = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")[:N_TEST] / 255.0
x_te = (rng.uniform(size=te.shape) < te).astype(np.float32)[..., None]
COMMON = dict(hidden_units=(512, 256), temperature=1.0, min_temperature=0.5, anneal_rate=1e-4, anneal_every=500)
SPECS = {
    "cat": dict(latent="categorical", latent_dim=20, num_classes=10),
    "cat-st": dict(latent="categorical", latent_dim=20, num_classes=10, straight_through=True),
    "cat-relaxedkl": dict(latent="categorical", latent_dim=20, num_classes=10, kl="relaxed"),
    "bern": dict(latent="bernoulli", latent_dim=200),
    "bern-st": dict(latent="bernoulli", latent_dim=200, straight_through=True),
}
out = {}
for run in runs:
    keras.utils.set_random_seed(0)
    model = models.GumbelSoftmaxVAE(seed=0, **COMMON, **SPECS[run])
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-4), jit_compile=True)
    data_rng = np.random.default_rng(1)
    t0 = time.time()
    for epoch in range(EPOCHS):  # dynamic binarisation
        x = (data_rng.uniform(size=tr.shape) < tr).astype(np.float32)[..., None]
        h = model.fit(x, batch_size=100, epochs=1, verbose=0, shuffle=True)
    train_s = time.time() - t0
    elbo = iwae_log_likelihoods(model, x_te, num_samples=1, seed=0, verbose=False)
    ll = iwae_log_likelihoods(model, x_te, num_samples=K_EVAL, seed=0, verbose=False)
    se = lambda v: float(v.std(ddof=1) / np.sqrt(len(v)))
    out[run] = dict(neg_elbo=float(-elbo.mean()), neg_elbo_stderr=se(elbo), nll=float(-ll.mean()), nll_stderr=se(ll),
                    examples_per_s=EPOCHS * N_TRAIN / train_s, train_loss=float(h.history["loss"][-1]),
                    train_elbo=float(h.history["elbo"][-1]), temperature=float(model.temperature()),
                    ll=ll.tolist())
    print(run, {k: v for k, v in out[run].items() if k != "ll"}, flush=True)
names = list(out)
for a in names:
    for b in names:
        if a < b:
            d = np.array(out[a]["ll"]) - np.array(out[b]["ll"])
            print(f"paired {a} - {b}: {d.mean():+.2f} +- {d.std(ddof=1)/np.sqrt(len(d)):.2f} nats (log-lik)")
json.dump({k: {kk: vv for kk, vv in v.items() if kk != "ll"} for k, v in out.items()},
          open(f"benchmarks/results/gumbel_quality_{'_'.join(runs)}.json", "w"), indent=1)
