"""The shared harness's checks (tests/test_models.py) on the score-function models' variants that
the registry's defaults (NVIL with its baseline, VIMCO, Bernoulli latents) do not reach:
plain REINFORCE, categorical latents (also for RWS, which shares HelmholtzModel), two layers."""
import inspect

import pytest

from tests import harness
from tests import test_models as shared

# Each check compiles and trains a model: outside the default run, run by CI as `pytest -m slow`.
pytestmark = pytest.mark.slow

VARIANTS = {
    "reinforce-categorical": ("nvil", {"estimator": "reinforce", "latent": "categorical", "num_classes": 3}),
    "nvil-sbn2": ("nvil", {"top_latent_dim": 2}),
    "vimco-categorical": ("vimco", {"latent": "categorical", "num_classes": 3}),
    "rws-categorical": ("rws", {"latent": "categorical", "num_classes": 3, "phi_update": "both"}),
}
FIT, XLA, SAVE, EXPORT = (shared.test_fit_reports_the_common_metrics_and_improves,
                          shared.test_xla_and_graph_mode_train_identically,
                          shared.test_keras_file_round_trip_is_safe_and_exact,
                          shared.test_savedmodel_export_needs_only_tensorflow)
CASES = [("reinforce-categorical", FIT), ("reinforce-categorical", SAVE), ("nvil-sbn2", FIT), ("nvil-sbn2", XLA),
         ("vimco-categorical", FIT), ("vimco-categorical", EXPORT), ("rws-categorical", FIT),
         ("rws-categorical", SAVE)]


@pytest.mark.parametrize("variant, check", CASES, ids=[f"{v}-{c.__name__[5:]}" for v, c in CASES])
def test_variant_passes_the_shared_check(variant, check, monkeypatch, tmp_path):
    name, kwargs = VARIANTS[variant]
    monkeypatch.setattr(shared, "tiny_model", lambda n, **o: harness.tiny_model(n, **{**kwargs, **o}))
    available = {"name": name, "monkeypatch": monkeypatch, "tmp_path": tmp_path}
    check(**{p: available[p] for p in inspect.signature(check).parameters})
