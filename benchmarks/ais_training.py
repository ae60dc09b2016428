"""AIS training (tfdgm.models.AISVAE, Ding & Freedman): throughput vs the cost model, peak memory vs T,
the Figure 1 picture, and the Table 1/2 direction comparisons against IWAE-DReG.

Parts (--parts, comma-separated):

* throughput: training steps/s of AISVAE(K, T, L=5) and IWAE-K (same K, batch 100, Adam, XLA and
  --steps_per_execution 10), interleaved over --repeats in one process; the AIS/IWAE time ratio is
  compared with the cost model 1 + L x T (L x T decoder forward-backward passes per chain more
  than IWAE; the issue's target is measured/model <= 1.5).
* memory: peak RSS (VmHWM) of a fresh subprocess that trains AISVAE(K=--memory_k) for a few steps,
  for each T in --memory_ts: flat in T because the chains are not back-propagated through.
* figure1: Algorithm 2's q_IS and q_AIS for a correlated 2-D Gaussian and its KL-optimal
  factorised q, at equal cost K_IS = L x K x T; KL of a fitted Gaussian with bootstrap standard
  errors; writes a PNG (matplotlib).
* quality: trains each --quality_models spec for --epochs (at most --max_steps_per_epoch steps
  each) on dynamically binarised Fashion-MNIST, then the IWAE-k test NLL on the first
  --num_test_examples statically binarised test images (and, with --ais_eval_examples, AIS from the
  prior: 16 chains, L=10, sigmoidal --ais_eval_steps), with standard errors and paired differences
  on the same images. Specs: "dreg:K" (IWAE-DReG) or "ais:K:T" (L=5).

Example:
  python benchmarks/ais_training.py --parts throughput,memory,figure1 \
      --output benchmarks/results/ais_training.json --markdown
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402

LEAPFROG = 5


def build(spec, seed=0):
    """'dreg:K' | 'iwae:K' | 'ais:K:T' -> an uncompiled tfdgm model (Burda MLP, Fashion-MNIST shapes)."""
    from tfdgm import models

    kind, *rest = spec.split(":")
    shape = dict(input_shape=(28, 28, 1), latent_dim=50, seed=seed)
    if kind in ("dreg", "iwae"):
        return models.IWAE(num_samples=int(rest[0]), gradient_estimator="dreg" if kind == "dreg" else "iwae", **shape)
    if kind == "ais":
        return models.AISVAE(num_samples=int(rest[0]), num_temperatures=int(rest[1]), leapfrog_steps=LEAPFROG, **shape)
    raise ValueError(f"unknown spec {spec!r}")


def compile_model(model, jit=True, steps_per_execution=10):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-4), jit_compile=jit,
                  steps_per_execution=steps_per_execution)
    return model


# ---------------------------------------------------------------------------- throughput
def throughput(args):
    data = iter(common.train_dataset(batch_size=100).prefetch(4))
    import tensorflow as tf

    batches = [next(data) for _ in range(args.steps)]
    dataset = tf.data.Dataset.from_tensor_slices(tf.stack(batches)).repeat()
    specs = [f"iwae:{k}" for k in args.ks] + [f"ais:{k}:{t}" for k in args.ks for t in args.ts]
    models = {}
    for spec in specs:
        models[spec] = compile_model(build(spec), jit=args.jit)
        start = time.perf_counter()
        models[spec].fit(dataset, steps_per_epoch=args.steps_per_execution, epochs=1, verbose=0)
        print(f"# {spec}: compiled and warmed up in {time.perf_counter() - start:.1f} s", flush=True)
    times = {spec: [] for spec in specs}
    for r in range(args.repeats):
        for spec in specs[r % len(specs):] + specs[: r % len(specs)]:  # rotated order
            steps = args.steps if spec.startswith("ais") else args.iwae_steps
            start = time.perf_counter()
            models[spec].fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
            times[spec].append((time.perf_counter() - start) / steps)
            print(f"# repeat {r} {spec}: {1e3 * times[spec][-1]:.1f} ms/step", flush=True)
    rows = []
    for spec in specs:
        per_step = float(np.median(times[spec]))
        row = {"spec": spec, "ms_per_step": 1e3 * per_step, "examples_per_s": 100 / per_step,
               "ms_per_step_all": [1e3 * t for t in times[spec]]}
        if spec.startswith("ais"):
            _, k, t = spec.split(":")
            base = float(np.median(times[f"iwae:{k}"]))
            model = 1 + LEAPFROG * int(t)
            row.update(ratio_to_iwae=per_step / base, cost_model=model, measured_over_model=per_step / base / model,
                       accept_rate=None)
        rows.append(row)
    return {"rows": rows, "jit": args.jit, "steps": args.steps, "repeats": args.repeats}


# ---------------------------------------------------------------------------- memory
def _vmhwm_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024


def memory_child(args):
    import tensorflow as tf

    data = common.train_dataset(batch_size=100)
    model = compile_model(build(f"ais:{args.memory_k}:{args.child_t}"), jit=args.jit, steps_per_execution=1)
    model.fit(data.take(2), epochs=1, verbose=0)
    after_compile = _vmhwm_mb()
    start = time.perf_counter()
    model.fit(data.take(args.memory_steps), epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    del tf
    print("RESULT " + json.dumps({"T": args.child_t, "K": args.memory_k, "peak_rss_mb": _vmhwm_mb(),
                                  "peak_rss_after_compile_mb": after_compile,
                                  "s_per_step": seconds / args.memory_steps}))


def memory(args):
    rows = []
    for t in args.memory_ts:
        command = [sys.executable, os.path.abspath(__file__), "--parts", "memory_child", "--child_t", str(t),
                   "--memory_k", str(args.memory_k), "--memory_steps", str(args.memory_steps)]
        command += [] if args.jit else ["--no_jit"]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        row = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
        print(f"# memory T={t}: {row}", flush=True)
        rows.append(row)
    return {"rows": rows, "K": args.memory_k, "batch_size": 100, "jit": args.jit}


# ---------------------------------------------------------------------------- Figure 1
def figure1(args):
    import tensorflow as tf
    from tests.test_ais_vae import CorrelatedGaussianTarget, bootstrap_stderr, gaussian_fit_kl
    from tfdgm.models import sample_implicit_posterior

    target = CorrelatedGaussianTarget(rho=0.9)
    x = tf.zeros([args.figure_draws, 1])
    panels = [("q (factorised, KL-optimal)", "is", dict(num_samples=1))]
    for L, K, T in ((5, 2, 5), (5, 10, 10)):
        panels.append((f"q_IS, K={L * K * T}", "is", dict(num_samples=L * K * T)))
        panels.append((f"q_AIS, L={L}, K={K}, T={T}", "ais",
                       dict(num_samples=K, num_temperatures=T, leapfrog_steps=L, step_size=0.2)))
    rows, draws = [], []
    for i, (title, method, kwargs) in enumerate(panels):
        z = sample_implicit_posterior(target, x, method, seed=i + 1, **kwargs).numpy()
        rows.append({"panel": title, "cost": kwargs["num_samples"] * kwargs.get("leapfrog_steps", 1) *
                     kwargs.get("num_temperatures", 1), "kl_fitted_gaussian": gaussian_fit_kl(z, target.cov),
                     "kl_stderr": bootstrap_stderr(z, target.cov), "corr": float(np.corrcoef(z.T)[0, 1]),
                     "var": np.var(z, axis=0).tolist()})
        draws.append(z)
        print(f"# {rows[-1]}", flush=True)
    if args.figure_png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        grid = np.linspace(-3.5, 3.5, 200)
        zz = np.stack(np.meshgrid(grid, grid), -1)
        density = np.exp(-0.5 * np.einsum("...i,ij,...j->...", zz, target.precision, zz))
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), sharex=True, sharey=True)
        for ax, row, z in zip(axes, rows, draws):
            ax.contour(grid, grid, density, levels=4, colors="k", linewidths=0.8)
            ax.scatter(z[:1000, 0], z[:1000, 1], s=2, alpha=0.4)
            ax.set_title(f"{row['panel']}\nKL {row['kl_fitted_gaussian']:.3f} ± {row['kl_stderr']:.3f}", fontsize=8)
            ax.set_aspect("equal")
        fig.suptitle("Target N(0, [[1, .9], [.9, 1]]) (contours); 1000 draws each; equal cost: K_IS = L·K·T",
                     fontsize=9)
        fig.tight_layout()
        os.makedirs(os.path.dirname(os.path.abspath(args.figure_png)), exist_ok=True)
        fig.savefig(args.figure_png, dpi=110)
        print(f"# wrote {args.figure_png}")
    return {"rows": rows, "draws": args.figure_draws, "rho": 0.9}


# ---------------------------------------------------------------------------- quality
def quality(args):
    from tfdgm import evaluation

    test = common.static_test_set()[: args.num_test_examples]
    rows, log_px, ais_log_px = [], {}, {}
    for spec in args.quality_models:
        model = compile_model(build(spec), jit=args.jit)
        data = common.train_dataset(batch_size=100, repeat=True)
        steps = args.max_steps_per_epoch or 600
        start = time.perf_counter()
        history = model.fit(data, steps_per_epoch=steps, epochs=args.epochs, verbose=2).history
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        lp = evaluation.iwae_log_likelihoods(model, test, num_samples=args.eval_k, seed=0, verbose=False)
        eval_s = time.perf_counter() - start
        log_px[spec] = lp
        ais = None
        if args.ais_eval_examples:
            start_ais = time.perf_counter()
            ais = evaluation.ais_log_likelihoods(model, test[: args.ais_eval_examples], num_steps=args.ais_eval_steps,
                                                 num_chains=16, leapfrog_steps=10, schedule="sigmoidal",
                                                 start="prior", seed=0, verbose=False)
            ais_log_px[spec] = ais.log_px
            ais = dict(ais.summary(), time_s=time.perf_counter() - start_ais, num_steps=args.ais_eval_steps)
        row = {"spec": spec, "epochs": args.epochs, "steps": int(model.optimizer.iterations.numpy()),
               "train_s": train_s, "eval_s": eval_s, "nll": float(-lp.mean()),
               "nll_stderr": float(lp.std(ddof=1) / math.sqrt(len(lp))),
               "final_train": {k: float(v[-1]) for k, v in history.items()}}
        if spec.startswith("ais"):
            row["step_sizes"] = model.step_sizes.numpy().tolist()
        row["ais_eval"] = ais
        rows.append(row)
        print(f"# {row}", flush=True)
        if args.output:  # after every model: a long run that is stopped keeps what it measured
            common.write_json(args.output + ".partial", {"rows": rows})
    paired = []
    for method, values in (("iwae", log_px), ("ais", ais_log_px)):
        specs = list(values)
        for i, a in enumerate(specs):
            for b in specs[i + 1:]:
                d = values[a] - values[b]
                paired.append({"eval": method, "a": a, "b": b, "nll_b_minus_nll_a": float(d.mean()),
                               "stderr": float(d.std(ddof=1) / math.sqrt(len(d)))})
    return {"rows": rows, "paired": paired, "eval_k": args.eval_k, "ais_eval_examples": args.ais_eval_examples, "num_test_examples": len(test),
            "epochs": args.epochs, "max_steps_per_epoch": args.max_steps_per_epoch}


# ---------------------------------------------------------------------------- report
def markdown(results):
    out = []
    if "throughput" in results:
        r = results["throughput"]
        out.append(f"Throughput (batch 100, XLA={r['jit']}, median of {r['repeats']} timed fits):\n")
        out.append(common.markdown_table(
            ["config", "ms/step", "examples/s", "time / IWAE-K", "cost model 1+L·T", "measured / model"],
            [[x["spec"], f"{x['ms_per_step']:.1f}", f"{x['examples_per_s']:.0f}",
              f"{x['ratio_to_iwae']:.1f}" if "ratio_to_iwae" in x else "",
              x.get("cost_model", ""), f"{x['measured_over_model']:.2f}" if "measured_over_model" in x else ""]
             for x in r["rows"]]))
    if "memory" in results:
        r = results["memory"]
        out.append(f"\nPeak RSS, AISVAE K={r['K']}, batch 100, XLA={r['jit']}:\n")
        out.append(common.markdown_table(["T", "peak RSS MB", "peak RSS after compile MB", "s/step"],
                                         [[x["T"], f"{x['peak_rss_mb']:.0f}", f"{x['peak_rss_after_compile_mb']:.0f}",
                                           f"{x['s_per_step']:.2f}"] for x in r["rows"]]))
    if "figure1" in results:
        r = results["figure1"]
        out.append(f"\nFigure 1 ({r['draws']} draws per panel; KL of the fitted Gaussian to the target):\n")
        out.append(common.markdown_table(["distribution", "cost", "KL", "± s.e.", "corr (target 0.9)"],
                                         [[x["panel"], x["cost"], f"{x['kl_fitted_gaussian']:.4f}",
                                           f"{x['kl_stderr']:.4f}", f"{x['corr']:.2f}"] for x in r["rows"]]))
    if "quality" in results:
        r = results["quality"]
        out.append(f"\nTest NLL (IWAE-{r['eval_k']}, first {r['num_test_examples']} test images), "
                   f"{r['epochs']} epochs of at most {r['max_steps_per_epoch'] or 600} steps:\n")
        out.append(common.markdown_table(
            ["model", "steps", "train s", "NLL (IWAE)", "± s.e.", "NLL (AIS)", "± s.e."],
            [[x["spec"], x["steps"], f"{x['train_s']:.0f}", f"{x['nll']:.2f}", f"{x['nll_stderr']:.2f}",
              f"{x['ais_eval']['nll']:.2f}" if x.get("ais_eval") else "",
              f"{x['ais_eval']['nll_stderr']:.2f}" if x.get("ais_eval") else ""] for x in r["rows"]]))
        out.append("\nPaired differences (NLL of b minus NLL of a, same images):\n")
        out.append(common.markdown_table(["eval", "a", "b", "NLL_b − NLL_a", "± s.e."],
                                         [[p["eval"], p["a"], p["b"], f"{p['nll_b_minus_nll_a']:.2f}",
                                           f"{p['stderr']:.2f}"]
                                          for p in r["paired"]]))
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", type=common.csv_list, default=["throughput", "memory", "figure1"])
    parser.add_argument("--no_jit", dest="jit", action="store_false")
    parser.add_argument("--ks", type=lambda s: common.csv_list(s, int), default=[5])
    parser.add_argument("--ts", type=lambda s: common.csv_list(s, int), default=[1, 5, 11])
    parser.add_argument("--steps", type=int, default=20, help="timed AIS steps per fit")
    parser.add_argument("--iwae_steps", type=int, default=100, help="timed IWAE steps per fit")
    parser.add_argument("--steps_per_execution", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory_k", type=int, default=50)
    parser.add_argument("--memory_ts", type=lambda s: common.csv_list(s, int), default=[1, 5, 11, 21])
    parser.add_argument("--memory_steps", type=int, default=3)
    parser.add_argument("--child_t", type=int, default=1)
    parser.add_argument("--figure_draws", type=int, default=4000)
    parser.add_argument("--figure_png", default="benchmarks/results/ais_training_figure1.png")
    parser.add_argument("--quality_models", type=common.csv_list, default=["dreg:1", "ais:1:5", "dreg:25"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max_steps_per_epoch", type=int, default=0)
    parser.add_argument("--eval_k", type=int, default=5000)
    parser.add_argument("--num_test_examples", type=int, default=1000)
    parser.add_argument("--ais_eval_examples", type=int, default=0, help="also AIS-evaluate this many test images")
    parser.add_argument("--ais_eval_steps", type=int, default=500)
    parser.add_argument("--output", default=None)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.parts == ["memory_child"]:
        return memory_child(args)
    env = common.environment()
    common.print_environment(env)
    results = {"environment": env}
    for part in args.parts:
        results[part] = {"throughput": throughput, "memory": memory, "figure1": figure1, "quality": quality}[part](args)
        common.write_json(args.output, results)
    if args.markdown:
        print(markdown(results))


if __name__ == "__main__":
    main()
