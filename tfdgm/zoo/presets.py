"""Pretrained presets: `from_preset(name | directory | URL)`, `save_preset`, `list_presets`.

A preset is a directory of three files (keras-hub's layout):

- `config.json`: the model as `keras.saving.serialize_keras_object` writes it (class and config);
- `model.weights.h5`: its weights (`model.save_weights`);
- `metadata.json`: the likelihood card: how it was trained (command, config, epochs, wall time,
  versions), its evaluation (IWAE-5000 and AIS test NLL with standard errors, BDMC gap, latent
  diagnostics), and the sha256 and size of the two other files.

Named presets are listed in `tfdgm/zoo/index.json` (data, not code: name -> description and the
files' sha256; `$TFDGM_ZOO_INDEX` names another index). Their files live in the repository's top-level `zoo/<name>/`; an install without the
repository fetches them from `$TFDGM_ZOO_URL/<name>/` into `$TFDGM_CACHE_DIR/presets/<name>/`
(default `~/.cache/tfdgm`), each file verified by its sha256 before it is used.

Loading is safe: JSON configs only (no pickles), `safe_mode=True`, and a config with unknown keys,
weights of another architecture, or a damaged weights file each raise a `PresetError` naming the
file and the problem.
"""
import json
import os
import re
import shutil
import tempfile

from tfdgm.zoo.download import DownloadError, fetch, sha256_of

CONFIG, WEIGHTS, METADATA = "config.json", "model.weights.h5", "metadata.json"
FILES = (CONFIG, WEIGHTS)
INDEX_PATH = os.path.join(os.path.dirname(__file__), "index.json")
DEFAULT_ZOO_URL = "https://raw.githubusercontent.com/tfdgm/tfdgm/main/zoo"
_URL = re.compile(r"^(https?|file)://", re.IGNORECASE)


class PresetError(ValueError):
    """A preset that cannot be found, fetched, verified or loaded; the message says what to do."""


# ---------------------------------------------------------------------------- where presets are
def load_index(path=None):
    """{name: entry} of the named presets (entry: description, objective, test_nll, and files:
    {file: {sha256, size}} for config.json, model.weights.h5 and metadata.json)."""
    with open(path or os.environ.get("TFDGM_ZOO_INDEX") or INDEX_PATH, encoding="utf-8") as f:
        return json.load(f)["presets"]


def zoo_dir():
    """The repository's zoo/ (or $TFDGM_ZOO_DIR), where shipped presets' files live; None if absent."""
    path = os.environ.get("TFDGM_ZOO_DIR") or os.path.join(os.path.dirname(__file__), "..", "..", "zoo")
    return os.path.abspath(path) if os.path.isdir(path) else None


def cache_dir():
    return os.path.abspath(os.path.expanduser(
        os.path.join(os.environ.get("TFDGM_CACHE_DIR") or os.path.join("~", ".cache", "tfdgm"), "presets")))


def zoo_url():
    return (os.environ.get("TFDGM_ZOO_URL") or DEFAULT_ZOO_URL).rstrip("/")


def _accepted_forms(index):
    names = ", ".join(sorted(index)) or "(none)"
    return (f"Give a preset name ({names}), a directory holding {CONFIG} and {WEIGHTS}, or an http(s):// or "
            f"file:// URL of such a directory; `tfdgm list` shows the presets.")


def _matches(directory, files):
    """Whether directory holds every file with the recorded sha256."""
    return all(os.path.exists(os.path.join(directory, name)) and sha256_of(os.path.join(directory, name)) ==
               spec["sha256"] for name, spec in files.items())


def resolve(preset, verbose=None):
    """The local directory of a preset given by name, directory or URL (downloading if needed)."""
    preset = os.fspath(preset)
    if _URL.match(preset):
        return _download_url(preset, verbose)
    if os.path.isdir(preset):
        return preset
    index = load_index()
    if preset not in index:
        looks_like_path = os.sep in preset or preset.startswith(".")
        what = f"no directory {preset!r}" if looks_like_path else f"unknown preset {preset!r}"
        raise PresetError(f"{what}. {_accepted_forms(index)}")
    files = dict(index[preset]["files"])
    local = zoo_dir() and os.path.join(zoo_dir(), preset)
    if local and _matches(local, files):
        return local
    cached = os.path.join(cache_dir(), preset)
    if not _matches(cached, files):
        base = f"{zoo_url()}/{preset}"
        try:
            for name, spec in files.items():
                fetch(f"{base}/{name}", os.path.join(cached, name), spec["sha256"], verbose=verbose)
        except DownloadError as error:
            raise PresetError(f"preset {preset!r} is not on disk and could not be fetched: {error} (Set "
                              f"TFDGM_ZOO_URL to a mirror, or TFDGM_ZOO_DIR to a zoo/ directory.)") from None
    return cached


def _download_url(url, verbose):
    """Fetches a preset directory published at url: metadata.json first, whose sha256 entries
    then verify config.json and the weights."""
    import hashlib

    url = url.rstrip("/")
    target = os.path.join(cache_dir(), "urls", hashlib.sha256(url.encode()).hexdigest()[:16])
    try:
        # A fresh copy of the card every time (it is small, and it is what vouches for the rest).
        with tempfile.TemporaryDirectory() as tmp:
            fetch(f"{url}/{METADATA}", os.path.join(tmp, METADATA), None, verbose=False)
            files = _recorded_files(tmp)
            os.makedirs(target, exist_ok=True)
            for name, spec in files.items():
                fetch(f"{url}/{name}", os.path.join(target, name), spec["sha256"], verbose=verbose)
            shutil.copyfile(os.path.join(tmp, METADATA), os.path.join(target, METADATA + f".{os.getpid()}"))
            os.replace(os.path.join(target, METADATA + f".{os.getpid()}"), os.path.join(target, METADATA))
    except DownloadError as error:
        raise PresetError(f"cannot fetch the preset at {url}: {error}") from None
    return target


