"""Resuming with a new config: what may change (applied and logged), what may not (refused).

A rerun of `train` on a workdir with a training state compares its config with the stored
config.json field by field. Fields a saved config lacks (written before they existed) count as
their defaults. The model, the data and the epoch length (training.max_steps_per_epoch, which maps
the saved step onto epochs) cannot change: the stored weights, data position and history would no
longer mean what they say. Everything in `CHANGEABLE` and under `eval.` can.
"""
from tfdgm import config as cfg
from tfdgm.experiment.workdir import ExperimentError, log

CHANGEABLE = ("training.epochs", "training.learning_rate", "training.adam_epsilon", "training.jit_compile",
              "training.steps_per_execution", "training.checkpoint_every_n_steps",
              "training.checkpoint_every_n_epochs", "training.image_every_n_epochs", "training.divergence_factor")
CHANGEABLE_SECTIONS = ("eval.",)
_MISSING = "<not set>"


def flatten(values, prefix=""):
    """{"a.b": value} of a nested dict."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _normalised(flat):
    if flat.get("data.data_dir") == "":
        flat["data.data_dir"] = None  # "" and None both mean the default copy
    return flat


def _stored_with_defaults(config, stored):
    defaults = flatten(cfg.to_dict(cfg.base_config(config.model.name)))
    defaults = {k: v for k, v in defaults.items() if not k.startswith("model.")}
    try:
        name = stored.get("model", {}).get("name", config.model.name)
        defaults.update(flatten({"model": cfg.to_dict(cfg.model_config(name))}))
    except ValueError:  # the saved model is not registered in this process
        pass
    defaults.update(flatten(stored))
    return _normalised(defaults)


def differences(config, stored):
    """({field: (stored, new)} that may change, {field: (stored, new)} that may not)."""
    current = _normalised(flatten(cfg.to_dict(config)))
    old = _stored_with_defaults(config, stored)
    allowed, refused = {}, {}
    for key in sorted(current):
        before = old.get(key, _MISSING)
        if before != current[key]:
            ok = key in CHANGEABLE or key.startswith(CHANGEABLE_SECTIONS)
            (allowed if ok else refused)[key] = (before, current[key])
    return allowed, refused


def _describe(changes):
    return ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changes.items())


def check(config, stored, workdir):
    """Raises ExperimentError (one line, every refused field) if config may not resume the run of
    the stored config; returns the allowed changes."""
    allowed, refused = differences(config, stored)
    if refused:
        raise ExperimentError(f"{workdir!r} holds a training state of a different model or data config "
                              f"({_describe(refused)}); these cannot change on resume: use a fresh --workdir "
                              f"(or revert them to resume).")
    if allowed:
        log(f"Resuming with changed settings: {_describe(allowed)}.")
    return allowed


def apply(model, config, allowed):
    """Applies changes the restored state would otherwise override: the learning rate is a variable
    of every optimizer's saved state, so each restored optimizer gets the new one (one whose rate
    was the stored config's gets it exactly; another, e.g. a group's own, is scaled alike)."""
    if "training.learning_rate" not in allowed:
        return
    old, new = allowed["training.learning_rate"]
    groups = getattr(model, "optimizers_by_group", None) or {"all": model.optimizer}
    # Groups may share one optimizer: set each optimizer once.
    for optimizer in {id(o): o for o in groups.values()}.values():
        current = float(optimizer.learning_rate.numpy())
        scaled = isinstance(old, (int, float)) and old > 0 and abs(current - old) > 1e-6 * old
        optimizer.learning_rate = float(current * new / old if scaled else new)  # assigns the variable
