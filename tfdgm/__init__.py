"""tfdgm: deep latent-variable generative models as Keras 3 models trained with `model.fit`."""
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tfdgm import callbacks, data, distributions, estimators, evaluation, mcmc, models, nets  # noqa: E402
from tfdgm import experiment, zoo  # noqa: E402  (after the modules they use)
from tfdgm.zoo import from_preset  # noqa: E402

__version__ = "0.1.0"
__all__ = ["callbacks", "data", "distributions", "estimators", "evaluation", "experiment", "from_preset", "mcmc", "models",
           "nets", "zoo"]
