"""The shared harness's checks (tests/test_models.py, tests/test_distribute.py) on the variants of
GumbelSoftmaxVAE that its registered default (categorical, relaxed forward, discrete KL) does not
reach: Bernoulli latents, straight-through, and the relaxed-density KL."""
import inspect

import pytest

from tests import harness
from tests import test_distribute as shared_distribute
from tests import test_models as shared
from tfdgm import distribute

pytestmark = pytest.mark.slow  # minutes of training: CI runs these with `pytest -m slow`

VARIANTS = {
    "bernoulli": {"latent": "bernoulli"},
    "straight_through": {"straight_through": True},
    "relaxed_kl": {"kl": "relaxed"},
    "bernoulli-st-relaxed_kl": {"latent": "bernoulli", "straight_through": True, "kl": "relaxed"},
}
FIT, XLA, SAVE, EXPORT = (shared.test_fit_reports_the_common_metrics_and_improves,
                          shared.test_xla_and_graph_mode_train_identically,
                          shared.test_keras_file_round_trip_is_safe_and_exact,
                          shared.test_savedmodel_export_needs_only_tensorflow)
CASES = ([("bernoulli", c) for c in (FIT, XLA, SAVE, EXPORT)]
         + [(v, c) for v in ("straight_through", "relaxed_kl", "bernoulli-st-relaxed_kl") for c in (FIT, XLA)])


@pytest.fixture(scope="module")
def mirrored():
    return distribute.make_strategy("mirrored")


@pytest.mark.parametrize("variant, check", CASES, ids=[f"{v}-{c.__name__[5:]}" for v, c in CASES])
def test_variant_passes_the_shared_check(variant, check, monkeypatch, tmp_path):
    kwargs = VARIANTS[variant]
    monkeypatch.setattr(shared, "tiny_model", lambda n, **o: harness.tiny_model(n, **{**kwargs, **o}))
    available = {"name": "gumbel_softmax", "monkeypatch": monkeypatch, "tmp_path": tmp_path}
    check(**{p: available[p] for p in inspect.signature(check).parameters})


@pytest.mark.parametrize("variant", ["bernoulli", "straight_through"])
def test_variant_trains_mirrored_like_one_device(variant, mirrored, monkeypatch):
    shared_distribute.test_mirrored_training_matches_one_device("gumbel_softmax", VARIANTS[variant], mirrored,
                                                                monkeypatch)
