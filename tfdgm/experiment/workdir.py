"""A workdir's files, and what train, evaluate and sample share: the config, the model, test data.

Layout (every file is written to a temporary name and renamed, see `tfdgm.callbacks`):

  config.json                    the resolved config of the run
  .lock                          held by the one `train` running here (pid and host inside)
  checkpoints/state.json         the latest training state: step, epochs completed, file name, sha256,
                                 and the same for the previous state (the fallback if the latest is damaged)
  checkpoints/state-<step>.npz   model weights, every optimizer's state, the SeedGenerator state
  logs/                          TensorBoard (train/ and, when Keras writes it, validation/)
  samples.png, reconstructions.png (only for a model with an encoder)
  model.keras                    the final model, written once training completed
  metrics.json                   history, status, evaluations (merged by every command)
"""
import json
import math
import os
import sys

import numpy as np

from tfdgm import callbacks as cbs
from tfdgm import config as cfg
from tfdgm import data as tfdata


class ExperimentError(ValueError):
    """A user error (bad argument, missing or mismatched workdir): one line, no traceback needed."""


def one_line(error):
    """An error as one line that names the file or value (an OSError gets its file name and advice)."""
    if isinstance(error, OSError) and error.filename is not None:
        advice = {2: "check the path", 13: "check its permissions",
                  28: "free some space, or use another --workdir"}.get(error.errno, "check the path and the disk")
        return f"{error.strerror or error}: {error.filename} ({advice})."
    return " ".join(str(error).split()) or type(error).__name__


def is_user_error(error):
    """Errors a user can fix (bad values, data, files), as opposed to bugs."""
    from tfdgm.data import DatasetUnavailableError

    return isinstance(error, (ValueError, OSError, DatasetUnavailableError))


def log(message):
    print(f"[tfdgm] {message}", flush=True)


def verbose():
    return sys.stdout.isatty()


def paths(workdir):
    return {
        "config": os.path.join(workdir, "config.json"),
        "metrics": os.path.join(workdir, "metrics.json"),
        "model": os.path.join(workdir, "model.keras"),
        "checkpoints": os.path.join(workdir, "checkpoints"),
        "logs": os.path.join(workdir, "logs"),
        # Written by versions before the one training state; still read to resume and evaluate.
        "legacy_checkpoint": os.path.join(workdir, "checkpoints", "last.keras"),
    }


_JSON_ADVICE = {
    "config.json": "restore it from a copy, or train into a fresh --workdir",
    "metrics.json": "move it away (the next train or evaluate writes a new one; its history is then lost)",
}


def read_json(path, default=None):
    """The JSON object in path, default if it does not exist; ExperimentError if it is not valid JSON."""
    if not os.path.exists(path):
        return default
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (ValueError, UnicodeDecodeError) as error:
        advice = _JSON_ADVICE.get(os.path.basename(path), "restore or remove it")
        raise ExperimentError(f"{path} is truncated or corrupt (not valid JSON: {error}); {advice}.") from None
    except OSError as error:
        raise ExperimentError(f"cannot read {path}: {error.strerror or error}.") from None
    if not isinstance(value, dict):
        raise ExperimentError(f"{path} does not hold a JSON object; {_JSON_ADVICE.get(os.path.basename(path), '')}.")
    return value


def update_metrics(workdir, **updates):
    """Merges updates into workdir/metrics.json (top-level keys), rewriting it atomically. Keys that
    updates do not name are kept (earlier evaluations, AIS results, diagnostics); a value of
    None removes its key. A lock file serialises concurrent read-modify-writes (train and evaluate)."""
    import fcntl

    path = paths(workdir)["metrics"]
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, ".metrics.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        metrics = read_json(path, {})
        metrics.update(updates)
        metrics = {k: v for k, v in metrics.items() if v is not None}
        cbs.write_json_atomic(path, metrics)
    return metrics


def load_config(workdir):
    path = paths(workdir)["config"]
    if not os.path.exists(path):
        raise ExperimentError(f"{path} not found: is {workdir!r} a workdir made by `tfdgm train`?")
    return cfg.from_dict(read_json(path))


def build_model(config, input_shape=None):
    """config's model, uncompiled; a config the model class does not accept is an ExperimentError."""
    try:
        return cfg.build_model(config, input_shape=input_shape)
    except TypeError as error:  # e.g. a config.json field the constructor no longer takes
        raise ExperimentError(f"cannot build model {config.model.name!r} from its config: {error}") from None


def read_state(workdir):
    """checkpoints/state.json as `TrainingCheckpoint.read` gives it; ExperimentError if unusable."""
    try:
        return cbs.TrainingCheckpoint.read(paths(workdir)["checkpoints"])
    except cbs.CheckpointError as error:
        raise ExperimentError(str(error)) from None


