"""Why a tfdgm fit keeps fewer than 2 of 2 cores busy, and which lever fills them (issue #14, item 1).

Each lever is a fresh process running the Burda-MLP VAE (K = 1) or IWAE-K; all of one K run in
lockstep (benchmarks/lockstep.py), --repeats processes per lever, so the ratios are side by side.
For every timed window the child records examples/s, cores busy (process CPU-s per wall-s) and the
CPU time of each of its threads by name, which shows where the work runs: TensorFlow's intra-op
pool (Eigen threads, which inherit the name "python"), its inter-op pool ("tf_Compute"), tf.data.

Levers (combine with "+"): default (tfdgm's compile defaults: XLA, 10 steps per execution,
towers="auto"), towers1 (compile(towers=1)), graph (jit_compile=False), intra1 (one intra-op thread:
tf.config.threading, before TensorFlow starts), spe50 (50 steps per execution), bf16
(precision="mixed_bfloat16": bf16 matmuls, float32 variables and log-weights), and XLA's CPU flags
(set in XLA_FLAGS before TensorFlow starts): onednn (--xla_cpu_use_onednn, oneDNN's matmuls inside XLA
programs), fastmath (--xla_cpu_enable_fast_math), xnnpack (--xla_cpu_use_xnnpack). "stock" runs with
XLA_FLAGS empty, so tfdgm's own CPU defaults are switched off.

  python benchmarks/cores.py --ks 5 --levers default,towers1,graph,graph+towers1,graph+intra1 --repeats 2
"""
import argparse
import collections
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import lockstep  # noqa: E402

XLA_LEVERS = {"onednn": "--xla_cpu_use_onednn=true", "fastmath": "--xla_cpu_enable_fast_math=true",
              "xnnpack": "--xla_cpu_use_xnnpack=true"}
LEVERS = ("default", "stock", "towers1", "graph", "intra1", "spe50", "bf16") + tuple(XLA_LEVERS)


def thread_cpu_s():
    """{thread name: CPU seconds} of this process."""
    out = collections.Counter()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")].rstrip("0123456789_-") or "?"
        fields = stat[stat.rindex(")") + 2:].split()
        out[name] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def child(args):
    levers = set(args.lever.split("+"))
    if "stock" in levers or levers & set(XLA_LEVERS):
        os.environ["XLA_FLAGS"] = " ".join(XLA_LEVERS[lever] for lever in sorted(levers & set(XLA_LEVERS)))
    import tensorflow as tf

    if "intra1" in levers:
        tf.config.threading.set_intra_op_parallelism_threads(1)
    import keras

    tf.random.set_seed(0)
    model = common.make_model("vae" if args.k == 1 else "iwae", args.k,
                              precision="mixed_bfloat16" if "bf16" in levers else "float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-4), jit_compile="graph" not in levers,
                  steps_per_execution=50 if "spe50" in levers else 10,
                  towers=1 if "towers1" in levers else "auto")
    ds = common.train_dataset(batch_size=100, seed=0, repeat=True)
    turn = lockstep.Turnstile.from_env()

    class Window(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if turn:
                turn.wait()
            t = os.times()
            self.start, self.cpu, self.threads = time.perf_counter(), t.user + t.system, thread_cpu_s()

        def on_epoch_end(self, epoch, logs=None):
            wall, t = time.perf_counter() - self.start, os.times()
            threads = thread_cpu_s()
            record = {"examples_per_s": args.steps * 100 / wall, "cores_busy": (t.user + t.system - self.cpu) / wall,
                      "thread_cores": {n: (threads[n] - self.threads.get(n, 0)) / wall for n in threads
                                       if threads[n] - self.threads.get(n, 0) > 0.01 * wall}}
            if turn:
                turn.done(record)
            else:
                print(json.dumps(record), flush=True)

    model.fit(ds, epochs=1, steps_per_epoch=2 * model.steps_per_execution, verbose=0)  # tracing, compiling
    model.fit(ds, epochs=args.windows, steps_per_epoch=args.steps, verbose=0, callbacks=[Window()])
    print("towers", model.towers, flush=True)


def parent(args):
    env = common.environment()
    common.print_environment(env)
    rows = []
    for k in args.ks:
        steps = args.steps or {1: 300, 5: 100}.get(k, 20)
        commands = {f"{lever} #{r}": [sys.executable, os.path.abspath(__file__), "--child", "--lever", lever,
                                      "--k", str(k), "--steps", str(steps), "--windows", str(args.windows)]
                    for r in range(args.repeats) for lever in args.levers}
        print(f"# K={k}: {len(commands)} processes in lockstep, {args.windows} windows of {steps} steps", flush=True)
        results = lockstep.run(commands, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), log=lambda line: None)
        for lever in args.levers:
            mine = [results[f"{lever} #{r}"] for r in range(args.repeats)]
            errors = [m["error"] for m in mine if m["error"]]
            if errors:
                print(f"! {lever} K={k} failed: {errors[0]}", flush=True)
                continue
            windows = [w for m in mine for w in m["windows"]]
            quiet = [w for w in windows if not w["shared"]] or windows
            threads = collections.defaultdict(list)
            for w in quiet:
                for name, cores in w["thread_cores"].items():
                    threads[name].append(cores)
            rows.append({"k": k, "lever": lever, "windows": len(windows), "shared": sum(w["shared"] for w in windows),
                         "examples_per_s": statistics.median(w["examples_per_s"] for w in quiet),
                         "cores_busy": statistics.median(w["cores_busy"] for w in quiet),
                         "foreign_cores": statistics.median(w["foreign_cores"] for w in windows),
                         "towers": next((line.split()[1] for m in mine for line in m["stdout"]
                                         if line.startswith("towers ")), "?"),
                         "thread_cores": {n: statistics.median(v) for n, v in sorted(threads.items())}})
        base = next((r for r in rows if r["k"] == k and r["lever"] == args.levers[0]), None)
        for r in rows:
            if r["k"] == k and base:
                r["ratio"] = r["examples_per_s"] / base["examples_per_s"]
    table = common.markdown_table(
        ["K", "lever", "towers", "examples/s (median)", f"÷ {args.levers[0]}", "cores busy", "busy threads (cores)",
         "shared windows", "foreign cores"],
        [[r["k"], r["lever"], r["towers"], f"{r['examples_per_s']:,.0f}", f"{r.get('ratio', float('nan')):.2f}",
          f"{r['cores_busy']:.2f}", ", ".join(f"{n} {c:.2f}" for n, c in r["thread_cores"].items() if c >= 0.05),
          f"{r['shared']}/{r['windows']}", f"{r['foreign_cores']:.2f}"] for r in rows])
    print(table)
    if args.output:
        common.write_json(args.output, {"environment": env, "settings": vars(args), "rows": rows})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lever", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, default=5, help=argparse.SUPPRESS)
    parser.add_argument("--ks", default="1,5,50")
    parser.add_argument("--levers", default="default,towers1,graph,graph+towers1,graph+intra1")
    parser.add_argument("--steps", type=int, default=0, help="steps per window (0: 300 at K=1, 100 at K=5, else 20)")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="processes per lever")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    if args.child:
        return child(args)
    args.ks = common.csv_list(args.ks, int)
    args.levers = common.csv_list(args.levers)
    for lever in args.levers:
        unknown = set(lever.split("+")) - set(LEVERS)
        if unknown:
            parser.error(f"unknown lever(s) {sorted(unknown)} in {lever!r}; choose from {LEVERS}")
    parent(args)


if __name__ == "__main__":
    main()
