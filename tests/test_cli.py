"""The tfdgm command line and `tfdgm.experiment` end to end on Fashion-MNIST (a few steps), and
every config file in configs/ (found by glob: a new file is tested without being listed here).

`train` and a typo'd override run in a subprocess (`python -m tfdgm.cli`), exactly as a user
would; the other subcommands and errors run in-process through the same absl flag parser, with
flag values restored after each call, which saves a TensorFlow start-up per test.
"""
import glob
import importlib.util
import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import flagsaver
from PIL import Image

from tfdgm import callbacks as cbs
from tfdgm import cli
from tfdgm import config as cfg
from tfdgm import data as tfdata
from tfdgm import experiment
from tfdgm import models
from tests import custom_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(ROOT, "configs", "*.py")))
# What the configs of today are known to choose (checked on top of the generic checks, which
# every file in configs/ gets): model, K and gradient estimator.
EXPECTED = {
    "vae_mlp_fashion_mnist": ("vae", 1, None),
    "iwae_k5_mlp_fashion_mnist": ("iwae", 5, "iwae"),
    "iwae_k50_mlp_fashion_mnist": ("iwae", 50, "iwae"),
    "dreg_k5_mlp_fashion_mnist": ("iwae_dreg", 5, "dreg"),
    "dreg_k50_mlp_fashion_mnist": ("iwae_dreg", 50, "dreg"),
    **{f"ais_t{t}_k{k}_mlp_fashion_mnist": ("ais_vae", k, None) for t in (5, 11) for k in (1, 5, 50)},
}
GRAPH_MODE_CONFIGS = ("iwae_k50_mlp_fashion_mnist",)
FAST = ["--config.training.epochs=1", "--config.training.max_steps_per_epoch=3",
        "--config.eval.num_samples=10", "--config.eval.num_examples=200"]


def _config_path(name):
    return os.path.join(ROOT, "configs", f"{name}.py")


