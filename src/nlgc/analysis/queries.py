"""Query positions for attention analysis, given once and resolved on every block's own grid.

Blocks at different stages see different spatial sizes, so queries are given in normalised
coordinates (fractions of height, width and, for video, time in [0, 1)) and each block maps them
onto its own positions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class QueryGrid:
    """An n × n grid of queries, cell centres (on the middle frame for video)."""

    n: int = 3

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"a query grid needs n >= 1, got {self.n}")

    def points(self) -> list[tuple[float, ...]]:
        centres = [(i + 0.5) / self.n for i in range(self.n)]
        return [(0.5, y, x) for y in centres for x in centres]


@dataclass(frozen=True)
class RandomQueries:
    """``count`` positions drawn uniformly with a seed (the same draw for every block)."""

    count: int = 8
    seed: int = 0

    def __post_init__(self):
        if self.count < 1:
            raise ValueError(f"random queries need a count >= 1, got {self.count}")

    def points(self) -> list[tuple[float, ...]]:
        generator = torch.Generator().manual_seed(self.seed)
        values = torch.rand(self.count, 3, generator=generator, dtype=torch.float64)
        return [tuple(float(v) for v in row) for row in values]


@dataclass(frozen=True)
class QueryPoints:
    """Explicit positions: (y, x) for images or (t, y, x) for video, as fractions in [0, 1)."""

    coordinates: tuple[tuple[float, ...], ...]

    def __post_init__(self):
        for point in self.coordinates:
            if len(point) not in (2, 3) or not all(0 <= c < 1 for c in point):
                raise ValueError(
                    f"query points are (y, x) or (t, y, x) fractions in [0, 1), got {point}"
                )

    @classmethod
    def from_pixels(cls, pixels, size: tuple[int, ...]) -> QueryPoints:
        """Pixel coordinates (y, x) in an image of ``size`` (H, W), or (t, y, x) in (T, H, W)."""
        fractions = []
        for point in pixels:
            if len(point) != len(size) or not all(
                0 <= p < s for p, s in zip(point, size, strict=True)
            ):
                raise ValueError(
                    f"query {tuple(point)} lies outside the input of size {tuple(size)}"
                )
            fractions.append(tuple((p + 0.5) / s for p, s in zip(point, size, strict=True)))
        return cls(tuple(fractions))

    def points(self) -> list[tuple[float, ...]]:
        return [p if len(p) == 3 else (0.5, *p) for p in self.coordinates]


QuerySpec = QueryGrid | RandomQueries | QueryPoints


def resolve(spec: QuerySpec, spatial: tuple[int, ...]) -> torch.Tensor:
    """Flat indices (Q,) of the spec's points on a grid of ``spatial`` = (L,), (H, W) or (T, H, W).

    Duplicates (several points in one cell of a coarse grid) are kept, so every block reports the
    same number of queries in the same order.
    """
    indices = []
    for t, y, x in spec.points():
        if len(spatial) == 1:
            indices.append(int(x * spatial[0]))
            continue
        h, w = spatial[-2:]
        flat = int(y * h) * w + int(x * w)
        if len(spatial) == 3:
            flat += int(t * spatial[0]) * h * w
        indices.append(flat)
    return torch.tensor(indices, dtype=torch.long)


def _coordinates(text: str) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in re.split(r"[,\s]+", p.strip())) for p in text.split(";"))


def parse_queries(text: str, size: tuple[int, ...] | None = None) -> QuerySpec:
    """Command-line form: ``grid:3``, ``random:8`` or ``random:8:42`` (count, seed),
    ``points:0.5,0.5;0.2,0.8`` (fractions, y,x or t,y,x per point) or ``pixels:12,40;100,7``
    (pixel coordinates in an input of ``size``)."""
    kind, _, rest = text.partition(":")
    try:
        if kind == "grid":
            return QueryGrid(int(rest or 3))
        if kind == "random":
            count, _, seed = rest.partition(":")
            return RandomQueries(int(count or 8), int(seed or 0))
        if kind == "points":
            return QueryPoints(_coordinates(rest))
        if kind == "pixels" and size is not None:
            return QueryPoints.from_pixels(_coordinates(rest), size)
    except ValueError as error:
        raise ValueError(f"cannot read queries {text!r}: {error}") from error
    raise ValueError(
        "queries must look like 'grid:3', 'random:8[:seed]', 'points:y,x;y,x' or "
        f"'pixels:y,x;y,x', got {text!r}"
    )


def describe(spec: QuerySpec) -> str:
    if isinstance(spec, QueryGrid):
        return f"{spec.n}×{spec.n} grid"
    if isinstance(spec, RandomQueries):
        return f"{spec.count} random positions (seed {spec.seed})"
    return f"{len(spec.coordinates)} explicit points"
