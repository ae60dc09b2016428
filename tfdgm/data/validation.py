"""Checks that image data is usable by a model *before* training starts.

Every public entry point of :mod:`tfdgm.data` funnels its arrays through
:func:`prepare`, so a bad data set fails fast with a message that says what is
wrong and how to fix it, instead of producing NaN losses many steps later.

Internally images are kept as ``(array, divisor)`` pairs: ``array`` is uint8
or float32 with shape ``[N, H, W, C]`` (or ``[N, D]`` for flat vectors) and the
float intensities are ``array / divisor``.  Keeping 8-bit images as uint8 makes
the in-memory copy 4x smaller and the per-batch gather cheaper.
"""
from __future__ import annotations

import numbers

import numpy as np

BINARIZE_MODES = ("dynamic", "static", "none")
SPLITS = ("train", "validation", "test")
# Likelihoods whose support is [0, 1]; every other likelihood name is treated
# as continuous and only needs finite values.
UNIT_INTERVAL_LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "beta")


def check_binarize(binarize) -> str:
    """Returns the normalised binarize mode or raises ValueError."""
    if binarize is None:
        return "none"
    if isinstance(binarize, str) and binarize.lower() in BINARIZE_MODES:
        return binarize.lower()
    raise ValueError(
        f"Unknown binarize mode {binarize!r}; expected one of {BINARIZE_MODES}: "
        "'dynamic' draws fresh Bernoulli samples every epoch, 'static' draws them "
        "once (fixed by `seed`), 'none' keeps the intensities.")


def check_likelihood(likelihood) -> str:
    """Returns the likelihood name in lower case ('none' for None)."""
    if likelihood is None:
        return "none"
    if not isinstance(likelihood, str):
        raise ValueError(f"likelihood must be a string such as 'bernoulli' or 'gaussian', "
                         f"got {likelihood!r}.")
    return likelihood.lower()


def check_batch_size(batch_size) -> int:
    """Returns batch_size as int or raises ValueError if it is not a positive integer."""
    # bool is an Integral too, but batch_size=True is certainly a mistake.
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
            or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    return int(batch_size)


def check_split(split) -> str:
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; valid splits are {SPLITS}.")
    return split


def check_validation_size(validation_size) -> int:
    if isinstance(validation_size, bool) or not isinstance(validation_size, numbers.Integral) \
            or validation_size < 0:
        raise ValueError(
            f"validation_size must be a non-negative integer, got {validation_size!r}.")
    return int(validation_size)


def standardize(x, name: str = "data") -> tuple[np.ndarray, float]:
    """Converts ``x`` to the internal ``(array, divisor)`` form; checks dtype and rank.

    * uint8 with values above 1 is taken as 8-bit intensities (divisor 255);
      uint8 whose values are all 0/1 (e.g. binarized MNIST) and bool keep divisor 1.
    * other real dtypes become float32 (their range is checked by :func:`prepare`).
    * ``[N, H, W]`` gets a channel axis; ``[N, D]`` (flat vectors) and
      ``[N, H, W, C]`` are kept.
    """
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):  # tf.Tensor / EagerTensor
        x = x.numpy()
    try:
        x = np.asarray(x)
    except ValueError as e:  # ragged nested lists
        raise ValueError(f"{name} could not be converted to an array: {e}") from e
    if not (x.dtype == np.bool_ or np.issubdtype(x.dtype, np.integer)
            or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"{name} must have a real numeric dtype (uint8 or float), "
                         f"got dtype {x.dtype}.")
    if x.ndim < 2 or x.ndim > 4:
        raise ValueError(
            f"{name} must have shape [N, H, W, C], [N, H, W] or [N, D] (rank 2-4), "
            f"got shape {x.shape} (rank {x.ndim}).")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has shape {x.shape} with no examples.")
    if x.size == 0:
        raise ValueError(f"{name} has a zero-sized dimension: shape {x.shape}.")
    if x.ndim == 3:
        x = x[..., np.newaxis]

    if x.dtype == np.bool_:
        return x.astype(np.uint8), 1.0
    if x.dtype == np.uint8:
        return x, (255.0 if x.max() > 1 else 1.0)
    if np.issubdtype(x.dtype, np.floating):
        _check_finite(x, name)
    return x.astype(np.float32, copy=False), 1.0


