"""tfdgm command line: train, evaluate and sample deep latent-variable models.

Usage:
  tfdgm train --config configs/iwae_k50_mlp_fashion_mnist.py --workdir runs/iwae \\
      [--config.training.epochs=10 ...]
  tfdgm evaluate --workdir runs/iwae [--method iwae|ais|bdmc] [--num_samples 5000] [--num_examples 10000]
      [--ais_steps 500 --num_chains 16 --leapfrog_steps 10 --schedule sigmoidal --ais_start prior]
  tfdgm sample --workdir runs/iwae [--num_samples 64] [--seed 0] [--output samples.png]

A workdir holds config.json, checkpoints/last.keras (+ last.json), logs/ (TensorBoard),
samples.png, reconstructions.png, model.keras and metrics.json. Training into a workdir that
already has a checkpoint resumes from it.
"""
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time

from absl import app, flags
from ml_collections import config_flags

import keras
import numpy as np
import tensorflow as tf

from tfdgm import callbacks as cbs
from tfdgm import config as cfg
from tfdgm import data as tfdata
from tfdgm import distribute
from tfdgm import evaluation

COMMANDS = ("train", "evaluate", "sample")
EVAL_METHODS = ["iwae", "ais", "bdmc"]
USAGE_EXIT_CODE = 2

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (train), e.g. configs/vae_mlp_fashion_mnist.py; "
    "override fields with --config.training.epochs=3.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (all subcommands).")
_STRATEGY = flags.DEFINE_enum(
    "strategy", "default", list(distribute.STRATEGIES),
    "train: tf.distribute strategy. mirrored = all local GPUs (or CPUs); multiworker = "
    "MultiWorkerMirroredStrategy, one process per worker, cluster in TF_CONFIG, all workers run the "
    "same command and share --workdir (only the chief writes to it); tpu = TPUStrategy.")
_NUM_SAMPLES = flags.DEFINE_integer(
    "num_samples", None, "evaluate: importance samples K of the IWAE-K NLL (default: config eval.num_samples). "
    "sample: number of images (default: config eval.num_image_samples).")
_NUM_EXAMPLES = flags.DEFINE_integer(
    "num_examples", None, "evaluate: test images to use, 0 = all (default: config eval.num_examples).")
_SEED = flags.DEFINE_integer("seed", 0, "evaluate / sample: random seed.")
_METHOD = flags.DEFINE_enum(
    "method", "iwae", EVAL_METHODS, "evaluate: iwae (IWAE-K bound), ais (AIS with HMC on test images) or "
    "bdmc (forward/reverse AIS sandwich on --num_examples images simulated from the model).")
_AIS_STEPS = flags.DEFINE_integer("ais_steps", evaluation.DEFAULT_AIS["num_steps"],
                                  "evaluate ais|bdmc: intermediate distributions T.")
_NUM_CHAINS = flags.DEFINE_integer("num_chains", evaluation.DEFAULT_AIS["num_chains"],
                                   "evaluate ais|bdmc: AIS chains per example.")
_LEAPFROG_STEPS = flags.DEFINE_integer("leapfrog_steps", evaluation.DEFAULT_AIS["leapfrog_steps"],
                                       "evaluate ais|bdmc: leapfrog steps per HMC move.")
_SCHEDULE = flags.DEFINE_enum("schedule", evaluation.DEFAULT_AIS["schedule"], ["linear", "geometric", "sigmoidal"],
                              "evaluate ais|bdmc: annealing schedule of the inverse temperatures.")
_AIS_START = flags.DEFINE_enum("ais_start", evaluation.DEFAULT_AIS["start"], ["prior", "encoder"],
                               "evaluate ais|bdmc: start the chains at the prior (Wu et al.) or at q(z|x).")
_DIAGNOSTICS = flags.DEFINE_boolean(
    "diagnostics", True, "evaluate: also report active units, KL per dimension and mutual information.")
_OUTPUT = flags.DEFINE_string("output", None, "sample: output PNG (default: WORKDIR/samples-seed<SEED>.png).")


class CLIError(Exception):
    """A user error: printed as one line, without a traceback."""


def _log(message):
    print(f"[tfdgm] {message}", flush=True)


# ---------------------------------------------------------------------------- workdir helpers
def _paths(workdir):
    return {
        "config": os.path.join(workdir, "config.json"),
        "metrics": os.path.join(workdir, "metrics.json"),
        "model": os.path.join(workdir, "model.keras"),
        "checkpoints": os.path.join(workdir, "checkpoints"),
        "checkpoint": os.path.join(workdir, "checkpoints", "last.keras"),
        "checkpoint_state": os.path.join(workdir, "checkpoints", "last.json"),
        "logs": os.path.join(workdir, "logs"),
    }


