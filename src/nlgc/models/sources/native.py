"""nlgc's own training checkpoints: Lightning files whose hyper-parameters name the network.

``hyper_parameters["nlgc_model"] = {"name", "num_classes", "overrides"}`` is written by the
training module; the weights are the ``model.`` entries of the Lightning ``state_dict``. Only a
Lightning checkpoint is trusted to name its network (a bare state dict with such a key is read
as tensors).
"""

from __future__ import annotations

from collections.abc import Mapping

METADATA_KEY = "nlgc_model"  # {"name": ..., "num_classes": ..., "overrides": {...}}
PREPROCESSING_KEY = "nlgc_preprocessing"  # the input convention the run normalised with
_PREFIX = "model."  # the Lightning module's Classifier submodule


def model_metadata(name: str, num_classes: int, overrides: dict | None = None) -> dict:
    """What nlgc stores in its checkpoints so that ``load_model`` can rebuild the network."""
    return {"name": name, "num_classes": num_classes, "overrides": dict(overrides or {})}


def read_metadata(data: Mapping) -> tuple[dict, dict] | None:
    """(metadata, the network's tensors) of an nlgc Lightning checkpoint, else None. The
    metadata's ``preprocessing`` is the run's input convention (None: ImageNet's)."""
    meta = (data.get("hyper_parameters") or {}).get(METADATA_KEY)
    if not meta or not isinstance(data.get("state_dict"), Mapping):
        return None
    state = {
        k.removeprefix(_PREFIX): v for k, v in data["state_dict"].items() if k.startswith(_PREFIX)
    }
    return {**meta, "preprocessing": data.get(PREPROCESSING_KEY)}, state