def _check_finite(x: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(x)
    n_bad = int(bad.sum())
    if n_bad:
        n_nan = int(np.isnan(x).sum())
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} contains {n_bad} non-finite values ({n_nan} NaN, {n_bad - n_nan} inf); "
            f"the first is at index {first} (example {first[0]}). Remove or impute "
            "those examples before training.")


def check_values(arr: np.ndarray, divisor: float, likelihood: str, binarize: str,
                 name: str = "data") -> None:
    """Checks the value range needed by ``likelihood`` and ``binarize``.

    Binarisation needs intensities in [0, 1] (they are Bernoulli probabilities);
    a Bernoulli likelihood on data fed as-is (``binarize='none'``) needs exactly
    binary data.
    """
    needs_unit = binarize != "none" or likelihood in UNIT_INTERVAL_LIKELIHOODS
    if needs_unit and divisor == 1.0:  # uint8 with divisor 255 is in range by construction
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi > 1:
            n_out = int(np.count_nonzero((arr < 0) | (arr > 1)))
            why = (f"the {likelihood!r} likelihood" if binarize == "none"
                   else f"binarize={binarize!r}")
            raise ValueError(
                f"{name} values must lie in [0, 1] for {why}, but they range over "
                f"[{float(lo):g}, {float(hi):g}] ({n_out} values outside). Scale the data "
                "to [0, 1] first, e.g. x.astype('float32') / 255 for 8-bit images.")
    if likelihood == "bernoulli" and binarize == "none":
        top = 255 if divisor == 255.0 else 1
        non_binary = (arr != 0) & (arr != top)
        n_bad = int(np.count_nonzero(non_binary))
        if n_bad:
            first = tuple(int(i) for i in np.argwhere(non_binary)[0])
            raise ValueError(
                f"The 'bernoulli' likelihood needs binary (0/1) data, but binarize='none' "
                f"and {name} has {n_bad} values strictly between 0 and 1 (first at index "
                f"{first}: {float(arr[first]) / divisor:g}). Pass binarize='dynamic' or "
                "'static' to sample binary images, or use a continuous likelihood such as "
                "'gaussian'.")


def prepare(x, likelihood="bernoulli", binarize="none", name="data") -> tuple[np.ndarray, float]:
    """Standardises and fully checks ``x``; returns ``(array, divisor)``."""
    likelihood = check_likelihood(likelihood)
    binarize = check_binarize(binarize)
    arr, divisor = standardize(x, name)
    check_values(arr, divisor, likelihood, binarize, name)
    return arr, divisor


def to_float(arr: np.ndarray, divisor: float) -> np.ndarray:
    """float32 intensities of an ``(array, divisor)`` pair."""
    out = arr.astype(np.float32)
    if divisor != 1.0:
        out /= np.float32(divisor)
    return out


def validate(x, likelihood="bernoulli", name="data", *, binarize="none") -> np.ndarray:
    """Checks ``x`` before training and returns it as float32 ``[N, H, W, C]``.

    Raises ValueError for non-numeric dtypes, rank other than 2-4, empty data,
    NaN/inf, values outside [0, 1] where the likelihood or binarisation needs
    them, and non-binary data for a Bernoulli likelihood. ``binarize`` says how
    the data will be fed: with the default 'none' a Bernoulli likelihood needs
    0/1 data; with 'dynamic'/'static' intensities in [0, 1] suffice. 8-bit
    (uint8) images are scaled by 1/255; ``[N, H, W]`` gets a channel axis and
    flat ``[N, D]`` vectors are kept as they are.
    """
    return to_float(*prepare(x, likelihood=likelihood, binarize=binarize, name=name))