def _subprocess(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    return subprocess.run([sys.executable, "-m", "tfdgm.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _run_cli(*args):
    """Runs the CLI in-process; returns the exit code (0 when main returns normally)."""
    with flagsaver.flagsaver():
        try:
            return cli._main_with_errors(cli.parse_flags(["tfdgm", *args])) or 0
        except SystemExit as exit_:
            return exit_.code


def _png_size(path):
    with Image.open(path) as image:
        image.verify()  # raises on a truncated or corrupt file
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def _metrics(workdir):
    with open(os.path.join(workdir, "metrics.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A workdir trained by the real command line (DReG K=5, XLA, 3 steps)."""
    path = str(tmp_path_factory.mktemp("run") / "dreg")
    result = _subprocess("train", "--config", _config_path("dreg_k5_mlp_fashion_mnist"), "--workdir", path, *FAST)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "[tfdgm] Test NLL (IWAE-10, 200 images)" in result.stdout  # progress is printed
    return path


# ---------------------------------------------------------------------------- train
def test_train_writes_every_artefact(workdir):
    for name in ("config.json", "metrics.json", "model.keras", "samples.png", "reconstructions.png",
                 "checkpoints/state.json", "checkpoints/state-3.npz"):
        assert os.path.isfile(os.path.join(workdir, name)), name
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["state-3.npz", "state.json"]  # one mechanism
    assert os.listdir(os.path.join(workdir, "logs", "train")), "no TensorBoard events"
    assert not [f for f in os.listdir(workdir) if f.startswith(".tmp-")]

    saved = cfg.load_json(os.path.join(workdir, "config.json"))
    assert saved.model.name == "iwae_dreg" and saved.training.max_steps_per_epoch == 3
    assert saved.data.data_dir is None

    assert _png_size(os.path.join(workdir, "samples.png")) == (8 * 29 - 1, 8 * 29 - 1)  # 64 samples, 8x8
    assert _png_size(os.path.join(workdir, "reconstructions.png")) == (8 * 29 - 1, 8 * 29 - 1)  # 32 pairs

    metrics = _metrics(workdir)
    assert metrics["status"] == "completed" and metrics["model"] == "iwae_dreg"
    assert math.isfinite(metrics["test_nll"]) and metrics["test_nll"] > 0
    assert math.isfinite(metrics["test_nll_stderr"]) and metrics["test_nll_stderr"] > 0
    assert metrics["eval"]["num_samples"] == 10 and metrics["eval"]["num_examples"] == 200
    assert metrics["steps"] == 3 and metrics["epochs_completed"] == 1
    assert [r["epoch"] for r in metrics["history"]] == [1]
    for key in ("loss", "elbo", "kl", "recon", "iwae_bound", "ess", "latent_active_units", "latent_mutual_information"):
        assert math.isfinite(metrics["train"][key]), key
    assert metrics["latent_diagnostics"]["num_examples"] == 200 and len(metrics["latent_diagnostics"]["kl_per_dim"]) == 50
    assert metrics["wall_time_s"] >= metrics["train_time_s"] > 0

    model = keras.models.load_model(os.path.join(workdir, "model.keras"), compile=False)
    assert isinstance(model, models.IWAEDReG) and model.num_samples == 5


def test_typo_in_a_config_override_names_the_key(tmp_path):
    result = _subprocess("train", "--config", _config_path("vae_mlp_fashion_mnist"),
                         "--workdir", str(tmp_path / "w"), "--config.training.epoch=3")
    assert result.returncode == 2
    assert "training.epoch" in result.stderr and 'Did you mean "epochs"' in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "w")


# ---------------------------------------------------------------------------- evaluate and sample
def test_evaluate_merges_into_metrics(workdir):
    before = _metrics(workdir)
    assert _run_cli("evaluate", "--workdir", workdir, "--num_samples", "5", "--num_examples", "50") == 0
    after = _metrics(workdir)
    assert after["eval"]["num_samples"] == 5 and after["eval"]["num_examples"] == 50
    assert math.isfinite(after["test_nll"]) and math.isfinite(after["test_nll_stderr"])
    # Everything training wrote is kept; every evaluation is listed, the latest on top.
    assert after["history"] == before["history"] and after["train"] == before["train"]
    assert [e["num_examples"] for e in after["evaluations"]] == [200, 50]
    diagnostics = after["latent_diagnostics"]
    assert diagnostics["num_examples"] == 50 and 0 <= diagnostics["active_units"] <= 50
    assert len(diagnostics["kl_per_dim"]) == 50 and math.isfinite(diagnostics["mutual_information"])


def test_evaluate_by_ais_and_bdmc_merges_into_metrics(workdir):
    budget = ["--ais-steps=20", "--num-chains=3", "--leapfrog-steps=2", "--no-diagnostics"]
    assert _run_cli("evaluate", "--workdir", workdir, "--method=ais", "--num-examples=20", *budget) == 0
    after = _metrics(workdir)
    ais = after["evaluations"][-1]
    assert ais["method"] == "ais" and ais["num_examples"] == 20 and ais["num_chains"] == 3 and ais["num_steps"] == 20
    assert after["test_nll_ais"] == ais["nll"] > 0 and after["test_nll_ais_stderr"] > 0
    assert 0 < ais["accept_prob"] <= 1
    test_nll = after["test_nll"]
    assert _run_cli("evaluate", "--workdir", workdir, "--method", "bdmc", "--num_examples", "6",
                    "--ais_steps", "20", "--num_chains", "2", "--leapfrog_steps", "2", "--ais_start", "encoder") == 0
    after = _metrics(workdir)
    bdmc = after["bdmc"]
    assert bdmc == after["evaluations"][-1] and bdmc["num_examples"] == 6 and bdmc["start"] == "encoder"
    assert bdmc["lower"] < 0 and bdmc["upper"] < 0 and math.isfinite(bdmc["gap"])
    assert after["test_nll"] == test_nll  # the IWAE result is left alone


def test_sample_writes_a_png_and_is_deterministic(workdir, tmp_path):
    first, second = str(tmp_path / "a.png"), str(tmp_path / "b.png")
    assert _run_cli("sample", "--workdir", workdir, "--num_samples", "16", "--seed", "1", "--output", first) == 0
    assert _png_size(first) == (4 * 29 - 1, 4 * 29 - 1)
    assert experiment.sample(workdir, num_samples=16, seed=1, output=second) == second
    assert open(first, "rb").read() == open(second, "rb").read()


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize("args, message", [
    ((), "missing subcommand; choose one of: train, evaluate, sample"),
    (("fit", "--workdir", "x"), "unknown subcommand 'fit'; choose one of: train, evaluate, sample"),
    (("evaluate",), "evaluate needs exactly one of --workdir and --preset"),
    (("train",), "--workdir is required"),
    (("publish", "--workdir", "."), "publish needs --out"),
    (("export", "--preset", "x"), "export needs --out"),
    (("evaluate", "--workdir", ".", "--method=exact"), "--method=exact: value should be one of <iwae|ais|bdmc>"),
    (("train", "--workdir", "x"), "train needs --config"),
    (("train", "--workdir", "x", "--config", "configs/nope.py"), "could not load --config"),
    (("train", "--workdir", "x", "--config", _config_path("vae_mlp_fashion_mnist"),
      "--config.model.gradient_estimator=dreg"), "the config has no field 'model.gradient_estimator'"),
    (("train", "--workdir", "x", "--config", _config_path("vae_mlp_fashion_mnist"),
      "--config.training.epochs=many"), "invalid literal for int()"),
])
def test_usage_errors_are_one_clear_line(args, message, capsys):
    assert _run_cli(*args) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfdgm: error: ") and message in err


def test_config_overrides_reach_the_config():
    # config_flags reads overrides from sys.argv; parse_flags must make that work for any argv.
    with flagsaver.flagsaver():
        cli.parse_flags(["tfdgm", "train", "--config", _config_path("iwae_k5_mlp_fashion_mnist"),
                         "--config.training.epochs=3", "--config.model.hidden_units=(32,16)",
                         "--config.data.data_dir=/tmp/fmnist"])
        config = cli._CONFIG.value
        assert config.training.epochs == 3 and tuple(config.model.hidden_units) == (32, 16)
        assert config.data.data_dir == "/tmp/fmnist" and config.model.num_samples == 5


def test_missing_model_in_workdir(tmp_path, capsys):
    cbs.write_json_atomic(tmp_path / "config.json", cfg.to_dict(cfg.base_config("vae")))
    for command in ("evaluate", "sample"):
        assert _run_cli(command, "--workdir", str(tmp_path)) == 2
        assert "No model in workdir" in capsys.readouterr().err


# ---------------------------------------------------------------------------- configs
def _load_config_file(name):
    spec = importlib.util.spec_from_file_location(f"_config_{name}", _config_path(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def test_the_known_configs_are_all_there():
    assert set(EXPECTED) <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_file_loads_and_builds_its_model(name):
    config = _load_config_file(name)
    model_class = models.get_model_class(config.model.name)
    # config.model is the class's constructor defaults (declared once, by the class), overridden.
    assert set(config.model.keys()) == {"name"} | set(model_class.default_config())
    if name in EXPECTED:
        model_name, num_samples, estimator = EXPECTED[name]
        assert config.model.name == model_name and config.model.num_samples == num_samples
        assert config.get("model").get("gradient_estimator") == estimator
    # IWAE K=50 trains in graph mode: faster than XLA on CPU (BENCHMARKS.md).
    assert config.data.name == "fashion_mnist" and config.training.jit_compile is (name not in GRAPH_MODE_CONFIGS)
    with pytest.raises((AttributeError, KeyError)):
        config.training.epoch = 3  # locked: a typo cannot add a field
    cfg.validate(config)
    model = cfg.build_model(config, input_shape=(28, 28, 1))
    assert type(model) is model_class
    for key, value in cfg.model_kwargs(config).items():  # every plain field reached the constructor
        attribute = getattr(model, key, None)
        if isinstance(attribute, (bool, int, float, str, tuple)) and key != "seed":
            assert attribute == value, key
    assert cfg.to_dict(cfg.from_dict(cfg.to_dict(config))) == cfg.to_dict(config)


def test_base_config_takes_a_model_registered_anywhere():
    config = cfg.base_config(custom_model.NAME)
    assert config.model.note == "declared by the class" and config.model.seed == 0
    assert config.model.hidden_units == (200, 200)  # a tuple, so --config.model.hidden_units=(32,16) parses
    with pytest.raises(ValueError, match="Unknown model 'gan'"):
        cfg.base_config("gan")


def test_validate_rejects_meaningless_values():
    config = cfg.base_config("vae")
    config.training.epochs = 0
    with pytest.raises(ValueError, match="training.epochs"):
        cfg.validate(config)
    config = cfg.base_config("vae")
    config.model.name = "gan"
    with pytest.raises(ValueError, match="registered"):
        cfg.validate(config)


# ---------------------------------------------------------------------------- NaN and resume
def _small_config(epochs):
    config = cfg.base_config("vae")
    config.model.hidden_units = (16,)
    config.model.latent_dim = 4
    config.training.epochs = epochs
    config.training.max_steps_per_epoch = 2
    config.training.jit_compile = False
    config.eval.num_samples = 3
    config.eval.num_examples = 20
    config.eval.num_image_samples = 4
    return config


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_load = tfdata.load

    def load_with_nan(name, split="train", **kwargs):
        ds = real_load(name, split, **kwargs)
        if split != "train":
            return ds
        # The 4th training batch (epoch 2, batch 2 with 2 steps per epoch) turns NaN.
        return ds.enumerate().map(lambda i, x: tf.where(i == 3, x * np.nan, x))

    monkeypatch.setattr(tfdata, "load", load_with_nan)
    workdir = str(tmp_path / "w")
    assert experiment.train(_small_config(epochs=4), workdir)["status"] == "nan"
    metrics = _metrics(workdir)
    assert metrics["status"] == "nan" and metrics["last_good_epoch"] == 1 and metrics["last_good_step"] == 2
    assert metrics["last_good_checkpoint"] == os.path.join(workdir, "checkpoints", "state-2.npz")
    assert metrics["failure"]["epoch"] == 2 and metrics["failure"]["batch"] == 2
    assert "loss" in metrics["failure"]["metrics"]
    assert not os.path.exists(os.path.join(workdir, "model.keras"))  # no NaN model written
    monkeypatch.undo()
    # The unfinished workdir still evaluates and samples, from its last good training state.
    restored = experiment.load_model(workdir)
    assert cbs.all_finite(restored) and restored.seed_generator.state.numpy().tolist() != [0, 0]
    state = np.load(metrics["last_good_checkpoint"])
    for i, weight in enumerate(restored.weights):
        np.testing.assert_array_equal(weight.numpy(), state[f"model/{i}"])
    assert experiment.sample(workdir, num_samples=4) == os.path.join(workdir, "samples-seed0.png")
    result = experiment.evaluate(workdir, num_samples=2, num_examples=10, diagnostics=False)
    assert math.isfinite(result["test_nll"]) and _metrics(workdir)["status"] == "nan"


def test_train_resumes_from_the_last_checkpoint(tmp_path):
    workdir = str(tmp_path / "w")
    assert experiment.train(_small_config(epochs=1), workdir)["status"] == "completed"
    metrics = experiment.train(_small_config(epochs=2), workdir)
    assert metrics == _metrics(workdir) and metrics["status"] == "completed"
    assert [r["epoch"] for r in metrics["history"]] == [1, 2]
    assert metrics["steps"] == 4  # the optimizer state (and its step) came back
    state = json.load(open(os.path.join(workdir, "checkpoints", "state.json")))
    assert state["epochs_completed"] == 2 and state["step"] == 4 and state["file"] == "state-4.npz"


def test_train_refuses_a_workdir_of_another_model(tmp_path):
    workdir = str(tmp_path / "w")
    experiment.train(_small_config(epochs=1), workdir)
    # A config.json written before the model class gained a field still matches (the field
    # counts as its default), so the run resumes.
    saved = json.load(open(os.path.join(workdir, "config.json")))
    del saved["model"]["free_bits"]
    cbs.write_json_atomic(os.path.join(workdir, "config.json"), saved)
    assert experiment.train(_small_config(epochs=1), workdir)["steps"] == 2
    other = _small_config(epochs=2)
    other.model.latent_dim = 3
    with pytest.raises(experiment.ExperimentError, match=r"different model or data config \(model.latent_dim 4 -> 3\)"):
        experiment.train(other, workdir)


def test_train_resumes_a_workdir_of_the_previous_checkpoint_format(tmp_path, capsys):
    # state.json naming a Keras .weights.h5 file (model and optimizer) plus the seed generator state.
    workdir, config = tmp_path / "w", _small_config(epochs=2)
    model = cfg.build_model(config, input_shape=(28, 28, 1))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(2)
    (workdir / "checkpoints").mkdir(parents=True)
    model.save_weights(workdir / "checkpoints" / "state-2.weights.h5")
    cbs.write_json_atomic(workdir / "checkpoints" / "state.json",
                          {"step": 2, "weights": "state-2.weights.h5", "seed_generator": [0, 2]})
    cbs.write_json_atomic(workdir / "config.json", cfg.to_dict(config))
    assert experiment.train(config, str(workdir))["steps"] == 4
    assert "state-2.weights.h5 (step 2)" in capsys.readouterr().out


# ---------------------------------------------------------------------------- every model, from Python
def _first_config_per_model():
    first = {}
    for name in CONFIGS:
        first.setdefault(_load_config_file(name).model.name, name)
    return sorted(first.values())


@pytest.mark.parametrize("name", _first_config_per_model())
def test_experiment_train_from_python_for_every_model_in_configs(name, tmp_path):
    config = _load_config_file(name)
    # Small versions of the sizes a model declares (an RBM has num_hidden, no latent_dim).
    small = {"hidden_units": (16,), "latent_dim": 4, "num_hidden": 16, "num_chains": 20, "gibbs_steps": 5}
    config.model.update({key: value for key, value in small.items() if key in config.model})
    config.data.batch_size = 20
    config.training.update(epochs=1, max_steps_per_epoch=2, jit_compile=False, steps_per_execution=1)
    config.eval.update(num_samples=2, num_examples=20, num_image_samples=4)
    metrics = experiment.train(config, str(tmp_path))
    assert metrics["status"] == "completed" and metrics["steps"] == 2
    model = keras.models.load_model(tmp_path / "model.keras", compile=False)
    assert type(model) is models.get_model_class(config.model.name)
    if model.has_encoder and model.has_bound:  # the IWAE-K test NLL needs both
        assert math.isfinite(metrics["test_nll"])
    else:
        assert "test_nll" not in metrics
    # Every parameter group's optimizer is in the training state.
    groups = sorted(json.load(open(tmp_path / "checkpoints" / "state.json"))["groups"])
    state = np.load(tmp_path / "checkpoints" / "state-2.npz")
    assert sorted({k.split("/")[1] for k in state if k.startswith("optimizer/")}) == groups


# ---------------------------------------------------------------------------- a model registered outside
CUSTOM_CONFIG = '''"""A config whose model is registered by a module it imports, not by tfdgm."""
import tests.custom_model  # noqa: F401  (registers the model)
from tfdgm.config import base_config


def get_config():
    config = base_config(tests.custom_model.NAME)
    config.model.note = "set by the config file"
    return config
'''


def test_a_config_importing_its_own_model_trains_and_capabilities_are_respected(tmp_path, capsys):
    path = tmp_path / "custom.py"
    path.write_text(CUSTOM_CONFIG)
    workdir = str(tmp_path / "w")
    result = _subprocess("train", "--config", str(path), "--workdir", workdir, "--config.model.hidden_units=(16,)",
                         "--config.model.latent_dim=4", "--config.training.jit_compile=False", *FAST)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Test NLL (IWAE-K) skipped: the model has has_encoder=False" in result.stdout
    metrics = _metrics(workdir)
    assert metrics["status"] == "completed" and metrics["model"] == custom_model.NAME and "test_nll" not in metrics
    assert set(metrics["skipped"]) == {"test_nll", "latent_diagnostics", "reconstructions"}
    assert "latent_active_units" not in metrics["history"][0]
    assert os.path.exists(os.path.join(workdir, "samples.png"))
    assert not os.path.exists(os.path.join(workdir, "reconstructions.png"))
    model = keras.models.load_model(os.path.join(workdir, "model.keras"), compile=False)
    assert isinstance(model, custom_model.VAEWithoutEncoder) and model.note == "set by the config file"

    assert _run_cli("evaluate", "--workdir", workdir) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfdgm: error: --method iwae needs a model with has_encoder and has_bound")
    assert len(err.strip().splitlines()) == 1
    assert _run_cli("sample", "--workdir", workdir, "--num_samples", "4") == 0


TOY_CONFIG = '''"""The three-group toy objective of tests/toy_objective.py, trained by the CLI from this file alone."""
import tests.toy_objective  # noqa: F401  (registers the model)
from tfdgm.config import base_config


def get_config():
    config = base_config("toy_baseline_vae")
    config.model.running_mean_decay = 0.5
    return config
'''


def test_a_new_objective_with_three_parameter_groups_trains_through_the_cli(tmp_path):
    path = tmp_path / "toy.py"
    path.write_text(TOY_CONFIG)
    workdir = str(tmp_path / "w")
    result = _subprocess("train", "--config", str(path), "--workdir", workdir, "--config.model.hidden_units=(16,)",
                         "--config.model.latent_dim=4", *FAST)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = _metrics(workdir)
    assert metrics["status"] == "completed" and metrics["model"] == "toy_baseline_vae"
    assert np.isfinite(metrics["test_nll"]) and "baseline_error" in metrics["history"][-1]
    assert metrics["history"][-1]["running_elbo"] < 0  # after_step ran
    state = json.load(open(os.path.join(workdir, "checkpoints", "state.json")))
    assert sorted(state["groups"]) == ["baseline", "p", "q"]
    model = keras.models.load_model(os.path.join(workdir, "model.keras"), safe_mode=True)
    assert model.running_mean_decay == 0.5 and sorted(model.optimizers_by_group) == ["baseline", "p", "q"]
