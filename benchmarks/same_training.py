"""Do two source trees of tfdgm train bit-identically? (A refactor's check that quality rows still hold.)

Each tree trains every model for 2 epochs on 200 fixed binary 28x28 images (batch 50, Adam(1e-3,
eps 1e-4), graph mode), seeded as the CLI seeds a run (`keras.utils.set_random_seed(0)`, model
seed 0), in a fresh process with that tree first on sys.path; the final weights are compared.
Identical weights mean identical training, so every quality figure measured with the old tree
holds for the new one.

Example:
  git worktree add /tmp/old HEAD~1
  python benchmarks/same_training.py --trees new=.,old=/tmp/old
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

MODELS = {"vae": {}, "iwae": {"num_samples": 5}, "iwae_dreg": {"num_samples": 5}, "ais_vae": {"num_samples": 2}}

CHILD = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, numpy as np
import tfdgm
from tfdgm import models
x = (np.random.default_rng(0).uniform(size=(200, 28, 28, 1)) < 0.3).astype("float32")
out = {}
for name, kwargs in json.loads(sys.argv[2]).items():
    keras.utils.set_random_seed(0)
    model = models.get_model_class(name)(input_shape=(28, 28, 1), seed=0, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-4), jit_compile=False)
    model.fit(x, batch_size=50, epochs=2, verbose=0, shuffle=False)
    out[name] = np.concatenate([w.numpy().ravel() for w in model.trainable_variables])
np.savez(sys.argv[3], **out)
print(os.path.dirname(tfdgm.__file__))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", required=True, help="label=path,label=path: the two trees to compare")
    args = parser.parse_args()
    (label_a, tree_a), (label_b, tree_b) = (t.split("=", 1) for t in args.trees.split(","))
    import numpy as np

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, tree in ((label_a, tree_a), (label_b, tree_b)):
            path = os.path.join(tmp, f"{label}.npz")
            proc = subprocess.run([sys.executable, "-c", CHILD, os.path.abspath(tree), json.dumps(MODELS), path],
                                  capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=os.path.abspath(tree)))
            if proc.returncode:
                sys.exit(f"{label} failed:\n{proc.stderr[-3000:]}")
            print(f"# {label}: tfdgm from {proc.stdout.strip().splitlines()[-1]}")
            results[label] = dict(np.load(path))
    rows = {}
    for name in MODELS:
        a, b = results[label_a][name], results[label_b][name]
        rows[name] = {"identical": bool(a.shape == b.shape and np.array_equal(a, b)),
                      "max_abs_difference": float(np.abs(a - b).max()) if a.shape == b.shape else None,
                      "num_weights": int(a.size)}
        print(f"{name:10s} identical={rows[name]['identical']}  max |diff| = {rows[name]['max_abs_difference']}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
