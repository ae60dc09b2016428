"""Likelihood cards: the metadata.json of a preset, built from a finished workdir.

A card says how the model was trained (the exact command, the full config, epochs, steps, wall
time, library versions) and what it scores: the IWAE-K test NLL, the AIS test NLL and the BDMC gap
with their standard errors and settings (from `tfdgm evaluate` runs recorded in the workdir's
metrics.json), the latent diagnostics, and a cheap `check` (IWAE-500 on the first 500 test images,
seed 0) that a test recomputes to confirm a preset reproduces its card. Each number comes with the
command that reproduces it. What a card holds follows the model's capabilities: an RBM
(has_free_energy) has the AIS record of its log Z (forward and reverse) and test NLL = mean F(x) +
log Z, and a free-energy check; a GSN (has_markov_chain_sampler) has no likelihood, which its card
says, and its test denoising NLL and reconstruction error instead.
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
    if record.get("kernel") == "gibbs":  # a free-energy model's log Z by AIS with Gibbs moves
        return (f"tfdgm evaluate --preset {{name}} --method ais --num_examples {record.get('num_examples') or 0} "
                f"--ais_steps {record['num_steps']} --num_chains {record['num_chains']} --schedule "
                f"{record['schedule']} --seed {record.get('seed', 0)}")
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
    if check_model is not None and getattr(check_model, "has_markov_chain_sampler", False):
        evaluation.update(chain_model_record(check_model, config, name))
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


def _mean_and_stderr(values):
    import numpy as np

    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))


def denoising_statistics(model, images, seed):
    """Per-image test denoising NLL -log p(x | f(C(x))) (one corruption per image, from seed) and
    squared reconstruction error of the clean image, of a chain-sampled model (a GSN)."""
    import numpy as np
    import tensorflow as tf

    nll, error = [], []
    for start in range(0, len(images), 100):
        x = images[start:start + 100]
        x_tilde = model.corrupt(x, seed=tf.constant([seed, start]))
        nll.append(-model.reconstruction_distribution(x_tilde).log_prob(x).numpy())
        error.append(np.sum((np.reshape(x, (len(x), -1)) - np.reshape(model.reconstruct(x), (len(x), -1))) ** 2, -1))
    return np.concatenate(nll), np.concatenate(error)


def chain_model_record(model, config, name):
    """{likelihood: None and why, denoising: the test denoising NLL and reconstruction error} of a
    model defined by its sampling chain (has_markov_chain_sampler), on the whole test split."""
    from tfdgm import config as cfg

    images = wd.test_images(cfg.from_dict(config), 0, 100)
    nll, error = denoising_statistics(model, images, seed=0)
    (nll_mean, nll_se), (error_mean, error_se) = _mean_and_stderr(nll), _mean_and_stderr(error)
    return {
        "likelihood": None,
        "likelihood_note": ("A GSN / denoising autoencoder defines its distribution only as the stationary "
                            "distribution of its sampling chain: it has no tractable likelihood and no bound, so "
                            "no test NLL is reported. The denoising NLL below is -log p(x | f(x~)) of the "
                            "reconstruction distribution given a corrupted test image, not a likelihood of x."),
        "denoising": {"denoising_nll": nll_mean, "denoising_nll_stderr": nll_se, "recon_error": error_mean,
                      "recon_error_stderr": error_se, "num_examples": int(len(images)), "seed": 0,
                      "corruption": model.corruption_process.name, "corruption_level": model.corruption_process.level,
                      "command": f"python -c \"import tfdgm; from tfdgm.zoo import cards; m = tfdgm.from_preset("
                                 f"'{name}'); print(cards.chain_model_record(m, tfdgm.zoo.read_metadata(tfdgm.zoo."
                                 f"resolve('{name}'))['training']['config'], '{name}'))\""},
    }


def check(model, config):
    """The card's cheap reproducibility check on the first 500 test images, by capability: IWAE-500
    (seed 0) for a model with an encoder and a bound; the mean free energy (exact) for a
    free-energy model (an RBM); the denoising NLL (seed 0) for a chain-sampled model (a GSN)."""
    from tfdgm import config as cfg
    from tfdgm import evaluation

    images = wd.test_images(cfg.from_dict(config), CHECK["num_examples"], 100)
    if model.has_encoder and model.has_bound:
        nll, stderr = evaluation.iwae_nll(model, images, num_samples=CHECK["num_samples"], seed=CHECK["seed"])
        return dict(CHECK, nll=float(nll), stderr=float(stderr))
    if getattr(model, "has_free_energy", False):
        mean, stderr = _mean_and_stderr(model.free_energy(images).numpy())
        return {"num_examples": CHECK["num_examples"], "free_energy": mean, "stderr": stderr}
    if getattr(model, "has_markov_chain_sampler", False):
        nll, _ = denoising_statistics(model, images, seed=CHECK["seed"])
        mean, stderr = _mean_and_stderr(nll)
        return {"num_examples": CHECK["num_examples"], "seed": CHECK["seed"], "denoising_nll": mean, "stderr": stderr}
    return None
