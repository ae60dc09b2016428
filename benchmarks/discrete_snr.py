"""Inference-network gradient variance and SNR of each score-function estimator, on one model.

Every estimator sees the same parameters: the models are built from one seed (identical p and q
weights), and NVIL's baseline network and running moments are first fitted for WARMUP steps with
p and q frozen (learning rate 0), so its variance is that of a trained baseline. Then
`compute_gradients` is called DRAWS times on one fixed batch of 100 binarised Fashion-MNIST
training images, and for the q group we report the total variance (trace of the covariance),
and the SNR |mean| / std per parameter (median over parameters, as Rainforth et al. 2018).

Example (the BENCHMARKS.md table):
  PYTHONPATH=. python benchmarks/discrete_snr.py 200 100 bern200,cat20x10
"""
import json
import sys

import keras
import numpy as np
import tensorflow as tf

from tfdgm import models
from tfdgm.data.sources import read_idx

DRAWS, WARMUP, LATENTS = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")
LATENT = {"bern200": dict(latent="bernoulli", latent_dim=200),
          "cat20x10": dict(latent="categorical", latent_dim=20, num_classes=10)}
RUNS = {"reinforce": ("nvil", dict(estimator="reinforce")), "nvil": ("nvil", dict(estimator="nvil")),
        "vimco5": ("vimco", dict(num_samples=5)), "vimco50": ("vimco", dict(num_samples=50))}
rng = np.random.default_rng(0)
tr = read_idx("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")[:2000] / 255.0
x_all = (rng.uniform(size=tr.shape) < tr).astype(np.float32)[..., None]
batch = tf.constant(x_all[:100])
out = {}
for latent in LATENTS:
    for run, (name, kw) in RUNS.items():
        keras.utils.set_random_seed(0)
        model = models.get_model_class(name)(**LATENT[latent], hidden_units=(512, 256), seed=0, **kw)
        if run == "nvil":
            model.compile(optimizer=keras.optimizers.SGD(0.0), optimizers={"baseline": keras.optimizers.Adam(1e-3)},
                          jit_compile=True)
            model.fit(x_all, batch_size=100, epochs=max(1, WARMUP // 20), steps_per_epoch=min(WARMUP, 20), verbose=0)
        step = tf.function(lambda b: model.compute_gradients(b)[0]["q"], jit_compile=True)
        rows = np.stack([np.concatenate([np.ravel(g) for g in step(batch)]) for _ in range(DRAWS)])
        mean, std = rows.mean(0), rows.std(0, ddof=1)
        snr = np.abs(mean) / np.maximum(std, 1e-30)
        key = f"{run}-{latent}"
        out[key] = dict(total_variance=float((std ** 2).sum()), median_snr=float(np.median(snr)),
                        mean_snr=float(snr.mean()), draws=DRAWS)
        print(key, out[key], flush=True)
json.dump(out, open(f"benchmarks/results/discrete_snr_{'_'.join(LATENTS)}.json", "w"), indent=1)
