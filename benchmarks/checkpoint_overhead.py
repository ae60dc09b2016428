"""Issue #11 target: examples/s with the training state saved every 100 steps, the guards on and
first-batch validation of a raw tf.data pipeline, within 3% of the same run without any of them.

    python benchmarks/checkpoint_overhead.py --steps 1000 --repeats 3 \
        --output benchmarks/results/checkpoint_overhead.json

Each measurement is a fresh process (modes round-robin); VAE, Burda MLP, batch 100, XLA, 10 steps
per execution, dynamically binarised Fashion-MNIST; the first fit (compilation) is not timed.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import common

MODES = ("off", "on")


def worker(mode, steps, warmup):
    import keras

    from tfdgm import callbacks as cbs
    from tfdgm import models

    model = models.VAE(input_shape=(28, 28, 1), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-4), jit_compile=True, steps_per_execution=10)
    model.fit(common.train_dataset(), steps_per_epoch=warmup, epochs=1, verbose=0)  # compile
    with tempfile.TemporaryDirectory() as directory:
        callbacks = []
        data = common.train_dataset(seed=1)
        if mode == "on":
            guards = [cbs.NaNGuard(print_fn=lambda m: None), cbs.DivergenceGuard(print_fn=lambda m: None)]
            callbacks = guards + [cbs.TrainingCheckpoint(directory, every_n_steps=100, every_n_epochs=1,
                                                         guards=guards, print_fn=lambda m: None)]
            data = data.map(lambda x: x)  # a raw pipeline: fit validates its first batch
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=callbacks, check_data=mode == "on")
        elapsed = time.perf_counter() - start
        saved = len([f for f in os.listdir(directory) if f.endswith(".npz")])
    return {"mode": mode, "steps": steps, "examples_per_s": steps * 100 / elapsed, "seconds": elapsed,
            "state_files_kept": saved}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=None)
    parser.add_argument("--worker", choices=MODES, default=None)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.warmup)))
        return
    runs = []
    for repeat in range(args.repeats):
        for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
            out = subprocess.run([sys.executable, __file__, "--worker", mode, "--steps", str(args.steps),
                                  "--warmup", str(args.warmup)], capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(runs[-1], flush=True)
    medians = {m: common.median([r["examples_per_s"] for r in runs if r["mode"] == m]) for m in MODES}
    result = {"runs": runs, "median_examples_per_s": medians, "ratio_on_over_off": medians["on"] / medians["off"],
              "environment": common.environment(), "args": vars(args)}
    print(f"examples/s off {medians['off']:.0f}, on {medians['on']:.0f}, on/off {result['ratio_on_over_off']:.3f}")
    if args.output:
        common.write_json(args.output, result)


if __name__ == "__main__":
    main()
