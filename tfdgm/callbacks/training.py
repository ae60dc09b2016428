"""The JSON history, and the training state for resuming mid-epoch (checksummed, with a fallback)."""
import hashlib
import json
import math
import os
import re
import time
import zipfile

import keras
import numpy as np

from tfdgm.callbacks.files import _numpy, _replace_with, _step, write_json_atomic
from tfdgm.callbacks.guards import _to_float


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


class CheckpointError(ValueError):
    """A training state that cannot be used: state.json unreadable or naming a file outside checkpoints/."""


class CorruptCheckpointError(CheckpointError):
    """A state file that is missing, truncated, or whose bytes differ from its recorded sha256."""


_STATE_FILE = re.compile(r"^state-\d+\.(npz|weights\.h5)$")


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_arrays(entry):
    """The arrays of a state entry, checked against its sha256; CorruptCheckpointError if unusable."""
    path = entry["path"]
    if not os.path.exists(path):
        raise CorruptCheckpointError(f"{path} is missing")
    if entry.get("sha256") and sha256(path) != entry["sha256"]:
        raise CorruptCheckpointError(f"{path} does not match its recorded sha256 (the file was changed or damaged)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = dict(data)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise CorruptCheckpointError(f"{path} cannot be read ({type(error).__name__}: {error})") from None
    bad = [k for k, a in arrays.items() if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a))]
    if bad:  # saves refuse non-finite states, so this one was damaged afterwards
        raise CorruptCheckpointError(f"{path} holds non-finite values in {bad[0]}")
    return arrays


class TrainingCheckpoint(keras.callbacks.Callback):
    """The training state, saved every n optimizer steps and every n-th epoch end, for resuming
    *mid-epoch* after a kill; the one checkpoint of a training run.

    directory/state-<step>.npz holds `training_state_arrays(model)`: model weights, every
    parameter group's optimizer and the SeedGenerator state. It is written to a temporary name,
    hashed (sha256) and renamed, then directory/state.json (step, epochs completed, file name,
    sha256, and the same for the previous state) is replaced. The previous state file is kept,
    so a latest state found damaged on restore falls back to it; older state files are removed.
    Files are only ever created and removed inside `directory`, and state.json may only name a
    file there. The data position is the global step (the experiment feeds one deterministic
    stream of batches and skips the ones already trained on). Nothing is saved from non-finite
    logs, weights or optimizer state, nor after one of `guards` (e.g. a DivergenceGuard) stopped
    training, so a broken run keeps its last good state.

    Keras's BackupAndRestore is not used: it restarts an interrupted epoch from its first batch,
    does not save the SeedGenerator state and overwrites its file in place.
    """

    STATE = "state.json"

    def __init__(self, directory, every_n_steps=100, every_n_epochs=1, print_fn=print, guards=()):
        super().__init__()
        self.directory = os.fspath(directory)
        self.every_n_steps = int(every_n_steps)
        self.every_n_epochs = int(every_n_epochs)
        self.print_fn = print_fn
        self.guards = tuple(guards)
        self.saved_step = None
        self.saved_epoch = None
        self.previous = None  # the last good state entry; set it to the one restored from
        self._epochs_completed = 0
        self._refused = False

    @property
    def state_path(self):
        return os.path.join(self.directory, self.STATE)

    @classmethod
    def read(cls, directory):
        """The saved state dict (with "path", the state file's full path, and "previous", the state
        before it, or None), or None if there is none. CheckpointError if state.json is unusable."""
        directory = os.fspath(directory)
        path = os.path.join(directory, cls.STATE)
        if not os.path.exists(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                state = json.load(f)
            # "weights": a state.json of earlier versions, naming a Keras .weights.h5 file.
            entries = [state] + ([state["previous"]] if state.get("previous") else [])
            for entry in entries:
                name = entry.get("file") or entry["weights"]
                if not isinstance(name, str) or os.path.basename(name) != name or not _STATE_FILE.match(name):
                    raise CheckpointError(f"{path} names {name!r}, which is not a state file inside {directory}; "
                                          f"refusing to use it. Remove {path} to start training afresh, or train "
                                          "into a fresh --workdir.")
                entry["path"] = os.path.join(directory, name)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            if isinstance(error, CheckpointError):
                raise
            raise CheckpointError(f"{path} is corrupt or truncated ({type(error).__name__}: {error}). Remove it to "
                                  "start training afresh, or train into a fresh --workdir.") from None
        state.setdefault("previous", None)
        return state

    @staticmethod
    def restore(model, state, optimizers=True):
        """Loads a state entry from `read` (the latest, or its "previous") into the model (weights,
        seed generator) and, with optimizers, into every (compiled) optimizer. Raises
        CorruptCheckpointError if the file is damaged (before changing the model), ValueError if
        it does not fit the model."""
        arrays = _load_arrays(state)
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

    def _write_and_hash(self, path, arrays):
        self._write_state(path, arrays)
        self._sha256 = sha256(path)  # read back from the page cache: also checks the write

    def save(self, logs=None, epochs_completed=None):
        """Saves the state now unless it is already saved or not finite; returns the step saved or None."""
        step = _step(self.model)
        if step is None or step == self.saved_step or any(guard.triggered for guard in self.guards):
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
        if self.previous is None and self.saved_step is None:
            try:
                self.previous = self.read(self.directory)
            except CheckpointError:
                self.previous = None
        name = f"state-{step}.npz"
        _replace_with(os.path.join(self.directory, name), lambda tmp: self._write_and_hash(tmp, arrays),
                      suffix=".npz")
        entry = {"step": step, "epochs_completed": epochs_completed, "file": name, "sha256": self._sha256}
        previous = self.previous
        if previous is not None and previous.get("file") == name:
            previous = previous.get("previous")
        previous = {k: previous[k] for k in ("step", "epochs_completed", "file", "weights", "sha256")
                    if k in previous} if previous else None
        write_json_atomic(self.state_path, dict(entry, groups=sorted(_optimizers(self.model)), time=time.time(),
                                                previous=previous))
        keep = {name, (previous or {}).get("file") or (previous or {}).get("weights")}
        for other in os.listdir(self.directory):
            if _STATE_FILE.match(other) and other not in keep:
                os.remove(os.path.join(self.directory, other))
        self.previous = dict(entry, path=os.path.join(self.directory, name), previous=previous)
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
