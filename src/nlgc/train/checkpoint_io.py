"""Checkpoints written atomically and read back without running any pickled code."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from nlgc.common import write_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save to a temporary file in the same folder, then rename: a crash never leaves a
    truncated checkpoint. Load with ``torch.load(weights_only=True)``."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        write_atomic(path, lambda temporary: torch.save(checkpoint, temporary))

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        if not Path(path).is_file():
            raise FileNotFoundError(f"checkpoint file not found: {path}")
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)
