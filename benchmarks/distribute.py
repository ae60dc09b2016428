"""Training throughput under tf.distribute: 1 device vs 2 virtual CPU devices vs 2 local workers.

The machine has 2 cores, so no speed-up is expected: the point is the overhead of each strategy.
Every mode runs in fresh subprocesses, round-robin over --repeats; each child trains IWAE (Burda MLP,
K=--k, global batch 100) for a warm-up fit and then --chunks epochs of --steps steps, timing each
epoch. Modes:
  one         default strategy with tfdgm's defaults (XLA, 10 steps per execution);
  one_plain   default strategy without XLA, 1 step per execution: what multi-replica runs get,
              since Keras 3.15 supports neither there (see README, distributed training);
  mirrored2   MirroredStrategy over 2 logical CPU devices of one process;
  workers2    MultiWorkerMirroredStrategy, 2 processes on 127.0.0.1 (TF_CONFIG), one CPU thread pool each.

Example:
  python benchmarks/distribute.py --steps 100 --chunks 3 --repeats 3 --output benchmarks/results/distribute.json
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

MODES = ("one", "one_plain", "mirrored2", "workers2")
RESULT_PREFIX = "DISTRIBUTE_RESULT "


def child(args):
    import tensorflow as tf

    if args.mode == "mirrored2":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from tfdgm import distribute, models

    strategy = {"one": "default", "one_plain": "default", "workers2": "multiworker"}.get(args.mode)
    strategy = (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if args.mode == "mirrored2"
                else distribute.make_strategy(strategy))
    data = common.train_dataset(batch_size=100, seed=0, repeat=True)
    with strategy.scope():
        model = models.IWAE(num_samples=args.k, seed=0)
        fast = args.mode == "one"
        model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-4), jit_compile=fast,
                      steps_per_execution=10 if fast else 1)
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(data, epochs=1, steps_per_epoch=20, verbose=0)  # warm-up: tracing, compilation
    model.fit(data, epochs=args.chunks, steps_per_epoch=args.steps, verbose=0, callbacks=[Timer()])
    rates = [100 * args.steps / t for t in times]
    print(RESULT_PREFIX + json.dumps({"mode": args.mode, "examples_per_s": rates,
                                      "replicas": int(strategy.num_replicas_in_sync)}), flush=True)


def run_mode(mode, args):
    """Runs one mode (two processes for workers2) and returns the chief's result."""
    command = [sys.executable, os.path.abspath(__file__), "--child", "--mode", mode, "--k", str(args.k),
               "--steps", str(args.steps), "--chunks", str(args.chunks)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=common.ROOT)
    env.pop("TF_CONFIG", None)
    envs = [env]
    if mode == "workers2":
        from tfdgm.distribute import free_local_ports

        ports = free_local_ports(2)
        envs = [dict(env, TF_CONFIG=json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                                "task": {"type": "worker", "index": i}})) for i in range(2)]
    processes = [subprocess.Popen(command, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for e in envs]
    outputs = [p.communicate(timeout=1800) for p in processes]
    for p, (out, err) in zip(processes, outputs):
        if p.returncode != 0:
            raise RuntimeError(f"{mode} failed:\n{err[-3000:]}")
    line = [l for l in outputs[0][0].splitlines() if l.startswith(RESULT_PREFIX)][0]
    return json.loads(line[len(RESULT_PREFIX):])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--mode", default="one", choices=MODES)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output")
    args = parser.parse_args()
    if args.child:
        return child(args)
    env = common.environment()
    common.print_environment(env)
    modes = common.csv_list(args.modes)
    rates = {m: [] for m in modes}
    replicas = {}
    for r in range(args.repeats):
        for mode in modes[r % len(modes):] + modes[: r % len(modes)]:  # rotate the order every repeat
            result = run_mode(mode, args)
            rates[mode] += result["examples_per_s"]
            replicas[mode] = result["replicas"]
            print(f"repeat {r} {mode}: {[round(x) for x in result['examples_per_s']]}", flush=True)
    base = common.median(rates[modes[0]])
    rows = [[m, replicas[m], f"{common.median(rates[m]):,.0f}", f"{common.median(rates[m]) / base:.2f}"] for m in modes]
    table = common.markdown_table(["mode", "replicas", "examples/s (median)", f"vs {modes[0]}"], rows)
    print(table)
    common.write_json(args.output, {"environment": env, "k": args.k, "steps": args.steps, "rates": rates,
                                    "replicas": replicas, "table": table})


if __name__ == "__main__":
    main()
