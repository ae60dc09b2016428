"""tfdgm command line: train, evaluate and sample deep latent-variable models.

Usage:
  tfdgm train --config configs/iwae_k50_mlp_fashion_mnist.py --workdir runs/iwae \\
      [--config.training.epochs=10 ...]
  tfdgm evaluate --workdir runs/iwae [--method iwae|ais|bdmc] [--num_samples 5000] [--num_examples 10000]
      [--ais_steps 500 --num_chains 16 --leapfrog_steps 10 --schedule sigmoidal --ais_start prior]
  tfdgm sample --workdir runs/iwae [--num_samples 64] [--seed 0] [--output samples.png]
  tfdgm evaluate|sample|export --preset NAME|DIR|URL ...   (a pretrained preset instead of a workdir)
  tfdgm export --workdir runs/iwae --out exported/iwae     (a SavedModel that needs only TensorFlow)
  tfdgm publish --workdir runs/iwae --out zoo/NAME [--index tfdgm/zoo/index.json] [--description ...]
  tfdgm list                                               (presets, registered models, configs)

The work is done by `tfdgm.experiment` (train, evaluate, sample); this module holds the flags and
the dispatch. A workdir holds config.json, checkpoints/state.json + state-<step>.npz (the training
state), logs/ (TensorBoard), samples.png, reconstructions.png, model.keras and metrics.json.
Training into a workdir that already has a training state resumes from it.
"""
import os
import re
import sys

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from tfdgm import config as cfg
from tfdgm import distribute
from tfdgm import evaluation
from tfdgm import experiment

COMMANDS = ("train", "evaluate", "sample", "export", "publish", "list")
NEEDS_MODEL = ("evaluate", "sample", "export")  # a --workdir or a --preset
EVAL_METHODS = list(experiment.EVAL_METHODS)
USAGE_EXIT_CODE = 2

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (train), e.g. configs/vae_mlp_fashion_mnist.py; "
    "override fields with --config.training.epochs=3.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (train, publish; or evaluate/sample/export).")
_PRESET = flags.DEFINE_string("preset", None, "evaluate / sample / export: a pretrained preset instead of --workdir: "
                              "a name from `tfdgm list`, a preset directory, or an http(s):// URL of one.")
_OUT = flags.DEFINE_string("out", None, "export: SavedModel directory to write. publish: preset directory to write.")
_NAME = flags.DEFINE_string("name", None, "publish: preset name (default: the --out directory's name).")
_DESCRIPTION = flags.DEFINE_string("description", "", "publish: one line describing the preset.")
_TRAIN_COMMAND = flags.DEFINE_string("train_command", None, "publish: the exact training command for the card "
                                     "(default: the one `tfdgm train` recorded in metrics.json).")
_INDEX = flags.DEFINE_string("index", None, "publish: also add the preset to this index.json (e.g. "
                             "tfdgm/zoo/index.json).")
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
_OUTPUT = flags.DEFINE_string("output", None, "sample: output PNG (default: WORKDIR/samples-seed<SEED>.png). "
                              "evaluate: also write the result to this JSON file.")
_DEBUG = flags.DEFINE_boolean("debug", False, "Show the traceback of an error (also: TFDGM_DEBUG=1).")


class CLIError(experiment.ExperimentError):
    """A user error of the command line: printed as one line, without a traceback."""


class _BadOverride(Exception):
    """A --config.* override of a field the config does not have (not a ValueError, which absl
    would wrap in its own message)."""


class _CheckedConfigParser(flags.ArgumentParser):
    """The config file parser, plus a check of the --config.* override paths against the loaded
    config's fields, before ml_collections applies them."""

    def __init__(self, inner):
        self.inner = inner

    def parse(self, argument):
        config = self.inner.parse(argument)
        if isinstance(config, ml_collections.ConfigDict):  # else a load error, reported on first use
            for path, flag in _override_paths(sys.argv):
                try:
                    cfg.check_override_paths(config, [path])
                except ValueError as error:
                    raise _BadOverride(f"{flag}: {error}") from None
        return config

    def flag_type(self):
        return self.inner.flag_type()


flags.FLAGS["config"].parser = _CheckedConfigParser(flags.FLAGS["config"].parser)


