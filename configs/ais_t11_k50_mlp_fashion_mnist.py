"""AIS training (Ding & Freedman, Algorithm 1) with K=50 chains, T=11 linear temperatures, L=5 leapfrog steps
(T HMC moves, the last at beta=1), MLP, Fashion-MNIST. About L x T = 55 decoder passes per chain
more than IWAE-50; Hoffman's MH-HMC: --config.model.schedule=mh_hmc."""
from tfdgm.config import base_config


def get_config():
    config = base_config("ais_vae", num_samples=50)
    config.model.num_temperatures = 11
    config.model.leapfrog_steps = 5
    config.model.schedule = "linear"
    return config
