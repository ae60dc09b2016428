"""Keras callbacks and file helpers for training runs.

Everything here writes files atomically (to a temporary name in the same directory, then
`os.replace`), so a crash or a kill mid-write never leaves a truncated image, JSON file or
checkpoint in place of the last good one.
"""
from tfdgm.callbacks.diagnostics import GradientVariance, LatentDiagnostics
from tfdgm.callbacks.files import _step, all_finite, clean_temp_files, save_model_atomic, write_json_atomic  # noqa: F401  (_step: tests' hooks)
from tfdgm.callbacks.images import ImageSummary, save_image_grid, save_reconstruction_grid, tile_images
from tfdgm.callbacks.guards import DivergenceGuard, NaNGuard, reference_loss
from tfdgm.callbacks.training import (CheckpointError, CorruptCheckpointError, JSONHistory, TrainingCheckpoint,
                                     training_state_arrays)

__all__ = ["CheckpointError", "CorruptCheckpointError", "DivergenceGuard", "GradientVariance", "ImageSummary", "JSONHistory", "LatentDiagnostics", "NaNGuard", "TrainingCheckpoint", "all_finite", "clean_temp_files", "reference_loss",
           "save_image_grid", "save_model_atomic", "save_reconstruction_grid", "tile_images", "training_state_arrays",
           "write_json_atomic"]
