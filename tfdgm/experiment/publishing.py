"""`publish` (a finished workdir -> a preset with its likelihood card) and `export` (-> SavedModel)."""
import json
import os

from tfdgm.callbacks.files import write_json_atomic
from tfdgm.experiment import workdir as wd
from tfdgm.experiment.evaluating import model_and_config
from tfdgm.experiment.workdir import ExperimentError, log


def publish(workdir, out, name=None, description="", train_command=None, index=None):
    """Writes workdir's finished model as a preset directory `out` (config.json, model.weights.h5,
    metadata.json: the likelihood card, see `tfdgm.zoo.cards`), and, with `index`, its entry in
    that index.json. The card takes its numbers from workdir/metrics.json, so run `tfdgm evaluate`
    (--method iwae / ais / bdmc) on the workdir first; the training command is the one recorded
    by `tfdgm train` unless `train_command` is given. Returns the card."""
    from tfdgm import zoo
    from tfdgm.zoo import cards

    name = name or os.path.basename(os.path.normpath(out))
    metrics = wd.read_json(wd.paths(workdir)["metrics"], {})
    train_command = train_command or metrics.get("command")
    if not train_command:
        raise ExperimentError(f"{workdir}/metrics.json records no training command (runs before tfdgm recorded it); "
                              "pass --train_command with the exact `tfdgm train ...` line.")
    model = wd.load_model(workdir)
    card = cards.make_card(workdir, name, description, train_command, check_model=model)
    card = zoo.save_preset(model, out, card)
    log(f"Wrote preset {name!r} to {out} ({sum(f['size'] for f in card['files'].values()) / 1e6:.1f} MB).")
    if index:
        entries = wd.read_json(index, {"presets": {}})
        entries.setdefault("presets", {})[name] = zoo.index_entry(out, description)
        write_json_atomic(index, entries)
        log(f"Updated {index}.")
    return card


def export(out, workdir=None, preset=None):
    """Writes the model of a workdir or preset as a SavedModel directory (signatures: sample with a
    seed, and by capability encode, reconstruct, log_likelihood_bound); loading it needs only
    TensorFlow. Returns out."""
    if os.path.exists(out) and os.listdir(out):
        raise ExperimentError(f"--out {out!r} exists and is not empty; choose a new directory.")
    model, _ = model_and_config(workdir, preset)
    model.export(out, verbose=False)
    signatures = ["sample"] + (["encode", "reconstruct"] if model.has_encoder else []) + (
        ["log_likelihood_bound"] if model.has_bound else [])
    log(f"Exported a SavedModel to {out} (signatures: {', '.join(signatures)}); load it with "
        f"tf.saved_model.load({json.dumps(out)}).")
    return out
