"""Test NLL (IWAE-k) and training wall time of tfdgm models and the hand-written IWAE.

Each model is trained for --epochs on dynamically binarised Fashion-MNIST (batch 100, Adam 1e-3,
epsilon 1e-4), then evaluated on the fixed statically binarised test set by the IWAE-k bound,
log p(x) ~ log (1/k) sum_i p(x, z_i)/q(z_i|x), with the benchmark's own estimator (k drawn in
chunks, combined by logsumexp) applied identically to every model through its log-weights.
The estimator is cross-checked against tfdgm.evaluation.iwae_nll on one tfdgm model.
Models run sequentially in this process.

Example:
  python benchmarks/quality.py --epochs 10 --eval_k 5000 --save_dir benchmarks/results/weights \
      --output benchmarks/results/quality.json --markdown
"""
import argparse
import gc
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402

DEFAULT_MODELS = "vae:1,iwae:5,iwae:50,iwae_dreg:50,handwritten:1,handwritten:50"


def parse_models(text):
    """'iwae:50,handwritten:1' -> [('iwae', 50), ('handwritten', 1)]."""
    specs = []
    for item in common.csv_list(text):
        name, _, k = item.partition(":")
        if name not in common.ALL_MODELS:
            raise ValueError(f"unknown model {name!r} in {item!r}; choose from {common.ALL_MODELS}")
        specs.append((name, int(k or 1)))
    return specs


def label(name, k):
    return f"{common.config_name(name)} K={k}"


def log_weights_fn(model, name):
    """(x [B,28,28,1], k, seed [2] int32) -> log-weights [k, B], for either kind of model."""
    if name == common.HANDWRITTEN:
        return lambda x, k, seed: model.log_weights(x, k, seed=seed)
    return lambda x, k, seed: model.log_weights(x, k, seed=seed)["log_w"]


def iwae_log_px(fn, images, k, chunk=250, batch_size=100, seed=0, jit=True):
    """Per-example IWAE-k estimates of log p(x), float64 [N].

    k samples are drawn `chunk` at a time (bounding memory to a [chunk, B, 784] tensor); the
    per-chunk logsumexps are combined by another logsumexp, so the result is exactly the IWAE-k
    bound estimate, not an average of smaller bounds.
    """
    import tensorflow as tf

    fns = {}

    def chunk_lse(x, size, key):
        if size not in fns:
            fns[size] = tf.function(lambda x, key: tf.reduce_logsumexp(fn(x, size, key), axis=0),
                                    jit_compile=jit)
        return fns[size](x, key)

    out = []
    for b, start in enumerate(range(0, len(images), batch_size)):
        x = tf.constant(images[start:start + batch_size], tf.float32)
        parts, done = [], 0
        while done < k:
            size = min(chunk, k - done)
            key = tf.constant([seed * 1000003 + b, done], tf.int32)
            parts.append(chunk_lse(x, size, key).numpy().astype(np.float64))
            done += size
        parts = np.stack(parts)
        top = parts.max(axis=0)
        out.append(top + np.log(np.exp(parts - top).sum(axis=0)) - math.log(k))
    return np.concatenate(out)


def nll_stats(log_px):

    nll = -np.asarray(log_px, np.float64)
    se = float(nll.std(ddof=1) / math.sqrt(len(nll))) if len(nll) > 1 else float("nan")
    return float(nll.mean()), se


