"""Reading the official Caffe2 weights (video-nonlocal-net's ``.pkl`` files) without running code.

Those files are Python pickles of ``{"blobs": {name: numpy array}}`` (Caffe2 blob names such as
``res4_1_branch2a_w``, ``res_conv1_bn_s``, ``nonlocal_conv3_1_theta_w``, ``pred_w``), written
by Python 2. A pickle can name any callable and call it while loading; this unpickler admits
only what numpy arrays and plain containers need and refuses every other global, so a file
that would run a command raises instead.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping

import numpy as np
import torch

# (module, name) pairs an array pickle refers to; numpy 2 moved numpy.core to numpy._core, and
# protocol-2 pickles written by Python 3 rebuild bytes with _codecs.encode(text, "latin1")
_ALLOWED = {
    (core, name)
    for core in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(
                f"it refers to {module}.{name}, which is neither a numpy array nor a container "
                "(a pickle that names code could run it; nothing was run)"
            )
        return super().find_class(module, name)


def read_caffe2_blobs(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The float blobs of a Caffe2 ``.pkl`` file as tensors, keyed by blob name.

    Raises ValueError naming the file when it is not such a pickle: truncated, of another
    layout, or naming anything but numpy arrays and containers (nothing in it is run).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Caffe2 weights file not found: {path}")
    try:
        with open(path, "rb") as f:
            content = _ArraysOnly(f, encoding="latin1").load()
    except Exception as error:  # unpickling raises many types on damaged input
        raise ValueError(f"cannot read {path} as a Caffe2 .pkl of arrays: {error}") from error
    blobs = content.get("blobs", content) if isinstance(content, Mapping) else None
    if not isinstance(blobs, Mapping) or not blobs:
        raise ValueError(
            f"{path} is not a Caffe2 weights pickle: expected a dict of blobs (name → array), "
            f"got {type(content).__name__}"
        )
    return {
        str(name): torch.from_numpy(np.array(value, copy=True))
        for name, value in blobs.items()
        if isinstance(value, np.ndarray) and value.dtype.kind == "f"
    }
