"""`train`: fit config's model in a workdir, resumably, and write every artefact."""
import os
import shutil
import sys
import tempfile
import time

import keras
import tensorflow as tf

from tfdgm import callbacks as cbs
from tfdgm import config as cfg
from tfdgm import data as tfdata
from tfdgm import distribute
from tfdgm.experiment import evaluating, resume
from tfdgm.experiment import workdir as wd
from tfdgm.experiment.lock import WorkdirLock
from tfdgm.experiment.workdir import ExperimentError, log

# Errors a collective raises when a peer worker died or stopped answering.
_WORKER_FAILURES = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
                    tf.errors.CancelledError)


class WorkerFailedError(RuntimeError):
    """Another worker of a multi-worker job failed or stopped responding; rerun every worker to resume."""


def train(config, workdir, strategy="default", command=None):
    """Trains config's model in workdir and writes every artefact; returns the metrics.json dict.

    metrics["status"] is "completed", or "nan" when a non-finite loss or metric stopped training
    (model.keras is then not written; the last finite training state is kept). Training into a
    workdir with a training state resumes from it, bit for bit. Raises ExperimentError for a bad
    config or a workdir of another model, WorkerFailedError when a peer worker is lost.

    strategy: a name from `tfdgm.distribute.STRATEGIES`. In a multi-worker job every worker runs
    this function in lockstep (each collective needs all of them), so each also saves and writes
    the same files, but only the chief into workdir; the others write into a temporary directory
    that is removed at the end. All of them resume from workdir's training state.

    The chief holds workdir's lock (`tfdgm.experiment.lock`) while it runs: a second trainer on the
    same workdir is an ExperimentError. A resumed run may change the settings of
    `tfdgm.experiment.resume.CHANGEABLE` (applied, and logged), not the model or the data.

    command: the command line that started the run, recorded in metrics.json (the CLI passes it;
    `tfdgm publish` writes it on the preset's card).
    """
    try:
        cfg.validate(config)
    except ValueError as error:
        raise ExperimentError(str(error)) from None
    # MultiWorkerMirroredStrategy must be created before this process runs any TensorFlow op.
    strategy = distribute.make_strategy(strategy)
    chief = distribute.is_chief(strategy)
    outdir = workdir if chief else tempfile.mkdtemp(prefix="tfdgm-worker-")
    if not chief:
        log(f"Worker {distribute.task()} is not the chief: writing to {outdir} (removed at the end), "
            f"resuming from {workdir}.")
    lock = WorkdirLock(workdir) if chief else None
    try:
        if lock is not None:
            lock.acquire()
        return _train(config, workdir, outdir, strategy, command)
    except _WORKER_FAILURES as error:
        if strategy.num_replicas_in_sync == len(strategy.extended.worker_devices):
            raise  # a single process: not a lost peer, keep the traceback
        detail = " ".join(str(error).split())
        marker = "Collective ops is aborted by:"
        detail = detail[detail.find(marker):] if marker in detail else detail
        raise WorkerFailedError(
            f"training stopped because another worker of the job failed or stopped responding "
            f"({type(error).__name__}: {detail[:400]}). Restart every worker with the same command to resume "
            f"from the last checkpoint in {workdir}.") from None
    finally:
        if lock is not None:
            lock.release()
        if not chief:
            shutil.rmtree(outdir, ignore_errors=True)


def _check_workdir(config, workdir):
    """Compares config with the stored config.json of a workdir that has a training state: returns
    the changes a resume may make ({field: (stored, new)}); raises ExperimentError, naming every
    field, for changes it may not make (the model, the data). See `tfdgm.experiment.resume`."""
    stored = wd.read_json(wd.paths(workdir)["config"])
    if stored is None or not wd.has_training_state(workdir):
        return {}
    return resume.check(config, stored, workdir)


def _train_data(config, skip):
    # One endless stream of batches, the same in every run (each pass over the data reshuffles and
    # rebinarises from its own seed), so the data position is the optimizer step: a resumed run
    # skips what it already trained on and sees what an uninterrupted run sees. A fresh dataset
    # per fit: iterating one dataset twice would draw other epoch seeds.
    ds = tfdata.load(config.data.name, "train", binarize=config.data.binarize, batch_size=config.data.batch_size,
                     shuffle=True, repeat=True, **wd.data_kwargs(config))
    # tfdgm.data validated the arrays: model.fit need not peek at the first batch again.
    return tfdata.mark_validated(ds.skip(skip) if skip else ds)


