"""Experiment configs: the shared defaults, and helpers that turn a config into data and a model.

Every file in configs/ calls `base_config(model_name)` and overrides only what differs. Model
defaults are declared once, by the model class (`default_config()`); the experiment defaults
(data, training, evaluation) live here. Configs are locked: assigning to a field that does not exist (a typo)
raises instead of silently adding a new field.
"""
import json
import os

import ml_collections
from ml_collections import config_dict

# Experiment-level values of model fields whose constructor default is not what an experiment
# wants: a fixed seed, so every run (and every resumed or multi-worker one) starts from the same
# initial weights and noise. Applied only to fields the model's constructor has.
MODEL_EXPERIMENT_DEFAULTS = {"seed": 0}

# config.model fields that are not constructor arguments.
_NOT_CONSTRUCTOR_ARGS = ("name",)

OPTIMIZERS = ("adam", "sgd")


def make_optimizer(training):
    """The optimizer of config.training: Adam(learning_rate, epsilon=adam_epsilon), or SGD with
    `momentum` (classical momentum, as RBMs are trained in Hinton's practical guide)."""
    import keras

    if training.get("optimizer", "adam") == "sgd":
        return keras.optimizers.SGD(training.learning_rate, momentum=training.get("momentum", 0.0))
    return keras.optimizers.Adam(training.learning_rate, epsilon=training.adam_epsilon)


def model_config(model_name, **overrides):
    """config.model for `model_name`: its name and every constructor argument with the default its
    class declares (`default_config()`), experiment defaults and overrides applied. Works for
    any registered model, including one registered by a module that a config file imports."""
    from tfdgm import models

    defaults = models.get_model_class(model_name).default_config()
    defaults.update({k: v for k, v in MODEL_EXPERIMENT_DEFAULTS.items() if k in defaults})
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ValueError(f"model {model_name!r} has no constructor argument(s) {unknown}; it has {sorted(defaults)}.")
    defaults.update(overrides)
    config = ml_collections.ConfigDict()
    config.name = model_name
    for key, value in defaults.items():
        # Tuples, not lists: ml_collections parses --config.model.hidden_units=(32,16) for tuples.
        config[key] = tuple(value) if isinstance(value, list) else value
    return config


def base_config(model_name="vae", num_samples=None):
    """The full, locked default config (Fashion-MNIST, Burda et al. MLP) for `model_name`.

    config.model comes from the model class (`model_config`); num_samples=None keeps the class's
    default K. Raises ValueError for a model name that is not registered.
    """
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

    config.model = model_config(model_name, **({} if num_samples is None else {"num_samples": num_samples}))

    config.training = ml_collections.ConfigDict()
    config.training.epochs = 10
    config.training.learning_rate = 1e-3
    config.training.adam_epsilon = 1e-4  # Burda et al. use Adam with epsilon 1e-4
    # "adam" or "sgd"; SGD's momentum is `momentum` (Hinton's practical guide trains RBMs by SGD
    # with momentum 0.5 -> 0.9: that is this optimizer's momentum, not something a model re-implements).
    config.training.optimizer = "adam"
    config.training.momentum = 0.0
    config.training.jit_compile = True
    config.training.steps_per_execution = 10  # optimizer steps per compiled call
    # Batch split into independent towers run side by side (GenerativeModel.compile(towers=)); 0 = auto:
    # 2 on a multi-core CPU for models that split by example, else 1. Pin it to reproduce a run elsewhere.
    config.training.towers = 0
    config.training.max_steps_per_epoch = 0  # 0 = a full pass over the training set
    # The training state (checkpoints/state-<step>.npz: weights, every optimizer, seeds; the data
    # position is the step) is saved at every n-th epoch end and every n steps (0 = never), so a
    # killed run resumes mid-epoch. Step saves land on whole executions of steps_per_execution.
    config.training.checkpoint_every_n_epochs = 1
    config.training.checkpoint_every_n_steps = 100
    config.training.image_every_n_epochs = 1
    # DivergenceGuard: stop when the loss exceeds the best loss so far by this factor (0 = never).
    config.training.divergence_factor = 1e3

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


