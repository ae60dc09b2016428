"""Tests for tfdgm.data: real Fashion-MNIST, local files, mocked TFDS, and input checks."""
import gzip
import os
import struct
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf

from tfdgm import data

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
needs_fashion = pytest.mark.skipif(
    not os.path.exists(os.path.join(FASHION_DIR, "train-images-idx3-ubyte.gz")),
    reason="Fashion-MNIST IDX files not installed")


def batches(ds, n=None):
    return [b.numpy() for b in (ds if n is None else ds.take(n))]


def write_idx(path, array):
    """Writes a uint8 IDX file (gzipped if path ends with .gz)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i",
                                                                          *array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def fashion():
    return {s: data.load_arrays("fashion_mnist", s) for s in ("train", "test")}


# ----------------------------------------------------------------------------- real data
@needs_fashion
def test_fashion_arrays(fashion):
    assert fashion["train"].shape == (60000, 28, 28, 1)
    assert fashion["test"].shape == (10000, 28, 28, 1)
    for x in fashion.values():
        assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    raw = data.read_idx(os.path.join(FASHION_DIR, "t10k-images-idx3-ubyte.gz"))
    np.testing.assert_array_equal(fashion["test"][..., 0], raw.astype(np.float32) / 255)
    assert data.image_shape("fashion_mnist") == (28, 28, 1)


@needs_fashion
def test_train_batches_are_binary():
    ds = data.load("fashion_mnist")
    assert ds.element_spec.shape.as_list() == [None, 28, 28, 1]
    assert ds.element_spec.dtype == tf.float32
    assert int(ds.cardinality()) == 600
    (b,) = batches(ds, 1)
    assert b.shape == (100, 28, 28, 1)
    assert set(np.unique(b)) <= {0.0, 1.0}


@needs_fashion
def test_dynamic_binarization_reproducible_and_fresh_each_epoch():
    def two_epochs(ds):
        return [batches(ds, 2) for _ in range(2)]

    a = two_epochs(data.load("fashion_mnist", seed=3))
    b = two_epochs(data.load("fashion_mnist", seed=3))
    for ea, eb in zip(a, b):
        for x, y in zip(ea, eb):
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0][0], a[1][0])
    assert not np.array_equal(a[0][0], batches(data.load("fashion_mnist", seed=4), 1)[0])


@needs_fashion
def test_dynamic_binarization_is_unbiased(fashion):
    x = fashion["test"]
    ds = data.load("fashion_mnist", "test", batch_size=2000)  # not shuffled
    total = sum(b.sum(dtype=np.float64) for b in batches(ds))
    # Sum of independent Bernoulli(p): standard error sqrt(sum p(1-p)).
    se = np.sqrt((x * (1 - x)).sum(dtype=np.float64))
    assert abs(total - x.sum(dtype=np.float64)) < 5 * se


@needs_fashion
def test_static_binarization_is_fixed():
    def epochs(ds):
        return [np.concatenate(batches(ds, 3)) for _ in range(2)]

    a = epochs(data.load("fashion_mnist", "test", binarize="static", seed=1))
    b = epochs(data.load("fashion_mnist", "test", binarize="static", seed=1))
    for e in a[1:] + b:
        np.testing.assert_array_equal(a[0], e)
    assert set(np.unique(a[0])) <= {0.0, 1.0}
    c = epochs(data.load("fashion_mnist", "test", binarize="static", seed=2))
    assert not np.array_equal(a[0], c[0])


@needs_fashion
def test_validation_split_holds_out_last_examples(fashion):
    raw = fashion["train"]
    kw = dict(validation_size=10000, binarize="none", likelihood="gaussian", batch_size=10000)
    assert int(data.load("fashion_mnist", validation_size=10000).cardinality()) == 500
    train = np.concatenate(batches(data.load("fashion_mnist", "train", **kw)))
    val = np.concatenate(batches(data.load("fashion_mnist", "validation", **kw)))
    assert train.shape == (50000, 28, 28, 1) and val.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(val, raw[50000:])  # in order: not shuffled
    # Shuffled train holds exactly the first 50000 raw images (so none of the held-out ones).
    assert Counter(map(bytes, train)) == Counter(map(bytes, raw[:50000]))
    np.testing.assert_array_equal(
        data.load_arrays("fashion_mnist", "validation", validation_size=10000), raw[50000:])


@needs_fashion
def test_test_split_not_shuffled_but_train_is(fashion):
    kw = dict(binarize="none", likelihood="gaussian")
    first = batches(data.load("fashion_mnist", "test", **kw), 1)[0]
    np.testing.assert_array_equal(first, fashion["test"][:100])
    train = data.load("fashion_mnist", "train", **kw)
    e1, e2 = batches(train, 1)[0], batches(train, 1)[0]
    assert not np.array_equal(e1, fashion["train"][:100])
    assert not np.array_equal(e1, e2)  # reshuffled each epoch


@needs_fashion
def test_grey_fashion_with_bernoulli_and_no_binarization_raises():
    with pytest.raises(ValueError, match="binarize='dynamic' or 'static'"):
        data.load("fashion_mnist", "test", binarize="none")


# ----------------------------------------------------------------------------- from_array
def test_from_array_batching_repeat_and_drop_remainder():
    x = np.random.default_rng(0).random((250, 4, 4, 1), dtype=np.float32)
    ds = data.from_array(x, batch_size=100, seed=5)
    assert [len(b) for b in batches(ds)] == [100, 100, 50]
    dropped = data.from_array(x, batch_size=100, drop_remainder=True)
    assert dropped.element_spec.shape.as_list() == [100, 4, 4, 1]
    assert int(dropped.cardinality()) == 2
    # repeat=True: one endless stream of epochs, each a fresh permutation (and binarisation),
    # the same for the same seed wherever the pipeline is built (tf.distribute rebuilds it).
    rep = batches(data.from_array(x, batch_size=100, seed=5, repeat=True), 6)
    again = batches(data.from_array(x, batch_size=100, seed=5, repeat=True), 6)
    for r, a in zip(rep, again):
        np.testing.assert_array_equal(r, a)
    assert [len(b) for b in rep] == [100, 100, 50] * 2
    plain = batches(data.from_array(x, binarize="none", likelihood="gaussian", seed=5, repeat=True), 6)
    first, second = np.concatenate(plain[:3]), np.concatenate(plain[3:])
    for epoch in (first, second):
        np.testing.assert_array_equal(np.sort(epoch.reshape(250, -1), axis=0), np.sort(x.reshape(250, -1), axis=0))
    assert not np.array_equal(first, second)
    unshuffled = data.from_array(x, binarize="none", likelihood="gaussian", shuffle=False)
    np.testing.assert_array_equal(np.concatenate(batches(unshuffled)), x)


def test_from_array_with_keras_fit_rerandomizes_each_epoch():
    import keras

    class SumModel(keras.Model):
        """Reports the pixel sum of the last batch, so epochs can be told apart."""

        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            return self.dense(tf.reshape(x, [tf.shape(x)[0], -1]))

        def train_step(self, x):
            return {"s": tf.reduce_sum(x)}

    x = np.random.default_rng(0).random((200, 4, 4, 1), dtype=np.float32)
    runs = []
    for _ in range(2):
        model = SumModel()
        model.compile()
        model(x[:1])
        history = model.fit(data.from_array(x, batch_size=50), epochs=3, shuffle=False,
                            verbose=0)
        runs.append(history.history["s"])
    assert runs[0] == runs[1] and len(set(runs[0])) == 3


def test_validate_normalizes_shapes_and_dtypes():
    u8 = np.array([[[0, 255], [51, 102]]], np.uint8)
    np.testing.assert_allclose(data.validate(u8, "gaussian")[..., 0], u8 / 255)
    assert data.validate(u8, binarize="dynamic").shape == (1, 2, 2, 1)
    binary_u8 = np.array([[0, 1, 1]], np.uint8)  # 0/1 bytes are binary, not 1/255
    np.testing.assert_array_equal(data.validate(binary_u8), [[0.0, 1.0, 1.0]])
    flat = data.validate(np.zeros((3, 7), np.float64))
    assert flat.shape == (3, 7) and flat.dtype == np.float32
    assert data.validate(np.ones((2, 3, 3), bool)).shape == (2, 3, 3, 1)
    big = np.full((2, 2), 300.0)
    assert data.validate(big, likelihood="gaussian", binarize="none").max() == 300.0


# ----------------------------------------------------------------------------- local files
def test_local_idx_directory(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test)  # uncompressed works too
    np.testing.assert_array_equal(data.read_idx(tmp_path / "train-images-idx3-ubyte.gz"), train)
    scale = np.float32(255)
    np.testing.assert_array_equal(data.load_arrays(str(tmp_path))[..., 0], train / scale)
    np.testing.assert_array_equal(data.load_arrays(tmp_path, "test")[..., 0], test / scale)
    b = batches(data.load(str(tmp_path), batch_size=8), 1)[0]
    assert b.shape == (8, 28, 28, 1) and set(np.unique(b)) <= {0.0, 1.0}
    assert data.image_shape(str(tmp_path)) == (28, 28, 1)
    assert int(data.load(str(tmp_path), "validation", validation_size=10).cardinality()) == 1

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04junk")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.load_arrays(str(tmp_path / "bad"))
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        data.load_arrays(str(tmp_path / "bad"), "test")


def test_local_npz_directory_and_file(tmp_path):
    rng = np.random.default_rng(1)
    train = rng.random((20, 8, 8), dtype=np.float32)
    test = (rng.random((6, 8, 8, 1)) < 0.5).astype(np.uint8)  # binary bytes
    np.savez(tmp_path / "train.npz", x=train)
    np.savez(tmp_path / "test.npz", images=test)
    np.testing.assert_array_equal(data.load_arrays(str(tmp_path))[..., 0], train)
    np.testing.assert_array_equal(data.load_arrays(str(tmp_path), "test"), test)
    b = batches(data.load(str(tmp_path), "test", binarize="none", batch_size=6))[0]
    np.testing.assert_array_equal(b, test)

    single = tmp_path / "all.npz"
    np.savez(single, x_train=train, x_test=test[..., 0] * 255)
    np.testing.assert_array_equal(data.load_arrays(str(single), "test"), test)
    assert batches(data.load(str(single), batch_size=5), 1)[0].shape == (5, 8, 8, 1)
    np.savez(tmp_path / "only_train.npz", train=train)
    with pytest.raises(ValueError, match="'test' split.*x_test"):
        data.load_arrays(str(tmp_path / "only_train.npz"), "test")


def test_missing_local_paths(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        data.load(str(missing))
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        data.load_arrays("missing.npz")
    with pytest.raises(FileNotFoundError, match="train.npz"):
        data.load_arrays(str(tmp_path))  # exists but holds nothing


# ----------------------------------------------------------------------------- TFDS (mocked)
@pytest.fixture
def mocked_tfds(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(data.sources, "LOCAL_DIRS", {})  # force the TFDS path
    data.clear_cache()  # mocked arrays must not leak into (or come from) other tests
    with tfds.testing.mock_data(num_examples=12):
        yield tfds
    data.clear_cache()


@pytest.mark.parametrize("name, shape, kwargs", [
    ("mnist", (28, 28, 1), {}),
    ("fashion_mnist", (28, 28, 1), {"binarize": "static"}),
    ("binarized_mnist", (28, 28, 1), {}),  # already binary: binarize is ignored
    ("omniglot", (28, 28, 1), {"split": "test"}),
    ("cifar10", (32, 32, 3), {"binarize": "none", "likelihood": "gaussian"}),
])
def test_tfds_sources(mocked_tfds, name, shape, kwargs):
    split = kwargs.pop("split", "train")
    ds = data.load(name, split, batch_size=5, **kwargs)
    assert ds.element_spec.shape.as_list() == [None, *shape]
    got = batches(ds)
    assert [len(b) for b in got] == [5, 5, 2]
    x = np.concatenate(got)
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    if kwargs.get("binarize") != "none":
        assert set(np.unique(x)) <= {0.0, 1.0}
    assert data.load_arrays(name, split).shape == (12, *shape)
    assert data.image_shape(name) == shape


def test_tfds_failure_is_explained(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(data.sources, "LOCAL_DIRS", {})
    data.clear_cache()

    def offline(*args, **kwargs):
        raise ConnectionError("no internet")

    monkeypatch.setattr(tfds, "load", offline)
    with pytest.raises(data.DatasetUnavailableError,
                       match=r"'cifar10'.*no internet.*data_dir.*local directory") as info:
        data.load_arrays("cifar10")
    assert isinstance(info.value.__cause__, ConnectionError)


# ----------------------------------------------------------------------------- bad input
def _img(n=4):
    return np.random.default_rng(0).random((n, 5, 5, 1), dtype=np.float32)


def _with(value, index=(2, 3, 4, 0)):
    x = _img()
    x[index] = value
    return x


@pytest.mark.parametrize("x, kwargs, match", [
    (_with(np.nan), {}, r"1 non-finite values \(1 NaN, 0 inf\).*index \(2, 3, 4, 0\)"),
    (_with(np.inf, (1, 0, 0, 0)), {"likelihood": "gaussian", "binarize": "none"},
     r"1 non-finite values \(0 NaN, 1 inf\).*example 1"),
    (_img() * 255, {}, r"must lie in \[0, 1\] for binarize='dynamic'.*/ 255"),
    (_img() - 0.5, {"binarize": "none", "likelihood": "bernoulli"}, r"must lie in \[0, 1\]"),
    (_img(), {"binarize": "none"}, r"binary.*binarize='dynamic' or 'static'.*gaussian"),
    (np.zeros((0, 28, 28)), {}, r"empty"),
    (np.zeros((4, 3, 0)), {}, r"zero-sized"),
    (np.zeros(5), {}, r"rank 2-4.*rank 1"),
    (np.zeros((2, 3, 4, 5, 1)), {}, r"rank 2-4.*rank 5"),
    (np.array([["a", "b"]]), {}, r"numeric dtype"),
    (_img(), {"batch_size": 0}, r"batch_size must be a positive integer"),
    (_img(), {"batch_size": -3}, r"batch_size must be a positive integer"),
    (_img(), {"batch_size": 2.5}, r"batch_size must be a positive integer"),
    (_img(), {"binarize": "bernoulli"}, r"Unknown binarize mode 'bernoulli'.*dynamic"),
    (_img(), {"batch_size": 10, "drop_remainder": True}, r"would be empty"),
])
def test_from_array_rejects_bad_input(x, kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.from_array(x, **kwargs)


def test_validate_rejects_bad_input():
    with pytest.raises(ValueError, match=r"images contains 1 non-finite"):
        data.validate(_with(np.nan), name="images")
    with pytest.raises(ValueError, match=r"binary"):
        data.validate(_img())  # grey values fed as-is to a Bernoulli likelihood
    data.validate(_img(), binarize="dynamic")
    data.validate(_img() * 255, likelihood="gaussian")


@pytest.mark.parametrize("args, kwargs, match", [
    (("imagenet",), {}, r"Unknown dataset 'imagenet'.*'mnist', 'fashion_mnist', "
                        r"'binarized_mnist', 'omniglot', 'cifar10'.*local directory"),
    (("fashion_mnist", "valid"), {}, r"Unknown split 'valid'.*'train', 'validation', 'test'"),
    (("fashion_mnist", "validation"), {}, r"validation_size.*10000"),
    (("fashion_mnist",), {"batch_size": 0}, r"batch_size must be a positive integer"),
    (("fashion_mnist",), {"binarize": "yes"}, r"Unknown binarize mode"),
    (("fashion_mnist",), {"validation_size": -1}, r"validation_size must be"),
])
def test_load_rejects_bad_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.load(*args, **kwargs)


@needs_fashion
def test_validation_size_too_large():
    with pytest.raises(ValueError, match="leaves no training examples"):
        data.load("fashion_mnist", validation_size=60000)


def test_known_datasets():
    assert data.KNOWN_DATASETS == ("mnist", "fashion_mnist", "binarized_mnist", "omniglot",
                                   "cifar10")


# ----------------------------------------------------------------------------- per likelihood
def _grid(n=4):
    """8-bit intensities k/255 as float32, as tfdgm.data.load yields them."""
    return np.random.default_rng(1).integers(0, 256, (n, 5, 5, 1)).astype(np.float32) / 255


def test_gaussian_accepts_continuous_data_and_refuses_binary_data():
    data.validate(_img(), likelihood="gaussian")
    data.validate(_img() * 40 - 7, likelihood="gaussian")  # any real range
    for binary in ((_img() < 0.5).astype(np.float32), (_img() < 0.5).astype(np.uint8) * 255,
                   np.ones((3, 4, 4), bool)):
        with pytest.raises(ValueError, match=r"only the values 0 and 1.*'gaussian'.*likelihood='bernoulli'"):
            data.validate(binary, likelihood="gaussian")
    with pytest.raises(ValueError, match=r"binarize='dynamic' feeds binary.*'gaussian'.*binarize='none'.*'bernoulli'"):
        data.from_array(_img(), likelihood="gaussian")  # from_array binarises by default


def test_discretized_logistic_accepts_8bit_data_only():
    u8 = np.random.default_rng(2).integers(0, 256, (4, 5, 5, 3), dtype=np.uint8)
    np.testing.assert_allclose(data.validate(u8, likelihood="discretized_logistic"), u8 / np.float32(255))
    data.validate(_grid(), likelihood="discretized_logistic")
    data.validate(_grid().astype(np.float64), likelihood="discretized_logistic")
    np.testing.assert_array_equal(
        np.concatenate(batches(data.from_array(_grid(), binarize="none", likelihood="discretized_logistic",
                                               shuffle=False))), _grid())
    cases = [
        (_img(), r"values of x are off that grid.*likelihood='gaussian'"),
        (_grid() + 0.3 / 255, r"off that grid \(first at index \(0, 0, 0, 0\).*'gaussian' for arbitrary"),
        (_grid() * 255, r"k/255 in \[0, 1\], but x ranges over \[\d+, \d+\].*/ 255.*'gaussian'"),
        ((_img() < 0.5).astype(np.float32), r"only the values 0 and 1.*'bernoulli'"),
        ((_img() < 0.5).astype(np.uint8), r"only the values 0 and 1.*'bernoulli'"),
    ]
    for x, match in cases:
        with pytest.raises(ValueError, match=match):
            data.validate(x, likelihood="discretized_logistic", name="x")
    with pytest.raises(ValueError, match=r"binarize='static' feeds binary.*8-bit"):
        data.validate(u8, likelihood="discretized_logistic", binarize="static")


def test_a_likelihood_layer_is_accepted_wherever_a_name_is():
    from tfdgm import distributions as dists

    data.validate(_img(), likelihood=dists.GaussianLikelihood(scale="learned"))
    with pytest.raises(ValueError, match=r"binary.*binarize='dynamic' or 'static'"):
        data.validate(_img(), likelihood=dists.BernoulliLikelihood())
    with pytest.raises(ValueError, match=r"off that grid"):
        data.from_array(_img(), binarize="none", likelihood=dists.DiscretizedLogisticLikelihood())
    arr, divisor = data.validation.prepare(_grid(), likelihood=dists.get_likelihood("discretized_logistic"))
    data.validation.check_values(arr, divisor, dists.DiscretizedLogisticLikelihood(), "none")
    data.validate(_img() * 9, likelihood=None)  # no likelihood: only the generic checks


@pytest.mark.parametrize("likelihood, match", [
    ("poisson", r"Unknown likelihood 'poisson'.*'bernoulli', 'gaussian', 'gaussian_predicted_scale', 'discretized_logistic'"),
    (3, r"likelihood must be a name .* or a tfdgm.distributions.Likelihood, got 3"),
])
def test_unknown_likelihoods_are_refused(likelihood, match):
    with pytest.raises(ValueError, match=match):
        data.validate(_img(), likelihood=likelihood)
    with pytest.raises(ValueError, match=match):
        data.load("fashion_mnist", likelihood=likelihood)  # before any data is read


def test_load_checks_the_likelihood_against_the_split(mocked_tfds):
    with pytest.raises(ValueError, match=r"binarized_mnist 'train' split holds only the values 0 and 1.*'bernoulli'"):
        data.load("binarized_mnist", likelihood="gaussian")
    ds = data.load("cifar10", binarize="none", likelihood="discretized_logistic", batch_size=12)
    x = batches(ds)[0]
    np.testing.assert_allclose(x * 255, np.round(x * 255), atol=1e-4)