def _build(config, strategy, example_shape, workdir):
    """The compiled model, restored from workdir's training state; returns (model, step, the state
    entry restored from or None)."""
    t = config.training
    # The same initial weights in every run, so a resumed or multi-worker run can be compared.
    keras.utils.set_random_seed(config.model.get("seed") or 0)
    with strategy.scope():
        model = wd.build_model(config, input_shape=example_shape)
        model.compile(optimizer=cfg.make_optimizer(t),
                      jit_compile=t.jit_compile, steps_per_execution=t.steps_per_execution,
                      towers=t.get("towers", 0) or "auto")
        step, entry, source = wd.restore(model, workdir)
    if source:
        log(f"Resuming from {source} (step {step}).")
    return model, step, entry


def _callbacks(config, model, outdir, test_images, history, restored):
    t, p = config.training, wd.paths(outdir)
    factor = t.get("divergence_factor", 1e3)
    reference = cbs.reference_loss(model, test_images[:config.data.batch_size]) if factor else None
    guards = (cbs.NaNGuard(print_fn=log), cbs.DivergenceGuard(factor, print_fn=log, reference=reference))
    state = cbs.TrainingCheckpoint(p["checkpoints"], every_n_steps=t.checkpoint_every_n_steps,
                                   every_n_epochs=t.checkpoint_every_n_epochs, print_fn=log, guards=guards)
    state.previous = restored  # the fallback kept beside the next state saved
    images = cbs.ImageSummary(outdir, test_images[:32], every_n_epochs=t.image_every_n_epochs,
                              num_samples=config.eval.num_image_samples, seed=config.eval.seed,
                              reconstructions=wd.capability(model, "has_encoder"))
    diagnostics = None

    def on_update(h):  # progress (and the latest latent diagnostics) on disk after every epoch
        latest = {"latent_diagnostics": diagnostics.results[-1][1]} if diagnostics and diagnostics.results else {}
        wd.update_metrics(outdir, history=h, epochs_completed=h[-1]["epoch"], **latest)

    json_history = cbs.JSONHistory(on_update=on_update, initial_history=history)
    # The guards first, so they stop training before the others see the broken step.
    callbacks = [*guards, state, images]
    if config.eval.diagnostics_every_n_epochs and not wd.missing(model, *wd.DIAGNOSTICS_NEED):
        # Before the loggers, so latent_active_units etc. reach metrics.json and TensorBoard.
        diagnostics = cbs.LatentDiagnostics(test_images, every_n_epochs=config.eval.diagnostics_every_n_epochs,
                                            num_examples=1000, print_fn=log, seed=config.eval.seed)
        callbacks.append(diagnostics)
    callbacks += [json_history, keras.callbacks.TensorBoard(p["logs"], write_graph=False)]
    return callbacks, guards, images, json_history, diagnostics


# Keys of a previous run's outcome that a new run clears from metrics.json (the rest is kept).
_OUTCOME_KEYS = ("failure", "error", "last_good_checkpoint", "last_good_epoch", "last_good_step")


def _train(config, workdir, outdir, strategy, command=None):
    start = time.perf_counter()
    paths = wd.paths(outdir)  # write here; resume from the chief's workdir
    for directory in (outdir, paths["checkpoints"]):  # what writes killed mid-way left (we hold the lock)
        removed = cbs.clean_temp_files(directory)
        if removed:
            log(f"Removed {len(removed)} temporary file(s) of interrupted writes from {directory}.")
    allowed = _check_workdir(config, workdir)
    wd.read_json(wd.paths(workdir)["metrics"], {})  # a damaged metrics.json is an error before any work

    t = config.training
    num_batches = int(tfdata.load(config.data.name, "train", batch_size=config.data.batch_size, shuffle=False,
                                  binarize=config.data.binarize, **wd.data_kwargs(config)).cardinality())
    steps_per_epoch = t.max_steps_per_epoch or num_batches
    test_images = wd.test_images(config, config.eval.num_examples, config.eval.batch_size)
    example_shape = tuple(test_images.shape[1:])
    model, step, restored = _build(config, strategy, example_shape, workdir)
    resume.apply(model, config, allowed)
    # The run is accepted: only now may it replace the workdir's config.json.
    os.makedirs(paths["checkpoints"], exist_ok=True)
    cbs.write_json_atomic(paths["config"], cfg.to_dict(config))
    try:
        return _fit_and_finish(config, workdir, outdir, strategy, model, step, restored, steps_per_epoch, command,
                               test_images, start)
    except Exception as error:
        wd.update_metrics(outdir, status="failed", error=f"{type(error).__name__}: {error}"[:500])
        raise