def has_training_state(workdir):
    p = paths(workdir)
    return read_state(workdir) is not None or os.path.exists(p["legacy_checkpoint"])


def restore(model, workdir, optimizers=True):
    """Loads workdir's newest usable training state into model; returns (step, entry, description),
    (0, None, None) if there is none. A damaged latest state falls back to the previous one, with
    a warning naming both."""
    p = paths(workdir)
    state = read_state(workdir)
    try:
        if state is not None and "file" in state:
            for entry in (state, state["previous"]):
                if entry is None:
                    break
                try:
                    cbs.TrainingCheckpoint.restore(model, dict(state, **entry), optimizers=optimizers)
                except cbs.CorruptCheckpointError as error:
                    log(f"WARNING: {error}; it cannot be resumed from.")
                    continue
                if entry is not state:
                    log(f"WARNING: fell back from the damaged {state['path']} (step {state['step']}) to the "
                        f"previous training state {entry['path']} (step {entry['step']}).")
                return int(entry["step"]), entry, entry["path"]
            raise ExperimentError(f"no usable training state in {p['checkpoints']} (see the warnings above). "
                                  f"Remove {p['checkpoints']} to train afresh, or train into a fresh --workdir.")
        legacy = state["path"] if state else p["legacy_checkpoint"]
        if state is None and not os.path.exists(legacy):
            return 0, None, None
        if optimizers and not model.optimizer.built:  # slots must exist before loading
            model.optimizer.build(model.trainable_variables)
        model.load_weights(legacy)
        if state is not None:
            model.seed_generator.state.assign(np.asarray(state["seed_generator"], np.int64))
        else:
            log(f"WARNING: {p['checkpoints']}/state.json is missing, so {legacy} is resumed without the seed "
                "generator state: the run continues, but is no longer bit-for-bit the uninterrupted run.")
        return int(state["step"]) if state else int(model.optimizer.iterations.numpy()), None, legacy
    except (ValueError, OSError, KeyError) as error:
        if isinstance(error, ExperimentError):
            raise
        raise ExperimentError(f"the training state in {p['checkpoints']} does not fit the model of "
                              f"{p['config']}: {error}") from None


def load_model(workdir):
    """The final model of a workdir, or, if training did not finish, the model of config.json with
    the last training state loaded (weights and seed generator)."""
    import keras

    p = paths(workdir)
    if os.path.exists(p["model"]):
        try:
            return keras.models.load_model(p["model"], compile=False)
        except Exception as error:  # noqa: BLE001  (Keras raises many types for a damaged file)
            detail = " ".join(str(error).split())[:200]
            raise ExperimentError(f"{p['model']} exists but cannot be loaded, it may be truncated or damaged "
                                  f"({type(error).__name__}: {detail}). Rerun `tfdgm train` with the same --workdir "
                                  "to rewrite it from the training state.") from None
    if os.path.exists(p["config"]) and has_training_state(workdir):
        model = build_model(load_config(workdir))
        step, _, source = restore(model, workdir, optimizers=False)
        log(f"{p['model']} not found; using the training state of step {step} ({source}).")
        return model
    raise ExperimentError(f"No model in workdir {workdir!r}: neither {p['model']} nor a training state in "
                          f"{p['checkpoints']} exists (train one with `tfdgm train --config ... --workdir ...`).")


# ---------------------------------------------------------------------------- capabilities
def capability(model, flag):
    """A model's capability flag (has_encoder, has_bound, has_joint, has_continuous_latents), True
    when the model does not declare it."""
    return bool(getattr(model, flag, True))


def missing(model, *flags):
    """The first of flags the model lacks, as "has_x=False", or None."""
    for flag in flags:
        if not capability(model, flag):
            return f"{flag}=False"
    return None


IWAE_NEEDS = ("has_encoder", "has_bound")
DIAGNOSTICS_NEED = ("has_encoder", "has_continuous_latents")


# ---------------------------------------------------------------------------- data
def data_kwargs(config):
    return dict(seed=config.data.seed, data_dir=cfg.data_dir(config), validation_size=config.data.validation_size,
                likelihood=config.model.get("likelihood", "bernoulli"))


def test_images(config, num_examples, batch_size):
    """The first num_examples (0 = all) test images, binarised as config.data.test_binarize."""
    # Load the whole split so a static binarisation is the same draw whatever num_examples is.
    ds = tfdata.load(config.data.name, "test", binarize=config.data.test_binarize, batch_size=batch_size,
                     shuffle=False, **data_kwargs(config))
    if num_examples:
        ds = ds.take(math.ceil(num_examples / batch_size))
    images = np.concatenate([np.asarray(batch) for batch in ds])
    return images[:num_examples] if num_examples else images
