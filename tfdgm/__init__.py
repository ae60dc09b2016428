"""tfdgm: deep latent-variable generative models as Keras 3 models trained with `model.fit`."""
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tfdgm import data, distributions, estimators, evaluation, models, nets  # noqa: E402

__version__ = "0.1.0"
__all__ = ["data", "distributions", "estimators", "evaluation", "models", "nets"]
