"""`evaluate` and `sample`: test log-likelihoods and sample grids of a workdir's model."""
import math
import os
import re
import time

import keras
import numpy as np

from tfdgm import callbacks as cbs
from tfdgm import data as tfdata
from tfdgm import evaluation
from tfdgm.experiment import workdir as wd
from tfdgm.experiment.workdir import ExperimentError, log

EVAL_METHODS = ("iwae", "ais", "bdmc")


def evaluate_nll(model, config, num_samples, num_examples, seed):
    """The IWAE-K test NLL as metrics updates (test_nll, test_nll_stderr, eval)."""
    images = wd.test_images(config, num_examples, config.eval.batch_size)
    log(f"Evaluating the IWAE-{num_samples} NLL on {len(images)} test images...")
    start = time.perf_counter()
    nll, stderr = evaluation.iwae_nll(model, images, num_samples=num_samples, batch_size=config.eval.batch_size,
                                      seed=seed, verbose=wd.verbose())
    elapsed = time.perf_counter() - start
    log(f"Test NLL (IWAE-{num_samples}, {len(images)} images): {nll:.3f} +- {stderr:.3f} nats ({elapsed:.1f} s)")
    return {
        "test_nll": nll,
        "test_nll_stderr": stderr,
        "eval": {"num_samples": int(num_samples), "num_examples": int(len(images)), "split": "test",
                 "binarize": config.data.test_binarize, "seed": int(seed), "time_s": elapsed},
    }


def evaluation_record(result):
    return dict(result["eval"], test_nll=result["test_nll"], test_nll_stderr=result["test_nll_stderr"])


def _evaluate_ais(model, config, method, num_examples, seed, ais):
    """AIS NLL on test images, or the BDMC sandwich on simulated ones, as a metrics record."""
    start = time.perf_counter()
    budget = (f"T={ais['num_steps']}, {ais['num_chains']} chains, L={ais['leapfrog_steps']}, {ais['schedule']}, "
              f"from {ais['start']}")
    if method == "ais":
        images = wd.test_images(config, num_examples, config.eval.batch_size)
        log(f"Evaluating the AIS NLL on {len(images)} test images ({budget})...")
        result = evaluation.ais_log_likelihoods(model, images, seed=seed, verbose=wd.verbose(), **ais).summary()
        accept = result["accept_prob"]
        log(f"Test NLL (AIS, {len(images)} images): {result['nll']:.3f} +- {result['nll_stderr']:.3f} nats, "
            f"mean HMC acceptance {accept if accept is None else round(accept, 3)}")
    else:
        num_examples = num_examples or 100
        log(f"BDMC on {num_examples} images simulated from the model ({budget})...")
        result = evaluation.bdmc(model, num_examples, seed=seed, verbose=wd.verbose(), **ais).summary()
        log(f"BDMC: {result['lower']:.3f} <= log p(x) <= {result['upper']:.3f}, gap {result['gap']:.3f} "
            f"+- {result['gap_stderr']:.3f} nats")
    result.update(method=method, seed=int(seed), time_s=time.perf_counter() - start, **ais)
    return result


