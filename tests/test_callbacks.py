"""Image grids, atomic files, NaNGuard, TrainingCheckpoint, ImageSummary and scalar summaries."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfdgm import callbacks as cbs
from tfdgm import models

SHAPE = (8, 8, 1)


def _tiny_vae():
    return models.VAE(input_shape=SHAPE, latent_dim=2, hidden_units=(8,), seed=1)


def _binary(n, seed=0):
    return (np.random.default_rng(seed).uniform(size=(n,) + SHAPE) < 0.5).astype("float32")


def _no_temp_files(directory):
    return not [f for f in os.listdir(directory) if f.startswith(".tmp-")]


# ---------------------------------------------------------------------------- images and files
def test_tile_images_grey_and_rgb_layout():
    grey = np.zeros((5, 4, 3, 1), np.float32)
    grid = cbs.tile_images(grey, ncols=2, pad=1)
    assert grid.shape == (3 * 5 - 1, 2 * 4 - 1)
    # Padding is white, images black; the missing sixth cell stays white.
    assert grid[4, 0] == 1.0 and grid[0, 0] == 0.0 and grid[-1, -1] == 1.0
    rgb = cbs.tile_images(np.full((3, 2, 2, 3), 2.0), ncols=3, pad=0)
    assert rgb.shape == (2, 6, 3) and rgb.max() == 1.0  # values are clipped to [0, 1]
    with pytest.raises(ValueError, match="shape"):
        cbs.tile_images(np.zeros((2, 4, 4, 2)))


def test_save_image_grid_writes_a_valid_png(tmp_path):
    path = cbs.save_image_grid(np.random.default_rng(0).uniform(size=(10, 8, 8, 1)), tmp_path / "g.png", ncols=5)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (5 * 9 - 1, 2 * 9 - 1)
    assert _no_temp_files(tmp_path)


def test_reconstruction_grid_puts_originals_above_reconstructions(tmp_path):
    originals, recons = np.zeros((3, 4, 4, 1)), np.ones((3, 4, 4, 1))
    path = cbs.save_reconstruction_grid(originals, recons, tmp_path / "r.png", ncols=2)
    with Image.open(path) as image:
        grey = np.asarray(image.convert("L"), np.float32) / 255.0
    # Rows of cells: originals (black), reconstructions (white), originals, reconstructions.
    assert grey.shape == (4 * 5 - 1, 2 * 5 - 1)
    assert grey[0:4, 0:4].max() == 0.0 and grey[5:9, 0:4].min() == 1.0
    assert grey[10:14, 0:4].max() == 0.0 and grey[15:19, 0:4].min() == 1.0


def test_write_json_atomic_replaces_and_maps_nan_to_null(tmp_path):
    path = tmp_path / "m.json"
    cbs.write_json_atomic(path, {"a": 1})
    cbs.write_json_atomic(path, {"a": float("nan"), "b": np.float32(2.5), "c": (1, 2)})
    assert json.loads(path.read_text()) == {"a": None, "b": 2.5, "c": [1, 2]}
    assert _no_temp_files(tmp_path)


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.json"
    cbs.write_json_atomic(path, {"ok": True})
    with pytest.raises(TypeError):
        cbs.write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert _no_temp_files(tmp_path)


# ---------------------------------------------------------------------------- training callbacks
def _nan_at_epoch_2_batch_3():
    """7 batches, the last one NaN; with steps_per_epoch=4 it is batch 3 of epoch 2."""
    x = _binary(56).reshape((7, 8) + SHAPE)
    x[6, 0, 0, 0, 0] = np.nan
    return tf.data.Dataset.from_tensor_slices(x).repeat()


def test_nan_guard_stops_and_checkpoint_keeps_last_good_epoch(tmp_path):
    model = _tiny_vae()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False, steps_per_execution=1)
    messages = []
    guard = cbs.NaNGuard(print_fn=messages.append)
    ckpt = cbs.TrainingCheckpoint(tmp_path / "ckpt", every_n_steps=0, print_fn=messages.append)
    images = cbs.ImageSummary(tmp_path, _binary(4), num_samples=4)
    history = cbs.JSONHistory()
    model.fit(_nan_at_epoch_2_batch_3(), epochs=5, steps_per_epoch=4, verbose=0, shuffle=False,
              callbacks=[guard, ckpt, images, history])

    assert guard.triggered
    assert guard.failure["epoch"] == 2 and guard.failure["batch"] == 3 and guard.failure["global_step"] == 7
    assert list(guard.failure["metrics"])[0] == "loss"
    assert "epoch 2, batch 3" in guard.message and "loss=nan" in guard.message
    assert len(history.history) == 2  # training stopped in epoch 2 (Keras still ends the epoch)

    # The checkpoint is epoch 1's, complete and finite; epoch 2's NaN weights were not saved.
    assert ckpt.saved_epoch == 1 and ckpt.saved_step == 4
    assert json.loads((tmp_path / "ckpt" / "state.json").read_text())["epochs_completed"] == 1
    restored = _tiny_vae()
    restored.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    cbs.TrainingCheckpoint.restore(restored, cbs.TrainingCheckpoint.read(tmp_path / "ckpt"))
    assert cbs.all_finite(restored) and not cbs.all_finite(model)
    assert restored.optimizer.iterations.numpy() == 4
    assert any("keeping the previous training state (step 4)" in m for m in messages)
    assert _no_temp_files(tmp_path / "ckpt")


def test_image_summary_writes_pngs_every_n_epochs_and_at_the_end(tmp_path):
    model = _tiny_vae()
    model.compile(optimizer="adam", jit_compile=False)
    images = cbs.ImageSummary(tmp_path, _binary(6), every_n_epochs=2, num_samples=9)
    written = []
    original_write = images.write
    images.write = lambda *a: written.append(True) or original_write(*a)
    model.fit(_binary(16), batch_size=8, epochs=3, verbose=0, callbacks=[images])
    assert len(written) == 2  # after epoch 2, and at the end for epoch 3
    with Image.open(tmp_path / "samples.png") as png:
        assert png.size == (3 * 9 - 1, 3 * 9 - 1)
    with Image.open(tmp_path / "reconstructions.png") as png:
        assert png.size == (6 * 9 - 1, 2 * 9 - 1)  # one row of originals above their reconstructions
