"""Score-function estimators on Jang et al.'s VAE settings, binarised Fashion-MNIST, equal epochs.

Runs (Bernoulli 784-512-256-200 and categorical 20x10, tanh MLPs): REINFORCE, NVIL, VIMCO K=5
and K=50, and the peer: TFP's own VIMCO (`tfp.vi.monte_carlo_variational_loss` with
`GradientEstimators.VIMCO`, K=5) training the very same tfdgm model's networks in a jit-compiled
loop (same data order, batch, Adam). Each run trains on the first N_TRAIN images for EPOCHS
epochs (dynamic binarisation, batch 100, Adam(1e-3, eps 1e-4)) and reports on the first N_TEST
test images (one fixed binarisation) -ELBO (K=1, averaged over 100 draws per image) and the
IWAE-K_EVAL NLL with standard errors over images, and training examples/s after
the first epoch (which includes compiling).

Example (the BENCHMARKS.md rows):
  PYTHONPATH=. python benchmarks/discrete.py 10000 500 3 1000 \
      reinforce,nvil,vimco5,vimco50,tfp-vimco5 bern200,cat20x10
"""
import json
import sys
import time

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfdgm import estimators, models
from tfdgm.data.sources import read_idx
from tfdgm.evaluation.iwae import iwae_log_likelihoods

N_TRAIN, N_TEST, EPOCHS, K_EVAL = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
RUNS, LATENTS = sys.argv[5].split(","), sys.argv[6].split(",")
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
}
LATENT = {"bern200": dict(latent="bernoulli", latent_dim=200),
          "cat20x10": dict(latent="categorical", latent_dim=200, num_classes=10)}


def tfp_vimco_trainer(model, optimizer):
    """One jit-compiled step of TFP's VIMCO loss on the model's own networks and densities."""
    variables = model.trainable_variables
    optimizer.build(variables)

    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            q = model.posterior(x)  # batch shape [B]

            def target_log_prob(z):  # z [K, B, D]
                log_pz, log_px_z = model.log_prior_and_likelihood(z, x)
                return log_pz + log_px_z

            loss = tf.reduce_mean(tfp.vi.monte_carlo_variational_loss(
                target_log_prob, q, importance_sample_size=model.num_samples,
                gradient_estimator=tfp.vi.GradientEstimators.VIMCO, seed=tf.cast(model._next_seed(), tf.int32)))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return step


def elbo_estimates(model, x, draws=100):
    """ELBO per image: the mean of `draws` single-sample log-weights (one fixed seed)."""
    out = []
    for i in range(0, len(x), BATCH):
        lw = model.log_weights(tf.constant(x[i:i + BATCH]), draws, seed=tf.constant([0, i]),
                               reparameterize=False)["log_w"]
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
        epoch_s, loss = [], float("nan")
        for epoch in range(EPOCHS):  # dynamic binarisation, the same draws for every run
            x = (data_rng.uniform(size=tr.shape) < tr).astype(np.float32)[..., None]
            order = np.random.default_rng(epoch).permutation(len(x))
            x = x[order]
            t0 = time.time()
            if peer:
                for i in range(0, len(x) - BATCH + 1, BATCH):
                    loss = step(tf.constant(x[i:i + BATCH]))
                loss = float(loss)
            else:
                loss = model.fit(x, batch_size=BATCH, epochs=1, verbose=0, shuffle=False).history["loss"][-1]
            epoch_s.append(time.time() - t0)
        elbo = elbo_estimates(model, x_te)
        ll = iwae_log_likelihoods(model, x_te, num_samples=K_EVAL, seed=0, verbose=False)
        key = f"{run}-{latent}"
        out[key] = dict(neg_elbo=float(-elbo.mean()), neg_elbo_se=float(elbo.std(ddof=1) / np.sqrt(len(elbo))),
                        nll=float(-ll.mean()), nll_se=float(ll.std(ddof=1) / np.sqrt(len(ll))),
                        # after the first epoch (which includes compiling, for every run)
                        examples_per_s=(len(epoch_s) - 1) * N_TRAIN / max(sum(epoch_s[1:]), 1e-9),
                        train_s=sum(epoch_s), train_loss=float(loss), ll=ll.tolist())
        print(key, {k: round(v, 3) for k, v in out[key].items() if k != "ll"}, flush=True)
keys = list(out)
for a in keys:
    for b in keys:
        if a < b and a.split("-")[-1] == b.split("-")[-1]:
            d = np.array(out[a]["ll"]) - np.array(out[b]["ll"])
            print(f"paired {a} - {b}: {d.mean():+.2f} +- {d.std(ddof=1) / np.sqrt(len(d)):.2f} nats (log-lik)")
summary = {k: {kk: vv for kk, vv in v.items() if kk != "ll"} for k, v in out.items()}
json.dump(summary, open(f"benchmarks/results/discrete_{'_'.join(LATENTS)}.json", "w"), indent=1)
