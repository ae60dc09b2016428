"""The likelihood-ratio vs pathwise gradient toy of CS294-158 lecture 4, with its variance picture.

Objective (the lecture's "Toy Problem", here in d dimensions, d = 1 by default):
    L(mu) = E_{x ~ N(mu, I)} ||x - s||^2,   s = (5, ..., 5),   grad L = 2 (mu - s).
Two unbiased K-sample estimators of grad L, x_k = mu + eps_k:
  - likelihood ratio (score function, REINFORCE): (1/K) sum_k (x_k - mu) ||x_k - s||^2
    (grad_mu log N(x; mu, I) = x - mu);
  - pathwise (reparameterisation): (1/K) sum_k 2 (mu + eps_k - s).
Per coordinate, with a = mu - s in 1-D, the single-sample variances are exactly
    Var_LR = 15 + 14 a^2 + a^4  (+ cross terms for d > 1),   Var_PD = 4,
both falling as 1/K; at mu = 0 the likelihood ratio's is ~250 times the pathwise one's.

Run:  python examples/likelihood_ratio_vs_pathwise.py --out lr_vs_pathwise.png
Writes a PNG (variance vs K at mu = 0, and vs mu at K = 1; Monte Carlo points, exact lines for
d = 1) and prints the numbers.
"""
import argparse

import numpy as np


def estimators(mu, target, num_samples, repeats, rng):
    """[repeats, d] draws of the (likelihood-ratio, pathwise) K-sample gradient estimates."""
    mu = np.asarray(mu, np.float64)
    eps = rng.standard_normal((repeats, num_samples, mu.size))
    x = mu + eps
    f = np.sum((x - target) ** 2, axis=-1, keepdims=True)  # ||x - s||^2, [R, K, 1]
    lr = np.mean((x - mu) * f, axis=1)
    pathwise = np.mean(2.0 * (x - target), axis=1)
    return lr, pathwise


def exact_variance_1d(mu, target=5.0, num_samples=1):
    """Exact per-coordinate variances (likelihood ratio, pathwise) of the K-sample estimators, d = 1."""
    a = np.asarray(mu, np.float64) - target
    return (15.0 + 14.0 * a ** 2 + a ** 4) / num_samples, 4.0 / num_samples + 0.0 * a


def variances(mu=0.0, target=5.0, dim=1, sample_counts=(1, 4, 16, 64, 256), repeats=2000, seed=0):
    """{K: (Var_LR, Var_PD, mean_LR, mean_PD)} per coordinate (averaged over coordinates), Monte Carlo."""
    rng = np.random.default_rng(seed)
    mu_vec, target_vec = np.full(dim, mu, np.float64), np.full(dim, target, np.float64)
    out = {}
    for k in sample_counts:
        lr, pd = estimators(mu_vec, target_vec, k, repeats, rng)
        out[k] = (float(lr.var(axis=0, ddof=1).mean()), float(pd.var(axis=0, ddof=1).mean()),
                  float(lr.mean()), float(pd.mean()))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="lr_vs_pathwise.png", help="PNG to write")
    parser.add_argument("--dim", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2000, help="estimator draws per point")
    parser.add_argument("--max-log2-samples", type=int, default=10, help="K = 1, 2, 4, ..., 2^this")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = [2 ** i for i in range(args.max_log2_samples + 1)]
    by_k = variances(0.0, 5.0, args.dim, counts, args.repeats, args.seed)
    mus = np.linspace(-2.0, 8.0, 21)
    by_mu = [variances(m, 5.0, args.dim, (1,), args.repeats, args.seed + 1)[1] for m in mus]
    print(f"grad L at mu=0: exact {2 * (0.0 - 5.0):.3f} per coordinate")
    print(f"{'K':>6} {'Var LR':>12} {'Var pathwise':>14} {'ratio':>8} {'mean LR':>9} {'mean PD':>9}")
    for k, (v_lr, v_pd, m_lr, m_pd) in by_k.items():
        print(f"{k:>6} {v_lr:>12.4g} {v_pd:>14.4g} {v_lr / v_pd:>8.1f} {m_lr:>9.3f} {m_pd:>9.3f}")

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.loglog(counts, [by_k[k][0] for k in counts], "o", color="C3", label="likelihood ratio (MC)")
    left.loglog(counts, [by_k[k][1] for k in counts], "s", color="C0", label="pathwise (MC)")
    if args.dim == 1:
        exact = [exact_variance_1d(0.0, 5.0, k) for k in counts]
        left.loglog(counts, [e[0] for e in exact], "-", color="C3", alpha=0.6, label="exact")
        left.loglog(counts, [e[1] for e in exact], "-", color="C0", alpha=0.6)
    left.set(xlabel="samples K", ylabel="variance of the gradient estimate", title="mu = 0, s = 5")
    left.legend()
    right.semilogy(mus, [v[0] for v in by_mu], "o", color="C3", label="likelihood ratio (MC)")
    right.semilogy(mus, [v[1] for v in by_mu], "s", color="C0", label="pathwise (MC)")
    if args.dim == 1:
        exact_lr, exact_pd = exact_variance_1d(mus, 5.0, 1)
        right.semilogy(mus, exact_lr, "-", color="C3", alpha=0.6, label="exact")
        right.semilogy(mus, exact_pd, "-", color="C0", alpha=0.6)
    right.set(xlabel="mu", title="K = 1")
    right.legend()
    fig.suptitle("grad_mu E_{x~N(mu,1)} (x - 5)^2: likelihood ratio vs pathwise (CS294-158 lecture 4)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return by_k


if __name__ == "__main__":
    main()
