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
import weakref

import numpy as np

BINARIZE_MODES = ("dynamic", "static", "none")
SPLITS = ("train", "validation", "test")
# Data names whose support is [0, 1] (custom Likelihood layers may use the last two); any other
# name without a check of its own below only needs finite values.
UNIT_INTERVAL_LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "beta")
# Likelihoods of continuous or 8-bit intensities: binarised (0/1) data is almost surely a mistake.
NON_BINARY_LIKELIHOODS = ("gaussian", "discretized_logistic")
_CHUNK = 8192  # examples per pass of the element-wise checks, to bound the temporaries


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
    """The data name of ``likelihood``: a registry name (any case), a ``tfdgm.distributions.
    Likelihood`` layer (its ``data_name``), or None / 'none' for no likelihood check."""
    if likelihood is None:
        return "none"
    if not isinstance(likelihood, str):
        if not hasattr(likelihood, "data_name"):
            raise ValueError("likelihood must be a name such as 'bernoulli' or 'gaussian' or a "
                             f"tfdgm.distributions.Likelihood, got {likelihood!r}.")
        return (likelihood.data_name or "none").lower()  # custom likelihoods may have no name
    # Imported here: tfdgm.data itself should not need Keras to import.
    from tfdgm.distributions.likelihoods import LIKELIHOOD_NAMES

    name = likelihood.lower()
    if name != "none" and name not in LIKELIHOOD_NAMES:
        raise ValueError(f"Unknown likelihood {likelihood!r}; choose one of {LIKELIHOOD_NAMES} "
                         "or pass a tfdgm.distributions.Likelihood.")
    return name


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


def check_values(arr: np.ndarray, divisor: float, likelihood, binarize: str,
                 name: str = "data") -> None:
    """Checks the values ``likelihood`` (a name or a Likelihood layer) and ``binarize`` need.

    * binarisation needs intensities in [0, 1] (they are Bernoulli probabilities);
    * 'bernoulli' on data fed as-is (``binarize='none'``) needs exactly binary data;
    * 'gaussian' and 'discretized_logistic' refuse binary data and binarisation;
    * 'discretized_logistic' needs 8-bit intensities k/255 in [0, 1] (uint8 always is).
    """
    likelihood = check_likelihood(likelihood)
    binarize = check_binarize(binarize)
    if likelihood in NON_BINARY_LIKELIHOODS:
        _check_not_binary(arr, divisor, likelihood, binarize, name)
    if likelihood == "discretized_logistic":
        _check_8bit(arr, divisor, name)
        return
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
        n_bad, first = _count_where(arr, lambda a: (a != 0) & (a != top))
        if n_bad:
            raise ValueError(
                f"The 'bernoulli' likelihood needs binary (0/1) data, but binarize='none' "
                f"and {name} has {n_bad} values strictly between 0 and 1 (first at index "
                f"{first}: {float(arr[first]) / divisor:g}). Pass binarize='dynamic' or "
                "'static' to sample binary images, or use a continuous likelihood such as "
                "'gaussian'.")


def _count_where(arr: np.ndarray, predicate) -> tuple[int, tuple | None]:
    """(number of elements where ``predicate`` holds, index of the first), chunk by chunk."""
    total, first = 0, None
    for start in range(0, len(arr), _CHUNK):
        bad = predicate(arr[start:start + _CHUNK])
        n = int(np.count_nonzero(bad))
        if n and first is None:
            i = np.argwhere(bad)[0]
            first = (int(i[0]) + start,) + tuple(int(j) for j in i[1:])
        total += n
    return total, first


def _check_not_binary(arr, divisor, likelihood, binarize, name) -> None:
    what = ("8-bit intensities k/255" if likelihood == "discretized_logistic"
            else "continuous intensities")
    if binarize != "none":
        raise ValueError(
            f"binarize={binarize!r} feeds binary 0/1 images, but the {likelihood!r} likelihood "
            f"models {what}. Pass binarize='none' to keep the intensities, or use "
            "likelihood='bernoulli' for binarised data.")
    top = 255 if divisor == 255.0 else 1
    if _count_where(arr, lambda a: (a != 0) & (a != top))[0] == 0:
        # A density on 0/1 data grows without bound as its scale shrinks: almost surely a mistake.
        raise ValueError(
            f"{name} holds only the values 0 and 1 (binary data), but the {likelihood!r} "
            f"likelihood models {what}. Use likelihood='bernoulli' for binary data.")


def _check_8bit(arr, divisor, name) -> None:
    if divisor == 255.0:  # uint8 intensities: on the grid by construction
        return
    hint = ("Pass the uint8 images, or x.astype('float32') / 255 of them; use "
            "likelihood='gaussian' for arbitrary continuous data.")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0 or hi > 1:
        raise ValueError(
            f"The 'discretized_logistic' likelihood needs 8-bit intensities k/255 in [0, 1], but "
            f"{name} ranges over [{lo:g}, {hi:g}]. {hint}")
    # float32 k/255 times 255 is within ~3e-5 of k; real off-grid data is off by far more.
    n_bad, first = _count_where(
        arr, lambda a: np.abs(a * np.float32(255) - np.round(a * np.float32(255))) > 1e-3)
    if n_bad:
        raise ValueError(
            f"The 'discretized_logistic' likelihood needs 8-bit intensities k/255 in [0, 1], but "
            f"{n_bad} values of {name} are off that grid (first at index {first}: "
            f"{float(arr[first]):g}). {hint}")


def prepare(x, likelihood="bernoulli", binarize="none", name="data") -> tuple[np.ndarray, float]:
    """Standardises and fully checks ``x``; returns ``(array, divisor)``.

    ``likelihood``: a name from ``tfdgm.distributions.LIKELIHOOD_NAMES``, a Likelihood layer,
    or None to skip the likelihood-specific checks.
    """
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
    them, non-binary data for a Bernoulli likelihood, binary data (or
    binarisation) for a Gaussian or discretised logistic one, and data off the
    8-bit grid k/255 for a discretised logistic one. ``likelihood`` is a name or
    a ``tfdgm.distributions.Likelihood`` layer. ``binarize`` says how
    the data will be fed: with the default 'none' a Bernoulli likelihood needs
    0/1 data; with 'dynamic'/'static' intensities in [0, 1] suffice. 8-bit
    (uint8) images are scaled by 1/255; ``[N, H, W]`` gets a channel axis and
    flat ``[N, D]`` vectors are kept as they are.
    """
    return to_float(*prepare(x, likelihood=likelihood, binarize=binarize, name=name))


# tf.data pipelines built by tfdgm.data from arrays it validated: `GenerativeModel.fit` does not
# peek at their first batch. Weak, so a dataset is not kept alive by being listed here.
_VALIDATED = weakref.WeakSet()


def mark_validated(ds):
    """Records that every batch of ``ds`` comes from data already validated; returns ``ds``."""
    try:
        _VALIDATED.add(ds)
    except TypeError:  # not weakly referenceable: it will just be checked again
        pass
    return ds


def is_validated(ds) -> bool:
    try:
        return ds in _VALIDATED
    except TypeError:
        return False
