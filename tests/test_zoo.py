"""The zoo: presets by directory, URL and name; verified downloads against a real HTTP server on
127.0.0.1 (stalling, truncating and corrupting ones too); safe loading; publish, export, list; and
every shipped preset against its likelihood card."""
import functools
import glob
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdgm
from tfdgm import zoo
from tfdgm.zoo import cards, download
from tests.test_cli import ROOT, _config_path, _run_cli

TINY_TRAIN = ["--config.model.hidden_units=(16,)", "--config.model.latent_dim=4", "--config.training.epochs=1",
              "--config.training.max_steps_per_epoch=3", "--config.training.jit_compile=False",
              "--config.eval.num_samples=10", "--config.eval.num_examples=50", "--config.eval.num_image_samples=4",
              "--config.eval.diagnostics_every_n_epochs=0"]
QUICK_AIS = ["--num_examples=10", "--ais_steps=4", "--num_chains=2", "--leapfrog_steps=2"]


# ---------------------------------------------------------------------------- a published tiny preset
@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """(workdir, preset directory, index path) of a tiny VAE trained, evaluated and published by the CLI."""
    root = tmp_path_factory.mktemp("zoo")
    workdir, preset, index = str(root / "run"), str(root / "zoo" / "tiny_vae"), str(root / "index.json")
    assert _run_cli("train", "--config", _config_path("vae_mlp_fashion_mnist"), "--workdir", workdir, *TINY_TRAIN) == 0
    assert _run_cli("evaluate", "--workdir", workdir, "--method=ais", *QUICK_AIS) == 0
    assert _run_cli("evaluate", "--workdir", workdir, "--method=bdmc", *QUICK_AIS) == 0
    assert _run_cli("publish", "--workdir", workdir, "--out", preset, "--description", "a tiny test VAE",
                    "--index", index) == 0
    return workdir, preset, index


def test_publish_writes_a_preset_with_a_full_card(published):
    workdir, preset, index = published
    assert sorted(os.listdir(preset)) == ["config.json", "metadata.json", "model.weights.h5"]
    card = zoo.read_metadata(preset)
    assert card["name"] == "tiny_vae" and card["objective"] == "vae"
    assert card["training"]["command"].startswith("tfdgm train --config")
    assert "--config.training.max_steps_per_epoch=3" in card["training"]["command"]
    assert card["training"]["config"]["model"]["latent_dim"] == 4 and card["training"]["steps"] == 3
    assert set(card["versions"]) >= {"tfdgm", "tensorflow", "tensorflow_probability", "keras"}
    ev = card["evaluation"]
    assert ev["iwae"]["num_samples"] == 10 and ev["iwae"]["num_examples"] == 50 and ev["iwae"]["stderr"] > 0
    assert ev["ais"]["num_steps"] == 4 and np.isfinite(ev["ais"]["nll"]) and "--method ais" in ev["ais"]["command"]
    assert ev["bdmc"]["upper"] >= ev["bdmc"]["lower"] - 5 * ev["bdmc"]["gap_stderr"]
    assert ev["check"]["num_samples"] == 500 and ev["check"]["num_examples"] == 500
    for name in ("config.json", "model.weights.h5"):
        path = os.path.join(preset, name)
        assert card["files"][name] == {"sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
                                       "size": os.path.getsize(path)}
    entry = json.load(open(index))["presets"]["tiny_vae"]
    assert entry["description"] == "a tiny test VAE" and set(entry["files"]) == {
        "config.json", "model.weights.h5", "metadata.json"}
    assert entry["test_nll"] == pytest.approx(ev["iwae"]["nll"])


def test_from_preset_directory_is_the_trained_model(published):
    workdir, preset, _ = published
    model = tfdgm.from_preset(preset)
    trained = experiment_model(workdir)
    for a, b in zip(model.weights, trained.weights):
        np.testing.assert_array_equal(a, b, err_msg=b.path)
    np.testing.assert_allclose(model.sample(3, seed=[1, 2]), trained.sample(3, seed=[1, 2]), atol=1e-6)


def experiment_model(workdir):
    from tfdgm import experiment

    return experiment.load_model(workdir)


