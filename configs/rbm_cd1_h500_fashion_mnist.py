"""An RBM of 500 hidden units trained by CD-1 (Hinton 2002) on binarised Fashion-MNIST, batch 100.

Hinton's practical guide (UTML TR 2010-003): SGD with learning rate 0.05 on the per-example mean
gradient, momentum 0.5 (the guide's value for the first epochs; it raises it to 0.9 later, which
here is a run of its own: the momentum is fixed for a run), L2 weight decay 1e-4 on W, W ~ N(0, 0.01^2).
Evaluate with `tfdgm evaluate --method ais --num_chains 100 --ais_steps 10000 --schedule linear`
(log Z by AIS from the base-rate model, Salakhutdinov & Murray 2008).
"""
from tfdgm.config import base_config


def get_config():
    config = base_config("rbm")
    config.model.update(num_hidden=500, cd_steps=1, persistent=False, num_chains=100, weight_decay=1e-4)
    config.training.update(optimizer="sgd", learning_rate=0.05, momentum=0.5)
    config.eval.diagnostics_every_n_epochs = 0
    return config
