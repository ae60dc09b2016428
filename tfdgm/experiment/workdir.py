"""A workdir's files, and what train, evaluate and sample share: the config, the model, test data.

Layout (every file is written to a temporary name and renamed, see `tfdgm.callbacks`):

  config.json                    the resolved config of the run
  checkpoints/state.json         the latest training state: step, epochs completed, file name
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


def read_json(path, default=None):
    if not os.path.exists(path):
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def update_metrics(workdir, **updates):
    """Merges updates into workdir/metrics.json (top-level keys), rewriting it atomically."""
    path = paths(workdir)["metrics"]
    metrics = read_json(path, {})
    metrics.update(updates)
    cbs.write_json_atomic(path, metrics)
    return metrics


def load_config(workdir):
    path = paths(workdir)["config"]
    if not os.path.exists(path):
        raise ExperimentError(f"{path} not found: is {workdir!r} a workdir made by `tfdgm train`?")
    return cfg.load_json(path)


def build_model(config, input_shape=None):
    """config's model, uncompiled; a config the model class does not accept is an ExperimentError."""
    try:
        return cfg.build_model(config, input_shape=input_shape)
    except TypeError as error:  # e.g. a config.json field the constructor no longer takes
        raise ExperimentError(f"cannot build model {config.model.name!r} from its config: {error}") from None


def has_training_state(workdir):
    p = paths(workdir)
    return cbs.TrainingCheckpoint.read(p["checkpoints"]) is not None or os.path.exists(p["legacy_checkpoint"])


def restore(model, workdir, optimizers=True):
    """Loads workdir's newest training state into model; returns (step, description), (0, None) if none."""
    p = paths(workdir)
    state = cbs.TrainingCheckpoint.read(p["checkpoints"])
    try:
        if state is not None and "file" in state:
            cbs.TrainingCheckpoint.restore(model, state, optimizers=optimizers)
            return int(state["step"]), state["path"]
        legacy = state["path"] if state else p["legacy_checkpoint"]
        if state is None and not os.path.exists(legacy):
            return 0, None
        if optimizers and not model.optimizer.built:  # slots must exist before loading
            model.optimizer.build(model.trainable_variables)
        model.load_weights(legacy)
        if state is not None:
            model.seed_generator.state.assign(np.asarray(state["seed_generator"], np.int64))
        return int(state["step"]) if state else int(model.optimizer.iterations.numpy()), legacy
    except (ValueError, OSError, KeyError) as error:
        raise ExperimentError(f"the training state in {p['checkpoints']} does not fit the model of "
                              f"{p['config']}: {error}") from None


def load_model(workdir):
    """The final model of a workdir, or, if training did not finish, the model of config.json with
    the last training state loaded (weights and seed generator)."""
    import keras

    p = paths(workdir)
    if os.path.exists(p["model"]):
        return keras.models.load_model(p["model"], compile=False)
    if os.path.exists(p["config"]) and has_training_state(workdir):
        model = build_model(load_config(workdir))
        step, source = restore(model, workdir, optimizers=False)
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