def test_the_card_check_is_reproduced_by_the_preset(published):
    _, preset, _ = published
    card = zoo.read_metadata(preset)
    model = tfdgm.from_preset(preset)
    check = cards.check(model, card["training"]["config"])
    assert check["nll"] == pytest.approx(card["evaluation"]["check"]["nll"], abs=1e-3)


# ---------------------------------------------------------------------------- a real HTTP server
class _Handler(http.server.BaseHTTPRequestHandler):
    """/<mode>/.../<file> serves root/<file>: ok, corrupt (one byte flipped), truncated (half the body
    under the full Content-Length), stall (half, then silence), slow (in chunks, for concurrency)."""

    root, requests = None, None

    def log_message(self, *args):
        pass

    def do_GET(self):
        parts = self.path.strip("/").split("/")  # /<mode>[/<preset name>]/<file>
        mode, name = parts[0], parts[-1]
        self.requests.append(self.path)
        path = os.path.join(self.root, name)
        if not os.path.isfile(path):
            self.send_error(404)
            return
        body = open(path, "rb").read()
        if mode == "corrupt" and name.endswith(".h5"):
            body = body[:100] + bytes([body[100] ^ 1]) + body[101:]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if mode in ("truncated", "stall"):
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                if mode == "stall":
                    time.sleep(3)
                return
            if mode == "slow":
                for start in range(0, len(body), max(1, len(body) // 8)):
                    self.wfile.write(body[start:start + max(1, len(body) // 8)])
                    self.wfile.flush()
                    time.sleep(0.05)
                return
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture()
def server(published):
    _, preset, _ = published
    requests = []
    handler = type("Handler", (_Handler,), {"root": preset, "requests": requests})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDGM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _leftovers(directory):
    return [p for p in glob.glob(os.path.join(str(directory), "**", "*"), recursive=True) if ".part-" in p]


def test_from_preset_url_downloads_verifies_and_caches(published, server, cache):
    _, preset, _ = published
    url, requests = server
    model = tfdgm.from_preset(f"{url}/ok")
    reference = tfdgm.from_preset(preset)
    np.testing.assert_allclose(model.sample(3, seed=[1, 2]), reference.sample(3, seed=[1, 2]), atol=1e-6)
    weights_requests = [r for r in requests if r.endswith(".h5")]
    tfdgm.from_preset(f"{url}/ok")  # cached: the card is fetched again, the weights are not
    assert [r for r in requests if r.endswith(".h5")] == weights_requests == ["/ok/model.weights.h5"]
    assert not _leftovers(cache)


def test_a_named_preset_missing_on_disk_is_fetched_from_the_zoo_url(published, server, cache, tmp_path, monkeypatch):
    _, _, index = published
    url, _ = server
    monkeypatch.setenv("TFDGM_ZOO_INDEX", index)
    monkeypatch.setenv("TFDGM_ZOO_DIR", str(tmp_path / "no-zoo-here"))
    monkeypatch.setenv("TFDGM_ZOO_URL", f"{url}/slow")
    os.makedirs(tmp_path / "no-zoo-here")
    model = zoo.from_preset("tiny_vae", verbose=False)
    assert model.latent_dim == 4
    assert sorted(os.listdir(cache / "presets" / "tiny_vae")) == ["config.json", "metadata.json", "model.weights.h5"]
    assert [row["where"] for row in zoo.list_presets()] == ["cache"]


def test_a_corrupted_download_raises_and_leaves_nothing_under_the_final_name(server, cache):
    url, _ = server
    with pytest.raises(zoo.PresetError, match="sha256"):
        tfdgm.from_preset(f"{url}/corrupt")
    assert not glob.glob(str(cache / "**" / "model.weights.h5"), recursive=True)
    assert not _leftovers(cache)


def test_a_truncated_download_raises_and_leaves_nothing_that_looks_complete(server, tmp_path):
    url, _ = server
    target = tmp_path / "model.weights.h5"
    with pytest.raises(zoo.DownloadError, match="truncated"):
        download.fetch(f"{url}/truncated/model.weights.h5", str(target), None, verbose=False)
    assert not target.exists() and not _leftovers(tmp_path)


def test_a_stalled_server_times_out_cleanly(server, tmp_path):
    url, _ = server
    target = tmp_path / "model.weights.h5"
    start = time.perf_counter()
    with pytest.raises(zoo.DownloadError, match="stalled"):
        download.fetch(f"{url}/stall/model.weights.h5", str(target), None, timeout=0.5, verbose=False)
    assert time.perf_counter() - start < 2.5
    assert not target.exists() and not _leftovers(tmp_path)


def test_an_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(zoo.DownloadError, match="cannot download"):
        download.fetch("http://127.0.0.1:9/model.weights.h5", str(tmp_path / "w.h5"), None, timeout=2, verbose=False)


_FETCH_IN_A_PROCESS = r"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("download", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.fetch(sys.argv[2], sys.argv[3], sys.argv[4], verbose=False)
"""


def test_two_processes_fetching_at_once_end_with_one_valid_file(published, server, tmp_path):
    _, preset, _ = published
    url, requests = server
    expected = zoo.sha256_of(os.path.join(preset, "model.weights.h5"))
    target = str(tmp_path / "shared" / "model.weights.h5")
    # Only the downloader module: the processes start in a fraction of a second, so they overlap.
    procs = [subprocess.Popen([sys.executable, "-c", _FETCH_IN_A_PROCESS, download.__file__,
                               f"{url}/slow/model.weights.h5", target, expected], stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert requests.count("/slow/model.weights.h5") == 2  # both really downloaded, concurrently
    assert zoo.sha256_of(target) == expected
    assert os.listdir(tmp_path / "shared") == ["model.weights.h5"]


def test_the_progress_bar_shows_size(server, tmp_path, capsys):
    url, _ = server
    download.fetch(f"{url}/ok/model.weights.h5", str(tmp_path / "w.h5"), None, verbose=True)
    out = capsys.readouterr().out
    size = os.path.getsize(tmp_path / "w.h5")
    assert f"{size}/{size}" in out.replace(" ", "")


# ---------------------------------------------------------------------------- safe loading
def _copy(preset, tmp_path, name="copy"):
    target = tmp_path / name
    shutil.copytree(preset, target)
    return target


def test_unknown_names_list_the_presets_and_the_accepted_forms(monkeypatch, published):
    monkeypatch.setenv("TFDGM_ZOO_INDEX", published[2])
    with pytest.raises(zoo.PresetError, match=r"unknown preset 'tiny_vea'.*tiny_vae.*directory.*URL"):
        tfdgm.from_preset("tiny_vea")
    with pytest.raises(zoo.PresetError, match="no directory './nowhere'"):
        tfdgm.from_preset("./nowhere")


def test_a_changed_weights_file_is_refused_by_its_recorded_hash(published, tmp_path):
    target = _copy(published[1], tmp_path)
    weights = target / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[: os.path.getsize(weights) // 2])
    with pytest.raises(zoo.PresetError, match=r"model.weights.h5 has sha256 .* changed or damaged"):
        tfdgm.from_preset(str(target))


def test_a_truncated_weights_file_without_a_card_names_the_file(published, tmp_path):
    target = _copy(published[1], tmp_path)
    os.remove(target / "metadata.json")
    weights = target / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[: os.path.getsize(weights) // 2])
    with pytest.raises(zoo.PresetError, match=r"model.weights.h5 cannot be loaded .*damaged"):
        tfdgm.from_preset(str(target))


def test_weights_of_another_architecture_are_refused(published, tmp_path):
    target = _copy(published[1], tmp_path)
    os.remove(target / "metadata.json")
    config = json.loads((target / "config.json").read_text())
    config["config"]["latent_dim"] = 5
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(zoo.PresetError, match=r"model.weights.h5 cannot be loaded .*architecture differs"):
        tfdgm.from_preset(str(target))


def test_a_config_with_an_unknown_key_names_the_file_and_the_key(published, tmp_path):
    target = _copy(published[1], tmp_path)
    os.remove(target / "metadata.json")
    config = json.loads((target / "config.json").read_text())
    config["config"]["latent_dimm"] = 4
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(zoo.PresetError, match=r"config.json does not fit .*latent_dimm"):
        tfdgm.from_preset(str(target))


def test_a_config_naming_an_arbitrary_function_is_refused(published, tmp_path):
    # safe_mode=True: a config cannot make Keras call code it names (e.g. a lambda or os.system).
    target = _copy(published[1], tmp_path)
    os.remove(target / "metadata.json")
    config = {"module": "os", "class_name": "system", "config": {"command": "touch pwned"}, "registered_name": None}
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(zoo.PresetError, match="config.json"):
        tfdgm.from_preset(str(target))
    assert not os.path.exists("pwned")


# ---------------------------------------------------------------------------- CLI on presets
def test_cli_evaluate_and_sample_take_a_preset(published, tmp_path, capsys):
    _, preset, _ = published
    out = str(tmp_path / "result.json")
    assert _run_cli("evaluate", "--preset", preset, "--num_samples=5", "--num_examples=20", "--output", out) == 0
    result = json.load(open(out))
    assert result["eval"]["num_examples"] == 20 and np.isfinite(result["test_nll"])
    assert sorted(os.listdir(preset)) == ["config.json", "metadata.json", "model.weights.h5"]  # untouched
    png = str(tmp_path / "s.png")
    assert _run_cli("sample", "--preset", preset, "--num_samples=4", "--output", png) == 0
    assert os.path.getsize(png) > 0
    assert _run_cli("sample", "--preset", preset, "--workdir", published[0]) == 2
    assert "exactly one of --workdir and --preset" in capsys.readouterr().err


def test_cli_list_shows_presets_models_and_configs(published, monkeypatch, capsys):
    monkeypatch.setenv("TFDGM_ZOO_INDEX", published[2])
    assert _run_cli("list") == 0
    out = capsys.readouterr().out
    assert "tiny_vae" in out and "a tiny test VAE" in out and "iwae_dreg" in out and "vae_mlp_fashion_mnist.py" in out


_LOAD_EXPORT = r"""
import json, sys
import numpy as np
import tensorflow as tf
m = tf.saved_model.load(sys.argv[1])
x = tf.constant(np.load(sys.argv[2]))
seed = tf.constant([3, 4], tf.int32)
np.savez(sys.argv[3], sample=m.sample(num_samples=tf.constant(5), seed=seed).numpy(), encode=m.encode(x).numpy(),
         bound=m.log_likelihood_bound(x=x, num_samples=tf.constant(7), seed=seed).numpy())
print(json.dumps(sorted(k for k in sys.modules if k.split(".")[0] in ("tfdgm", "tensorflow_probability"))))
"""


def test_cli_export_of_a_preset_loads_without_tfdgm_or_tfp(published, tmp_path):
    _, preset, _ = published
    out = str(tmp_path / "saved")
    assert _run_cli("export", "--preset", preset, "--out", out) == 0
    assert _run_cli("export", "--preset", preset, "--out", out) == 2  # never over an existing export
    model = tfdgm.from_preset(preset)
    x = (np.random.default_rng(0).uniform(size=(3, 28, 28, 1)) < 0.3).astype("float32")
    np.save(tmp_path / "x.npy", x)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", _LOAD_EXPORT, out, str(tmp_path / "x.npy"), str(tmp_path / "o.npz")],
                            cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    got, seed = np.load(tmp_path / "o.npz"), tf.constant([3, 4], tf.int32)
    np.testing.assert_allclose(got["sample"], model.sample(5, seed=seed), atol=1e-5)
    np.testing.assert_allclose(got["encode"], model.encode(x), atol=1e-5)
    np.testing.assert_allclose(got["bound"], model.log_likelihood_bound(x, 7, seed=seed), atol=1e-4)


def test_publish_refuses_an_unfinished_run_and_a_run_without_a_command(published, tmp_path, capsys):
    workdir = published[0]
    metrics_path = os.path.join(workdir, "metrics.json")
    saved = open(metrics_path).read()
    try:
        metrics = json.loads(saved)
        del metrics["command"]
        open(metrics_path, "w").write(json.dumps(metrics))
        assert _run_cli("publish", "--workdir", workdir, "--out", str(tmp_path / "p")) == 2
        assert "--train_command" in capsys.readouterr().err
        metrics["status"] = "training"
        open(metrics_path, "w").write(json.dumps(metrics))
        assert _run_cli("publish", "--workdir", workdir, "--out", str(tmp_path / "p"), "--train_command", "x") == 2
        assert "has not finished training" in capsys.readouterr().err
    finally:
        open(metrics_path, "w").write(saved)
    assert not os.path.exists(tmp_path / "p")


# ---------------------------------------------------------------------------- the shipped presets
SHIPPED = sorted(zoo.load_index(zoo.presets.INDEX_PATH))


def test_the_zoo_ships_presets_and_stays_small():
    assert SHIPPED, "tfdgm/zoo/index.json lists no presets"
    total = sum(os.path.getsize(p) for p in glob.glob(os.path.join(ROOT, "zoo", "**", "*"), recursive=True)
                if os.path.isfile(p))
    assert total < 50e6


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_preset_loads_matches_its_hashes_and_its_card(name, monkeypatch):
    monkeypatch.delenv("TFDGM_ZOO_INDEX", raising=False)
    entry = zoo.load_index(zoo.presets.INDEX_PATH)[name]
    directory = os.path.join(ROOT, "zoo", name)
    for file, spec in entry["files"].items():
        assert zoo.sha256_of(os.path.join(directory, file)) == spec["sha256"], file
    assert zoo.resolve(name) == os.path.abspath(directory)  # found in the repository, not downloaded
    model = tfdgm.from_preset(name)
    card = zoo.read_metadata(directory)
    ev = card["evaluation"]
    assert card["training"]["command"].startswith("tfdgm train --config configs/")
    assert model.sample(2, seed=[1, 2]).shape == (2,) + model.example_shape
    check = cards.check(model, card["training"]["config"])
    # What a card holds follows the model's capabilities, not its name.
    if getattr(model, "has_free_energy", False):  # an RBM: log Z by AIS, test NLL = mean F(x) + log Z
        ais = ev["ais"]
        assert ais["kernel"] == "gibbs" and ais["num_examples"] == 10000 and ais["log_z_stderr"] > 0
        assert np.isfinite(ais["log_z_reverse"]) and "--method ais" in ais["command"]
        assert check["free_energy"] == pytest.approx(ev["check"]["free_energy"], abs=1e-3)  # exact: rounding only
        # mean F over 500 images + log Z agrees with the card's NLL on all 10k within the standard errors.
        both = np.hypot(np.hypot(check["stderr"], ais["nll_stderr"]), ais["log_z_stderr"])
        assert abs(check["free_energy"] + ais["log_z"] - ais["nll"]) < 3 * both
        return
    if getattr(model, "has_markov_chain_sampler", False):  # a GSN: no likelihood, and the card says so
        assert ev["likelihood"] is None and "no tractable likelihood" in ev["likelihood_note"]
        assert ev["iwae"] is None and ev["denoising"]["num_examples"] == 10000
        assert check["denoising_nll"] == pytest.approx(ev["check"]["denoising_nll"], abs=1e-2)
        both = np.hypot(check["stderr"], ev["denoising"]["denoising_nll_stderr"])
        assert abs(check["denoising_nll"] - ev["denoising"]["denoising_nll"]) < 3 * both
        return
    assert ev["iwae"]["num_samples"] == 5000 and ev["iwae"]["num_examples"] == 10000
    # AIS and BDMC need a joint with HMC moves, active units continuous latents: by capability
    # (a discrete-latent preset has neither, and its card must not pretend otherwise).
    if model.has_joint and model.has_continuous_latents:
        assert ev["ais"]["num_examples"] == 10000 and ev["ais"]["nll_stderr"] > 0
        assert ev["bdmc"]["gap"] is not None
    else:
        assert ev.get("ais") is None and ev.get("bdmc") is None
    if model.has_continuous_latents:
        assert "active_units" in ev["latent_diagnostics"]
    else:
        assert "latent_diagnostics" not in ev
    # The same 500 images, K and seed as the card's check: the same number, up to float rounding.
    assert check["nll"] == pytest.approx(ev["check"]["nll"], abs=1e-2)
    # And within the standard errors of the card's IWAE-5000 NLL on all 10k images (IWAE-500 on a
    # subset: its SE over 500 images dominates; K=500 is looser than K=5000 by a fraction of a nat).
    both = np.hypot(check["stderr"], ev["iwae"]["stderr"])
    assert abs(check["nll"] - ev["iwae"]["nll"]) < 3 * both + 0.5