def _read_json(path, default=None):
    if not os.path.exists(path):
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _update_metrics(workdir, **updates):
    """Merges updates into workdir/metrics.json (top-level keys), rewriting it atomically."""
    path = _paths(workdir)["metrics"]
    metrics = _read_json(path, {})
    metrics.update(updates)
    cbs.write_json_atomic(path, metrics)
    return metrics


def _require_workdir():
    if not _WORKDIR.value:
        raise CLIError("--workdir is required.")
    return _WORKDIR.value


def _load_saved_config(workdir):
    path = _paths(workdir)["config"]
    if not os.path.exists(path):
        raise CLIError(f"{path} not found: is {workdir!r} a workdir made by `tfdgm train`?")
    return cfg.load_json(path)


def _load_model(workdir):
    """The final model of a workdir, or its last checkpoint if training did not finish."""
    paths = _paths(workdir)
    for path in (paths["model"], paths["checkpoint"]):
        if os.path.exists(path):
            if path != paths["model"]:
                _log(f"{paths['model']} not found; using the last checkpoint {path}.")
            return keras.models.load_model(path, compile=False)
    raise CLIError(f"No model in workdir {workdir!r}: neither {paths['model']} nor {paths['checkpoint']} exists "
                   "(train one with `tfdgm train --config ... --workdir ...`).")


# ---------------------------------------------------------------------------- data
def _data_kwargs(config):
    return dict(seed=config.data.seed, data_dir=cfg.data_dir(config), validation_size=config.data.validation_size,
                likelihood=config.model.likelihood)


def _test_images(config, num_examples, batch_size):
    """The first num_examples (0 = all) test images, binarised as config.data.test_binarize."""
    # Load the whole split so a static binarisation is the same draw whatever num_examples is.
    ds = tfdata.load(config.data.name, "test", binarize=config.data.test_binarize, batch_size=batch_size,
                     shuffle=False, **_data_kwargs(config))
    if num_examples:
        ds = ds.take(math.ceil(num_examples / batch_size))
    images = np.concatenate([np.asarray(batch) for batch in ds])
    return images[:num_examples] if num_examples else images


def _evaluate_nll(model, config, num_samples, num_examples, seed):
    images = _test_images(config, num_examples, config.eval.batch_size)
    _log(f"Evaluating the IWAE-{num_samples} NLL on {len(images)} test images...")
    start = time.perf_counter()
    nll, stderr = evaluation.iwae_nll(model, images, num_samples=num_samples, batch_size=config.eval.batch_size,
                                      seed=seed, verbose=sys.stdout.isatty())
    elapsed = time.perf_counter() - start
    _log(f"Test NLL (IWAE-{num_samples}, {len(images)} images): {nll:.3f} +- {stderr:.3f} nats ({elapsed:.1f} s)")
    return {
        "test_nll": nll,
        "test_nll_stderr": stderr,
        "eval": {"num_samples": int(num_samples), "num_examples": int(len(images)), "split": "test",
                 "binarize": config.data.test_binarize, "seed": int(seed), "time_s": elapsed},
    }


def _evaluation_record(result):
    return dict(result["eval"], test_nll=result["test_nll"], test_nll_stderr=result["test_nll_stderr"])


# ---------------------------------------------------------------------------- subcommands
# Errors a collective raises when a peer worker died or stopped answering.
_WORKER_FAILURES = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
                    tf.errors.CancelledError)


def train(config, workdir, strategy="default"):
    """Trains config's model in workdir and writes every artefact; returns the exit code.

    strategy: a name from `tfdgm.distribute.STRATEGIES`. In a multi-worker job every worker runs
    this function in lockstep (each collective needs all of them), so each also saves and writes
    the same files, but only the chief into workdir; the others write into a temporary directory
    that is removed at the end. All of them resume from workdir's checkpoint.
    """
    cfg.validate(config)
    # MultiWorkerMirroredStrategy must be created before this process runs any TensorFlow op.
    strategy = distribute.make_strategy(strategy)
    chief = distribute.is_chief(strategy)
    outdir = workdir if chief else tempfile.mkdtemp(prefix="tfdgm-worker-")
    if not chief:
        _log(f"Worker {distribute.task()} is not the chief: writing to {outdir} (removed at the end), "
             f"resuming from {workdir}.")
    try:
        return _train(config, workdir, outdir, strategy)
    except _WORKER_FAILURES as error:
        if strategy.num_replicas_in_sync == len(strategy.extended.worker_devices):
            raise  # a single process: not a lost peer, keep the traceback
        detail = " ".join(str(error).split())
        detail = detail[detail.find("Collective ops is aborted by:"):] if "Collective ops is aborted" in detail else detail
        sys.stderr.write(f"tfdgm: error: training stopped because another worker of the job failed or stopped "
                         f"responding ({type(error).__name__}: {detail[:400]}). Restart every worker with the "
                         f"same command to resume from the last checkpoint in {workdir}.\n")
        sys.stderr.flush()
        return 1
    finally:
        if not chief:
            shutil.rmtree(outdir, ignore_errors=True)


