"""Encoder and decoder networks. Layers return tensors only; distributions are built by the model."""
from tfdgm.nets.conv import ConvDecoder, ConvEncoder
from tfdgm.nets.mlp import MLPDecoder, MLPEncoder
from tfdgm.nets.sbn import LogitsEncoder

ARCHITECTURES = {
    "mlp": (MLPEncoder, MLPDecoder),
    "conv": (ConvEncoder, ConvDecoder),
}


def make_networks(architecture, input_shape, latent_dim, hidden_units, dtype=None):
    """Builds the (encoder, decoder) pair named by `architecture` ("mlp" or "conv")."""
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"Unknown architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)}."
        )
    encoder_cls, decoder_cls = ARCHITECTURES[architecture]
    encoder = encoder_cls(latent_dim=latent_dim, hidden_units=hidden_units, dtype=dtype, name="encoder")
    decoder = decoder_cls(output_shape=input_shape, hidden_units=hidden_units, dtype=dtype, name="decoder")
    return encoder, decoder


__all__ = ["ARCHITECTURES", "ConvDecoder", "ConvEncoder", "LogitsEncoder", "MLPDecoder", "MLPEncoder", "make_networks"]
