"""One latent-size convention for every discrete model (issue #12): latent_dim counts latent
variables, num_classes the classes of each; the decoder sees the flat one-hot code of width
code_size = latent_dim * num_classes (latent_dim for Bernoulli units)."""
import keras
import numpy as np
import pytest

from tfdgm import models

X = (np.random.default_rng(0).uniform(size=(4, 8, 8, 1)) < 0.5).astype("float32")
SCORE_FUNCTION = [("nvil", {}), ("nvil", {"estimator": "reinforce"}), ("vimco", {"num_samples": 2}),
                  ("rws", {"num_samples": 2}), ("wake_sleep", {})]


def build(name, **kwargs):
    return models.get_model_class(name)(input_shape=(8, 8, 1), hidden_units=(16,), seed=7, **kwargs)


@pytest.mark.parametrize("name, extra", SCORE_FUNCTION, ids=[f"{n}-{e.get('estimator', '')}" for n, e in SCORE_FUNCTION])
@pytest.mark.parametrize("latent, latent_dim, num_classes", [("categorical", 4, 3), ("bernoulli", 5, 10)])
def test_same_latent_dim_and_num_classes_give_the_same_latent_as_gumbel_softmax(name, extra, latent, latent_dim,
                                                                                num_classes):
    kwargs = dict(latent=latent, latent_dim=latent_dim, num_classes=num_classes)
    sf, gs = build(name, **kwargs, **extra), build("gumbel_softmax", **kwargs)
    width = latent_dim * (num_classes if latent == "categorical" else 1)
    for model in (sf, gs):
        assert (model.num_variables, model.latent_dim, model.code_size) == (latent_dim, latent_dim, width)
        assert tuple(model.encode(X).shape) == (4, width)
        assert tuple(model.decode(model.encode(X)).shape) == X.shape
        assert model.get_config()["latent_dim"] == latent_dim
        rebuilt = type(model).from_config(model.get_config())
        assert rebuilt.code_size == width
    # Hard samples of the same law: one-hot blocks of num_classes (or binary units), latent_dim of them.
    z = sf.log_weights(X, 3, seed=[0, 1], reparameterize=False)["z"].numpy()
    z_gs = gs.log_weights(X, 3, seed=[0, 1])["z"].numpy()
    for sample in (z, z_gs):
        assert sample.shape == (3, 4, width)
        if latent == "categorical":
            np.testing.assert_array_equal(sample.reshape(3, 4, latent_dim, num_classes).sum(-1), 1.0)
        else:
            assert set(np.unique(sample)) <= {0.0, 1.0}
    # The same number of encoder outputs and decoder inputs: the networks are interchangeable.
    assert [w.shape for w in sf.encoder.get_weights()] == [w.shape for w in gs.encoder.get_weights()]
    assert [w.shape for w in sf.decoder.get_weights()] == [w.shape for w in gs.decoder.get_weights()]


def test_jang_20x10_is_latent_dim_20_for_every_discrete_model():
    for name in ("nvil", "vimco", "rws", "wake_sleep", "gumbel_softmax"):
        model = models.get_model_class(name)(input_shape=(8, 8, 1), latent="categorical", latent_dim=20,
                                             num_classes=10, hidden_units=(8,))
        assert model.code_size == 200 and model.prior().sample(seed=[1, 2]).shape[-1] in (10, 200), name


def test_an_encoder_of_the_old_convention_is_refused_with_what_to_do():
    # Old convention: latent_dim=6 meant the code width (2 variables x 3 classes).
    old = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(6)])
    old.build((None, 8, 8, 1))
    model = build("nvil", latent="categorical", latent_dim=6, num_classes=3, encoder=old)
    with pytest.raises(ValueError, match=r"width 6.*code_size=18.*latent_dim counts latent variables"):
        model.log_likelihood_bound(X, 2)
    fixed = build("nvil", latent="categorical", latent_dim=2, num_classes=3, encoder=old)
    assert np.isfinite(fixed.log_likelihood_bound(X, 2).numpy()).all()


@pytest.mark.parametrize("name", ["nvil", "vimco", "gumbel_softmax"])
def test_bad_sizes_are_refused(name):
    with pytest.raises(ValueError, match="latent_dim"):
        build(name, latent="categorical", latent_dim=0, num_classes=3)
    with pytest.raises(ValueError, match="num_classes"):
        build(name, latent="categorical", latent_dim=2, num_classes=1)