def train_and_evaluate(name, k, args, test):
    import keras

    keras.utils.set_random_seed(args.seed)
    model = common.compile_model(common.make_model(name, k, args.precision, seed=args.seed), args.jit)
    ds = common.train_dataset(batch_size=100, seed=args.seed, repeat=args.max_steps_per_epoch is not None)

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self._t)

    if args.load_dir:
        return _evaluate_saved(model, name, k, args, test)

    timer = EpochTimer()
    print(f"\n## {label(name, k)}: training {args.epochs} epochs", flush=True)
    start = time.perf_counter()
    history = model.fit(ds, epochs=args.epochs, steps_per_epoch=args.max_steps_per_epoch,
                        verbose=args.verbose, callbacks=[timer])
    train_s = time.perf_counter() - start
    result = {
        "model": name, "k": k, "label": label(name, k), "precision": args.precision, "jit": args.jit,
        "epochs": args.epochs, "train_wall_s": train_s, "epoch_wall_s": timer.times,
        "final_train_metrics": {m: float(v[-1]) for m, v in history.history.items()},
    }
    if args.save_dir:
        os.makedirs(args.save_dir, exist_ok=True)
        stem = os.path.join(args.save_dir, f"{name}_k{k}_e{args.epochs}")
        model.save_weights(stem + ".weights.h5")
        result["weights"] = stem + ".weights.h5"
        if name != common.HANDWRITTEN:
            try:
                model.save(stem + ".keras")
                result["saved_model"] = stem + ".keras"
            except Exception as e:  # noqa: BLE001 - weights are saved anyway; report why not the model
                result["save_error"] = f"{type(e).__name__}: {e}"
                print(f"! model.save failed: {result['save_error']}", flush=True)

    print(f"## {label(name, k)}: IWAE-{args.eval_k} on {len(test)} test examples", flush=True)
    start = time.perf_counter()
    fn = log_weights_fn(model, name)
    log_px = iwae_log_px(fn, test, args.eval_k, chunk=args.eval_chunk, seed=args.seed, jit=bool(args.eval_jit))
    result["eval_wall_s"] = time.perf_counter() - start
    result["test_nll"], result["test_nll_se"] = nll_stats(log_px)
    result["test_log_px"] = [float(v) for v in log_px]  # per example, for paired comparisons
    print(f"## {label(name, k)}: train {train_s:.0f}s, test NLL {result['test_nll']:.2f} "
          f"+- {result['test_nll_se']:.2f} (eval {result['eval_wall_s']:.0f}s)", flush=True)

    if args.cross_check == f"{name}:{k}":
        result["cross_check"] = cross_check(model, fn, test[:args.cross_check_examples], args)
    del model, ds
    keras.backend.clear_session()
    gc.collect()
    return result


def cross_check(model, fn, images, args):
    """This estimator vs tfdgm.evaluation.iwae_nll on the same examples (different random draws)."""
    from tfdgm.evaluation import iwae_log_likelihoods

    mine = iwae_log_px(fn, images, args.eval_k, chunk=args.eval_chunk, seed=args.seed + 1,
                       jit=bool(args.eval_jit))
    start = time.perf_counter()
    theirs = iwae_log_likelihoods(model, images, num_samples=args.eval_k, batch_size=100, seed=args.seed + 1,
                                  verbose=False)
    theirs_s = time.perf_counter() - start
    diff = np.asarray(mine) - np.asarray(theirs)
    out = {
        "num_examples": len(images),
        "benchmark_nll": nll_stats(mine)[0],
        "tfdgm_iwae_nll": nll_stats(theirs)[0],
        "tfdgm_iwae_nll_se": nll_stats(theirs)[1],
        "mean_difference": float(diff.mean()),
        "difference_se": float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else float("nan"),
        "tfdgm_eval_wall_s": theirs_s,
    }
    print(f"## cross-check on {len(images)} examples: benchmark NLL {out['benchmark_nll']:.3f}, "
          f"tfdgm.evaluation NLL {out['tfdgm_iwae_nll']:.3f}, difference {-out['mean_difference']:.3f} "
          f"+- {out['difference_se']:.3f} (tfdgm eval {theirs_s:.0f}s)", flush=True)
    return out


def _evaluate_saved(model, name, k, args, test):
    """Evaluates weights saved by an earlier run with --save_dir (no training)."""
    path = os.path.join(args.load_dir, f"{name}_k{k}_e{args.epochs}.weights.h5")
    model.load_weights(path)
    print(f"\n## {label(name, k)}: loaded {path}", flush=True)
    start = time.perf_counter()
    log_px = iwae_log_px(log_weights_fn(model, name), test, args.eval_k, chunk=args.eval_chunk, seed=args.seed,
                         jit=bool(args.eval_jit))
    result = {"model": name, "k": k, "label": label(name, k), "epochs": args.epochs, "weights": path,
              "eval_wall_s": time.perf_counter() - start, "test_log_px": [float(v) for v in log_px]}
    result["test_nll"], result["test_nll_se"] = nll_stats(log_px)
    print(f"## {label(name, k)}: test NLL {result['test_nll']:.2f} +- {result['test_nll_se']:.2f}", flush=True)
    return result


