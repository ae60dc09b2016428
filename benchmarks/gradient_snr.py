"""Gradient signal-to-noise ratio of every estimator on one model (tfdgm.evaluation.gradient_variance).

For each latent family, one reference model is trained for EPOCHS epochs on dynamically binarised
Fashion-MNIST (batch 100, Adam(1e-3, eps 1e-4)); every estimator then gets *the same encoder and
decoder weights*, and its training gradient (`compute_gradients`, what `fit` uses) is drawn
NUM_DRAWS times on one fixed batch of 100 statically binarised test images. Reported per
estimator and group: median and mean per-coordinate SNR |E g_i| / std g_i, the whole-group
||E g|| / sqrt(tr Cov g), and tr Cov g.

  gaussian:    Burda MLP 784-200-200-50; vae, iwae K=5/50, iwae_dreg K=5/50, rws (wake) K=5, wake_sleep
  bernoulli:   784-512-256-200 binary units (Jang et al.); gumbel_softmax, ST, relaxed-KL, REINFORCE,
               NVIL, VIMCO K=5/50, rws K=5, wake_sleep
  categorical: 784-512-256-(20x10) (Jang et al.); the same estimators (every discrete model takes the
               same latent_dim = variables, num_classes, so they share the reference's networks)

NVIL's baseline network and running moments are first fitted for NVIL_WARMUP steps on training
data with p and q frozen (learning rate 0), so its variance is that of a fitted baseline.

Example (the BENCHMARKS.md table):
  PYTHONPATH=. python benchmarks/gradient_snr.py 1 100 gaussian,bernoulli,categorical
"""
import json, sys, time
import numpy as np, keras
from tfdgm import models
from tfdgm.data.sources import read_idx
from tfdgm.evaluation import gradient_variance

EPOCHS, NUM_DRAWS = int(sys.argv[1]), int(sys.argv[2])
NVIL_WARMUP = 100
families = sys.argv[3].split(",")
tr = read_idx("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") / 255.0
te = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")[:100] / 255.0
x_batch = (np.random.default_rng(0).uniform(size=te.shape) < te).astype(np.float32)[..., None]
GAUSS = dict(latent_dim=50, hidden_units=(200, 200))
GS = dict(hidden_units=(512, 256))
SCORE_FUNCTION = [("reinforce", "nvil", dict(estimator="reinforce")), ("nvil", "nvil", dict(estimator="nvil")),
                  ("vimco K=5", "vimco", dict(num_samples=5)), ("vimco K=50", "vimco", dict(num_samples=50))]
FAMILIES = {
    "gaussian": ("vae", GAUSS, [
        ("vae", "vae", {}), ("iwae K=5", "iwae", dict(num_samples=5)), ("iwae K=50", "iwae", dict(num_samples=50)),
        ("iwae_dreg K=5", "iwae_dreg", dict(num_samples=5)), ("iwae_dreg K=50", "iwae_dreg", dict(num_samples=50)),
        ("rws wake K=5", "rws", dict(num_samples=5)), ("wake_sleep", "wake_sleep", {})]),
    "bernoulli": ("gumbel_softmax", dict(GS, latent="bernoulli", latent_dim=200), [
        ("gumbel_softmax", "gumbel_softmax", {}), ("gumbel_softmax ST", "gumbel_softmax", dict(straight_through=True)),
        ("gumbel_softmax relaxed-KL", "gumbel_softmax", dict(kl="relaxed")),
        *SCORE_FUNCTION, ("rws wake K=5", "rws", dict(num_samples=5)), ("wake_sleep", "wake_sleep", {})]),
    "categorical": ("gumbel_softmax", dict(GS, latent="categorical", latent_dim=20, num_classes=10), [
        ("gumbel_softmax", "gumbel_softmax", {}), ("gumbel_softmax ST", "gumbel_softmax", dict(straight_through=True)),
        ("gumbel_softmax relaxed-KL", "gumbel_softmax", dict(kl="relaxed")), *SCORE_FUNCTION,
        ("rws wake K=5", "rws", dict(num_samples=5))]),
}


def build(name, family_kwargs, kwargs):
    """The registered model `name` with the family's settings it accepts (by its default_config):
    e.g. rws gets latent="bernoulli" in the Bernoulli family and its Gaussian default otherwise. A
    new estimator (REINFORCE, NVIL, VIMCO) is one more (label, name, kwargs) row in FAMILIES."""
    cls = models.get_model_class(name)
    kw = {k: v for k, v in dict(family_kwargs, **kwargs).items() if k in cls.default_config()}
    keras.utils.set_random_seed(0)
    return cls(seed=0, **kw)


out = {}
for family in families:
    ref_name, fam_kwargs, estimators = FAMILIES[family]
    ref = build(ref_name, fam_kwargs, {})
    ref.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-4), jit_compile=True)
    data_rng = np.random.default_rng(1)
    t0 = time.time()
    for _ in range(EPOCHS):
        ref.fit((data_rng.uniform(size=tr.shape) < tr).astype(np.float32)[..., None], batch_size=100, epochs=1,
                verbose=0)
    print(f"## {family}: reference {ref_name} trained {EPOCHS} epoch(s) in {time.time() - t0:.0f}s", flush=True)
    for label, name, kwargs in estimators:
        model = build(name, fam_kwargs, kwargs)
        model.encoder.set_weights(ref.encoder.get_weights())
        model.decoder.set_weights(ref.decoder.get_weights())
        if "baseline" in model.parameter_groups():  # fit b(x), c and sigma with p and q frozen
            model.compile(optimizer=keras.optimizers.SGD(0.0), optimizers={"baseline": keras.optimizers.Adam(1e-3)},
                          jit_compile=True)
            model.fit((data_rng.uniform(size=tr[:NVIL_WARMUP * 100].shape) < tr[:NVIL_WARMUP * 100])
                      .astype(np.float32)[..., None], batch_size=100, epochs=1, verbose=0)
        t0 = time.time()
        stats = gradient_variance(model, x_batch, num_draws=NUM_DRAWS, seed=1, jit_compile=True)
        row = {g: {k: float(v) for k, v in s.items()} for g, s in stats.items()}
        out[f"{family}/{label}"] = row
        q, p = row["q"], row["p"]
        print(f"{family:12s} {label:28s} q: snr_median {q['snr_median']:.4f} snr_mean {q['snr_mean']:.4f} "
              f"norm_snr {q['norm_snr']:.4f} variance {q['variance']:.4g} | p: snr_median {p['snr_median']:.4f} "
              f"({time.time() - t0:.0f}s)", flush=True)
json.dump(out, open(f"benchmarks/results/gradient_snr_{'_'.join(families)}.json", "w"), indent=1)
