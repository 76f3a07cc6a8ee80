"""mmdetection's ``plugins=`` lists as nlgc insertions: the same placement, the same function.

mmdetection's ResNet (``mmdet/models/backbones/resnet.py``) takes
``plugins=[dict(cfg=dict(type=..., ...), stages=(False, True, True, True),
position="after_conv3")]``: every Bottleneck of the stages marked True gets the plugin, built by
mmcv's ``build_plugin_layer`` and named by its class's ``_abbr_`` plus ``cfg["postfix"]``
(``context_block``, ``nonlocal_block``), and runs it after conv1 + norm1 + ReLU
(``after_conv1``), after conv2 + norm2 + ReLU (``after_conv2``) or after conv3 + norm3, before
the residual addition (``after_conv3``): nlgc's positions of the same names. The blocks:

- ``ContextBlock`` (mmcv ``cnn/bricks/context_block.py``: ``ratio``, ``pooling_type``,
  ``fusion_types``) → nlgc's GC block (``ratio``, ``pooling``, ``fusion``), mmcv's init.
- ``NonLocal2d`` (mmcv ``cnn/bricks/non_local.py``: ``reduction=2``, ``use_scale=True``,
  ``mode="embedded_gaussian"``, ``sub_sample=False``, ``zero_init=True``, ``norm_cfg=None``)
  → nlgc's NL block: C' = C // reduction, the 1/√C' scale where mmcv applies it (embedded
  Gaussian only), pooling after φ/g, W_z without BN unless ``norm_cfg`` gives one, weights
  ~ N(0, 0.01²) and W_z (or its norm) zero, as mmcv's ``init_weights``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from nlgc.models.plan import STAGES, Insertion

POSITIONS = ("after_conv1", "after_conv2", "after_conv3")
_FUSIONS = {"channel_add": "add", "channel_mul": "mul"}


def _context_block(cfg: Mapping) -> tuple[str, str, dict]:
    _check_keys(cfg, ("type", "ratio", "pooling_type", "fusion_types", "postfix"))
    if "ratio" not in cfg:
        raise ValueError("a ContextBlock plugin needs cfg['ratio'] (mmcv's ContextBlock(ratio=…))")
    fusions = tuple(cfg.get("fusion_types", ("channel_add",)))
    unknown = [f for f in fusions if f not in _FUSIONS]
    if unknown:
        raise ValueError(
            f"ContextBlock fusion_types must be among {tuple(_FUSIONS)}, got {fusions}"
        )
    options = {
        "ratio": cfg["ratio"],
        "pooling": cfg.get("pooling_type", "att"),
        "fusion": tuple(_FUSIONS[f] for f in fusions),
    }
    return "gc", "context_block", options


_NON_LOCAL_KEYS = ("type", "reduction", "use_scale", "mode", "sub_sample", "zero_init")
_NON_LOCAL_KEYS += ("norm_cfg", "conv_cfg", "postfix")


def _non_local(cfg: Mapping) -> tuple[str, str, dict]:
    _check_keys(cfg, _NON_LOCAL_KEYS)
    if cfg.get("conv_cfg") is not None:
        raise ValueError(f"NonLocal2d conv_cfg must be None (plain convolutions), got {cfg}")
    mode = cfg.get("mode", "embedded_gaussian")
    norm_cfg = cfg.get("norm_cfg")
    if norm_cfg is not None and norm_cfg.get("type") not in ("BN", "SyncBN"):
        raise ValueError(f"NonLocal2d norm_cfg must be None, BN or SyncBN, got {norm_cfg}")
    options = {
        "pairwise": mode,
        "reduction": cfg.get("reduction", 2),
        "scale": bool(cfg.get("use_scale", True)) and mode == "embedded_gaussian",
        "sub_sample": bool(cfg.get("sub_sample", False)),
        "pool_position": "after",
        "norm": None if norm_cfg is None else "bn",
        "zero_init": bool(cfg.get("zero_init", True)),
        "init": "paper",
    }
    return "nl", "nonlocal_block", options


PLUGINS = {"ContextBlock": _context_block, "NonLocal2d": _non_local}  # mmcv type → translation


def _check_keys(cfg: Mapping, known: Sequence[str]) -> None:
    unknown = sorted(set(cfg) - set(known))
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} in the {cfg.get('type')} plugin cfg; known: {list(known)}"
        )


def plugin_insertions(plugins: Sequence[Mapping]) -> tuple[Insertion, ...]:
    """The insertions that build mmdetection's ``plugins`` list, in its order (plugins at one
    position run in list order, as mmdetection runs them)."""
    if isinstance(plugins, Mapping) or not isinstance(plugins, Sequence):
        raise TypeError(f"plugins must be a list of dicts (mmdetection's), got {plugins!r}")
    insertions = []
    for plugin in plugins:
        if not isinstance(plugin, Mapping) or not isinstance(plugin.get("cfg"), Mapping):
            raise ValueError(f"each plugin is dict(cfg=dict(type=...), position=...), got {plugin}")
        _check_keys(plugin, ("cfg", "stages", "position"))
        cfg = plugin["cfg"]
        kind = cfg.get("type")
        if kind not in PLUGINS:
            raise ValueError(
                f"nlgc does not have the plugin {kind!r}; it has {sorted(PLUGINS)} "
                "(mmcv's ContextBlock and NonLocal2d)"
            )
        position = plugin.get("position")
        if position not in POSITIONS:
            raise ValueError(f"plugin position must be one of {POSITIONS}, got {position!r}")
        stages = plugin.get("stages") or (True,) * len(STAGES)
        if len(stages) != len(STAGES):
            raise ValueError(f"plugin stages must give one bool per stage c2–c5, got {stages}")
        block, abbr, options = PLUGINS[kind](cfg)
        chosen = tuple(stage for stage, on in zip(STAGES, stages, strict=True) if on)
        name = f"{abbr}{cfg.get('postfix', '')}"
        insertions.append(Insertion(block, chosen, "all", position, options, name=name))
    return tuple(insertions)
