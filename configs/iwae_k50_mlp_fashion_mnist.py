"""IWAE with K=50 importance samples and the plain IWAE gradient, MLP, Fashion-MNIST."""
from tfdgm.config import base_config


def get_config():
    config = base_config("iwae", num_samples=50)
    # At K=50 graph mode is as fast as XLA on an idle 2-core CPU (3,442 vs 3,544 and 1,718 vs
    # 1,524 examples/s in two runs) and much faster on a shared one, where XLA's step keeps only
    # ~0.6 cores busy (1,765 vs 951): BENCHMARKS.md, throughput and peers. DReG at K=50 ties
    # under both, so its config keeps XLA. Override on GPU/TPU.
    config.training.jit_compile = False
    return config
