"""Throughput of tfdgm RWS K=5 (batch 100) against Pyro's ReweightedWakeSleep K=5 (a plate of 100, and
batch 1 = per-image RWS) on the same SBN-200 and data, in interleaved windows (benchmarks/lockstep.py).

Every (peer, threads, repeat) is its own fresh process: rws_peer.py --mode throughput (tfdgm's venv)
or pyro_rws.py --mode throughput (the peers' venv). All warm up together (untimed: XLA compiles,
Pyro's first steps), then take turns window by window, the order rotating each round, so a drift
of the machine's speed hits every peer alike. A window during which the rest of the machine used
more than --max_foreign_cores cores is marked shared and left out of the medians (if a peer has
unshared windows). Pyro runs at 1 and at 2 threads (1 was its better setting on a loaded CPU; on a
quiet one 2 may be); the table reports both, and the ratio uses Pyro's faster setting.

  python benchmarks/peers/rws_lockstep.py --out benchmarks/results/rws_peers_lockstep.json
  python benchmarks/peers/rws_lockstep.py --tiny --out /tmp/x.json        # a 1-minute smoke run

Writes the training stream (run.py's bit-packed batches of tfdgm's pipeline) first if --stream
does not exist. Prints a markdown table; the JSON has every window.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
import lockstep  # noqa: E402  (no TensorFlow / PyTorch in this process)

PEER_PY = os.path.join(ROOT, "benchmarks", "peers", ".venv", "bin", "python")
if not os.path.exists(PEER_PY):  # a worktree has no venv of its own: the main checkout's
    PEER_PY = "/work/main/benchmarks/peers/.venv/bin/python"
PREFIX = "PEER_RESULT "


def commands(args):
    """{label: argv}: tfdgm x repeats; Pyro plate-100 and batch-1 x threads x repeats."""
    tf = [sys.executable, os.path.join(HERE, "rws_peer.py"), "--mode", "throughput", "--stream", args.stream,
          "--k", "5", "--threads", "2"]
    pyro = [PEER_PY, os.path.join(HERE, "pyro_rws.py"), "--mode", "throughput", "--stream", args.stream, "--k", "5"]
    out = {}
    for r in range(args.repeats):
        out[f"tfdgm RWS K=5 batch 100, 2 threads #{r}"] = tf + [
            "--warmup_steps", "20", "--steps", str(args.tfdgm_steps), "--chunks", str(args.chunks)]
        for threads in (1, 2):
            out[f"Pyro RWS K=5 plate 100, {threads} threads #{r}"] = pyro + [
                "--batch_size", "100", "--threads", str(threads), "--warmup_steps", "3",
                "--steps", str(args.pyro100_steps), "--chunks", str(args.chunks)]
            out[f"Pyro RWS K=5 batch 1, {threads} threads #{r}"] = pyro + [
                "--batch_size", "1", "--threads", str(threads), "--warmup_steps", "20",
                "--steps", str(args.pyro1_steps), "--chunks", str(args.chunks)]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", default="/tmp/rws_peer/stream_s0_600.npz")
    parser.add_argument("--out", required=True)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--chunks", type=int, default=6, help="timed windows per process")
    parser.add_argument("--tfdgm_steps", type=int, default=200, help="steps of batch 100 per window")
    parser.add_argument("--pyro100_steps", type=int, default=20, help="steps of a plate of 100 per window")
    parser.add_argument("--pyro1_steps", type=int, default=100, help="images (steps of batch 1) per window")
    parser.add_argument("--max_foreign_cores", type=float, default=0.15)
    parser.add_argument("--tiny", action="store_true", help="smoke test: 2 short windows each")
    args = parser.parse_args()
    if args.tiny:
        args.chunks, args.tfdgm_steps, args.pyro100_steps, args.pyro1_steps = 2, 20, 2, 10
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start, load0 = time.time(), os.getloadavg()
    if not os.path.exists(args.stream):
        subprocess.run([sys.executable, os.path.join(HERE, "tf_child.py"), "--mode", "data", "--stream", args.stream,
                        "--stream_steps", "600", "--seed", "0"], check=True, env=env, stdout=subprocess.DEVNULL)
    cmds = commands(args)
    print(f"# {len(cmds)} processes in lockstep, {args.chunks} windows each; load {load0}", flush=True)
    results = lockstep.run(cmds, env=env, max_foreign_cores=args.max_foreign_cores)
    rows = {}
    for label, res in results.items():
        final = [json.loads(line[len(PREFIX):]) for line in res["stdout"] if line.startswith(PREFIX)]
        windows = res["windows"]
        quiet = [w for w in windows if not w["shared"]] or windows
        rows[label] = {"error": res["error"], "final": final[-1] if final else None, "windows": windows,
                       "shared_windows": sum(w["shared"] for w in windows),
                       "median_examples_per_s": statistics.median(w["examples_per_s"] for w in quiet) if quiet else None,
                       "median_cores_busy": statistics.median(w["cores_busy"] for w in quiet) if quiet else None,
                       "foreign_cores_max": max((w["foreign_cores"] for w in windows), default=None)}
    meta = {"argv": sys.argv, "wall_s": time.time() - start, "load_before": load0, "load_after": os.getloadavg()}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "runs": rows}, f, indent=1)
    print("| process | examples/s (median of unshared windows) | windows (shared) | cores busy | max foreign cores |")
    print("|---|---|---|---|---|")
    for label, row in rows.items():
        if row["error"]:
            print(f"| {label} | FAILED: {row['error'][:200]} | | | |")
            continue
        print(f"| {label} | {row['median_examples_per_s']:,.1f} | {len(row['windows'])} ({row['shared_windows']}) | "
              f"{row['median_cores_busy']:.2f} | {row['foreign_cores_max']:.2f} |")
    best = lambda key: max((r["median_examples_per_s"] or 0 for l, r in rows.items() if key in l and not r["error"]),
                           default=0)
    tf_, p100, p1 = best("tfdgm"), best("plate 100"), best("batch 1,")
    if tf_ and p100 and p1:
        print(f"tfdgm / Pyro plate-100 (faster thread setting): {tf_ / p100:.2f}x; tfdgm / Pyro batch 1: {tf_ / p1:.1f}x; "
              f"Pyro plate-100 / batch 1: {p100 / p1:.1f}x")
    print(f"# wall {meta['wall_s']:.0f} s, load after {meta['load_after']}")


if __name__ == "__main__":
    main()
