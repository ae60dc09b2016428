"""Likelihood cards: the metadata.json of a preset, built from a finished workdir.

A card says how the model was trained (the exact command, the full config, epochs, steps, wall
time, library versions) and what it scores: the IWAE-K test NLL, the AIS test NLL and the BDMC gap
with their standard errors and settings (from `tfdgm evaluate` runs recorded in the workdir's
metrics.json), the latent diagnostics, and a cheap `check` (IWAE-500 on the first 500 test images,
seed 0) that a test recomputes to confirm a preset reproduces its card. Each number comes with the
command that reproduces it.
"""
import datetime
import platform

from tfdgm.experiment import workdir as wd

CHECK = {"num_samples": 500, "num_examples": 500, "seed": 0}


def versions():
    import keras
    import tensorflow as tf
    import tensorflow_probability as tfp

    import tfdgm

    return {"tfdgm": tfdgm.__version__, "tensorflow": tf.__version__, "tensorflow_probability": tfp.__version__,
            "keras": keras.__version__, "python": platform.python_version()}


def _latest(evaluations, method):
    found = [e for e in evaluations if e.get("method", "iwae") == method]
    return found[-1] if found else None


def _iwae_record(metrics):
    if metrics.get("test_nll") is None:
        return None
    settings = metrics.get("eval", {})
    k, n, seed = settings.get("num_samples"), settings.get("num_examples"), settings.get("seed", 0)
    return dict(settings, nll=metrics["test_nll"], stderr=metrics.get("test_nll_stderr"),
                command=f"tfdgm evaluate --preset {{name}} --method iwae --num_samples {k} --num_examples "
                        f"{0 if n == 10000 else n} --seed {seed}")


def _ais_command(method, record):
    return (f"tfdgm evaluate --preset {{name}} --method {method} --num_examples {record.get('num_examples') or 0} "
            f"--ais_steps {record['num_steps']} --num_chains {record['num_chains']} --leapfrog_steps "
            f"{record['leapfrog_steps']} --schedule {record['schedule']} --ais_start {record['start']} "
            f"--seed {record.get('seed', 0)}")


def make_card(workdir, name, description, train_command, check_model=None):
    """The metadata.json (less the files' hashes, which `save_preset` adds) of workdir's model."""
    metrics = wd.read_json(wd.paths(workdir)["metrics"], {})
    if metrics.get("status") != "completed":
        raise wd.ExperimentError(f"{workdir} has not finished training (status {metrics.get('status')!r}); only a "
                                 "completed run can be published.")
    config = wd.read_json(wd.paths(workdir)["config"])
    evaluations = metrics.get("evaluations", [])
    evaluation = {"iwae": _iwae_record(metrics)}
    for method in ("ais", "bdmc"):
        record = _latest(evaluations, method)
        if record is not None:
            record = dict(record, command=_ais_command(method, record).replace("{name}", name))
        evaluation[method] = record
    if evaluation["iwae"]:
        evaluation["iwae"]["command"] = evaluation["iwae"]["command"].replace("{name}", name)
    if metrics.get("latent_diagnostics"):
        evaluation["latent_diagnostics"] = metrics["latent_diagnostics"]
    if check_model is not None:
        evaluation["check"] = check(check_model, config)
    history = metrics.get("history", [])
    return {
        "name": name,
        "description": description,
        "objective": config["model"]["name"],
        "data": {"name": config["data"]["name"], "train_binarize": config["data"]["binarize"],
                 "test_binarize": config["data"]["test_binarize"]},
        "training": {"command": train_command, "config": config, "epochs": metrics.get("epochs_completed"),
                     "steps": metrics.get("steps"), "train_time_s": metrics.get("train_time_s"),
                     "wall_time_s": metrics.get("wall_time_s"), "num_parameters": metrics.get("num_parameters"),
                     "final_epoch": history[-1] if history else None},
        "evaluation": evaluation,
        "versions": versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def check(model, config):
    """The card's cheap reproducibility check: IWAE-500 on the first 500 test images, seed 0."""
    from tfdgm import config as cfg
    from tfdgm import evaluation

    if not (model.has_encoder and model.has_bound):
        return None
    images = wd.test_images(cfg.from_dict(config), CHECK["num_examples"], 100)
    nll, stderr = evaluation.iwae_nll(model, images, num_samples=CHECK["num_samples"], seed=CHECK["seed"])
    return dict(CHECK, nll=float(nll), stderr=float(stderr))
