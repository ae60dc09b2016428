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
    "ImageSummary",
    "JSONHistory",
    "NaNGuard",
    "TrainingCheckpoint",
    "all_finite",
    "save_image_grid",
    "save_model_atomic",
    "save_reconstruction_grid",
    "tile_images",
    "training_state_arrays",
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
    """Writes workdir/samples.png (model.sample) and workdir/reconstructions.png every n epochs
    (reconstructions=False: samples only).

    Samples use a fixed seed so that successive grids show how the model improves, not noise.
    The final images are written at the end of training even if the last epoch is not a
    multiple of every_n_epochs; nothing is written from a model whose weights are not finite.
    """

    def __init__(self, workdir, data_batch, every_n_epochs=1, num_samples=64, seed=0, ncols=None,
                 reconstructions=True):
        super().__init__()
        self.reconstructions = bool(reconstructions)  # False for a model without an encoder
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
        """Writes both PNGs (only samples.png without reconstructions) now; returns their paths."""
        model = model or self.model
        samples = keras.ops.convert_to_numpy(model.sample(self.num_samples, seed=self.seed))
        ncols = self.ncols or math.ceil(math.sqrt(self.num_samples))
        save_image_grid(samples, self.samples_path, ncols)
        if not self.reconstructions:
            return (self.samples_path,)
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


def training_state_arrays(model):
    """{name: array} of everything needed to resume: every model weight (trainable or not, e.g.
    HMC step sizes), the variables of every optimizer in `model.optimizers_by_group` (slots and
    iteration count) and the SeedGenerator state. Variables are named by position: Keras's own
    variable paths depend on how many layers the process created before."""
    arrays = {f"model/{i}": _numpy(w) for i, w in enumerate(model.weights)}
    for group, optimizer in _optimizers(model).items():
        arrays.update({f"optimizer/{group}/{i}": _numpy(v) for i, v in enumerate(optimizer.variables)})
    arrays["seed_generator"] = _numpy(model.seed_generator.state)
    return arrays


def _optimizers(model):
    groups = getattr(model, "optimizers_by_group", None)
    return dict(groups) if groups else ({"all": model.optimizer} if getattr(model, "optimizer", None) else {})


def _assign(variables, arrays, prefix, what):
    names = sorted((k for k in arrays if k.startswith(prefix)), key=lambda k: int(k[len(prefix):]))
    if len(names) != len(variables):
        raise ValueError(f"the training state has {len(names)} {what} variables, the model {len(variables)}.")
    for variable, name in zip(variables, names):
        if tuple(arrays[name].shape) != tuple(variable.shape):
            raise ValueError(f"the training state's {name} has shape {arrays[name].shape}, the model's "
                             f"{variable.path} {tuple(variable.shape)}.")
        variable.assign(arrays[name])


