"""Where context blocks go in a ResNet: one declarative plan, plain data that round-trips YAML.

A :class:`Plan` is a list of :class:`Insertion` s. Each names a block type and its options, the
stages (``c2``…``c5`` = ``layer1``…``layer4``), which residual blocks of each stage, and where in
(or after) the residual block it runs:

==============  ======================================================================
position        where
==============  ======================================================================
after_conv1     after conv1 → bn1 → ReLU (GCNet ablation)
after_conv2     after conv2 → bn2 → ReLU (Bottleneck only; GCNet ablation)
after_conv3     after the last conv and its BN, before the residual addition (GCNet's
                placement; bn2 for BasicBlock)
after_add       after the residual addition, before the final ReLU (GCNet ablation)
after_block     after the residual block's final ReLU (the Non-local paper's placement)
==============  ======================================================================

Example::

    Plan([Insertion("gc", stages=("c3", "c4", "c5"), options={"ratio": 1 / 16})])
    Plan([Insertion("nl", stages=("c4",), indices="before_last")])
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from torch import nn

from nlgc.blocks import BLOCK_TYPES, BroadcastContextBlock
from nlgc.checks import check_choice

STAGES = ("c2", "c3", "c4", "c5")
POSITIONS = ("after_conv1", "after_conv2", "after_conv3", "after_add", "after_block")
INDEX_RULES = ("all", "every_other", "before_last")
PLACEMENT = ("stages", "indices", "position")  # the Insertion fields an override may replace
_BUILT_BY_THE_PLAN = {"self", "in_channels", "dim"}  # block arguments a plan fills in itself


def block_options(block: str) -> tuple[str, ...]:
    """The constructor options of the registered block type ``block`` that a plan may set."""
    cls = BLOCK_TYPES[check_choice("block", block, BLOCK_TYPES)].cls
    return tuple(
        p for p in inspect.signature(cls.__init__).parameters if p not in _BUILT_BY_THE_PLAN
    )


def _frozen(value):
    """Lists (from YAML) as tuples, so that options cannot change under a built model."""
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


class Options(Mapping):
    """A read-only mapping of block options (lists stored as tuples)."""

    def __init__(self, values: Mapping | None = None):
        if values is not None and not isinstance(values, Mapping):
            raise TypeError(f"options must be a mapping, got {type(values).__name__}")
        self._values = {k: _frozen(v) for k, v in (values or {}).items()}

    def __getitem__(self, key):
        return self._values[key]

    def __iter__(self) -> Iterator:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other) -> bool:
        return isinstance(other, Mapping) and dict(self) == dict(other)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values.items(), key=lambda item: item[0])))

    def __repr__(self) -> str:
        return repr(self._values)


@dataclass(frozen=True)
class Insertion:
    """One kind of block placed in some residual blocks of some stages (immutable).

    Args:
        block: a registered block type (``nlgc.blocks.BLOCK_TYPES``): ``"nl"``, ``"snl"``,
            ``"gc"``, ``"se"``, …
        stages: stage names among ``c2``…``c5``.
        indices: ``"all"``, ``"every_other"`` (residual blocks 1, 3, 5, … counting from 0, the
            Non-local paper's 5- and 10-block layouts), ``"before_last"`` (the block right
            before the last one of the stage), or explicit indices (negative count from the end).
        position: one of :data:`POSITIONS`; default the block type's own (``after_conv3`` for
            GC and SE, ``after_block`` for NL and SNL).
        options: keyword arguments for the block's constructor (``ratio``, ``pairwise``, …);
            each must be one of the block's own (:func:`block_options`).
        name: the blocks' submodule name in their residual blocks (their state-dict keys);
            default the block type's (``context_block``, ``non_local_block``, …), suffixed
            with the position where it is not the type's own. mmdetection's plugins name
            theirs ``context_block`` and ``nonlocal_block`` (:mod:`nlgc.models.plugins`).
    """

    block: str
    stages: tuple[str, ...] = ("c3", "c4", "c5")
    indices: str | tuple[int, ...] = "all"
    position: str | None = None
    options: Mapping = field(default_factory=Options)
    name: str | None = None

    def __post_init__(self):
        check_choice("block", self.block, BLOCK_TYPES)
        stages = (self.stages,) if isinstance(self.stages, str) else tuple(self.stages)
        for stage in stages:
            check_choice("stages", stage, STAGES)
        indices = self.indices
        if isinstance(indices, str):
            check_choice("indices", indices, INDEX_RULES)
        else:
            indices = tuple(indices)
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
                raise TypeError(
                    f"indices must be one of {INDEX_RULES} or a list of ints, got {indices!r}"
                )
        position = self.position or BLOCK_TYPES[self.block].default_position
        check_choice("position", position, POSITIONS)
        options = Options(self.options)
        known = block_options(self.block)
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(
                f"unknown option(s) {unknown} for {self.block!r} blocks "
                f"({BLOCK_TYPES[self.block].cls.__name__}); valid: {list(known)}"
            )
        if self.name is not None and not self.name.isidentifier():
            raise ValueError(f"name must be a Python identifier, got {self.name!r}")
        for name, value in (("stages", stages), ("indices", indices), ("position", position)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "options", options)

    @property
    def module_name(self) -> str:
        """The blocks' submodule name (see ``name``)."""
        if self.name is not None:
            return self.name
        kind = BLOCK_TYPES[self.block]
        suffix = "" if self.position == kind.default_position else f"_{self.position}"
        return kind.attribute + suffix

    def select(self, num_blocks: int) -> list[int]:
        """The residual-block indices this insertion uses in a stage of ``num_blocks`` blocks."""
        if self.indices == "all":
            return list(range(num_blocks))
        if self.indices == "every_other":
            return list(range(1, num_blocks, 2))
        if self.indices == "before_last":
            return [num_blocks - 2] if num_blocks >= 2 else []
        chosen = []
        for i in self.indices:
            if not -num_blocks <= i < num_blocks:
                raise ValueError(
                    f"indices: residual block {i} does not exist in a stage of {num_blocks} blocks"
                )
            chosen.append(i % num_blocks)
        return sorted(set(chosen))


