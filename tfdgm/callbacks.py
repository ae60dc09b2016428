"""Keras callbacks and file helpers for training runs.

Everything here writes files atomically (to a temporary name in the same directory, then
`os.replace`), so a crash or a kill mid-write never leaves a truncated image, JSON file or
checkpoint in place of the last good one.
"""
import json
import math
import os
import time

import keras
import numpy as np

__all__ = [
    "AtomicCheckpoint",
    "ImageSummary",
    "JSONHistory",
    "NaNGuard",
    "TrainingCheckpoint",
    "all_finite",
    "save_image_grid",
    "save_model_atomic",
    "save_reconstruction_grid",
    "tile_images",
    "write_json_atomic",
]


# ---------------------------------------------------------------------------- atomic files
def _temp_path(path, suffix=""):
    """A temporary sibling of `path` (same directory, so os.replace is atomic)."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".tmp-{os.getpid()}-{name}{suffix}")


def _replace_with(path, write, suffix=""):
    """Calls write(tmp) then renames tmp onto path; removes tmp if write fails."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = _temp_path(path, suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_json_atomic(path, obj):
    """Writes obj as indented JSON to path, atomically. Non-finite floats are written as null."""

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(_jsonable(obj), f, indent=2, sort_keys=False)
            f.write("\n")

    return _replace_with(path, write)


def _jsonable(value):
    """Plain-Python copy of value; NaN/inf become None because strict JSON has no such numbers."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)) or hasattr(value, "numpy"):
        value = np.asarray(value).tolist()
        return _jsonable(value) if isinstance(value, list) else _jsonable_scalar(value)
    return _jsonable_scalar(value)


def _jsonable_scalar(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def save_model_atomic(model, path):
    """model.save(path) through a temporary file. The name must end in .keras (Keras checks)."""
    # Keras insists on the extension, so the temporary name keeps it at the end.
    return _replace_with(path, lambda tmp: model.save(tmp), suffix=".keras")


def _numpy(value):
    # Variable.numpy() avoids numpy's deprecated __array__(copy=...) path on Keras variables.
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def _step(model):
    """The optimizer's iteration count, or None if the model is not compiled."""
    optimizer = getattr(model, "optimizer", None)
    return int(_numpy(optimizer.iterations)) if optimizer is not None else None


def all_finite(model):
    """True if every floating-point weight of the model is finite."""
    for weight in model.weights:
        value = _numpy(weight)
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            return False
    return True


# ---------------------------------------------------------------------------- images
def tile_images(images, ncols=8, pad=1, pad_value=1.0):
    """Tiles images [N, H, W, C] (C = 1 or 3, values in [0, 1]) into one grid array.

    Returns [rows*(H+pad)-pad, ncols*(W+pad)-pad] for grey images, with a trailing 3 for RGB.
    Missing cells of the last row are left at pad_value.
    """
    images = np.asarray(images, np.float32)
    if images.ndim == 3:  # [N, H, W] grey images without a channel axis
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"Expected images of shape [N, H, W, 1 or 3], got {images.shape}.")
    if len(images) == 0:
        raise ValueError("No images to tile.")
    n, h, w, c = images.shape
    ncols = max(1, min(int(ncols), n))
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad, c), pad_value, np.float32)
    for i, image in enumerate(np.clip(images, 0.0, 1.0)):
        r, col = divmod(i, ncols)
        grid[r * (h + pad) : r * (h + pad) + h, col * (w + pad) : col * (w + pad) + w] = image
    return grid[..., 0] if c == 1 else grid


def save_image_grid(images, path, ncols=8):
    """Writes images [N, H, W, C] in [0, 1] as one PNG grid with ncols columns; returns path."""
    # matplotlib.image.imsave needs no pyplot figure or GUI backend, so it is safe headless.
    import matplotlib.image

    grid = tile_images(images, ncols)
    kwargs = {"cmap": "gray"} if grid.ndim == 2 else {}
    return _replace_with(
        path, lambda tmp: matplotlib.image.imsave(tmp, grid, vmin=0.0, vmax=1.0, format="png", **kwargs)
    )


