"""SBN-200 and SBN-200-200 on dynamically binarised Fashion-MNIST: wake-sleep vs RWS variants, equal epochs.

Trains each run on the first N_TRAIN images for EPOCHS epochs (batch 100, Adam(1e-3, eps 1e-4),
XLA, a fresh binarisation every epoch), then reports the IWAE-K_EVAL test NLL with the trained q
on the first N_TEST test images (one fixed binarisation), examples/s and the load average. Each
run's per-image log-likelihoods go to benchmarks/results/rws_quality/<run>.npy as soon as it is
done (so a table can be assembled from several processes); `--summary` prints the table and the
paired differences of every pair of finished runs over the same test images.

Run names: "ws" (wake-sleep, K=1) or "rws<K>-<wake|sleep|both>", with "-sbn2" for SBN-200-200.

Example (the BENCHMARKS.md table):
  python benchmarks/rws_quality.py 60000 1000 1 5000 ws,rws5-wake,rws5-sleep,rws5-both,rws50-wake,rws50-sleep,rws50-both
  python benchmarks/rws_quality.py 60000 1000 1 5000 ws-sbn2,rws5-wake-sbn2,...,rws50-both-sbn2
  python benchmarks/rws_quality.py --summary
"""
import glob, json, os, re, sys, time
import numpy as np

OUT_DIR = os.environ.get("RWS_QUALITY_DIR", "benchmarks/results/rws_quality")


def spec(run):
    """(model name, constructor kwargs) of a run name."""
    m = re.fullmatch(r"(ws|rws(\d+)-(wake|sleep|both))(-sbn2)?", run)
    if not m:
        raise ValueError(f"Unknown run {run!r}: use 'ws' or 'rws<K>-<wake|sleep|both>', optionally with '-sbn2'.")
    kw = dict(top_latent_dim=200) if m.group(4) else {}
    if m.group(1) == "ws":
        return "wake_sleep", dict(num_samples=1, **kw)
    return "rws", dict(num_samples=int(m.group(2)), phi_update=m.group(3), **kw)


def summary():
    """The table and paired differences over the first n test images, n the fewest any run has (the
    binarisation and the IWAE seeds of image i do not depend on N_TEST, so the first n agree)."""
    runs = {os.path.basename(p)[:-5]: json.load(open(p)) for p in sorted(glob.glob(f"{OUT_DIR}/*.json"))}
    n = min(len(np.load(f"{OUT_DIR}/{r}.npy")) for r in runs)
    lls = {r: np.load(f"{OUT_DIR}/{r}.npy")[:n] for r in runs}
    print(f"test NLL = IWAE-K on the first {n} test images")
    print("| run | test NLL | examples/s | train s | eval s | load before/after |")
    for r, v in runs.items():
        print(f"| {r} | {-lls[r].mean():.1f} ± {lls[r].std(ddof=1) / np.sqrt(n):.1f} | {v['examples_per_s']:,.0f} | "
              f"{v['train_s']:.0f} | {v['eval_s']:.0f} | {v['load_before']:.1f} / {v['load_after']:.1f} |")
    for a in runs:
        for b in runs:
            if a < b:
                d = lls[a] - lls[b]
                print(f"paired {a} - {b}: {d.mean():+.2f} +- {d.std(ddof=1) / np.sqrt(n):.2f} nats (log-lik)")


if __name__ == "__main__" and sys.argv[1:] == ["--summary"]:
    summary()
    sys.exit()

import keras, tensorflow as tf  # noqa: E402
from tfdgm import models  # noqa: E402
from tfdgm.data.sources import read_idx  # noqa: E402
from tfdgm.evaluation.iwae import iwae_log_likelihoods  # noqa: E402

N_TRAIN, N_TEST, EPOCHS, K_EVAL = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
runs = sys.argv[5].split(",")
for run in runs:
    spec(run)  # refuse a typo before hours of training
os.makedirs(OUT_DIR, exist_ok=True)
rng = np.random.default_rng(0)
tr = read_idx("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")[:N_TRAIN] / 255.0
te = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")[:N_TEST] / 255.0
x_te = (rng.uniform(size=te.shape) < te).astype(np.float32)[..., None]
for run in runs:
    name, kw = spec(run)
    load_before = os.getloadavg()[0]
    keras.utils.set_random_seed(0)
    model = models.get_model_class(name)(latent="bernoulli", latent_dim=200, hidden_units=(), seed=0, **kw)
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-4), jit_compile=True)
    data_rng = np.random.default_rng(1)
    t0 = time.time()
    for epoch in range(EPOCHS):  # dynamic binarisation
        x = (data_rng.uniform(size=tr.shape) < tr).astype(np.float32)[..., None]
        h = model.fit(x, batch_size=100, epochs=1, verbose=0, shuffle=True)
    train_s = time.time() - t0
    t0 = time.time()
    ll = iwae_log_likelihoods(model, x_te, num_samples=K_EVAL, seed=0, verbose=False)
    eval_s = time.time() - t0
    res = dict(nll=float(-ll.mean()), stderr=float(ll.std(ddof=1) / np.sqrt(len(ll))), epochs=EPOCHS,
               n_train=N_TRAIN, n_test=N_TEST, k_eval=K_EVAL, examples_per_s=EPOCHS * N_TRAIN / train_s,
               train_s=train_s, eval_s=eval_s, train_loss=float(h.history["loss"][-1]),
               load_before=load_before, load_after=os.getloadavg()[0])
    np.save(f"{OUT_DIR}/{run}.npy", ll)
    json.dump(res, open(f"{OUT_DIR}/{run}.json", "w"), indent=1)
    print(run, res, flush=True)