def _restore(model, saved):
    """Loads the newest training state under the `_paths` dict `saved`; returns its step (0: none)."""
    state = cbs.TrainingCheckpoint.read(saved["checkpoints"])
    if state is not None:
        cbs.TrainingCheckpoint.restore(model, state)
        _log(f"Resuming from {state['weights_path']} (step {state['step']}).")
        return int(state["step"])
    if os.path.exists(saved["checkpoint"]):  # a workdir from before step checkpoints: epoch only
        model.optimizer.build(model.trainable_variables)  # slots must exist before loading
        model.load_weights(saved["checkpoint"])
        step = int(model.optimizer.iterations.numpy())
        _log(f"Resuming from {saved['checkpoint']} (step {step}).")
        return step
    return 0


def _train(config, workdir, outdir, strategy):
    start = time.perf_counter()
    paths, saved = _paths(outdir), _paths(workdir)  # write here; resume from the chief's workdir
    os.makedirs(paths["checkpoints"], exist_ok=True)

    resolved = cfg.to_dict(config)
    previous = _read_json(saved["config"])
    resume = os.path.exists(saved["checkpoint"]) or cbs.TrainingCheckpoint.read(saved["checkpoints"]) is not None
    if resume and previous is not None and previous.get("model") != resolved["model"]:
        raise CLIError(f"{workdir!r} holds a checkpoint of a different model config; use a fresh --workdir.")
    cbs.write_json_atomic(paths["config"], resolved)

    t = config.training

    def train_data(skip):
        # One endless stream of batches, the same in every run (each pass over the data reshuffles
        # and rebinarises from its own seed), so the data position is the optimizer step: a
        # resumed run skips what it already trained on and sees what an uninterrupted run sees.
        # A fresh dataset per fit: iterating one dataset twice would draw other epoch seeds.
        ds = tfdata.load(config.data.name, "train", binarize=config.data.binarize, batch_size=config.data.batch_size,
                         shuffle=True, repeat=True, **_data_kwargs(config))
        return ds.skip(skip) if skip else ds

    num_batches = int(tfdata.load(config.data.name, "train", batch_size=config.data.batch_size, shuffle=False,
                                  binarize=config.data.binarize, **_data_kwargs(config)).cardinality())
    steps_per_epoch = t.max_steps_per_epoch or num_batches
    test_images = _test_images(config, config.eval.num_examples, config.eval.batch_size)
    example_shape = tuple(test_images.shape[1:])

    # The same initial weights in every run, so a resumed or multi-worker run can be compared.
    keras.utils.set_random_seed(config.model.seed)
    with strategy.scope():
        model = cfg.build_model(config, input_shape=example_shape)
        model.compile(optimizer=keras.optimizers.Adam(t.learning_rate, epsilon=t.adam_epsilon),
                      jit_compile=t.jit_compile, steps_per_execution=t.steps_per_execution)
        step = _restore(model, saved)
    initial_epoch, step_in_epoch = divmod(step, steps_per_epoch)
    history = [r for r in _read_json(saved["metrics"], {}).get("history", []) if r["epoch"] <= initial_epoch]
    _log(f"{config.model.name}: {model.count_params():,} parameters, K={config.model.num_samples}, "
         f"{config.data.name} {example_shape}, workdir {workdir}, {type(strategy).__name__} over "
         f"{strategy.num_replicas_in_sync} replica(s)")

    base_metrics = {"model": config.model.name, "status": "training", "num_parameters": int(model.count_params()),
                    "num_replicas": int(strategy.num_replicas_in_sync)}
    cbs.write_json_atomic(paths["metrics"], dict(base_metrics, history=history))

    nan_guard = cbs.NaNGuard(print_fn=_log)
    checkpoint = cbs.AtomicCheckpoint(paths["checkpoints"], every_n_epochs=t.checkpoint_every_n_epochs,
                                      print_fn=_log)
    state = cbs.TrainingCheckpoint(paths["checkpoints"], every_n_steps=t.checkpoint_every_n_steps, print_fn=_log)
    images = cbs.ImageSummary(outdir, test_images[:32], every_n_epochs=t.image_every_n_epochs,
                              num_samples=config.eval.num_image_samples, seed=config.eval.seed)
    json_history = cbs.JSONHistory(
        on_update=lambda h: _update_metrics(outdir, history=h, epochs_completed=h[-1]["epoch"]),
        initial_history=history)
    callbacks = [
        # NaNGuard first, so it stops training before others see the broken epoch.
        nan_guard,
        checkpoint,
        state,
        images,
    ]
    if config.eval.diagnostics_every_n_epochs:
        # Before the loggers, so latent_active_units etc. reach metrics.json and TensorBoard.
        callbacks.append(cbs.LatentDiagnostics(test_images, every_n_epochs=config.eval.diagnostics_every_n_epochs,
                                               num_examples=1000, print_fn=_log, seed=config.eval.seed))
    callbacks += [json_history, keras.callbacks.TensorBoard(paths["logs"], write_graph=False)]
    # Keras epochs cannot start mid-way, so a run resumed mid-epoch first finishes that epoch
    # in a fit of its own (its logged metrics then cover only the rest of the epoch).
    fits = [(initial_epoch, initial_epoch + 1, steps_per_epoch - step_in_epoch)] if step_in_epoch else []
    fits.append((initial_epoch + bool(step_in_epoch), t.epochs, steps_per_epoch))
    if initial_epoch >= t.epochs:
        _log(f"Already trained for {initial_epoch} >= {t.epochs} epochs; only evaluating.")
    for first, last, steps in fits:
        if first >= last or nan_guard.triggered:
            continue
        skip = int(model.optimizer.iterations.numpy())
        data = distribute.split_global_batches(strategy, lambda: train_data(skip))
        model.fit(data, epochs=last, initial_epoch=first,
                  steps_per_epoch=steps, callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 2,
                  shuffle=False)  # the dataset shuffles itself; this silences a Keras warning
    train_time = time.perf_counter() - start

    summary = dict(base_metrics, history=json_history.history, train_time_s=train_time,
                   steps=int(model.optimizer.iterations.numpy()),
                   epochs_completed=json_history.history[-1]["epoch"] if json_history.history else initial_epoch)
    if nan_guard.triggered:
        summary.update(status="nan", failure=nan_guard.failure, wall_time_s=time.perf_counter() - start,
                       last_good_checkpoint=paths["checkpoint"] if os.path.exists(paths["checkpoint"]) else None,
                       last_good_epoch=checkpoint.saved_epoch, last_good_step=state.saved_step)
        _update_metrics(outdir, **summary)
        _log(f"{nan_guard.message} model.keras was not written; the last good checkpoint is "
             f"{summary['last_good_checkpoint']} (epoch {checkpoint.saved_epoch}), the last good training "
             f"state is from step {state.saved_step}.")
        return 1

    cbs.save_model_atomic(model, paths["model"])
    if not (os.path.exists(images.samples_path) and os.path.exists(images.reconstructions_path)):
        images.write(model)  # e.g. resumed past the last epoch: fit never ran
    if json_history.history:
        summary["train"] = {k: v for k, v in json_history.history[-1].items() if k not in ("epoch", "epoch_time_s")}
    diagnostics = [c for c in callbacks if isinstance(c, cbs.LatentDiagnostics)]
    if diagnostics and diagnostics[0].results:
        summary["latent_diagnostics"] = diagnostics[0].results[-1][1]
    if outdir == workdir:  # the test NLL is local work, so only the chief computes it
        result = _evaluate_nll(model, config, config.eval.num_samples, config.eval.num_examples, config.eval.seed)
        summary.update(result, evaluations=[_evaluation_record(result)])
    summary.update(status="completed", wall_time_s=time.perf_counter() - start)
    _update_metrics(outdir, **summary)
    _log(f"Done in {summary['wall_time_s']:.1f} s; wrote {paths['model']} and {paths['metrics']}.")
    return 0