def paired_differences(results):
    """NLL differences on the same test examples, with the standard error of the paired mean.

    The examples are shared, so the spread across images cancels; these errors are the ones
    that decide whether two models differ, not the per-model ± above.
    """
    by_label = {r["label"]: np.asarray(r["test_log_px"]) for r in results if "test_log_px" in r}
    pairs = []
    vae = next((lbl for lbl in by_label if lbl.startswith("tfdgm vae")), None)
    for r in results:
        lbl = r["label"]
        refs = [vae] if vae and lbl != vae else []
        if r["model"] != common.HANDWRITTEN:
            refs += [h for h in by_label if h.startswith("hand-written") and h.endswith(f"K={r['k']}")]
        for ref in refs:
            if lbl in by_label and ref in by_label:
                diff = by_label[lbl] - by_label[ref]  # log p difference = NLL(ref) - NLL(lbl): > 0, lbl better
                se = diff.std(ddof=1) / math.sqrt(len(diff))
                pairs.append((lbl, ref, float(diff.mean()), float(se)))
    return pairs


def render(results, args, markdown):
    header = ["model", "K", "epochs", "train wall (s)", "s/epoch (median)",
              f"test NLL, IWAE-{args.eval_k} (nats)", "eval wall (s)"]
    rows = [[common.config_name(r["model"]), r["k"], r["epochs"], f"{r.get('train_wall_s', float('nan')):.0f}",
             f"{common.median(r.get('epoch_wall_s', [float('nan')])):.1f}",
             f"{r['test_nll']:.2f} ± {r['test_nll_se']:.2f}",
             f"{r['eval_wall_s']:.0f}"] for r in results]
    if markdown:
        return common.markdown_table(header, rows)
    rows = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS,
                        help=f"comma-separated model:K, models from {common.ALL_MODELS}")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max_steps_per_epoch", type=int, default=None, help="cap steps (smoke tests)")
    parser.add_argument("--eval_k", type=int, default=5000, help="k of the IWAE-k test NLL")
    parser.add_argument("--eval_chunk", type=int, default=250, help="samples drawn per evaluation pass")
    parser.add_argument("--eval_jit", type=int, default=0,
                        help="XLA-compile the evaluation passes (on CPU XLA was 1.7-4x slower here)")
    parser.add_argument("--num_test_examples", type=int, default=10000)
    parser.add_argument("--cross_check", default="iwae:5",
                        help="model:K whose NLL is also computed with tfdgm.evaluation ('none' to skip)")
    parser.add_argument("--cross_check_examples", type=int, default=1000)
    parser.add_argument("--jit", type=int, default=1, help="jit_compile for training")
    parser.add_argument("--precision", default="float32", help="tfdgm precision (hand-written: float32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save_dir", default=None, help="save trained weights here")
    parser.add_argument("--load_dir", default=None,
                        help="skip training: evaluate the weights an earlier --save_dir run wrote here")
    parser.add_argument("--verbose", type=int, default=2, help="Keras fit verbosity")
    parser.add_argument("--output", default=None, help="write results to this JSON file")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    specs = parse_models(args.models)

    env = common.environment()
    common.print_environment(env)
    test = common.static_test_set(seed=0)[:args.num_test_examples]
    results = []
    t0 = time.perf_counter()
    for name, k in specs:
        results.append(train_and_evaluate(name, k, args, test))
        common.write_json(args.output, {"environment": env, "settings": vars(args), "results": results})
    print()
    print(render(results, args, args.markdown))
    for r in results:
        if "cross_check" in r:
            c = r["cross_check"]
            print(f"\nCross-check ({r['label']}, {c['num_examples']} examples, IWAE-{args.eval_k}): "
                  f"this estimator {c['benchmark_nll']:.3f} vs tfdgm.evaluation.iwae_nll "
                  f"{c['tfdgm_iwae_nll']:.3f} nats (difference {c['benchmark_nll'] - c['tfdgm_iwae_nll']:+.3f} "
                  f"± {c['difference_se']:.3f})")
    pairs = paired_differences(results)
    if pairs:
        print()
        print(common.markdown_table(["model", "compared with", "NLL(other) - NLL(model), nats", "paired s.e."],
                                    [[a, b, f"{d:+.3f}", f"{se:.3f}"] for a, b, d, se in pairs]))
    print(f"\n# total wall time {(time.perf_counter() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