@dataclass(frozen=True)
class Plan:
    """Which context blocks go where; ``Plan()`` is the plain backbone (immutable)."""

    insertions: tuple[Insertion, ...] = ()

    def __post_init__(self):
        insertions = tuple(
            i if isinstance(i, Insertion) else Insertion(**i) for i in self.insertions
        )
        object.__setattr__(self, "insertions", insertions)

    def option_names(self) -> tuple[str, ...]:
        """Every override :meth:`with_overrides` takes: placement fields and block options."""
        if not self.insertions:
            return ()
        names = {name for i in self.insertions for name in block_options(i.block)}
        return (*PLACEMENT, *sorted(names))

    def with_overrides(self, **overrides) -> Plan:
        """The same plan with Insertion fields (stages, indices, position) replaced and block
        options (ratio, pooling, fusion, pairwise, …) updated in every insertion whose block
        takes them. An override no insertion takes is a ValueError listing the valid ones."""
        if not overrides:
            return self
        if not self.insertions:
            raise ValueError(
                f"this model has no context blocks, so {sorted(overrides)} cannot apply"
            )
        unknown = sorted(set(overrides) - set(self.option_names()))
        if unknown:
            raise ValueError(
                f"unknown option(s) {unknown} for this model's blocks; valid: "
                f"{list(self.option_names())}"
            )
        updates = {k: v for k, v in overrides.items() if k in PLACEMENT}
        options = {k: v for k, v in overrides.items() if k not in PLACEMENT}

        def updated(insertion: Insertion) -> Insertion:
            own = {k: v for k, v in options.items() if k in block_options(insertion.block)}
            return dataclasses.replace(insertion, options={**insertion.options, **own}, **updates)

        return Plan(tuple(updated(i) for i in self.insertions))

    def to_dict(self) -> dict:
        """Plain lists, strings and numbers (YAML/JSON-safe)."""
        return {
            "insertions": [
                {
                    "block": i.block,
                    "stages": list(i.stages),
                    "indices": i.indices if isinstance(i.indices, str) else list(i.indices),
                    "position": i.position,
                    "options": {
                        k: list(v) if isinstance(v, tuple) else v for k, v in i.options.items()
                    },
                    **({"name": i.name} if i.name is not None else {}),
                }
                for i in self.insertions
            ]
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Plan:
        if not isinstance(data, Mapping) or set(data) - {"insertions"}:
            raise ValueError(f"a plan is a mapping with one key 'insertions', got {data!r}")
        allowed = {f.name for f in dataclasses.fields(Insertion)}
        insertions = []
        for entry in data.get("insertions") or []:
            unknown = set(entry) - allowed
            if unknown:
                raise ValueError(f"unknown plan keys {sorted(unknown)}; known: {sorted(allowed)}")
            insertions.append(Insertion(**entry))
        return cls(tuple(insertions))

    def to_yaml(self) -> str:
        return _yaml().safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> Plan:
        return cls.from_dict(_yaml().safe_load(text) or {})


def _yaml():
    try:
        import yaml
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("Plan.to_yaml/from_yaml need PyYAML: pip install pyyaml") from error
    return yaml


class InsertionPoints:
    """Mixin for residual blocks: named places where context blocks run.

    A subclass lists its ``positions``, reports ``channels_at(position)``, calls
    ``_init_insertions()`` in ``__init__`` and ``x = self._run(position, x)`` at each place.
    """

    positions: tuple[str, ...] = ()

    def _init_insertions(self) -> None:
        self.inserted: dict[str, list[str]] = {p: [] for p in self.positions}

    def channels_at(self, position: str) -> int:
        raise NotImplementedError

    def insert(self, position: str, name: str, module: nn.Module) -> None:
        check_choice(f"position for {type(self).__name__}", position, self.positions)
        if hasattr(self, name):
            raise ValueError(f"{type(self).__name__} already has a submodule named {name!r}")
        self.add_module(name, module)
        self.inserted[position].append(name)

    def _run(self, position: str, x):
        for name in self.inserted[position]:
            x = getattr(self, name)(x)
        return x

    def _run_then_add(self, position: str, x, identity):
        """The blocks at ``position``, then ``+ identity``. A last block that broadcasts its
        context (SNL, GC, SE) folds the addition into its own fusion pass, unless hooks
        observe it (they must see the block's own output)."""
        names = self.inserted[position]
        last = getattr(self, names[-1]) if names else None
        if not isinstance(last, BroadcastContextBlock) or _observed(last):
            return self._run(position, x) + identity
        for name in names[:-1]:
            x = getattr(self, name)(x)
        return last.forward_residual(x, identity)


def _observed(module: nn.Module) -> bool:
    """Whether forward hooks (the module's own or global ones) would see the module's output.
    PyTorch has no public query for this; these are the dictionaries ``Module.__call__`` reads."""
    from torch.nn.modules import module as module_globals

    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or module_globals._global_forward_hooks
        or module_globals._global_forward_pre_hooks
    )


