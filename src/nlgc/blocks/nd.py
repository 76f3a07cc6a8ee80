"""Dimension-generic layer classes, so one block definition serves 1D, 2D and 3D inputs."""

from torch import nn


def conv_nd(dim: int) -> type[nn.Module]:
    """The convolution class for (B, C, L), (B, C, H, W) or (B, C, T, H, W) inputs."""
    return (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dim - 1]


def batch_norm_nd(dim: int) -> type[nn.Module]:
    return (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[dim - 1]


def max_pool_nd(dim: int) -> nn.Module:
    """Non-local sub-sampling: max-pool space by 2, never time (1×2×2 for video)."""
    if dim == 1:
        return nn.MaxPool1d(2)
    if dim == 2:
        return nn.MaxPool2d(2)
    return nn.MaxPool3d((1, 2, 2))
