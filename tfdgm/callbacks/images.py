"""Image grids of samples and reconstructions, and the callback that writes them every n epochs."""
import math
import os

import keras
import numpy as np

from tfdgm.callbacks.files import _replace_with, all_finite

def tile_images(images, ncols=8, pad=1, pad_value=1.0):
    """Tiles images [N, H, W, C] (C = 1 or 3, values in [0, 1]) into one grid array.

    Returns [rows*(H+pad)-pad, ncols*(W+pad)-pad] for grey images, with a trailing 3 for RGB.
    Missing cells of the last row are left at pad_value.
    """
    images = np.asarray(images, np.float32)
    if images.ndim == 3:  # [N, H, W] grey images without a channel axis
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"Expected images of shape [N, H, W, 1 or 3], got {images.shape}.")
    if len(images) == 0:
        raise ValueError("No images to tile.")
    n, h, w, c = images.shape
    ncols = max(1, min(int(ncols), n))
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad, c), pad_value, np.float32)
    for i, image in enumerate(np.clip(images, 0.0, 1.0)):
        r, col = divmod(i, ncols)
        grid[r * (h + pad) : r * (h + pad) + h, col * (w + pad) : col * (w + pad) + w] = image
    return grid[..., 0] if c == 1 else grid


def save_image_grid(images, path, ncols=8):
    """Writes images [N, H, W, C] in [0, 1] as one PNG grid with ncols columns; returns path."""
    # matplotlib.image.imsave needs no pyplot figure or GUI backend, so it is safe headless.
    import matplotlib.image

    grid = tile_images(images, ncols)
    kwargs = {"cmap": "gray"} if grid.ndim == 2 else {}
    return _replace_with(
        path, lambda tmp: matplotlib.image.imsave(tmp, grid, vmin=0.0, vmax=1.0, format="png", **kwargs)
    )


def save_reconstruction_grid(originals, reconstructions, path, ncols=8):
    """Writes a PNG where each row of originals is directly above the row of their reconstructions."""
    originals = np.asarray(originals, np.float32)
    reconstructions = np.asarray(reconstructions, np.float32)
    if originals.shape != reconstructions.shape:
        raise ValueError(f"originals {originals.shape} and reconstructions {reconstructions.shape} differ.")
    n = len(originals)
    ncols = max(1, min(int(ncols), n))
    rows = []
    for start in range(0, n, ncols):
        block = [originals[start : start + ncols], reconstructions[start : start + ncols]]
        for part in block:
            # Pad a short last row with blank (white) images so the pairs stay aligned.
            missing = ncols - len(part)
            rows.append(np.concatenate([part, np.ones((missing,) + part.shape[1:], np.float32)]) if missing else part)
    return save_image_grid(np.concatenate(rows), path, ncols)


class ImageSummary(keras.callbacks.Callback):
    """Writes workdir/samples.png (model.sample) and workdir/reconstructions.png every n epochs
    (reconstructions=False: samples only).

    Samples use a fixed seed so that successive grids show how the model improves, not noise.
    The final images are written at the end of training even if the last epoch is not a
    multiple of every_n_epochs; nothing is written from a model whose weights are not finite.
    """

    def __init__(self, workdir, data_batch, every_n_epochs=1, num_samples=64, seed=0, ncols=None,
                 reconstructions=True):
        super().__init__()
        self.reconstructions = bool(reconstructions)  # False for a model without an encoder
        self.workdir = os.fspath(workdir)
        self.data_batch = np.asarray(data_batch, np.float32)
        self.every_n_epochs = int(every_n_epochs)
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.ncols = ncols
        self._last_written_epoch = None
        self._epoch = None

    @property
    def samples_path(self):
        return os.path.join(self.workdir, "samples.png")

    @property
    def reconstructions_path(self):
        return os.path.join(self.workdir, "reconstructions.png")

    def write(self, model=None):
        """Writes both PNGs (only samples.png without reconstructions) now; returns their paths."""
        model = model or self.model
        samples = keras.ops.convert_to_numpy(model.sample(self.num_samples, seed=self.seed))
        ncols = self.ncols or math.ceil(math.sqrt(self.num_samples))
        save_image_grid(samples, self.samples_path, ncols)
        if not self.reconstructions:
            return (self.samples_path,)
        recons = keras.ops.convert_to_numpy(model.reconstruct(self.data_batch))
        save_reconstruction_grid(self.data_batch, recons, self.reconstructions_path, self.ncols or 8)
        return self.samples_path, self.reconstructions_path

    def on_epoch_end(self, epoch, logs=None):
        self._epoch = epoch
        if self.every_n_epochs > 0 and (epoch + 1) % self.every_n_epochs == 0 and all_finite(self.model):
            self.write()
            self._last_written_epoch = epoch

    def on_train_end(self, logs=None):
        if self._epoch is not None and self._last_written_epoch != self._epoch and all_finite(self.model):
            self.write()
            self._last_written_epoch = self._epoch
