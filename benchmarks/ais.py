"""AIS evaluation benchmark: throughput, FLOP efficiency, and estimates on a trained model.

1. Throughput (no training needed): AIS forward runs of T=21 on a Burda-MLP decoder (784-200-200-50)
   for each (jit, batch) setting, interleaved over --repeats, medians reported as
   (examples x chains x leapfrog steps)/s and as achieved FLOP/s over the FLOP/s of a large fp32
   matmul timed in the same process (the machine's practical peak).
2. Quality (--model_path, a trained model.keras): the default `tfdgm evaluate --method ais` budget
   on the first --num_examples statically binarised test images, with wall time and standard
   error; the IWAE-5000 bound on the same images; their paired difference; and BDMC on
   --bdmc_examples images simulated from the model.

Example:
  python benchmarks/ais.py --model_path runs/iwae50/model.keras --num_examples 1000 \
      --output benchmarks/results/ais.json --markdown
"""
import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402


def decoder_flops(model):
    """FLOPs of one decoder forward pass per latent vector (2 per multiply-add of every Dense)."""
    return sum(2 * int(np.prod(w.shape)) for w in model.decoder.weights if len(w.shape) == 2)


def matmul_flops_per_s(n=2048, repeats=7):
    """fp32 FLOP/s of an n x n matmul, the practical peak the AIS kernel is compared with."""
    import tensorflow as tf

    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    f = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
    f(a, b).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f(a, b).numpy()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / common.median(times)


def throughput(args):
    import tensorflow as tf
    from tfdgm import models
    from tfdgm.evaluation.ais import AISRunner

    model = models.get_model_class("iwae")(num_samples=1, seed=0)
    images = common.static_test_set()[: max(args.batches)]
    steps = args.throughput_steps
    settings = [(jit, b) for jit in args.jit for b in args.batches]
    runners = {}
    for jit, b in settings:
        runners[(jit, b)] = AISRunner(model, num_steps=steps, num_chains=args.num_chains,
                                      leapfrog_steps=args.leapfrog_steps, schedule="sigmoidal", start="prior",
                                      step_size=0.05, target_accept_prob=0.65, jit_compile=jit)
        runners[(jit, b)].forward(tf.constant(images[:b]), tf.constant([0, 0])).log_weights.numpy()  # compile
    peaks, times = [], {s: [] for s in settings}
    for r in range(args.repeats):
        peaks.append(matmul_flops_per_s())
        for jit, b in settings:
            start = time.perf_counter()
            runners[(jit, b)].forward(tf.constant(images[:b]), tf.constant([1, r])).log_weights.numpy()
            times[(jit, b)].append(time.perf_counter() - start)
    peak = common.median(peaks)
    # Per chain: (T-1) moves of L leapfrog gradients, plus one gradient per temperature (bootstrap).
    # A gradient w.r.t. z costs a forward pass and a backward pass to the input: 2x forward FLOPs.
    flops_per_gradient = 2 * decoder_flops(model)
    rows = []
    for jit, b in settings:
        t = common.median(times[(jit, b)])
        gradients = b * args.num_chains * ((steps - 1) * args.leapfrog_steps + steps)
        rows.append({"jit": jit, "batch": b, "time_s": t,
                     "chain_leapfrogs_per_s": b * args.num_chains * (steps - 1) * args.leapfrog_steps / t,
                     "flops_per_s": gradients * flops_per_gradient / t,
                     "fraction_of_matmul_peak": gradients * flops_per_gradient / t / peak})
    return {"matmul_peak_flops_per_s": peak, "steps": steps, "num_chains": args.num_chains,
            "leapfrog_steps": args.leapfrog_steps, "rows": rows}


def quality(args):
    import keras
    from tfdgm import evaluation

    model = keras.models.load_model(args.model_path, compile=False)
    images = common.static_test_set()[: args.num_examples]
    budget = dict(evaluation.DEFAULT_AIS, num_steps=args.ais_steps or evaluation.DEFAULT_AIS["num_steps"])
    out = {"budget": budget, "num_examples": len(images), "model_path": args.model_path}

    start = time.perf_counter()
    iwae = evaluation.iwae_log_likelihoods(model, images, num_samples=5000, seed=0, verbose=False)
    out["iwae5000"] = dict(zip(("nll", "stderr"), _mean_se(-iwae)), time_s=time.perf_counter() - start)
    print(f"IWAE-5000: {out['iwae5000']}", flush=True)

    start = time.perf_counter()
    ais = evaluation.ais_log_likelihoods(model, images, seed=0, jit_compile=args.quality_jit,
                                         batch_size=args.quality_batch, verbose=True, **budget)
    out["ais"] = dict(ais.summary(), time_s=time.perf_counter() - start)
    diff = ais.log_px - iwae
    out["ais_minus_iwae5000"] = dict(zip(("mean", "stderr"), _mean_se(diff)), fraction_positive=float(np.mean(diff > 0)))
    print(f"AIS: {out['ais']}\nAIS - IWAE-5000: {out['ais_minus_iwae5000']}", flush=True)

    start = time.perf_counter()
    result = evaluation.bdmc(model, args.bdmc_examples, seed=0, jit_compile=args.quality_jit,
                             batch_size=args.quality_batch, verbose=True, **budget)
    out["bdmc"] = dict(result.summary(), time_s=time.perf_counter() - start)
    print(f"BDMC: {out['bdmc']}", flush=True)
    return out