def _evaluate_ais(model, config, method, num_examples, seed, ais):
    """AIS NLL on test images, or the BDMC sandwich on simulated ones, as a metrics record."""
    progress = sys.stdout.isatty()
    start = time.perf_counter()
    budget = f"T={ais['num_steps']}, {ais['num_chains']} chains, L={ais['leapfrog_steps']}, {ais['schedule']}, from {ais['start']}"
    if method == "ais":
        images = _test_images(config, num_examples, config.eval.batch_size)
        _log(f"Evaluating the AIS NLL on {len(images)} test images ({budget})...")
        result = evaluation.ais_log_likelihoods(model, images, seed=seed, verbose=progress, **ais).summary()
        _log(f"Test NLL (AIS, {len(images)} images): {result['nll']:.3f} +- {result['nll_stderr']:.3f} nats, "
             f"mean HMC acceptance {result['accept_prob'] if result['accept_prob'] is None else round(result['accept_prob'], 3)}")
    else:
        num_examples = num_examples or 100
        _log(f"BDMC on {num_examples} images simulated from the model ({budget})...")
        result = evaluation.bdmc(model, num_examples, seed=seed, verbose=progress, **ais).summary()
        _log(f"BDMC: {result['lower']:.3f} <= log p(x) <= {result['upper']:.3f}, gap {result['gap']:.3f} "
             f"+- {result['gap_stderr']:.3f} nats")
    result.update(method=method, seed=int(seed), time_s=time.perf_counter() - start, **ais)
    return result