def _evaluate_free_energy_ais(model, config, num_examples, seed, ais):
    """Test NLL mean(F(x)) + log Z of a free-energy model (an RBM), log Z by AIS with Gibbs steps from
    the base-rate model of the training data's pixel marginals (Salakhutdinov & Murray 2008), and
    by reverse AIS (`tfdgm.evaluation.ais_log_partition`)."""
    start = time.perf_counter()
    images = wd.test_images(config, num_examples, config.eval.batch_size)
    train = tfdata.load(config.data.name, "train", binarize=config.data.test_binarize, batch_size=1000,
                        shuffle=False, **wd.data_kwargs(config)).take(10)  # 10,000 images for the base rates
    base = np.concatenate([np.asarray(batch) for batch in train])
    log(f"Estimating log Z by AIS (T={ais['num_steps']}, {ais['num_chains']} chains, {ais['schedule']}, Gibbs "
        f"transitions, base rates of {len(base)} training images), then the NLL of {len(images)} test images...")
    partition = evaluation.ais_log_partition(model, base, num_steps=ais["num_steps"], num_chains=ais["num_chains"],
                                             schedule=ais["schedule"], seed=seed)
    result = evaluation.free_energy_nll(model, images, partition, batch_size=config.eval.batch_size)
    log(f"log Z = {result['log_z']:.3f} +- {result['log_z_stderr']:.3f} (forward AIS), "
        f"{result['log_z_reverse']:.3f} +- {result['log_z_reverse_stderr']:.3f} (reverse, from "
        f"{partition.reverse_from}); test NLL {result['nll']:.3f} +- {result['nll_stderr']:.3f} nats "
        f"({len(images)} images)")
    result.update(method="ais", seed=int(seed), time_s=time.perf_counter() - start, kernel="gibbs",
                  num_steps=ais["num_steps"], num_chains=ais["num_chains"], schedule=ais["schedule"])
    return result


def _check_method(model, config, method, ais):
    """Raises ExperimentError when the model cannot be evaluated by method."""
    if method == "ais" and getattr(model, "has_free_energy", False):
        if ais["start"] == "encoder":
            raise ExperimentError(f"--ais_start encoder needs a model with has_encoder; {config.model.name!r} is "
                                  "evaluated by AIS on log Z from the base-rate model (use --ais_start prior).")
        return
    needs = {"iwae": wd.IWAE_NEEDS, "ais": ("has_joint",), "bdmc": ("has_joint",)}[method]
    if ais["start"] == "encoder" and method != "iwae":
        needs += ("has_encoder",)
    lacking = wd.missing(model, *needs)
    if lacking:
        start = " --ais_start encoder" if method != "iwae" and "encoder" in lacking else ""
        raise ExperimentError(f"--method {method}{start} needs a model with {' and '.join(needs)}, but "
                              f"{config.model.name!r} has {lacking}.")


def model_and_config(workdir=None, preset=None):
    """(model, experiment config) of a workdir, or of a preset (name, directory or URL), whose card
    holds the config it was trained with (its data and evaluation settings)."""
    if (workdir is None) == (preset is None):
        raise ExperimentError("give exactly one of --workdir and --preset.")
    if workdir is not None:
        return wd.load_model(workdir), wd.load_config(workdir)
    from tfdgm import config as cfg
    from tfdgm import zoo

    try:
        model = zoo.from_preset(preset)
        card = zoo.read_metadata(zoo.resolve(preset)) or {}
    except zoo.PresetError as error:
        raise ExperimentError(str(error)) from None
    stored = card.get("training", {}).get("config")
    if not stored:
        raise ExperimentError(f"preset {preset!r} has no training config in its metadata.json, so its test data and "
                              "evaluation settings are unknown; publish it with `tfdgm publish`.")
    return model, cfg.from_dict(stored)