def main(argv):
    """absl main: argv[1] is the subcommand; returns the exit code."""
    args = argv[1:]
    if not args:
        raise CLIError(f"missing subcommand; choose one of: {', '.join(COMMANDS)}.")
    command, extra = args[0], args[1:]
    if command not in COMMANDS:
        raise CLIError(f"unknown subcommand {command!r}; choose one of: {', '.join(COMMANDS)}.")
    if extra:
        raise CLIError(f"unexpected arguments {extra} (flags need a leading --).")
    if command == "list":
        _print_list()
        return 0
    workdir, preset = _WORKDIR.value, _PRESET.value
    if command in NEEDS_MODEL:
        if bool(workdir) == bool(preset):
            raise CLIError(f"{command} needs exactly one of --workdir and --preset.")
        if workdir and not os.path.isdir(workdir):
            raise CLIError(f"workdir {workdir!r} does not exist.")
    elif not workdir:
        raise CLIError("--workdir is required.")
    if command == "train":
        if _CONFIG.value is None:
            raise CLIError("train needs --config, e.g. --config configs/vae_mlp_fashion_mnist.py.")
        try:
            config = _CONFIG.value
            config.to_dict()  # config_flags defers file errors (missing file, bad code) to first use
        except (OSError, AttributeError, TypeError, ValueError) as error:
            raise CLIError(f"could not load --config: {experiment.one_line(error)}") from None
        metrics = experiment.train(config, workdir, strategy=_STRATEGY.value, command=_command_line())
        return 0 if metrics["status"] == "completed" else 1
    if command == "publish":
        if not os.path.isdir(workdir):
            raise CLIError(f"workdir {workdir!r} does not exist.")
        if not _OUT.value:
            raise CLIError("publish needs --out, the preset directory to write (e.g. zoo/my_vae).")
        experiment.publish(workdir, _OUT.value, name=_NAME.value, description=_DESCRIPTION.value,
                           train_command=_TRAIN_COMMAND.value, index=_INDEX.value)
    elif command == "export":
        if not _OUT.value:
            raise CLIError("export needs --out, the SavedModel directory to write.")
        experiment.export(_OUT.value, workdir=workdir, preset=preset)
    elif command == "evaluate":
        ais = dict(num_steps=_AIS_STEPS.value, num_chains=_NUM_CHAINS.value, leapfrog_steps=_LEAPFROG_STEPS.value,
                   schedule=_SCHEDULE.value, start=_AIS_START.value)
        experiment.evaluate(workdir, _NUM_SAMPLES.value, _NUM_EXAMPLES.value, _SEED.value, method=_METHOD.value,
                            ais=ais, diagnostics=_DIAGNOSTICS.value, preset=preset, output=_OUTPUT.value)
    else:
        experiment.sample(workdir, _NUM_SAMPLES.value, _SEED.value, _OUTPUT.value, preset=preset)
    return 0


_INVOCATION = []  # the arguments of this invocation, as parsed (set by parse_flags)


def _command_line():
    """The command as typed (`tfdgm train ...`), for the run's metrics.json and a preset's card."""
    import shlex

    return " ".join(["tfdgm"] + [shlex.quote(arg) for arg in _INVOCATION])


def _print_list():
    from tfdgm import models, zoo

    print("Presets (tfdgm.from_preset(NAME); `tfdgm evaluate|sample|export --preset NAME`):")
    rows = zoo.list_presets()
    for row in rows:
        nll = "" if row["test_nll"] is None else f"test NLL {row['test_nll']:.2f}"
        print(f"  {row['name']:<34} {row['objective']:<12} {nll:<18} {row['size_bytes'] / 1e6:5.1f} MB  "
              f"[{row['where']}]  {row['description']}")
    if not rows:
        print("  (none)")
    print("Registered models (config.model.name):")
    print("  " + ", ".join(sorted(models.registered_models())))
    configs = os.path.join(os.path.dirname(__file__), "..", "configs")
    if os.path.isdir(configs):
        print(f"Configs ({os.path.abspath(configs)}; `tfdgm train --config configs/NAME.py`):")
        for name in sorted(f for f in os.listdir(configs) if f.endswith(".py") and not f.startswith("_")):
            print(f"  {name}")


def _override_paths(argv):
    """(dotted path, flag as given) of each --config.a.b=... override in argv."""
    found = []
    for i, arg in enumerate(argv):
        match = re.match(r"^--?(?:no)?config\.([^=]+)(=.*)?$", arg)
        if match:
            value = match.group(2)[1:] if match.group(2) else (argv[i + 1] if i + 1 < len(argv) else "")
            found.append((match.group(1), arg if match.group(2) else f"{arg} {value}"))
    return found


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
    _INVOCATION[:] = argv[1:]
    saved_argv = sys.argv
    # config_flags looks for --config.* overrides in sys.argv, not in the argv it is given, so
    # run(argv) (and in-process callers) must expose their argv there while parsing.
    sys.argv = list(argv)
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        _fail(f"{error}\nPass --helpshort or --helpfull to see help on flags.")
    except _BadOverride as error:
        _fail(str(error))
    except (KeyError, AttributeError) as error:  # anything else ml_collections rejects in an override
        _fail(f"invalid config override: {error}")
    finally:
        sys.argv = saved_argv


def _fail(message, code=USAGE_EXIT_CODE):
    sys.stderr.write(f"tfdgm: error: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


def _main_with_errors(argv):
    """main, with every error as one line on stderr: user errors (bad values, data, files) exit 2, a
    lost peer worker or anything unexpected 1. --debug (or TFDGM_DEBUG=1) re-raises instead."""
    try:
        return main(argv)
    except Exception as error:  # noqa: BLE001  (each becomes one line; --debug shows where)
        if _DEBUG.value or os.environ.get("TFDGM_DEBUG", "0") not in ("", "0"):
            raise
        if isinstance(error, (experiment.ExperimentError, experiment.WorkerFailedError)):
            _fail(str(error), code=1 if isinstance(error, experiment.WorkerFailedError) else USAGE_EXIT_CODE)
        user = experiment.is_user_error(error)
        prefix = "" if user else f"unexpected {type(error).__name__} (a bug? please report it): "
        _fail(f"{prefix}{experiment.one_line(error)} (rerun with --debug for the traceback)",
              code=USAGE_EXIT_CODE if user else 1)


def run(argv=None):
    """Console-script entry point (`tfdgm`)."""
    app.run(_main_with_errors, argv=argv, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