class TrainingCheckpoint(keras.callbacks.Callback):
    """The training state, saved every n optimizer steps and every n-th epoch end, for resuming
    *mid-epoch* after a kill; the one checkpoint of a training run.

    directory/state-<step>.npz holds `training_state_arrays(model)`: model weights, every
    parameter group's optimizer and the SeedGenerator state. It is written to a temporary name
    and renamed, then directory/state.json (step, epochs completed, file name) is replaced, and
    only then is the previous state file removed: a kill at any point leaves state.json naming a
    complete file. The data position is the global step (the experiment feeds one deterministic
    stream of batches and skips the ones already trained on). Nothing is saved from non-finite
    logs, weights or optimizer state, so a diverged run keeps its last good state.

    Keras's BackupAndRestore is not used: it restarts an interrupted epoch from its first batch,
    does not save the SeedGenerator state and overwrites its file in place.
    """

    STATE = "state.json"

    def __init__(self, directory, every_n_steps=100, every_n_epochs=1, print_fn=print):
        super().__init__()
        self.directory = os.fspath(directory)
        self.every_n_steps = int(every_n_steps)
        self.every_n_epochs = int(every_n_epochs)
        self.print_fn = print_fn
        self.saved_step = None
        self.saved_epoch = None
        self._epochs_completed = 0
        self._refused = False

    @property
    def state_path(self):
        return os.path.join(self.directory, self.STATE)

    @classmethod
    def read(cls, directory):
        """The saved state dict (with "path", the state file's full path), or None if none."""
        path = os.path.join(os.fspath(directory), cls.STATE)
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        # "weights": a state.json of earlier versions, naming a Keras .weights.h5 file.
        state["path"] = os.path.join(os.fspath(directory), state.get("file") or state["weights"])
        return state

    @staticmethod
    def restore(model, state, optimizers=True):
        """Loads a state from `read` into the model (weights, seed generator) and, with optimizers,
        into every (compiled) optimizer. Raises ValueError if the state does not fit the model."""
        with np.load(state["path"], allow_pickle=False) as data:
            arrays = dict(data)
        _assign(model.weights, arrays, "model/", "model")
        if optimizers:
            groups = _optimizers(model)
            if sorted(groups) != sorted(state.get("groups", groups)):
                raise ValueError(f"the training state has optimizer groups {state['groups']}, the model {sorted(groups)}.")
            for group, optimizer in groups.items():
                if not optimizer.built:  # the slots must exist before they can be loaded
                    if len(groups) > 1:
                        raise ValueError(f"optimizer {group!r} is not built: a model with several parameter "
                                         "groups must build its optimizers in compile().")
                    optimizer.build(model.trainable_variables)
                _assign(optimizer.variables, arrays, f"optimizer/{group}/", f"optimizer {group!r}")
        model.seed_generator.state.assign(arrays["seed_generator"])

    def _write_state(self, path, arrays):
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    def save(self, logs=None, epochs_completed=None):
        """Saves the state now unless it is already saved or not finite; returns the step saved or None."""
        step = _step(self.model)
        if step is None or step == self.saved_step:
            return None
        arrays = training_state_arrays(self.model)
        values = [_to_float(v) for v in (logs or {}).values()]
        finite = all(v is None or math.isfinite(v) for v in values) and all(
            np.all(np.isfinite(a)) for a in arrays.values() if np.issubdtype(a.dtype, np.floating))
        if not finite:
            if not self._refused:
                self.print_fn(f"TrainingCheckpoint: step {step} is not finite; keeping the previous training "
                              f"state ({'none' if self.saved_step is None else f'step {self.saved_step}'}).")
            self._refused = True
            return None
        epochs_completed = self._epochs_completed if epochs_completed is None else epochs_completed
        previous = self.read(self.directory)
        name = f"state-{step}.npz"
        _replace_with(os.path.join(self.directory, name), lambda tmp: self._write_state(tmp, arrays), suffix=".npz")
        write_json_atomic(self.state_path, {"step": step, "epochs_completed": epochs_completed, "file": name,
                                            "groups": sorted(_optimizers(self.model)), "time": time.time()})
        if previous is not None and previous["path"] != os.path.join(self.directory, name) and os.path.exists(previous["path"]):
            os.remove(previous["path"])
        self.saved_step, self.saved_epoch = step, epochs_completed
        return step

    def on_epoch_begin(self, epoch, logs=None):
        self._epochs_completed = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.model)
        if self.every_n_steps > 0 and step - (self.saved_step or 0) >= self.every_n_steps:
            self.save(logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.every_n_epochs > 0 and (epoch + 1) % self.every_n_epochs == 0:
            self.save(logs, epochs_completed=epoch + 1)

# ---------------------------------------------------------------------------- latent diagnostics
class LatentDiagnostics(keras.callbacks.Callback):
    """Posterior-collapse diagnostics on a fixed batch of held-out data every n epochs.

    Computes `tfdgm.evaluation.diagnostics.latent_diagnostics` on the first num_examples of data
    and adds its scalars to the epoch's logs as `{prefix}{name}` (e.g. latent_active_units,
    latent_mutual_information, latent_kl), so History, CSVLogger and TensorBoard record them
    when they come after this callback in the list. The prefix keeps them apart from the
    training metric "kl" and Keras's "val_" metrics. Epochs that are skipped (not a multiple of
    every_n_epochs, or non-finite weights) add no entries rather than NaNs, which would make
    TrainingCheckpoint refuse to save. `self.results` keeps every full result as (epoch, dict).

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
