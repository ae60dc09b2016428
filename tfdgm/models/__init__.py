"""Models: one file per objective, each registered by name in its own file.

`GenerativeModel` is the base of every objective; `AmortizedModel` adds an encoder, a decoder, a
prior and a likelihood. Importing this package registers the built-in models.
"""
from tfdgm.models.ais_vae import AISVAE, sample_implicit_posterior
from tfdgm.models.amortized import AmortizedModel
from tfdgm.models.base import GenerativeModel, get_model_class, register, registered_models
from tfdgm.models.exact import EnumerableLatentModel
from tfdgm.models.gsn import GSN
from tfdgm.models.gumbel_softmax import GumbelSoftmaxVAE
from tfdgm.models.iwae import IWAE, IWAEDReG
from tfdgm.models.rbm import RBM
from tfdgm.models.rws import RWS
from tfdgm.models.score_function import NVIL
from tfdgm.models.vae import VAE
from tfdgm.models.vimco import VIMCO
from tfdgm.models.wake_sleep import HelmholtzModel, WakeSleep

__all__ = ["AISVAE", "AmortizedModel", "EnumerableLatentModel", "GenerativeModel", "GSN", "GumbelSoftmaxVAE", "HelmholtzModel",
           "IWAE", "IWAEDReG", "NVIL", "RBM", "RWS", "VAE", "VIMCO", "WakeSleep", "get_model_class", "register",
           "registered_models", "sample_implicit_posterior"]