def check_override_paths(config, paths):
    """Raises ValueError naming the first dotted path (e.g. "training.epoch") that is not a field of
    config, with the closest field as a suggestion. Checks field names only, not values."""
    import difflib

    for path in paths:
        node, seen = config, []
        for key in path.split("."):
            if "[" in key or not isinstance(node, (ml_collections.ConfigDict, dict)):
                break  # indexing into a tuple, or a non-dict field: left to ml_collections
            if key not in node:
                message = f"the config has no field {'.'.join(seen + [key])!r}."
                close = difflib.get_close_matches(key, list(node.keys()), n=1)
                if close:
                    message += f' Did you mean "{close[0]}" instead of "{key}"?'
                raise ValueError(message)
            node, seen = node[key], seen + [key]


def validate(config):
    """Raises ValueError on values that are well-typed but meaningless, before any work starts."""
    from tfdgm import models

    registered = models.registered_models()
    if config.model.name not in registered:
        raise ValueError(f"config.model.name={config.model.name!r} is not a registered model; "
                         f"choose one of {sorted(registered)}.")
    t, e = config.training, config.eval
    checks = {
        "training.epochs": (t.epochs >= 1, ">= 1"),
        "training.learning_rate": (t.learning_rate > 0, "> 0"),
        "training.adam_epsilon": (t.adam_epsilon > 0, "> 0"),
        "training.optimizer": (t.get("optimizer", "adam") in OPTIMIZERS, f"one of {OPTIMIZERS}"),
        "training.momentum": (0 <= t.get("momentum", 0.0) < 1, "in [0, 1)"),
        "training.steps_per_execution": (t.steps_per_execution >= 1, ">= 1"),
        "training.towers": (t.get("towers", 0) >= 0, ">= 0 (0 = auto)"),
        "training.max_steps_per_epoch": (t.max_steps_per_epoch >= 0, ">= 0 (0 = a full pass)"),
        "training.checkpoint_every_n_steps": (t.checkpoint_every_n_steps >= 0, ">= 0 (0 = never)"),
        "training.checkpoint_every_n_epochs": (t.checkpoint_every_n_epochs >= 0, ">= 0 (0 = never)"),
        "training.image_every_n_epochs": (t.image_every_n_epochs >= 0, ">= 0 (0 = only at the end)"),
        "training.divergence_factor": (t.get("divergence_factor", 0) == 0 or t.divergence_factor > 1,
                                       "> 1, or 0 for no divergence guard"),
        "eval.num_samples": (e.num_samples >= 1, ">= 1"),
        "eval.num_examples": (e.num_examples >= 0, ">= 0 (0 = the whole test split)"),
        "eval.batch_size": (e.batch_size >= 1, ">= 1"),
        "eval.num_image_samples": (e.num_image_samples >= 1, ">= 1"),
        "eval.diagnostics_every_n_epochs": (e.diagnostics_every_n_epochs >= 0, ">= 0 (0 = never)"),
        "data.batch_size": (config.data.batch_size >= 1, ">= 1"),
        "data.validation_size": (config.data.validation_size >= 0, ">= 0"),
    }
    m = config.model
    if "latent_dim" in m:
        checks["model.latent_dim"] = (m.latent_dim is None or m.latent_dim >= 1, ">= 1")
    if "num_samples" in m:
        checks["model.num_samples"] = (m.num_samples is None or m.num_samples >= 1, ">= 1 (K, samples per example)")
    if "hidden_units" in m:
        checks["model.hidden_units"] = (all(u >= 1 for u in (m.hidden_units or ())), "units >= 1 per layer")
    for path, (ok, rule) in checks.items():
        if not ok:
            section, key = path.split(".")
            raise ValueError(f"config.{path}={config[section][key]!r} is out of range: it must be {rule} "
                             f"(set it with --config.{path}=...).")
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
