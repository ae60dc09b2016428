"""Shared helpers of the benchmarks: data, model construction, environment info, tables."""
import datetime
import json
import os
import platform
import shlex
import statistics
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _path in (ROOT, HERE):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import numpy as np  # noqa: E402

# tfdgm model name -> (class name in tfdgm.models, extra constructor kwargs).
TFDGM_MODELS = {
    "vae": ("VAE", {}),
    "iwae": ("IWAE", {"gradient_estimator": "iwae"}),
    "iwae_dreg": ("IWAE", {"gradient_estimator": "dreg"}),
}
HANDWRITTEN = "handwritten"
ALL_MODELS = tuple(TFDGM_MODELS) + (HANDWRITTEN,)


def train_dataset(batch_size=100, seed=0, repeat=True):
    """Dynamically binarised Fashion-MNIST training batches [B, 28, 28, 1] float32 0/1.

    Every model, the hand-written one included, reads the same tfdgm.data pipeline, so the
    comparison is of the models alone.
    """
    import tfdgm.data

    return tfdgm.data.load("fashion_mnist", split="train", binarize="dynamic", batch_size=batch_size,
                           seed=seed, repeat=repeat, drop_remainder=True)


def static_test_set(seed=0):
    """The fixed statically binarised Fashion-MNIST test set, float32 [10000, 28, 28, 1] of 0/1."""
    import tfdgm.data

    ds = tfdgm.data.load("fashion_mnist", split="test", binarize="static", batch_size=1000, seed=seed,
                         shuffle=False)
    return np.concatenate([b.numpy() for b in ds]).astype(np.float32)


def make_model(name, k, precision="float32", seed=0):
    """A freshly built model: a tfdgm model (Burda MLP) or the hand-written IWAE."""
    if name == HANDWRITTEN:
        if precision != "float32":
            raise ValueError("The hand-written IWAE is benchmarked in float32 only.")
        import handwritten_iwae as hw

        return hw.HandwrittenIWAE(num_samples=k, seed=seed)
    import tfdgm

    class_name, extra = TFDGM_MODELS[name]
    cls = getattr(tfdgm.models, class_name)
    return cls(input_shape=(28, 28, 1), latent_dim=50, architecture="mlp", num_samples=k, seed=seed,
               precision=precision, **extra)


def compile_model(model, jit, steps_per_execution=None):
    """Adam(1e-3, eps 1e-4); steps_per_execution=None keeps the model's own default
    (Keras: 1; tfdgm: 10)."""
    import keras

    kwargs = {} if steps_per_execution is None else {"steps_per_execution": steps_per_execution}
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-4), jit_compile=bool(jit), **kwargs)
    return model


def burda_mlp_train_flops(k):
    """Matmul FLOPs of one training example of the Burda-MLP VAE/IWAE-K (784-200-200-50 encoder
    with loc and scale heads, 50-200-200-784 decoder run on K samples): forward 2 FLOPs per
    multiply-add, backward twice that (input and weight gradients), less the input gradient of the
    first encoder layer, which nothing needs. Elementwise work is not counted."""
    encoder = 784 * 200 + 200 * 200 + 2 * 200 * 50
    decoder = 50 * 200 + 200 * 200 + 200 * 784
    return 6 * (encoder + k * decoder) - 2 * 784 * 200


def config_name(model, precision="float32"):
    if model == HANDWRITTEN:
        return "hand-written IWAE"
    return f"tfdgm {model}" + (" bf16" if precision == "mixed_bfloat16" else "")


def environment():
    """TF/Keras versions, date, CPU count and the exact command, for the report.

    Reads versions from package metadata so that a parent process does not import TensorFlow
    (which would inflate its children's getrusage ru_maxrss).
    """
    from importlib import metadata

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "tensorflow": _version(metadata, "tensorflow"),
        "keras": _version(metadata, "keras"),
        "tensorflow_probability": _version(metadata, "tensorflow-probability"),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "cpu": _cpu_model(),
        "command": " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv),
        "tfdgm_commit": _git_commit(),
    }


def _version(metadata, package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit():
    import subprocess

    try:
        out = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "tfdgm"], capture_output=True, text=True)
        return out.stdout.strip() + ("+dirty tfdgm/" if dirty.stdout.strip() else "")
    except OSError:
        return None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def print_environment(env):
    print(f"# date: {env['date']}")
    print(f"# TensorFlow {env['tensorflow']}, Keras {env['keras']}, TFP {env['tensorflow_probability']}, "
          f"Python {env['python']}, tfdgm {env['tfdgm_commit']}")
    print(f"# CPUs: {env['cpu_count']} ({env['cpus_usable']} usable), {env['cpu']}")
    print(f"# command: {env['command']}")


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def markdown_table(header, rows):
    """A GitHub Markdown table from a header list and rows of already formatted strings."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path, obj):
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(obj, f, indent=2)
        print(f"# wrote {path}")


def csv_list(text, cast=str):
    return [cast(t.strip()) for t in text.split(",") if t.strip()]
