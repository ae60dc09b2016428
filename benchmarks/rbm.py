"""RBMs on binarised Fashion-MNIST: scikit-learn's BernoulliRBM (PCD-1) vs tfdgm's PCD-1, CD-1, CD-10
(and CD-1 with Bachman & Precup's correction), seconds per epoch and AIS test log-likelihood.

Every model trains on the same statically binarised 60,000 training images (one Bernoulli draw,
seed 0) for the same epochs, 500 hidden units, batch 100. scikit-learn is timed on its fast path,
one `fit` with n_iter=E; its weights are then loaded into a tfdgm RBM and evaluated by the same
AIS (`tfdgm.evaluation.ais_log_partition`: Gibbs transitions from the base-rate model of the
training pixels' marginals, Salakhutdinov & Murray 2008) on the first test images.

scikit-learn is needed only here (pip install scikit-learn); it is no dependency of tfdgm.

  PYTHONPATH=. python benchmarks/rbm.py --epochs 3 --ais_steps 1000 --test_examples 1000 \
      --log_z_steps 1000,10000,sm --out benchmarks/results/rbm.json
"""
import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfdgm import evaluation  # noqa: E402
from tfdgm.data import load_arrays  # noqa: E402
from tfdgm.models import RBM  # noqa: E402


def binarised(split, seed):
    x = load_arrays("fashion_mnist", split)
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    if x.max() > 1:
        x /= 255.0
    return (np.random.default_rng(seed).uniform(size=x.shape) < x).astype(np.float32)


class EpochTimes(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times = getattr(self, "times", []) + [time.perf_counter() - self.start]


def loop_timing(model, batch=100, repeats=30):
    """Seconds per CD-k negative phase (jit-compiled) with the k Gibbs steps unrolled vs in a tf.while_loop."""
    v0 = tf.constant(np.random.default_rng(0).uniform(size=(batch, model.num_visible)) < 0.3, tf.float32)
    out = {}
    for k in (1, 10):
        eps = tf.random.normal([k, batch, model.num_hidden + model.num_visible])

        @tf.function(jit_compile=True)
        def unrolled(v):
            for t in range(k):
                _, v, _ = model.gibbs_step(v, eps[t])
            return v

        @tf.function(jit_compile=True)
        def looped(v):
            return tf.while_loop(lambda t, v: t < k, lambda t, v: (t + 1, model.gibbs_step(v, eps[t])[1]),
                                 (tf.constant(0), v))[1]

        for name, fn in (("unrolled", unrolled), ("while_loop", looped)):
            fn(v0).numpy()
            start = time.perf_counter()
            for _ in range(repeats):
                fn(v0).numpy()
            out[f"k{k}_{name}_ms"] = 1e3 * (time.perf_counter() - start) / repeats
    return out


def evaluate(model, train, test, ais_steps, seed=0):
    part = evaluation.ais_log_partition(model, train[:10000], num_steps=ais_steps, num_chains=100,
                                        schedule="linear", seed=seed)
    return evaluation.free_energy_nll(model, test, part)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--ais_steps", type=int, default=1000)
    parser.add_argument("--test_examples", type=int, default=1000)
    parser.add_argument("--log_z_steps", default="1000,10000")
    parser.add_argument("--models", default="sklearn,pcd1,cd1,cd10,cd1_corrected")
    parser.add_argument("--learning_rate", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.5)
    parser.add_argument("--out", default="benchmarks/results/rbm.json")
    args = parser.parse_args()
    train, test = binarised("train", 0), binarised("test", 1)[: args.test_examples]
    results = {"args": vars(args), "load_average_start": os.getloadavg(), "rows": {}}

    def save():
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1, default=float)

    pcd_model = None
    for name in args.models.split(","):
        print(f"== {name}", flush=True)
        keras.utils.set_random_seed(0)
        model = RBM(input_shape=(784,), num_hidden=500, seed=0, weight_decay=1e-4, num_chains=100,
                    persistent=name == "pcd1", cd_steps=10 if name == "cd10" else 1,
                    cd_correction=name == "cd1_corrected")
        if name == "sklearn":
            from sklearn.neural_network import BernoulliRBM

            rbm = BernoulliRBM(n_components=500, batch_size=100, n_iter=args.epochs, random_state=0)
            start = time.perf_counter()
            rbm.fit(train)
            seconds = time.perf_counter() - start
            model.set_parameters(rbm.components_.T, rbm.intercept_visible_, rbm.intercept_hidden_)
            row = {"seconds_per_epoch": seconds / args.epochs, "epoch_times": [seconds / args.epochs] * args.epochs}
        else:
            model.compile(optimizer=keras.optimizers.SGD(args.learning_rate, momentum=args.momentum), jit_compile=True)
            timer = EpochTimes()
            model.fit(train, batch_size=100, epochs=args.epochs, shuffle=True, verbose=0, callbacks=[timer])
            # The first epoch includes tracing and XLA compilation: the steady state is the later ones.
            row = {"seconds_per_epoch": float(np.mean(timer.times[1:] or timer.times)), "epoch_times": timer.times}
        row.update(evaluate(model, train, test, args.ais_steps))
        row["load_average"] = os.getloadavg()
        results["rows"][name] = row
        print(json.dumps(row, default=float), flush=True)
        save()
        if name == "pcd1":
            pcd_model = model
    if pcd_model is not None and args.log_z_steps:
        results["loops"] = loop_timing(pcd_model)
        print(results["loops"], flush=True)
        save()
        results["log_z"] = {}
        for steps in args.log_z_steps.split(","):
            schedule = evaluation.sm_schedule() if steps == "sm" else "linear"
            part = evaluation.ais_log_partition(pcd_model, train[:10000], num_steps=int(steps) if steps != "sm" else 1,
                                                num_chains=100, schedule=schedule, seed=1)
            results["log_z"][steps] = dict(part.summary(), load_average=os.getloadavg())
            print(steps, results["log_z"][steps], flush=True)
            save()


if __name__ == "__main__":
    main()
