"""Atomic files: written to a temporary name in the same directory, then `os.replace`d, so a crash or
a kill mid-write never leaves a truncated image, JSON file or checkpoint in place of the last good one."""
import json
import math
import os
import re

import numpy as np

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
    except OSError as error:
        if error.filename is None:  # e.g. "No space left on device" from inside a writer: name the file
            raise OSError(error.errno, error.strerror or str(error), path) from None
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_temp_files(directory):
    """Removes the temporary files (".tmp-<pid>-...") that writes of processes no longer running (or of
    this one) left in directory, e.g. after a kill mid-write; returns the names removed."""
    removed = []
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        match = re.match(r"^\.tmp-(\d+)-", name)
        if match and (int(match.group(1)) == os.getpid() or not _alive(int(match.group(1)))):
            try:
                os.remove(os.path.join(directory, name))
                removed.append(name)
            except FileNotFoundError:
                pass
    return removed


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
