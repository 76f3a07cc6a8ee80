"""Small helpers that several packages share (torch and the standard library only): a model in
evaluation mode for a while, files written atomically, softmax of half-precision inputs."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

HALF = (torch.float16, torch.bfloat16)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in evaluation mode inside the block; its own mode (train or eval) after it."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def softmax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax along ``dim``, computed in float32 for float16/bfloat16 logits and cast back."""
    if logits.dtype in HALF:
        return logits.softmax(dim, dtype=torch.float32).to(logits.dtype)
    return logits.softmax(dim)


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Call ``write(temporary)`` on a file in ``path``'s folder, then rename it to ``path``:
    a crash or kill never leaves a half-written ``path``, and an existing one stays intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """``text`` written to ``path`` through :func:`write_atomic`."""
    write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
