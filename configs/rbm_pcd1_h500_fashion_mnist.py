"""An RBM of 500 hidden units trained by PCD-1 (Tieleman 2008; 100 persistent chains) on binarised
Fashion-MNIST, batch 100.

SGD with learning rate 0.1 on the per-example mean gradient and no momentum (Tieleman 2008, and
scikit-learn's BernoulliRBM): with momentum 0.5 (the practical guide's CD setting, the CD configs)
PCD-1 measured 29 nats worse after 2 epochs (BENCHMARKS.md): the persistent chains lag a model that
momentum moves fast. L2 weight decay 1e-4 on W, W ~ N(0, 0.01^2).
Evaluate with `tfdgm evaluate --method ais --num_chains 100 --ais_steps 10000 --schedule linear`
(log Z by AIS from the base-rate model, Salakhutdinov & Murray 2008).
"""
from tfdgm.config import base_config


def get_config():
    config = base_config("rbm")
    config.model.update(num_hidden=500, cd_steps=1, persistent=True, num_chains=100, weight_decay=1e-4)
    config.training.update(optimizer="sgd", learning_rate=0.1, momentum=0.0)
    config.eval.diagnostics_every_n_epochs = 0
    return config
