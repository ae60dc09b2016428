"""A picture of a GSN's sample chain: rows are chains, columns successive states of
x -> x~ ~ C(x~|x) -> x ~ p(x|f(x~)) (the decoder means shown), the first column the start.

    # from a preset or a trained workdir
    PYTHONPATH=. python examples/gsn_sample_chain.py --preset gsn_walkback_fashion_mnist
    PYTHONPATH=. python examples/gsn_sample_chain.py --workdir runs/gsn
    # or train a small one here first (--tiny: a few seconds, for the test)
    PYTHONPATH=. python examples/gsn_sample_chain.py --tiny --output /tmp/chain.png

Chains start at test images (--start data, the default) or at fair coins (--start noise); every
`--every`-th state of `--steps` is shown. Writes benchmarks/results/gsn_chain.png by default.
Reference: Bengio, Yao, Alain & Vincent (2013), Generalized denoising auto-encoders as generative models.
"""
import argparse
import os

import numpy as np


def _model(args):
    import keras

    from tfdgm import data, models

    if args.preset:
        import tfdgm

        return tfdgm.from_preset(args.preset)
    if args.workdir:
        from tfdgm.experiment import workdir as wd

        return wd.load_model(args.workdir)
    # Train one here: binarised Fashion-MNIST, a small network, few steps.
    train = data.load_arrays("fashion_mnist", "train")[: 2000 if args.tiny else 20000]
    x = (np.random.default_rng(0).uniform(size=train.shape) < train).astype(np.float32)
    model = models.GSN(input_shape=x.shape[1:], hidden_units=(32,) if args.tiny else (500,), walkback_steps=1,
                       sample_steps=args.steps, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3 if not args.tiny else 1e-2))
    model.fit(x, batch_size=100, epochs=1 if args.tiny else 5, verbose=0)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset")
    parser.add_argument("--workdir")
    parser.add_argument("--tiny", action="store_true", help="train a tiny GSN here (seconds)")
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--start", choices=["data", "noise"], default="data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=os.path.join("benchmarks", "results", "gsn_chain.png"))
    args = parser.parse_args()
    if args.tiny:
        args.chains, args.steps, args.every = 3, 6, 2

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfdgm import data

    model = _model(args)
    if args.start == "data":
        test = data.load_arrays("fashion_mnist", "test")[: args.chains]
        x0 = (np.random.default_rng(args.seed).uniform(size=test.shape) < test).astype(np.float32)
        chain = model.sample_chain(x0, steps=args.steps, seed=args.seed).numpy()
        start = x0
    else:
        chain = model.sample_chain(num_samples=args.chains, steps=args.steps, seed=args.seed).numpy()
        start = np.full_like(chain[0], 0.5)  # fair coins: shown as their mean
    shown = [start] + [chain[t] for t in range(args.every - 1, args.steps, args.every)]
    fig, axes = plt.subplots(args.chains, len(shown), figsize=(len(shown) * 0.8, args.chains * 0.8), squeeze=False)
    for i in range(args.chains):
        for j, states in enumerate(shown):
            ax = axes[i][j]
            ax.imshow(states[i, ..., 0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("start" if j == 0 else f"{(j) * args.every}", fontsize=7)
    fig.suptitle(f"GSN chain (walkback_steps={model.walkback_steps}): decoder means every {args.every} steps",
                 fontsize=8)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    fig.savefig(args.output, dpi=100, bbox_inches="tight")
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