def _mean_se(values):
    return float(np.mean(values)), float(np.std(values, ddof=1) / math.sqrt(len(values)))


def render(results):
    lines = []
    if "throughput" in results:
        t = results["throughput"]
        lines.append(f"AIS forward, T={t['steps']}, {t['num_chains']} chains, L={t['leapfrog_steps']}; "
                     f"fp32 2048x2048 matmul peak in the same run: {t['matmul_peak_flops_per_s'] / 1e9:.0f} GFLOP/s\n")
        lines.append(common.markdown_table(
            ["mode", "batch", "(examples x chains x leapfrogs)/s", "GFLOP/s", "of matmul peak"],
            [["XLA" if r["jit"] else "graph", r["batch"], f"{r['chain_leapfrogs_per_s']:,.0f}",
              f"{r['flops_per_s'] / 1e9:.0f}", f"{100 * r['fraction_of_matmul_peak']:.0f}%"] for r in t["rows"]]))
    if "quality" in results:
        q = results["quality"]
        b, a, i, d, s = q["budget"], q["ais"], q["iwae5000"], q["ais_minus_iwae5000"], q["bdmc"]
        lines.append("")
        lines.append(common.markdown_table(
            ["estimate", "budget", "test NLL (nats) ± s.e.", "wall (s)"],
            [["IWAE-5000", "K=5000", f"{i['nll']:.2f} ± {i['stderr']:.2f}", f"{i['time_s']:.0f}"],
             ["AIS", f"T={b['num_steps']}, {b['num_chains']} chains, L={b['leapfrog_steps']}, {b['schedule']}",
              f"{a['nll']:.2f} ± {a['nll_stderr']:.2f}", f"{a['time_s']:.0f}"]]))
        lines.append(f"\n{q['num_examples']} test images. AIS − IWAE-5000 log p(x), paired: "
                     f"{d['mean']:+.3f} ± {d['stderr']:.3f} nats (AIS higher on {100 * d['fraction_positive']:.0f}% "
                     f"of images); mean HMC acceptance {a['accept_prob']:.2f}; per-image chain s.e. "
                     f"{a['mean_chain_stderr']:.3f} nats.")
        lines.append(f"BDMC on {s['num_examples']} simulated images, same budget: {s['lower']:.2f} ≤ log p(x) ≤ "
                     f"{s['upper']:.2f}, gap {s['gap']:.3f} ± {s['gap_stderr']:.3f} nats ({s['time_s']:.0f} s).")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_path", help="a trained model.keras for the quality part (skipped without it)")
    parser.add_argument("--num_examples", type=int, default=1000)
    parser.add_argument("--bdmc_examples", type=int, default=100)
    parser.add_argument("--ais_steps", type=int, default=None, help="override the default budget's T")
    parser.add_argument("--quality_jit", type=int, default=0)
    parser.add_argument("--quality_batch", type=int, default=None)
    parser.add_argument("--skip_throughput", action="store_true")
    parser.add_argument("--jit", default="0,1")
    parser.add_argument("--batches", default="100,200")
    parser.add_argument("--num_chains", type=int, default=16)
    parser.add_argument("--leapfrog_steps", type=int, default=10)
    parser.add_argument("--throughput_steps", type=int, default=21)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    args.jit = common.csv_list(args.jit, lambda s: bool(int(s)))
    args.batches = common.csv_list(args.batches, int)
    env = common.environment()
    common.print_environment(env)
    results = {"environment": env}
    if not args.skip_throughput:
        results["throughput"] = throughput(args)
    if args.model_path:
        results["quality"] = quality(args)
    common.write_json(args.output, results)
    text = render(results)
    print(text)
    if args.markdown and args.output:
        with open(os.path.splitext(args.output)[0] + ".md", "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