def evaluate(workdir=None, num_samples=None, num_examples=None, seed=0, method="iwae", ais=None, diagnostics=True,
             preset=None, output=None):
    """Evaluates a workdir's (or a preset's) model on the test split.

    method: "iwae" (top-level test_nll), "ais" (test_nll_ais) or "bdmc" (bdmc). For a workdir the
    result is merged into workdir/metrics.json, and every evaluation is also appended to
    metrics["evaluations"]; a preset's files are never written (pass `output` for a JSON file).
    With diagnostics (and a model with an encoder and continuous latents), latent_diagnostics is
    refreshed. Works on an unfinished workdir from its training state. Returns the result.
    """
    model, config = model_and_config(workdir, preset)
    num_samples = config.eval.num_samples if num_samples is None else num_samples
    num_examples = config.eval.num_examples if num_examples is None else num_examples
    if num_samples < 1 or num_examples < 0:
        raise ExperimentError(f"--num_samples must be >= 1 and --num_examples >= 0, got {num_samples} and "
                              f"{num_examples}.")
    if method not in EVAL_METHODS:
        raise ExperimentError(f"unknown --method {method!r}; choose one of {list(EVAL_METHODS)}.")
    ais = dict(evaluation.DEFAULT_AIS, **(ais or {}))
    if min(ais["num_steps"], ais["num_chains"], ais["leapfrog_steps"]) < 1:
        raise ExperimentError("--ais_steps, --num_chains and --leapfrog_steps must be >= 1.")
    _check_method(model, config, method, ais)
    metrics = wd.read_json(wd.paths(workdir)["metrics"], {}) if workdir else {}
    evaluations = metrics.get("evaluations", [])  # keep every evaluation; top-level keys hold the latest
    if method == "iwae":
        result = evaluate_nll(model, config, num_samples, num_examples, seed)
        evaluations.append(evaluation_record(result))
        updates = dict(result)
    elif method == "ais" and getattr(model, "has_free_energy", False):
        result = _evaluate_free_energy_ais(model, config, num_examples, seed, ais)
        evaluations.append(result)
        updates = {"test_nll_ais": result["nll"], "test_nll_ais_stderr": result["nll_stderr"], "ais": result}
    else:
        result = _evaluate_ais(model, config, method, num_examples, seed, ais)
        evaluations.append(result)
        updates = ({"test_nll_ais": result["nll"], "test_nll_ais_stderr": result["nll_stderr"], "ais": result}
                   if method == "ais" else {"bdmc": result})
    lacking = wd.missing(model, *wd.DIAGNOSTICS_NEED)
    if diagnostics and lacking:
        log(f"Latent diagnostics skipped: the model has {lacking}.")
    elif diagnostics:
        # BDMC's --num_examples counts simulated data, not test images: its diagnostics use the
        # run's own test-set setting instead of the 100 or so images BDMC simulates.
        test_examples = config.eval.num_examples if method == "bdmc" else num_examples
        images = wd.test_images(config, test_examples, config.eval.batch_size)
        d = evaluation.latent_diagnostics(model, images, batch_size=config.eval.batch_size, seed=seed)
        updates["latent_diagnostics"] = d
        log(f"Latent diagnostics on {d['num_examples']} test images: {d['active_units']} of {model.latent_dim} "
            f"units active, KL {d['kl']:.2f} nats, I_q(x; z) ~ {d['mutual_information']:.2f} nats.")
    if workdir is not None:
        wd.update_metrics(workdir, evaluations=evaluations, **updates)
        log(f"Merged into {wd.paths(workdir)['metrics']}.")
    if output:
        cbs.write_json_atomic(output, dict(updates, preset=preset, workdir=workdir))
        log(f"Wrote {output}.")
    return dict(updates, evaluations=evaluations)


def sample(workdir=None, num_samples=None, seed=0, output=None, preset=None):
    """Writes a PNG grid of num_samples images drawn from a workdir's (or preset's) model; returns
    its path.

    num_samples defaults to the run's config.eval.num_image_samples; output to
    WORKDIR/samples-seed<SEED>.png (for a preset: ./samples-<name>-seed<SEED>.png). Works on an
    unfinished workdir from its training state.
    """
    if num_samples is not None and num_samples < 1:
        raise ExperimentError(f"--num_samples must be >= 1, got {num_samples}.")
    model, config = model_and_config(workdir, preset)
    if num_samples is None:
        num_samples = config.eval.get("num_image_samples", 64)
    if output is None:
        name = os.path.basename(os.path.normpath(str(preset))) if preset else None
        output = (os.path.join(workdir, f"samples-seed{seed}.png") if workdir else
                  f"samples-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-seed{seed}.png")
    images = keras.ops.convert_to_numpy(model.sample(num_samples, seed=seed))
    cbs.save_image_grid(images, output, ncols=math.ceil(math.sqrt(num_samples)))
    log(f"Wrote {num_samples} samples (seed {seed}) to {output}.")
    return output
