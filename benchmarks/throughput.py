"""Training throughput (examples/s) and peak memory of tfdgm models vs a hand-written Keras IWAE.

Method: every (configuration, repeat) runs in a fresh subprocess (`--child`), so peak RSS
(VmHWM of /proc/self/status; getrusage ru_maxrss is recorded too) is per configuration and no state is shared. The child builds the model,
compiles it, runs a warm-up `fit` (tracing / XLA compilation, excluded from timing), then one
`fit` of `--chunks` epochs of `--steps` steps (batch 100, dynamically binarised Fashion-MNIST);
a callback times each epoch (wall clock and process CPU time). The parent runs the repeats
round-robin over all configurations, rotating the order every repeat, and reports the median
examples/s over all timed chunks of all repeats.

Comparing source trees (e.g. a change against the commit before it, side by side in one run):
`--trees new=.,old=/tmp/old` runs every tfdgm configuration once per tree, each child with that
tree first on PYTHONPATH (a `git worktree add /tmp/old HEAD~1` gives the old tree).

Example:
  python benchmarks/throughput.py --ks 1,5,50 --steps 200 --chunks 3 --repeats 3 \
      --output benchmarks/results/throughput.json --markdown
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import lockstep  # noqa: E402

RESULT_PREFIX = "THROUGHPUT_RESULT "


def _rss_mb():
    """Peak resident set size of this process image so far, MB.

    VmHWM from /proc/self/status: unlike getrusage's ru_maxrss, which Linux carries over
    fork+exec (a child reports at least its parent's peak), it covers only this process.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return _ru_maxrss_mb()


def _ru_maxrss_mb():
    """getrusage ru_maxrss in MB (Linux reports KB); a floor of the parent's peak, see _rss_mb."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_child(cfg, steps, chunks, warmup_steps, batch_size):
    """Measures one configuration in this process; returns a dict (printed as JSON)."""
    rss_start = _rss_mb()
    import tensorflow as tf

    tf.random.set_seed(0)
    rss_imported = _rss_mb()
    ds = common.train_dataset(batch_size=batch_size, seed=0, repeat=True)
    model = common.compile_model(common.make_model(cfg["model"], cfg["k"], cfg["precision"]), cfg["jit"],
                                 cfg.get("spe"))
    rss_built = _rss_mb()

    start = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=warmup_steps, verbose=0)
    warmup_s = time.perf_counter() - start
    timer = lockstep.epoch_window_timer(steps * batch_size)  # takes turns when run by benchmarks/lockstep.py
    history = model.fit(ds, epochs=chunks, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    loss = float(history.history["loss"][-1])
    import tfdgm

    return {
        **cfg,
        "tfdgm_path": os.path.dirname(tfdgm.__file__),
        "steps": steps,
        "batch_size": batch_size,
        "examples_per_s": [steps * batch_size / w for w in timer.wall],
        "epoch_wall_s": timer.wall,
        # CPU seconds per wall second: ~1 means the fit ran on one core, ~2 on two.
        "cores_busy": [c / w for c, w in zip(timer.cpu, timer.wall)],
        "warmup_s": warmup_s,
        "final_loss": loss,
        "rss_start_mb": rss_start,
        "rss_after_import_mb": rss_imported,
        "rss_after_build_mb": rss_built,
        "peak_rss_mb": _rss_mb(),
        "ru_maxrss_mb": _ru_maxrss_mb(),
    }


def configurations(args):
    """All configurations, in a fixed base order."""
    cfgs = []
    for model in args.models:
        precisions = ["float32"] if model == common.HANDWRITTEN else args.precisions
        ks = args.vae_ks if model == "vae" else args.ks
        spes = args.handwritten_spe if model == common.HANDWRITTEN else args.spe
        for precision in precisions:
            for k in ks:
                for jit in args.jit:
                    for spe in spes:
                        for tree in (["."] if model == common.HANDWRITTEN else args.trees):
                            cfg = {"model": model, "k": k, "jit": jit, "precision": precision, "spe": spe}
                            cfgs.append(dict(cfg, tree=tree) if len(args.trees) > 1 else cfg)
    return cfgs


def cfg_key(cfg):
    return (cfg["model"], cfg["precision"], cfg["k"], cfg["jit"], cfg.get("spe"), cfg.get("tree"))


def run_parent(args):
    env = common.environment()
    common.print_environment(env)
    cfgs = configurations(args)
    print(f"# {len(cfgs)} configurations x {args.repeats} repeats, {args.chunks} chunks of {args.steps} "
          f"steps (batch {args.batch_size}) each, after {args.warmup_steps} warm-up steps", flush=True)
    runs = []
    t0 = time.perf_counter()
    for repeat in range(args.repeats):
        shift = (repeat * max(1, len(cfgs) // args.repeats)) % len(cfgs)
        order = cfgs[shift:] + cfgs[:shift]
        if repeat % 2:
            order = order[::-1]
        for cfg in order:
            cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(cfg),
                   "--steps", str(args.steps), "--chunks", str(args.chunks),
                   "--warmup_steps", str(args.warmup_steps), "--batch_size", str(args.batch_size)]
            started = time.perf_counter()
            env = dict(os.environ)
            if cfg.get("tree"):
                path = os.path.abspath(args.tree_paths[cfg["tree"]])
                env["PYTHONPATH"] = path + os.pathsep + env.get("PYTHONPATH", "")
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.child_timeout, env=env)
            lines = [l for l in proc.stdout.splitlines() if l.startswith(RESULT_PREFIX)]
            if proc.returncode or not lines:
                print(f"! {cfg} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}", flush=True)
                runs.append({**cfg, "repeat": repeat, "error": proc.stderr[-3000:]})
                continue
            result = json.loads(lines[-1][len(RESULT_PREFIX):])
            result.update(repeat=repeat, process_wall_s=time.perf_counter() - started)
            runs.append(result)
            rates = ", ".join(f"{r:.0f}" for r in result["examples_per_s"])
            busy = ", ".join(f"{c:.2f}" for c in result["cores_busy"])
            print(f"[{repeat}] {_name(cfg):26s} K={cfg['k']:<3d} "
                  f"jit={cfg['jit']} spe={cfg.get('spe')} ex/s [{rates}] cores [{busy}] peak {result['peak_rss_mb']:.0f} MB "
                  f"(warm-up {result['warmup_s']:.1f}s, process {result['process_wall_s']:.1f}s)", flush=True)
    summary = summarize(cfgs, runs)
    out = {"environment": env, "settings": vars(args), "total_wall_s": time.perf_counter() - t0,
           "summary": summary, "runs": runs}
    common.write_json(args.output, out)
    print()
    print(render_markdown(summary) if args.markdown else render_text(summary))
    print(f"\n# total wall time {out['total_wall_s'] / 60:.1f} min")


def summarize(cfgs, runs):
    """Median examples/s per configuration and the ratio to the faster hand-written variant."""
    rows = []
    for cfg in cfgs:
        mine = [r for r in runs if cfg_key(r) == cfg_key(cfg) and "error" not in r]
        rates = [x for r in mine for x in r["examples_per_s"]]
        rows.append({
            **cfg,
            "examples_per_s_median": common.median(rates),
            "examples_per_s_min": min(rates) if rates else None,
            "examples_per_s_max": max(rates) if rates else None,
            "repeat_medians": [common.median(r["examples_per_s"]) for r in mine],
            "cores_busy_median": common.median([c for r in mine for c in r["cores_busy"]]),
            "peak_rss_mb_median": common.median([r["peak_rss_mb"] for r in mine]),
            "peak_over_import_mb_median": common.median([r["peak_rss_mb"] - r["rss_after_import_mb"] for r in mine]),
            "num_runs": len(mine),
        })
    for row in rows:
        hand = [h["examples_per_s_median"] for h in rows
                if h["model"] == common.HANDWRITTEN and h["k"] == row["k"] and h["examples_per_s_median"]]
        best = max(hand) if hand else None
        rate = row["examples_per_s_median"]
        row["ratio_vs_best_handwritten"] = rate / best if rate and best else None
    return rows


def _name(cfg):
    name = common.config_name(cfg["model"], cfg["precision"])
    return f"{name} [{cfg['tree']}]" if cfg.get("tree") else name


def _fmt(x, spec):
    return "n/a" if x is None else format(x, spec)


def _table_rows(summary):
    return [[_name(r), r["k"], "jit" if r["jit"] else "no jit",
             "default" if r.get("spe") is None else r["spe"],
             _fmt(r["examples_per_s_median"], ",.0f"),
             _fmt(r["ratio_vs_best_handwritten"], ".2f"),
             _fmt(r["peak_rss_mb_median"], ".0f"), _fmt(r["peak_over_import_mb_median"], ".0f"),
             _fmt(r["cores_busy_median"], ".2f")]
            for r in sorted(summary, key=lambda r: (r["k"], r["model"] != common.HANDWRITTEN, r["model"],
                                                   r["precision"], -r["jit"], -(r.get("spe") or 0)))]


HEADER = ["config", "K", "mode", "steps/execution", "examples/s (median)", "vs best hand-written", "peak RSS MB",
          "peak - RSS after import MB", "cores busy"]


def render_markdown(summary):
    return common.markdown_table(HEADER, _table_rows(summary))


def render_text(summary):
    rows = [HEADER] + [[str(c) for c in row] for row in _table_rows(summary)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(common.ALL_MODELS),
                        help=f"comma-separated subset of {common.ALL_MODELS}")
    parser.add_argument("--ks", default="1,5,50", help="K values (importance samples)")
    parser.add_argument("--vae_ks", default="1", help="K values for the VAE (multi-sample ELBO)")
    parser.add_argument("--jit", default="1,0", help="jit_compile values to compare (1 and/or 0)")
    parser.add_argument("--spe", default="0", help="tfdgm steps_per_execution values (0 = the model's default)")
    parser.add_argument("--handwritten_spe", default="0",
                        help="hand-written steps_per_execution values (0 = Keras's default, 1)")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16", help="tfdgm precisions")
    parser.add_argument("--steps", type=int, default=200, help="training steps per timed chunk")
    parser.add_argument("--chunks", type=int, default=3, help="timed chunks (epochs) per process")
    parser.add_argument("--warmup_steps", type=int, default=20, help="untimed steps (compile) first")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per configuration")
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--child_timeout", type=int, default=3600, help="seconds before a child is killed")
    parser.add_argument("--trees", default="", help="label=path,... source trees of tfdgm to compare (default: the installed one)")
    parser.add_argument("--output", default=None, help="write all results to this JSON file")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = run_child(json.loads(args.child), args.steps, args.chunks, args.warmup_steps, args.batch_size)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return
    args.models = common.csv_list(args.models)
    unknown = set(args.models) - set(common.ALL_MODELS)
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}; choose from {common.ALL_MODELS}")
    args.ks = common.csv_list(args.ks, int)
    args.vae_ks = common.csv_list(args.vae_ks, int)
    args.jit = common.csv_list(args.jit, int)
    args.precisions = common.csv_list(args.precisions)
    args.spe = [v or None for v in common.csv_list(args.spe, int)]
    args.handwritten_spe = [v or None for v in common.csv_list(args.handwritten_spe, int)]
    pairs = [t.split("=", 1) for t in common.csv_list(args.trees)]
    if any(len(p) != 2 for p in pairs):
        parser.error(f"--trees wants label=path pairs, got {args.trees!r}")
    args.tree_paths = dict(pairs)
    args.trees = [label for label, _ in pairs] or ["."]
    run_parent(args)


if __name__ == "__main__":
    main()
