"""Does walkback bring a GSN chain's stationary distribution closer to the data's? An enumerable check.

D: a distribution over 3 (or --pixels) binary pixels. The chain's transition matrix
T(x'|x) = sum_x~ C(x~|x) p(x'|f(x~)) is enumerated from the trained model, and its stationary
distribution pi compared with D in total variation. With independent pixels the factorised decoder
can represent the true posterior D(x|x~) (tests/test_gsn.py asserts pi ~ D there); with a
correlated D it cannot, and the question is whether walkback (Bengio et al. 2013, §3.4) helps.

    PYTHONPATH=. python benchmarks/gsn_enumerable.py --walkback 0,1,3 --seeds 0,1,2 --out benchmarks/results/gsn_enumerable.json
"""
import argparse
import itertools
import json
import os

import numpy as np


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--walkback", default="0,1,3")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--level", type=float, default=0.5, help="salt-and-pepper p")
    parser.add_argument("--num", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import keras

    from tfdgm import models

    states = np.array(list(itertools.product([0.0, 1.0], repeat=3)), np.float32)
    distributions = {
        "independent (0.15, 0.6, 0.85)": np.prod(np.where(states == 1, [0.15, 0.6, 0.85], [0.85, 0.4, 0.15]), 1),
        # Two modes, 000 and 111, and little mass elsewhere: the posterior given a corrupted state
        # between them is bimodal, which a factorised decoder cannot represent.
        "two modes (000, 111)": np.array([0.42, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.40]),
    }

    def stationary(t):
        values, vectors = np.linalg.eig(t.T)
        pi = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
        return pi / pi.sum()

    def transition(model):
        c = np.exp(np.sum(model.corruption_process.distribution(states[:, None]).log_prob(states[None]).numpy(), -1))
        dist = model.reconstruction_distribution(states)
        p = np.exp(np.stack([dist.log_prob(np.broadcast_to(s, states.shape)).numpy() for s in states], axis=1))
        return c @ p

    results = []
    for label, d in distributions.items():
        for k in [int(v) for v in args.walkback.split(",")]:
            tvs = []
            for seed in [int(v) for v in args.seeds.split(",")]:
                rng = np.random.default_rng(seed)
                data = states[rng.choice(len(states), size=args.num, p=d / d.sum())]
                keras.utils.set_random_seed(seed)
                model = models.GSN(input_shape=(3,), hidden_units=(32,), corruption_level=args.level, walkback_steps=k,
                                   sample_steps=10, seed=seed)
                model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
                model.fit(data, batch_size=100, epochs=args.epochs, verbose=0)
                # Then small steps on large batches, as tests/test_gsn.py does: at lr 1e-2 the
                # weights jitter with each step's corruption noise, which pi amplifies.
                model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
                model.fit(data, batch_size=500, epochs=args.epochs * 2 // 3, verbose=0)
                pi = stationary(transition(model))
                tvs.append(0.5 * float(np.abs(pi - d).sum()))
            row = {"distribution": label, "walkback_steps": k, "tv": tvs, "tv_mean": float(np.mean(tvs)),
                   "tv_stderr": float(np.std(tvs, ddof=1) / np.sqrt(len(tvs))) if len(tvs) > 1 else None}
            results.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
