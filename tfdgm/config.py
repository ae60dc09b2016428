"""Experiment configs: the shared defaults, and helpers that turn a config into data and a model.

Every file in configs/ calls `base_config(model_name)` and overrides only what differs, so the
defaults live here once. Configs are locked: assigning to a field that does not exist (a typo)
raises instead of silently adding a new field.
"""
import json
import os

import ml_collections
from ml_collections import config_dict

# Constructor arguments only some models accept, with their defaults. Only the chosen model's
# extras go into `config.model`, so every field there is passed straight to the constructor.
MODEL_EXTRAS = {
    "vae": {"beta": 1.0, "kl_warmup_steps": 0, "free_bits": 0.0},
    "iwae": {"gradient_estimator": "iwae"},
    "iwae_dreg": {"gradient_estimator": "dreg"},
    # AIS training (Ding & Freedman): T temperatures, L leapfrog steps; schedule "linear" (the
    # paper's), "geometric", "sigmoidal" or "mh_hmc" (betas 0, 1, ..., 1: Hoffman's MH-HMC).
    "ais_vae": {"num_temperatures": 5, "leapfrog_steps": 5, "schedule": "linear", "final_move": True,
                "initial_step_size": 0.05, "target_accept_prob": 0.65, "step_size_factor": 1.02},
}

# config.model fields that are not constructor arguments.
_NOT_CONSTRUCTOR_ARGS = ("name",)


def base_config(model_name="vae", num_samples=1):
    """The full, locked default config (Fashion-MNIST, Burda et al. MLP) for `model_name`."""
    if model_name not in MODEL_EXTRAS:
        raise ValueError(f"No default config for model {model_name!r}; known: {sorted(MODEL_EXTRAS)}.")
    config = ml_collections.ConfigDict()

    config.data = ml_collections.ConfigDict()
    config.data.name = "fashion_mnist"
    config.data.binarize = "dynamic"  # a fresh Bernoulli draw of every training image each epoch
    config.data.test_binarize = "static"  # one fixed draw, so test NLLs are comparable across runs
    config.data.batch_size = 100
    # A typed placeholder: None by default, but `--config.data.data_dir=/path` still type-checks.
    config.data.data_dir = config_dict.placeholder(str)
    config.data.validation_size = 0
    config.data.seed = 0

    config.model = ml_collections.ConfigDict()
    config.model.name = model_name
    config.model.num_samples = num_samples
    config.model.latent_dim = 50
    config.model.architecture = "mlp"
    config.model.hidden_units = (200, 200)
    config.model.likelihood = "bernoulli"
    config.model.precision = "float32"
    config.model.seed = 0
    for key, value in MODEL_EXTRAS[model_name].items():
        config.model[key] = value

    config.training = ml_collections.ConfigDict()
    config.training.epochs = 10
    config.training.learning_rate = 1e-3
    config.training.adam_epsilon = 1e-4  # Burda et al. use Adam with epsilon 1e-4
    config.training.jit_compile = True
    config.training.steps_per_execution = 10  # optimizer steps per compiled call
    config.training.max_steps_per_epoch = 0  # 0 = a full pass over the training set
    config.training.checkpoint_every_n_epochs = 1
    # Training state (weights, optimizer, seeds, data position) for resuming mid-epoch after a
    # kill; 0 = at epoch ends only. Saves land on whole executions of steps_per_execution steps.
    config.training.checkpoint_every_n_steps = 100
    config.training.image_every_n_epochs = 1

    config.eval = ml_collections.ConfigDict()
    config.eval.num_samples = 5000  # K of the IWAE-K test log-likelihood
    config.eval.num_examples = 0  # 0 = the whole test split
    config.eval.batch_size = 100
    config.eval.num_image_samples = 64
    config.eval.seed = 0
    # Active units, KL per dimension and mutual information on 1,000 test images every n epochs
    # (0 = never): posterior collapse shows up in the training history.
    config.eval.diagnostics_every_n_epochs = 1

    config.lock()
    return config


def validate(config):
    """Raises ValueError on values that are well-typed but meaningless, before any work starts."""
    from tfdgm import models

    registered = models.registered_models()
    if config.model.name not in registered:
        raise ValueError(f"config.model.name={config.model.name!r} is not a registered model; "
                         f"choose one of {sorted(registered)}.")
    checks = {
        "training.epochs": config.training.epochs >= 1,
        "training.learning_rate": config.training.learning_rate > 0,
        "training.steps_per_execution": config.training.steps_per_execution >= 1,
        "training.max_steps_per_epoch": config.training.max_steps_per_epoch >= 0,
        "training.checkpoint_every_n_steps": config.training.checkpoint_every_n_steps >= 0,
        "eval.num_samples": config.eval.num_samples >= 1,
        "eval.num_examples": config.eval.num_examples >= 0,
        "eval.batch_size": config.eval.batch_size >= 1,
        "eval.diagnostics_every_n_epochs": config.eval.diagnostics_every_n_epochs >= 0,
        "data.batch_size": config.data.batch_size >= 1,
    }
    for path, ok in checks.items():
        if not ok:
            section, key = path.split(".")
            raise ValueError(f"config.{path}={config[section][key]!r} is out of range.")
    return config


def data_dir(config):
    """config.data.data_dir, with "" meaning None (the default local copy or TFDS)."""
    return config.data.data_dir or None


def model_kwargs(config):
    """Constructor keyword arguments of the model described by `config.model`."""
    kwargs = {k: v for k, v in config.model.items() if k not in _NOT_CONSTRUCTOR_ARGS}
    if "hidden_units" in kwargs:
        kwargs["hidden_units"] = tuple(kwargs["hidden_units"])
    return kwargs


def build_model(config, input_shape=None):
    """The model of `config` (uncompiled); input_shape defaults to the data set's image shape."""
    from tfdgm import data, models

    if input_shape is None:
        input_shape = data.image_shape(config.data.name, data_dir=data_dir(config))
    cls = models.get_model_class(config.model.name)
    return cls(input_shape=tuple(input_shape), **model_kwargs(config))


def to_dict(config):
    """A plain, JSON-serialisable dict of a ConfigDict (tuples become lists)."""
    return json.loads(config.to_json())


def from_dict(values):
    """A locked ConfigDict from a dict, e.g. a workdir's config.json."""
    config = ml_collections.ConfigDict(values)
    config.lock()
    return config


def load_json(path):
    """The config saved in a workdir's config.json, as a locked ConfigDict."""
    with open(os.fspath(path), encoding="utf-8") as f:
        return from_dict(json.load(f))