def _fit_and_finish(config, workdir, outdir, strategy, model, step, restored, steps_per_epoch, command, test_images,
                    start):
    t, paths, saved = config.training, wd.paths(outdir), wd.paths(workdir)
    initial_epoch, step_in_epoch = divmod(step, steps_per_epoch)
    previous = wd.read_json(saved["metrics"], {})
    history = [r for r in previous.get("history", []) if r["epoch"] <= initial_epoch]
    log(f"{config.model.name}: {model.count_params():,} parameters, K={config.model.get('num_samples')}, "
        f"{config.data.name} {tuple(test_images.shape[1:])}, workdir {workdir}, {type(strategy).__name__} over "
        f"{strategy.num_replicas_in_sync} replica(s)")

    base_metrics = {"model": config.model.name, "status": "training", "num_parameters": int(model.count_params()),
                    "num_replicas": int(strategy.num_replicas_in_sync)}
    if command:
        base_metrics["command"] = command
    # Merged, never replaced: evaluations, AIS results and diagnostics of earlier runs are kept.
    wd.update_metrics(outdir, **base_metrics, history=history, **dict.fromkeys(_OUTCOME_KEYS))
    callbacks, guards, images, json_history, diagnostics = _callbacks(
        config, model, outdir, test_images, history, restored)

    # Keras epochs cannot start mid-way, so a run resumed mid-epoch first finishes that epoch in a
    # fit of its own (its logged metrics then cover only the rest of the epoch).
    fits = [(initial_epoch, initial_epoch + 1, steps_per_epoch - step_in_epoch)] if step_in_epoch else []
    fits.append((initial_epoch + bool(step_in_epoch), t.epochs, steps_per_epoch))
    if initial_epoch >= t.epochs:
        log(f"Already trained for {initial_epoch} >= {t.epochs} epochs; only evaluating.")
    for first, last, steps in fits:
        if first >= last or any(guard.triggered for guard in guards):
            continue
        skip = int(model.optimizer.iterations.numpy())
        data = distribute.split_global_batches(strategy, lambda: _train_data(config, skip))
        model.fit(data, epochs=last, initial_epoch=first, steps_per_epoch=steps, callbacks=callbacks,
                  verbose=1 if sys.stdout.isatty() else 2,
                  shuffle=False)  # the dataset shuffles itself; this silences a Keras warning
    train_time = time.perf_counter() - start

    summary = dict(base_metrics, history=json_history.history, train_time_s=train_time,
                   steps=int(model.optimizer.iterations.numpy()),
                   epochs_completed=json_history.history[-1]["epoch"] if json_history.history else initial_epoch)
    stopped = next((guard for guard in guards if guard.triggered), None)
    if stopped is not None:
        good = wd.read_state(outdir)
        summary.update(status="nan" if isinstance(stopped, cbs.NaNGuard) else "diverged", failure=stopped.failure,
                       wall_time_s=time.perf_counter() - start,
                       last_good_checkpoint=good["path"] if good else None,
                       last_good_epoch=good.get("epochs_completed") if good else None,
                       last_good_step=good["step"] if good else None)
        where = (f"the last good training state is {good['path']} (step {good['step']}, "
                 f"{good.get('epochs_completed')} epochs)" if good else
                 "no training state was saved before it (rerun with a smaller learning rate to start afresh)")
        log(f"{stopped.message} model.keras was not written; {where}.")
        return wd.update_metrics(outdir, **summary)

    cbs.save_model_atomic(model, paths["model"])
    if not all(os.path.exists(path) for path in
               (images.samples_path,) + ((images.reconstructions_path,) if images.reconstructions else ())):
        images.write(model)  # e.g. resumed past the last epoch: fit never ran
    if json_history.history:
        summary["train"] = {k: v for k, v in json_history.history[-1].items() if k not in ("epoch", "epoch_time_s")}
    if diagnostics is not None and diagnostics.results:
        summary["latent_diagnostics"] = diagnostics.results[-1][1]
    skipped = {}
    lacking = wd.missing(model, *wd.IWAE_NEEDS)
    if lacking:
        skipped["test_nll"] = f"the IWAE-K bound needs q(z|x) and a bound; the model has {lacking}"
        log(f"Test NLL (IWAE-K) skipped: the model has {lacking}.")
    elif outdir == workdir:  # the test NLL is local work, so only the chief computes it
        result = evaluating.evaluate_nll(model, config, config.eval.num_samples, config.eval.num_examples,
                                         config.eval.seed)
        evaluations = wd.read_json(paths["metrics"], {}).get("evaluations", [])
        summary.update(result, evaluations=evaluations + [evaluating.evaluation_record(result)])
    lacking = wd.missing(model, *wd.DIAGNOSTICS_NEED)
    if lacking:
        skipped["latent_diagnostics"] = f"the model has {lacking}"
    if not images.reconstructions:
        skipped["reconstructions"] = "the model has has_encoder=False"
    if skipped:
        summary["skipped"] = skipped
    summary.update(status="completed", wall_time_s=time.perf_counter() - start)
    metrics = wd.update_metrics(outdir, **summary)
    log(f"Done in {summary['wall_time_s']:.1f} s; wrote {paths['model']} and {paths['metrics']}.")
    return metrics
