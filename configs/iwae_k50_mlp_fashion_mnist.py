"""IWAE with K=50 importance samples and the plain IWAE gradient, MLP, Fashion-MNIST."""
from tfdgm.config import base_config


def get_config():
    config = base_config("iwae", num_samples=50)
    # At K=50 oneDNN's matmuls beat XLA's on CPU: graph mode trains faster (1.13x in the
    # throughput table, 1.86x in the peers run of BENCHMARKS.md; for DReG at K=50 the two tie,
    # so its config keeps XLA). Override on GPU/TPU.
    config.training.jit_compile = False
    return config