def _recorded_files(directory):
    """{file: {sha256, size}} from directory's metadata.json; a card without them cannot vouch."""
    metadata = read_metadata(directory)
    files = metadata.get("files") if metadata else None
    if not files or set(FILES) - set(files):
        raise PresetError(f"{os.path.join(directory, METADATA)} does not record the sha256 of {list(FILES)}, so the "
                          "downloaded files cannot be verified; republish it with `tfdgm publish`.")
    return {name: files[name] for name in FILES}


def read_metadata(directory):
    path = os.path.join(directory, METADATA)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise PresetError(f"{path} is not valid JSON ({error}).") from None


# ---------------------------------------------------------------------------- load and save
def from_preset(preset, verbose=None):
    """A pretrained model (uncompiled) from a preset name, directory or URL.

    >>> model = tfdgm.from_preset("iwae_k50_mlp_fashion_mnist")
    >>> images = model.sample(16, seed=0)

    Files whose sha256 is recorded (in the index, or in a directory's metadata.json) are checked
    before use. Compile the model to fine-tune it.
    """
    import keras

    directory = resolve(preset, verbose=verbose)
    metadata = read_metadata(directory)
    missing = [name for name in FILES if not os.path.exists(os.path.join(directory, name))]
    if missing:
        raise PresetError(f"{directory} is not a preset: {missing} missing ({_accepted_forms(load_index())})")
    if metadata and metadata.get("files"):
        for name in FILES:
            expected = metadata["files"].get(name, {}).get("sha256")
            actual = sha256_of(os.path.join(directory, name))
            if expected and actual != expected:
                raise PresetError(f"{os.path.join(directory, name)} has sha256 {actual}, but {METADATA} records "
                                  f"{expected}: the file was changed or damaged. Restore it, or delete the "
                                  "directory to fetch it again.")
    config_path, weights_path = (os.path.join(directory, name) for name in FILES)
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as error:
        raise PresetError(f"{config_path} is not valid JSON ({error}).") from None
    import tfdgm.models  # noqa: F401  (registers the model classes the config names)

    try:
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    except (TypeError, ValueError, KeyError) as error:
        detail = " ".join(str(error).split())[:300]
        if "keyword argument" in detail:  # a constructor argument the class does not have
            raise PresetError(f"{config_path} does not fit its model class: {detail}. It was written by another "
                              "version of tfdgm, or edited; use a matching tfdgm, or fix the key.") from None
        raise PresetError(f"{config_path} cannot be turned into a model: {detail}") from None
    if not isinstance(model, keras.Model):
        raise PresetError(f"{config_path} describes a {type(model).__name__}, not a tfdgm model.")
    try:
        model.load_weights(weights_path)
    except (ValueError, OSError, KeyError) as error:
        detail = " ".join(str(error).split())[:300]
        raise PresetError(f"{weights_path} cannot be loaded into the model of {config_path}: it is damaged, or "
                          f"its architecture differs ({type(error).__name__}: {detail}).") from None
    return model


def save_preset(model, directory, metadata=None):
    """Writes model as a preset directory (config.json, model.weights.h5, metadata.json with the
    files' sha256 and size added to `metadata`); returns the metadata written.

    The files are written to a temporary directory first and moved into place, so an interrupted
    save leaves no half-written preset under `directory`.
    """
    import keras

    from tfdgm.callbacks.files import write_json_atomic

    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".preset-", dir=parent)
    try:
        with open(os.path.join(tmp, CONFIG), "w", encoding="utf-8") as f:
            json.dump(keras.saving.serialize_keras_object(model), f, indent=1, sort_keys=True)
            f.write("\n")
        model.save_weights(os.path.join(tmp, WEIGHTS))
        metadata = dict(metadata or {})
        metadata["files"] = {name: {"sha256": sha256_of(os.path.join(tmp, name)),
                                    "size": os.path.getsize(os.path.join(tmp, name))} for name in FILES}
        write_json_atomic(os.path.join(tmp, METADATA), metadata)
        if os.path.isdir(directory):
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
    return metadata


def list_presets():
    """[{name, objective, description, test_nll, size_bytes, where}] for every named preset;
    where: "zoo" (on disk in the repository), "cache" (fetched before) or "remote"."""
    rows = []
    for name, entry in sorted(load_index().items()):
        files = entry["files"]
        local = zoo_dir() and os.path.join(zoo_dir(), name)
        where = ("zoo" if local and all(os.path.exists(os.path.join(local, f)) for f in files) else
                 "cache" if all(os.path.exists(os.path.join(cache_dir(), name, f)) for f in files) else "remote")
        rows.append(dict(name=name, objective=entry.get("objective", ""), description=entry.get("description", ""),
                         test_nll=entry.get("test_nll"), size_bytes=sum(f["size"] for f in files.values()),
                         where=where))
    return rows


def index_entry(directory, description=None):
    """The index.json entry of a preset directory (from its metadata.json)."""
    metadata = read_metadata(directory) or {}
    evaluation = metadata.get("evaluation", {})
    files = dict(_recorded_files(directory))
    card = os.path.join(directory, METADATA)
    files[METADATA] = {"sha256": sha256_of(card), "size": os.path.getsize(card)}
    return {"description": description or metadata.get("description", ""),
            "objective": metadata.get("objective", ""),
            # The IWAE bound where there is one, else an RBM's AIS estimate; None for a GSN.
            "test_nll": (evaluation.get("iwae") or {}).get("nll") or (evaluation.get("ais") or {}).get("nll"),
            "files": files}