def save_reconstruction_grid(originals, reconstructions, path, ncols=8):
    """Writes a PNG where each row of originals is directly above the row of their reconstructions."""
    originals = np.asarray(originals, np.float32)
    reconstructions = np.asarray(reconstructions, np.float32)
    if originals.shape != reconstructions.shape:
        raise ValueError(f"originals {originals.shape} and reconstructions {reconstructions.shape} differ.")
    n = len(originals)
    ncols = max(1, min(int(ncols), n))
    rows = []
    for start in range(0, n, ncols):
        block = [originals[start : start + ncols], reconstructions[start : start + ncols]]
        for part in block:
            # Pad a short last row with blank (white) images so the pairs stay aligned.
            missing = ncols - len(part)
            rows.append(np.concatenate([part, np.ones((missing,) + part.shape[1:], np.float32)]) if missing else part)
    return save_image_grid(np.concatenate(rows), path, ncols)


class ImageSummary(keras.callbacks.Callback):
    """Writes workdir/samples.png (model.sample) and workdir/reconstructions.png every n epochs.

    Samples use a fixed seed so that successive grids show how the model improves, not noise.
    The final images are written at the end of training even if the last epoch is not a
    multiple of every_n_epochs; nothing is written from a model whose weights are not finite.
    """

    def __init__(self, workdir, data_batch, every_n_epochs=1, num_samples=64, seed=0, ncols=None):
        super().__init__()
        self.workdir = os.fspath(workdir)
        self.data_batch = np.asarray(data_batch, np.float32)
        self.every_n_epochs = int(every_n_epochs)
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.ncols = ncols
        self._last_written_epoch = None
        self._epoch = None

    @property
    def samples_path(self):
        return os.path.join(self.workdir, "samples.png")

    @property
    def reconstructions_path(self):
        return os.path.join(self.workdir, "reconstructions.png")

    def write(self, model=None):
        """Writes both PNGs now; returns their paths."""
        model = model or self.model
        samples = keras.ops.convert_to_numpy(model.sample(self.num_samples, seed=self.seed))
        ncols = self.ncols or math.ceil(math.sqrt(self.num_samples))
        save_image_grid(samples, self.samples_path, ncols)
        recons = keras.ops.convert_to_numpy(model.reconstruct(self.data_batch))
        save_reconstruction_grid(self.data_batch, recons, self.reconstructions_path, self.ncols or 8)
        return self.samples_path, self.reconstructions_path

    def on_epoch_end(self, epoch, logs=None):
        self._epoch = epoch
        if self.every_n_epochs > 0 and (epoch + 1) % self.every_n_epochs == 0 and all_finite(self.model):
            self.write()
            self._last_written_epoch = epoch

    def on_train_end(self, logs=None):
        if self._epoch is not None and self._last_written_epoch != self._epoch and all_finite(self.model):
            self.write()
            self._last_written_epoch = self._epoch


