"""Experiments as Python functions: what `tfdgm train / evaluate / sample` run.

    from tfdgm import config, experiment
    cfg = config.base_config("iwae", num_samples=5)
    metrics = experiment.train(cfg, "runs/iwae")          # resumes if runs/iwae has a training state
    experiment.evaluate("runs/iwae", method="ais", num_examples=100)
    experiment.sample("runs/iwae", num_samples=16, seed=1)

User errors (bad arguments, a missing or mismatched workdir, an evaluation the model cannot do)
raise `ExperimentError`, a ValueError with a one-line message; a lost peer of a multi-worker job
raises `WorkerFailedError`. The workdir layout is described in `tfdgm.experiment.workdir`.
"""
from tfdgm.experiment.evaluating import EVAL_METHODS, evaluate, model_and_config, sample
from tfdgm.experiment.publishing import export, publish
from tfdgm.experiment.training import WorkerFailedError, train
from tfdgm.experiment.workdir import ExperimentError, is_user_error, load_model, one_line, paths

__all__ = ["EVAL_METHODS", "ExperimentError", "WorkerFailedError", "evaluate", "export", "is_user_error", "load_model",
           "model_and_config", "one_line", "paths", "publish", "sample", "train"]