def without_blocks(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every block a plan inserted taken out: the same network, with
    its own options, weights and head, as it would be with ``Plan()``."""
    plain = copy.deepcopy(model)
    for module in plain.modules():
        if isinstance(module, InsertionPoints):
            for names in module.inserted.values():
                for name in names:
                    delattr(module, name)
                names.clear()
    if isinstance(getattr(plain, "plan", None), Plan):
        plain.plan = Plan()
    return plain


def apply_plan(stages: Mapping[str, Iterable[nn.Module]], plan: Plan, dim: int = 2) -> None:
    """Build and insert the plan's blocks into the residual blocks of ``stages`` (in place).

    ``stages`` maps ``c2``…``c5`` to sequences of residual blocks that mix in InsertionPoints.
    """
    for insertion in plan.insertions:
        kind, name = BLOCK_TYPES[insertion.block], insertion.module_name
        for stage in insertion.stages:
            if stage not in stages:
                raise ValueError(
                    f"the plan puts {insertion.block} blocks in stage {stage}, but the network "
                    f"has only the stages {tuple(stages)}"
                )
            residual_blocks = list(stages[stage])
            for index in insertion.select(len(residual_blocks)):
                target = residual_blocks[index]
                channels = target.channels_at(insertion.position)
                target.insert(
                    insertion.position, name, kind.cls(channels, dim=dim, **insertion.options)
                )