# ---------------------------------------------------------------------------- robustness
def _to_float(value):
    try:
        return float(_numpy(value))
    except (TypeError, ValueError):
        return None


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first batch whose logged loss or metric is NaN or infinite.

    Unlike keras.callbacks.TerminateOnNaN it checks every metric, records where it happened
    (`self.failure`: epoch, batch, global step, metric names and values) and says so in the
    message. With steps_per_execution > 1 the batch is the last one of the failing execution.
    """

    def __init__(self, print_fn=print):
        super().__init__()
        self.failure = None
        self.print_fn = print_fn
        self._epoch = 0

    @property
    def triggered(self):
        return self.failure is not None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.failure is not None or not logs:
            return
        values = {name: _to_float(value) for name, value in logs.items()}
        bad = {name: v for name, v in values.items() if v is not None and not math.isfinite(v)}
        if not bad:
            return
        # "loss" first: it is the one whose gradient broke the weights.
        names = sorted(bad, key=lambda name: (name != "loss", name))
        step = _step(self.model)
        self.failure = {
            "epoch": self._epoch + 1,
            "batch": int(batch) + 1,
            "global_step": step,
            "metrics": {name: bad[name] for name in names},
        }
        self.print_fn(f"\n{self.message}")
        self.model.stop_training = True

    @property
    def message(self):
        if self.failure is None:
            return ""
        f = self.failure
        metrics = ", ".join(f"{k}={v}" for k, v in f["metrics"].items())
        return (f"NaNGuard: non-finite {metrics} at epoch {f['epoch']}, batch {f['batch']} "
                f"(optimizer step {f['global_step']}); training stopped.")


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves the whole model (weights and optimizer state) to directory/last.keras every n epochs.

    Each save goes to a temporary file that is then renamed, so last.keras is always a complete
    checkpoint. Saves are skipped when the epoch's logs or the weights are not finite, so a
    diverged run keeps its last good checkpoint. directory/last.json records its epoch and step.
    """

    def __init__(self, directory, every_n_epochs=1, filename="last.keras", print_fn=print):
        super().__init__()
        self.directory = os.fspath(directory)
        self.every_n_epochs = int(every_n_epochs)
        self.filename = filename
        self.print_fn = print_fn
        self.saved_epoch = None
        self._epoch = None
        self._logs = None
        self._attempted_epoch = None

    @property
    def path(self):
        return os.path.join(self.directory, self.filename)

    @property
    def state_path(self):
        return os.path.splitext(self.path)[0] + ".json"

    def _save(self, epoch, logs):
        self._attempted_epoch = epoch
        values = {k: _to_float(v) for k, v in (logs or {}).items()}
        if any(v is not None and not math.isfinite(v) for v in values.values()) or not all_finite(self.model):
            self.print_fn(f"AtomicCheckpoint: epoch {epoch + 1} is not finite; keeping the previous "
                          f"checkpoint ({'none' if self.saved_epoch is None else f'epoch {self.saved_epoch}'}).")
            return
        save_model_atomic(self.model, self.path)
        step = _step(self.model)
        write_json_atomic(self.state_path, {"epoch": epoch + 1, "step": step, "metrics": values,
                                            "time": time.time()})
        self.saved_epoch = epoch + 1

    def on_epoch_end(self, epoch, logs=None):
        self._epoch, self._logs = epoch, logs
        if self.every_n_epochs > 0 and (epoch + 1) % self.every_n_epochs == 0:
            self._save(epoch, logs)

    def on_train_end(self, logs=None):
        # Also keep the final epoch when it is not a multiple of every_n_epochs.
        if self._epoch is not None and self._attempted_epoch != self._epoch and self.every_n_epochs > 0:
            self._save(self._epoch, self._logs)


class JSONHistory(keras.callbacks.Callback):
    """Keeps per-epoch logs (plus the epoch's wall time) and calls on_update(history) after each.

    The CLI uses on_update to rewrite metrics.json, so progress is on disk while training runs.
    """

    def __init__(self, on_update=None, initial_history=None):
        super().__init__()
        self.history = list(initial_history or [])
        self.on_update = on_update
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch + 1}
        record.update({k: _to_float(v) for k, v in (logs or {}).items()})
        record["epoch_time_s"] = time.perf_counter() - self._start if self._start is not None else None
        self.history.append(record)
        if self.on_update is not None:
            self.on_update(self.history)


