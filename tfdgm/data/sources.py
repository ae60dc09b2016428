"""Where images come from: bundled IDX files, local IDX/NPZ files, or TFDS.

All readers return the internal ``(array, divisor)`` form of
:mod:`tfdgm.data.validation` for the raw "train" and "test" splits; the
validation split is carved out of "train" by :func:`get_split`. Raw splits are
cached per process (arrays are made read-only so the cache cannot be mutated).
"""
from __future__ import annotations

import functools
import gzip
import os

import numpy as np

from . import validation as V

KNOWN_DATASETS = ("mnist", "fashion_mnist", "binarized_mnist", "omniglot", "cifar10")

# Image shape (H, W, C) each known data set yields.
_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "binarized_mnist": (28, 28, 1),
           "omniglot": (28, 28, 1), "cifar10": (32, 32, 3)}

# Directories of IDX files used instead of TFDS when they exist (and data_dir is None),
# so that the standard benchmarks work offline. Tests may monkeypatch this.
LOCAL_DIRS = {"fashion_mnist": "/usr/share/datasets/fashion-mnist",
              "mnist": "/usr/share/datasets/mnist"}

# File names tried in a local directory, per raw split (each also with ".gz").
_IDX_NAMES = {"train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte",
                       "test-images-idx3-ubyte", "test-images.idx3-ubyte")}
# Keys tried in an .npz file holding one split, and in one holding all splits.
_NPZ_ARRAY_KEYS = ("x", "images", "image", "data")
_NPZ_SPLIT_KEYS = {"train": ("train", "x_train", "train_x", "train_images", "images_train"),
                   "test": ("test", "x_test", "test_x", "test_images", "images_test")}

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
               0x0E: ">f8"}


class DatasetUnavailableError(RuntimeError):
    """A data set could not be loaded through tensorflow_datasets (e.g. no internet)."""


def read_idx(path) -> np.ndarray:
    """Reads an IDX file (as used by MNIST / Fashion-MNIST), gzipped or not."""
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    # Header: two zero bytes, a dtype code, the rank, then rank big-endian int32 sizes.
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4]!r}).")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise ValueError(f"{path}: IDX header promises shape {shape} ({expected} bytes) but "
                         f"the file holds {len(raw) - offset} data bytes.")
    return np.frombuffer(raw, dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def _npz_pick(npz, keys, path, what):
    """Returns the array stored under the first of ``keys`` present (or the only array)."""
    for key in keys:
        if key in npz.files:
            return npz[key]
    if len(npz.files) == 1 and what == "images":
        return npz[npz.files[0]]
    raise ValueError(f"{path} has no {what} array: tried keys {keys}, found {npz.files}.")


def _freeze(pair):
    pair[0].setflags(write=False)
    return pair


@functools.lru_cache(maxsize=16)
def _read_file(path: str, mtime_ns: int, split: str | None):
    """Reads one file (cached on path and modification time).

    ``split`` is None for files holding a single split, else the split to pick
    from an .npz file holding several.
    """
    del mtime_ns  # only part of the cache key, so edited files are re-read
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as npz:
            if split is None:
                x = _npz_pick(npz, _NPZ_ARRAY_KEYS, path, "images")
            else:
                x = _npz_pick(npz, _NPZ_SPLIT_KEYS[split], path, f"{split!r} split")
    else:
        x = read_idx(path)
    return _freeze(V.standardize(x, name=f"{os.path.basename(path)}"))


def _cached_file(path: str, split: str | None):
    return _read_file(path, os.stat(path).st_mtime_ns, split)


def _find_in_dir(directory: str, split: str) -> str | None:
    candidates = [f"{split}.npz"] + [n + ext for n in _IDX_NAMES[split] for ext in (".gz", "")]
    for name in candidates:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def read_local(path: str, split: str):
    """Raw split ("train"/"test") from a local directory or .npz file."""
    if os.path.isdir(path):
        found = _find_in_dir(path, split)
        if found is None:
            tried = ", ".join([f"{split}.npz"] + [n + "[.gz]" for n in _IDX_NAMES[split]])
            raise FileNotFoundError(
                f"No {split!r} images in directory {path!r}: tried {tried}.")
        return _cached_file(found, None)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such data file or directory: {path!r}.")
    if path.endswith(".npz"):
        return _cached_file(path, split)
    raise ValueError(f"Cannot read {path!r}: expected a directory of IDX/NPZ files "
                     "or an .npz file.")


def _omniglot_to_28(image):
    """105x105x3 strokes-on-white -> 28x28x1 uint8 with strokes bright (as in IWAE's Omniglot)."""
    import tensorflow as tf

    gray = tf.reduce_mean(tf.cast(image, tf.float32), axis=-1, keepdims=True) / 255.0
    small = tf.image.resize(gray, (28, 28), method="area")
    return tf.cast(tf.round(255.0 * (1.0 - small)), tf.uint8)


def _tfds_images(name: str, split: str, data_dir):
    """All images of a TFDS split as a numpy array."""
    try:
        import tensorflow_datasets as tfds

        ds = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False)
        ds = ds.map(lambda e: e["image"])
        if name == "omniglot":
            ds = ds.map(_omniglot_to_28)
        # batch_size=-1 in tfds.load would be simpler, but it aborts the process
        # for datasets of unknown cardinality (e.g. under tfds.testing.mock_data).
        chunks = [np.asarray(b) for b in tfds.as_numpy(ds.batch(8192))]
    except Exception as e:  # noqa: BLE001 - any TFDS failure gets the same advice
        raise DatasetUnavailableError(
            f"Could not load dataset {name!r} (split {split!r}) with tensorflow_datasets "
            f"(data_dir={data_dir!r}): {type(e).__name__}: {e}. Without internet access TFDS "
            f"cannot download it: pass data_dir pointing at a directory where {name!r} was "
            "already prepared (`tfds build` on a machine with internet), or pass the path of a "
            "local directory with IDX files (train-images-idx3-ubyte[.gz], "
            "t10k-images-idx3-ubyte[.gz]) or train.npz/test.npz as the dataset name.") from e
    if not chunks:
        raise DatasetUnavailableError(f"TFDS returned no images for {name!r} split {split!r}.")
    return np.concatenate(chunks)