def evaluate(workdir, num_samples=None, num_examples=None, seed=0, method="iwae", ais=None, diagnostics=True):
    """Evaluates workdir's model on the test split and merges the result into workdir/metrics.json.

    method: "iwae" (top-level test_nll), "ais" (test_nll_ais) or "bdmc" (bdmc). Every evaluation is
    also appended to metrics["evaluations"]; with diagnostics, latent_diagnostics is refreshed.
    """
    config = _load_saved_config(workdir)
    model = _load_model(workdir)
    num_samples = config.eval.num_samples if num_samples is None else num_samples
    num_examples = config.eval.num_examples if num_examples is None else num_examples
    if num_samples < 1 or num_examples < 0:
        raise CLIError(f"--num_samples must be >= 1 and --num_examples >= 0, got {num_samples} and {num_examples}.")
    if method not in EVAL_METHODS:
        raise CLIError(f"unknown --method {method!r}; choose one of {EVAL_METHODS}.")
    ais = dict(evaluation.DEFAULT_AIS, **(ais or {}))
    if min(ais["num_steps"], ais["num_chains"], ais["leapfrog_steps"]) < 1:
        raise CLIError("--ais_steps, --num_chains and --leapfrog_steps must be >= 1.")
    metrics = _read_json(_paths(workdir)["metrics"], {})
    evaluations = metrics.get("evaluations", [])  # keep every evaluation; top-level keys hold the latest
    if method == "iwae":
        result = _evaluate_nll(model, config, num_samples, num_examples, seed)
        evaluations.append(_evaluation_record(result))
        updates = dict(result)
    else:
        result = _evaluate_ais(model, config, method, num_examples, seed, ais)
        evaluations.append(result)
        updates = ({"test_nll_ais": result["nll"], "test_nll_ais_stderr": result["nll_stderr"], "ais": result}
                   if method == "ais" else {"bdmc": result})
    if diagnostics:
        images = _test_images(config, num_examples, config.eval.batch_size)
        updates["latent_diagnostics"] = evaluation.latent_diagnostics(model, images, batch_size=config.eval.batch_size,
                                                                      seed=seed)
        d = updates["latent_diagnostics"]
        _log(f"Latent diagnostics on {d['num_examples']} test images: {d['active_units']} of {model.latent_dim} "
             f"units active, KL {d['kl']:.2f} nats, I_q(x; z) ~ {d['mutual_information']:.2f} nats.")
    _update_metrics(workdir, evaluations=evaluations, **updates)
    _log(f"Merged into {_paths(workdir)['metrics']}.")
    return 0


def sample(workdir, num_samples=None, seed=0, output=None):
    """Writes a PNG grid of num_samples images drawn from workdir's model."""
    model = _load_model(workdir)
    if num_samples is None:
        saved = _read_json(_paths(workdir)["config"], {})
        num_samples = saved.get("eval", {}).get("num_image_samples", 64)
    if num_samples < 1:
        raise CLIError(f"--num_samples must be >= 1, got {num_samples}.")
    output = output or os.path.join(workdir, f"samples-seed{seed}.png")
    images = keras.ops.convert_to_numpy(model.sample(num_samples, seed=seed))
    cbs.save_image_grid(images, output, ncols=math.ceil(math.sqrt(num_samples)))
    _log(f"Wrote {num_samples} samples (seed {seed}) to {output}.")
    return 0


