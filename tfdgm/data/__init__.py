"""Image data for deep latent-variable generative models.

Datasets yield only image batches (float32 ``[B, H, W, C]`` in [0, 1], exactly
0/1 when binarised) so models train with ``model.fit(ds)``::

    ds = tfdgm.data.load("fashion_mnist", batch_size=100)             # dynamic binarisation
    test = tfdgm.data.load("fashion_mnist", "test", binarize="static")
    ds = tfdgm.data.from_array(x, binarize="none", likelihood="gaussian")

``name`` may also be a local directory of IDX/NPZ files or an .npz file.
"""
from .pipeline import from_array, load
from .sources import (KNOWN_DATASETS, LOCAL_DIRS, DatasetUnavailableError, clear_cache,
                      image_shape, load_arrays, read_idx)
from .validation import BINARIZE_MODES, SPLITS, is_validated, mark_validated, validate

__all__ = ["KNOWN_DATASETS", "BINARIZE_MODES", "SPLITS", "LOCAL_DIRS", "DatasetUnavailableError",
           "load", "load_arrays", "from_array", "validate", "mark_validated", "is_validated", "image_shape", "read_idx",
           "clear_cache"]