@functools.lru_cache(maxsize=16)
def _load_known(name: str, split: str, data_dir):
    local = LOCAL_DIRS.get(name)
    if data_dir is None and local and _find_in_dir(local, split):
        return read_local(local, split)
    x = _tfds_images(name, split, data_dir)
    if name == "binarized_mnist":
        # Stored as 0/1; also accept 0..255 copies so the result is always binary.
        x = (x >= 128 if x.max() > 1 else x > 0).astype(np.uint8)
    return _freeze(V.standardize(x, name=f"{name} {split}"))


def resolve(name) -> tuple[str, str]:
    """Returns ("known", canonical name) or ("local", absolute path)."""
    if not isinstance(name, (str, os.PathLike)):
        raise ValueError(f"Dataset name must be a string or path, got {name!r}.")
    text = os.fspath(name)
    key = text.strip().lower().replace("-", "_")
    if key in KNOWN_DATASETS:
        return "known", key
    path = os.path.abspath(os.path.expanduser(text))
    if os.path.exists(path):
        return "local", path
    if os.sep in text or "/" in text or text.startswith(("~", ".")) or text.endswith(".npz"):
        raise FileNotFoundError(f"No such data file or directory: {path!r} "
                                f"(dataset name {text!r} looks like a path).")
    raise ValueError(
        f"Unknown dataset {text!r}. Known datasets are {KNOWN_DATASETS}; alternatively pass the "
        "path of a local directory with IDX files (train-images-idx3-ubyte[.gz], "
        "t10k-images-idx3-ubyte[.gz]) or train.npz/test.npz, or of a single .npz file with "
        "'train'/'test' (or 'x_train'/'x_test') arrays.")


def load_raw(name, split: str, data_dir=None):
    """Raw split ("train"/"test") as ``(array, divisor)``; cached."""
    kind, key = resolve(name)
    if kind == "known":
        data_dir = None if data_dir is None else os.fspath(data_dir)
        return _load_known(key, split, data_dir)
    return read_local(key, split)


def get_split(name, split="train", data_dir=None, validation_size=0):
    """``(array, divisor)`` for "train", "validation" or "test".

    With ``validation_size > 0`` the last ``validation_size`` training examples
    form the validation split and are removed from "train".
    """
    V.check_split(split)
    validation_size = V.check_validation_size(validation_size)
    if split == "validation" and validation_size == 0:
        raise ValueError(
            "split='validation' needs validation_size > 0: the validation set is held out "
            "from the end of the training set, e.g. pass validation_size=10000.")
    if split == "test":
        return load_raw(name, "test", data_dir)
    arr, divisor = load_raw(name, "train", data_dir)
    if validation_size == 0:
        return arr, divisor
    if validation_size >= len(arr):
        raise ValueError(f"validation_size={validation_size} leaves no training examples: "
                         f"the training set has only {len(arr)}.")
    return (arr[-validation_size:] if split == "validation" else arr[:-validation_size]), divisor


def load_arrays(name, split="train", *, data_dir=None, validation_size=0) -> np.ndarray:
    """Images of a split as float32 ``[N, H, W, C]`` in [0, 1] (uint8 scaled by 1/255)."""
    return V.to_float(*get_split(name, split, data_dir, validation_size))


def image_shape(name, *, data_dir=None) -> tuple[int, ...]:
    """Shape of one image, e.g. (28, 28, 1); local data sets are read to find out."""
    kind, key = resolve(name)
    if kind == "known":
        return _SHAPES[key]
    return tuple(load_raw(key, "train", data_dir)[0].shape[1:])


def clear_cache() -> None:
    """Forgets all cached arrays (e.g. after mocking TFDS in tests)."""
    _read_file.cache_clear()
    _load_known.cache_clear()
