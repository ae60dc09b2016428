"""The model zoo: pretrained presets by name, directory or URL, with verified downloads and cards.

    >>> model = tfdgm.from_preset("vae_mlp_fashion_mnist")
    >>> tfdgm.zoo.list_presets()

See `tfdgm.zoo.presets` for the layout of a preset and where its files are looked for.
"""
from tfdgm.zoo.download import DownloadError, fetch, sha256_of
from tfdgm.zoo.presets import (
    PresetError,
    cache_dir,
    from_preset,
    index_entry,
    list_presets,
    load_index,
    read_metadata,
    resolve,
    save_preset,
    zoo_dir,
)

__all__ = ["DownloadError", "PresetError", "cache_dir", "fetch", "from_preset", "index_entry", "list_presets",
           "load_index", "read_metadata", "resolve", "save_preset", "sha256_of", "zoo_dir"]