# ---------------------------------------------------------------------------- entry point
def main(argv):
    """absl main: argv[1] is the subcommand."""
    args = argv[1:]
    if not args:
        raise CLIError(f"missing subcommand; choose one of: {', '.join(COMMANDS)}.")
    command, extra = args[0], args[1:]
    if command not in COMMANDS:
        raise CLIError(f"unknown subcommand {command!r}; choose one of: {', '.join(COMMANDS)}.")
    if extra:
        raise CLIError(f"unexpected arguments {extra} (flags need a leading --).")
    workdir = _require_workdir()
    if command == "train":
        if _CONFIG.value is None:
            raise CLIError("train needs --config, e.g. --config configs/vae_mlp_fashion_mnist.py.")
        try:
            config = _CONFIG.value
            config.to_dict()  # config_flags defers file errors (missing file, bad code) to first use
        except (OSError, AttributeError, TypeError) as error:
            raise CLIError(f"could not load --config: {error}") from None
        return train(config, workdir, strategy=_STRATEGY.value)
    if not os.path.isdir(workdir):
        raise CLIError(f"workdir {workdir!r} does not exist.")
    if command == "evaluate":
        ais = dict(num_steps=_AIS_STEPS.value, num_chains=_NUM_CHAINS.value, leapfrog_steps=_LEAPFROG_STEPS.value,
                   schedule=_SCHEDULE.value, start=_AIS_START.value)
        return evaluate(workdir, _NUM_SAMPLES.value, _NUM_EXAMPLES.value, _SEED.value, method=_METHOD.value, ais=ais,
                        diagnostics=_DIAGNOSTICS.value)
    return sample(workdir, _NUM_SAMPLES.value, _SEED.value, _OUTPUT.value)


def _override_paths(argv):
    """Dotted paths of the --config.a.b=... overrides in argv."""
    found = []
    for i, arg in enumerate(argv):
        match = re.match(r"^--?config\.([^=]+)(=.*)?$", arg)
        if match:
            value = match.group(2)[1:] if match.group(2) else (argv[i + 1] if i + 1 < len(argv) else "")
            found.append((match.group(1), arg if match.group(2) else f"{arg} {value}"))
    return found


def _config_override_error(argv, error):
    """A one-line message naming the override of a config field that does not exist."""
    text = str(error)
    hint = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"\?', text)
    bad = hint.group(2) if hint else (re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text) or [""])[0]
    for path, flag in _override_paths(argv):
        if bad in path.split("."):
            message = f"{flag}: the config has no field {path!r}."
            break
    else:
        message = f"invalid config override ({bad!r} is not a config field)."
    if hint:
        message += f' Did you mean "{hint.group(1)}" instead of "{hint.group(2)}"?'
    return message


def _dashes_to_underscores(arg):
    """--num-examples=5 -> --num_examples=5, --no-diagnostics -> --nodiagnostics: absl knows only
    underscores. Values stay as given."""
    match = re.match(r"^(--?)([A-Za-z][A-Za-z0-9_-]*)(=.*)?$", arg)
    if not match or match.group(2).startswith("config"):
        return arg
    name = re.sub(r"^no-", "no", match.group(2)).replace("-", "_")
    return match.group(1) + name + (match.group(3) or "")


def parse_flags(argv):
    """Parses flags like absl, but reports bad config overrides as one clear line."""
    argv = [_dashes_to_underscores(arg) for arg in argv]
    saved_argv = sys.argv
    # config_flags looks for --config.* overrides in sys.argv, not in the argv it is given, so
    # run(argv) (and in-process callers) must expose their argv there while parsing.
    sys.argv = list(argv)
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        _fail(f"{error}\nPass --helpshort or --helpfull to see help on flags.")
    except (KeyError, AttributeError) as error:
        # ml_collections raises these (not flags.Error) for overrides of fields that do not exist.
        _fail(_config_override_error(argv, error))
    finally:
        sys.argv = saved_argv


def _fail(message, code=USAGE_EXIT_CODE):
    sys.stderr.write(f"tfdgm: error: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


def _main_with_errors(argv):
    try:
        return main(argv)
    except CLIError as error:
        _fail(str(error))


def run(argv=None):
    """Console-script entry point (`tfdgm`)."""
    app.run(_main_with_errors, argv=argv, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
