"""The lecture's 2-D mixture of Gaussians: the exact likelihood objective, and prior sampling beside it.

    python examples/mixture_of_gaussians_2d.py [--epochs 60] [--output mog2d.png]

Data come from three 2-D Gaussians with a uniform prior over the components (CS294-158 Lecture 4,
"Exact Likelihood Objective"). `EnumerableLatentModel` with a categorical z of 3 values and a
Gaussian p(x|z) whose mean and diagonal scale the decoder predicts per component is trained with
`model.fit` on log p(x) = log sum_z p(z) p(x|z), exactly (no sampling), and, for comparison, on the
prior-sampling estimator log (1/K) sum_k p(x|z_k), z_k ~ p(z). The picture shows the data and the
true density, and each learned density; the printout compares the held-out log-likelihoods with
the true model's.
"""
import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

from tfdgm import models  # noqa: E402

tfd = tfp.distributions
MEANS = np.array([[-2.5, 0.0], [2.5, 0.0], [0.0, 3.0]], np.float32)
SCALES = np.array([[0.6, 1.2], [1.0, 0.4], [0.8, 0.8]], np.float32)


def true_mixture():
    return tfd.MixtureSameFamily(tfd.Categorical(logits=tf.zeros(3)),
                                 tfd.MultivariateNormalDiag(loc=MEANS, scale_diag=SCALES))


def train(objective, x, epochs, seed, num_samples):
    keras.utils.set_random_seed(seed)
    model = models.EnumerableLatentModel(input_shape=(2,), latent="categorical", latent_dim=3, hidden_units=(),
                                         likelihood="gaussian_predicted_scale", objective=objective,
                                         num_samples=num_samples, seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(0.05), jit_compile=False)
    model.fit(x, batch_size=100, epochs=epochs, verbose=0)
    return model


def density_grid(log_prob_fn, extent, size=120):
    xs, ys = np.meshgrid(np.linspace(extent[0], extent[1], size), np.linspace(extent[2], extent[3], size))
    points = np.stack([xs.ravel(), ys.ravel()], axis=-1).astype(np.float32)
    return xs, ys, np.exp(np.asarray(log_prob_fn(points))).reshape(xs.shape)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_examples", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--prior_samples", type=int, default=1, help="K of the prior-sampling objective")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="mog2d.png")
    args = parser.parse_args(argv)

    truth = true_mixture()
    x = truth.sample(args.num_examples, seed=args.seed).numpy()
    held_out = truth.sample(2000, seed=args.seed + 1).numpy()
    exact = train("exact", x, args.epochs, args.seed, args.prior_samples)
    prior_sampling = train("prior_sampling", x, args.epochs, args.seed, args.prior_samples)
    results = {"true model": float(np.mean(truth.log_prob(held_out))),
               "exact objective": float(np.mean(exact.log_likelihood(held_out))),
               f"prior sampling (K={args.prior_samples})": float(np.mean(prior_sampling.log_likelihood(held_out)))}
    for name, value in results.items():
        print(f"held-out log p(x), {name}: {value:.3f} nats")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    extent = (-5.5, 5.5, -3.5, 6.0)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharex=True, sharey=True)
    panels = [("data and true density", truth.log_prob, results["true model"]),
              ("exact log p(x)", exact.log_likelihood, results["exact objective"]),
              (f"prior sampling, K={args.prior_samples}", prior_sampling.log_likelihood,
               results[f"prior sampling (K={args.prior_samples})"])]
    for ax, (title, log_prob_fn, value) in zip(axes, panels):
        xs, ys, density = density_grid(log_prob_fn, extent)
        ax.contourf(xs, ys, density, levels=20, cmap="viridis")
        if ax is axes[0]:
            ax.scatter(x[:500, 0], x[:500, 1], s=2, c="white", alpha=0.5)
        ax.set_title(f"{title}\nheld-out log p(x) = {value:.2f}")
        ax.set_xlim(extent[:2])
        ax.set_ylim(extent[2:])
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(args.output, dpi=100)
    print(f"wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
