"""Time from `tfdgm.from_preset(name)` to the first sample image on disk, in fresh processes.

    python benchmarks/preset_latency.py [--preset NAME] [--repeats 3]

Each repeat is a new Python process (nothing cached in memory): it reports the import time of
tfdgm (TensorFlow's start-up) and, separately, from_preset + model.sample(64) + the PNG write,
which is what the zoo's target (< 5 s on this CPU) is about. Results: benchmarks/results/preset_latency.json.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import tfdgm
from tfdgm import callbacks
t1 = time.perf_counter()
model = tfdgm.from_preset(sys.argv[1])
t2 = time.perf_counter()
images = model.sample(64, seed=0)
callbacks.save_image_grid(images.numpy(), sys.argv[2], ncols=8)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "from_preset_s": t2 - t1, "sample_and_png_s": t3 - t2,
                  "preset_to_image_s": t3 - t1}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", action="append")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    from tfdgm import zoo

    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    results = {"load_average_before": os.getloadavg(), "runs": {}}
    for name in args.preset or sorted(zoo.load_index()):
        runs = []
        for i in range(args.repeats):
            out = subprocess.run([sys.executable, "-c", CHILD, name, f"/tmp/preset-latency-{name}.png"], env=env,
                                 capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        median = sorted(r["preset_to_image_s"] for r in runs)[len(runs) // 2]
        results["runs"][name] = {"runs": runs, "median_preset_to_image_s": median}
        print(f"{name}: from_preset -> first image {median:.2f} s (median of {len(runs)}; import "
              f"{sorted(r['import_s'] for r in runs)[len(runs) // 2]:.1f} s)", flush=True)
    results["load_average_after"] = os.getloadavg()
    with open(os.path.join(ROOT, "benchmarks", "results", "preset_latency.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