class TrainingCheckpoint(keras.callbacks.Callback):
    """Everything needed to resume *mid-epoch*, saved every n optimizer steps and at epoch ends.

    directory/state.json names the weights file (model and optimizer state, `save_weights`) and
    holds the global step and the SeedGenerator state, which `save_weights` leaves out. The
    weights go to a new state-<step>.weights.h5 (written to a temporary name, then renamed), then
    state.json is replaced, and only then is the previous weights file removed: a kill at any
    point leaves state.json naming a complete file. The data position is the global step: the
    CLI feeds one deterministic stream of batches and skips the ones already trained on.
    Like AtomicCheckpoint, nothing is saved from non-finite logs or weights.

    Keras's BackupAndRestore is not used: it restarts an interrupted epoch from its first batch
    (it records the batch but does not skip to it), does not save the SeedGenerator state and
    overwrites its file in place.
    """

    STATE = "state.json"

    def __init__(self, directory, every_n_steps=100, print_fn=print):
        super().__init__()
        self.directory = os.fspath(directory)
        self.every_n_steps = int(every_n_steps)
        self.print_fn = print_fn
        self.saved_step = None

    @property
    def state_path(self):
        return os.path.join(self.directory, self.STATE)

    @classmethod
    def read(cls, directory):
        """The saved state dict (with "weights_path"), or None if there is none."""
        path = os.path.join(os.fspath(directory), cls.STATE)
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        state["weights_path"] = os.path.join(os.fspath(directory), state["weights"])
        return state

    @staticmethod
    def restore(model, state):
        """Loads a state from `read` into a compiled model (weights, optimizer, seed generator)."""
        if not model.optimizer.built:  # load_weights needs the optimizer's slots to exist
            model.optimizer.build(model.trainable_variables)
        model.load_weights(state["weights_path"])
        model.seed_generator.state.assign(np.asarray(state["seed_generator"], np.int64))

    def _write_weights(self, path):
        self.model.save_weights(path)

    def save(self, logs=None):
        step = _step(self.model)
        if step is None or step == self.saved_step:
            return
        values = {k: _to_float(v) for k, v in (logs or {}).items()}
        if any(v is not None and not math.isfinite(v) for v in values.values()) or not all_finite(self.model):
            return
        previous = self.read(self.directory) if os.path.exists(self.state_path) else None
        name = f"state-{step}.weights.h5"
        _replace_with(os.path.join(self.directory, name), self._write_weights, suffix=".weights.h5")
        write_json_atomic(self.state_path, {
            "step": step, "weights": name, "time": time.time(),
            "seed_generator": _numpy(self.model.seed_generator.state).tolist()})
        if previous is not None and previous["weights"] != name and os.path.exists(previous["weights_path"]):
            os.remove(previous["weights_path"])
        self.saved_step = step

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.model)
        last = self.saved_step or 0
        if self.every_n_steps > 0 and step - last >= self.every_n_steps:
            self.save(logs)

    def on_epoch_end(self, epoch, logs=None):
        self.save(logs)


# ---------------------------------------------------------------------------- latent diagnostics
class LatentDiagnostics(keras.callbacks.Callback):
    """Posterior-collapse diagnostics on a fixed batch of held-out data every n epochs.

    Computes `tfdgm.evaluation.diagnostics.latent_diagnostics` on the first num_examples of data
    and adds its scalars to the epoch's logs as `{prefix}{name}` (e.g. latent_active_units,
    latent_mutual_information, latent_kl), so History, CSVLogger and TensorBoard record them
    when they come after this callback in the list. The prefix keeps them apart from the
    training metric "kl" and Keras's "val_" metrics. Epochs that are skipped (not a multiple of
    every_n_epochs, or non-finite weights) add no entries rather than NaNs, which would make
    AtomicCheckpoint refuse to save. `self.results` keeps every full result as (epoch, dict).

    When the number of active units drops to 0 it warns through print_fn: every latent
    dimension's posterior mean has stopped moving with x (posterior collapse).
    """

    LOGGED = ("active_units", "kl", "mutual_information", "kl_aggregate_posterior_to_prior",
              "model_mutual_information_lower_bound")

    def __init__(self, data, every_n_epochs=1, num_examples=1000, prefix="latent_", print_fn=print,
                 **diagnostics_kwargs):
        super().__init__()
        self.data = np.asarray(data[:num_examples], np.float32)
        if len(self.data) == 0:
            raise ValueError("LatentDiagnostics got no held-out examples: pass a non-empty data array.")
        self.every_n_epochs = int(every_n_epochs)
        self.prefix = prefix
        self.print_fn = print_fn
        self.diagnostics_kwargs = diagnostics_kwargs
        self.results = []
        self._collapsed = False

    def on_epoch_end(self, epoch, logs=None):
        if self.every_n_epochs <= 0 or (epoch + 1) % self.every_n_epochs or not all_finite(self.model):
            return
        # Imported here: the callbacks module stays importable without the evaluation package.
        from tfdgm.evaluation.diagnostics import latent_diagnostics

        result = latent_diagnostics(self.model, self.data, **self.diagnostics_kwargs)
        self.results.append((epoch + 1, result))
        if logs is not None:
            logs.update({self.prefix + name: float(result[name]) for name in self.LOGGED if name in result})
        collapsed = result["active_units"] == 0
        if collapsed and not self._collapsed:
            self.print_fn(
                f"\nLatentDiagnostics: epoch {epoch + 1}: 0 of {len(result['activity_per_dim'])} latent units are "
                f"active (KL {result['kl']:.4g} nats, I_q(x;z) {result['mutual_information']:.4g} nats): the "
                "posterior has collapsed onto the prior."
            )
        self._collapsed = collapsed


__all__ += ["LatentDiagnostics"]
