"""Argument and input checks for the whole library (blocks, plans, models, preprocessing,
configs): errors that name the argument, what was expected and what came in."""

from __future__ import annotations

from collections.abc import Iterable

import torch

LAYOUTS = {1: "(B, C, L)", 2: "(B, C, H, W)", 3: "(B, C, T, H, W)"}


def check_choice(name: str, value, choices: Iterable):
    """Return ``value`` if it is one of ``choices``, else raise a ValueError naming ``name``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def check_ratio(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")
    return float(value)


def check_input(x, dim: int, in_channels: int, name: str = "x") -> None:
    """Check that ``x`` is a floating-point tensor laid out as ``LAYOUTS[dim]`` with C channels."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() != dim + 2:
        raise ValueError(
            f"{name} must have shape {LAYOUTS[dim]} for dim={dim}, got {x.dim()}-D shape "
            f"{tuple(x.shape)}"
        )
    if x.shape[1] != in_channels:
        raise ValueError(
            f"{name} must have {in_channels} channels (dim 1), got shape {tuple(x.shape)}"
        )
    if any(size == 0 for size in x.shape[2:]):
        raise ValueError(f"{name} must have non-empty spatial size, got shape {tuple(x.shape)}")


def check_queries(queries, num_positions: int) -> torch.Tensor | None:
    """Check flat query indices: None, or a 1-D integer tensor with values in [0, N)."""
    if queries is None:
        return None
    if not isinstance(queries, torch.Tensor) or queries.dtype not in (torch.int64, torch.int32):
        got = queries.dtype if isinstance(queries, torch.Tensor) else type(queries).__name__
        raise TypeError(
            f"queries must be None or a 1-D LongTensor of flat position indices, got {got}"
        )
    if queries.dim() != 1:
        raise ValueError(f"queries must be 1-D, got shape {tuple(queries.shape)}")
    if queries.numel() and (int(queries.min()) < 0 or int(queries.max()) >= num_positions):
        raise ValueError(
            f"queries must lie in [0, {num_positions}) (flat positions of the input), got range "
            f"[{int(queries.min())}, {int(queries.max())}]"
        )
    return queries.long()
