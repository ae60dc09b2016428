"""Training robustness: the NaN guard, the JSON history, and the training state for resuming mid-epoch."""
import json
import math
import os
import time

import keras
import numpy as np

from tfdgm.callbacks.files import _numpy, _replace_with, _step, write_json_atomic

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
