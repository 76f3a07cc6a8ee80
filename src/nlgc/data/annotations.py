"""Annotation files of video datasets: which file (or frame folder) holds which labels.

Formats, chosen with ``data.format``:

- ``list``: mmaction2's ``VideoDataset`` list, one ``path label [label …]`` per line (several
  labels: multi-label), paths relative to ``data.root``.
- ``rawframes``: mmaction2's ``RawframeDataset`` list, ``frame_dir total_frames label [label …]``,
  frames ``img_00001.jpg`` … inside ``root/frame_dir`` (``filename_tmpl='img_{:05}.jpg'``,
  ``start_index=1``).
- ``kinetics_csv``: the Kinetics CSV (``label,youtube_id,time_start,time_end,split``) and the
  ActivityNet crawler's layout, ``root/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4`` (the
  label folder with spaces, or with underscores as mmaction2's renaming script leaves it).
  Class indices: the label map if given, else the CSV's labels sorted (Kinetics-400's order).
- ``slowfast_csv``: PySlowFast's and PyTorchVideo's ``path label`` per line (one label).

A line that does not parse, a label that is not a whole number in [0, classes) or unknown to the
label map, and a file that is missing are one ValueError naming the annotation file and line, or
with ``skip_corrupt`` are left out and counted.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FORMATS = ("list", "rawframes", "kinetics_csv", "slowfast_csv")
RAWFRAME_TEMPLATE = "img_{:05}.jpg"


@dataclass(frozen=True)
class Annotation:
    """One video: its file or frame folder, its labels (one unless multi-label) and, for
    rawframes, its frame count."""

    path: Path
    labels: tuple[int, ...]
    num_frames: int | None = None


def read_label_map(path: str | Path) -> list[str]:
    """Class names, one per line, in index order (mmaction2's ``label_map_k400.txt``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label map not found: {path}")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(set(names)) != len(names):
        raise ValueError(f"{path} names a class twice")
    return names


def read_annotations(
    file: str | Path,
    fmt: str,
    root: str | Path,
    classes: list[str] | None = None,
    num_classes: int | None = None,
    skip_corrupt: bool = False,
) -> list[Annotation]:
    """The videos an annotation file lists, checked (see the module docstring).

    ``classes`` (a label map) names the classes of a Kinetics CSV; ``num_classes`` bounds the
    labels of the other formats.
    """
    file, root = Path(file), Path(root)
    if fmt not in FORMATS:
        raise ValueError(f"data.format must be one of {FORMATS} or 'folders', got {fmt!r}")
    if not file.is_file():
        raise FileNotFoundError(f"annotation file not found: {file}")
    annotations, skipped = [], 0
    for number, parsed in _lines(file, fmt, root, classes, num_classes):
        if isinstance(parsed, str):
            if not skip_corrupt:
                raise ValueError(f"{file}, line {number}: {parsed}")
            log.warning("skipping %s, line %d: %s", file, number, parsed)
            skipped += 1
            continue
        annotations.append(parsed)
    if skipped:
        log.warning("%s: skipped %d of %d lines", file, skipped, skipped + len(annotations))
    if not annotations:
        raise ValueError(f"{file} lists no usable videos")
    return annotations


def kinetics_classes(file: str | Path) -> list[str]:
    """The sorted labels of a Kinetics CSV: Kinetics' class indices when no label map is given."""
    with open(file, newline="") as f:
        return sorted({row["label"] for row in csv.DictReader(f) if row.get("label")})


def _lines(file: Path, fmt: str, root: Path, classes, num_classes):
    """(line number, Annotation or the reason it is not one) for every entry of ``file``."""
    if fmt == "kinetics_csv":
        yield from _kinetics(file, root, classes)
        return
    with open(file) as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if fields:
                yield number, _entry(fields, fmt, root, num_classes)


def _labels(texts: list[str], num_classes: int | None) -> tuple[int, ...] | str:
    try:
        labels = tuple(int(t) for t in texts)
    except ValueError:
        return f"labels must be whole numbers, got {' '.join(texts)!r}"
    bad = [label for label in labels if label < 0 or (num_classes and label >= num_classes)]
    if bad:
        return f"label {bad[0]} is outside [0, {num_classes or '…'})"
    return labels


def _entry(fields: list[str], fmt: str, root: Path, num_classes: int | None):
    least = 3 if fmt == "rawframes" else 2
    if len(fields) < least or (fmt == "slowfast_csv" and len(fields) != 2):
        layout = {
            "list": "path label [label ...]",
            "rawframes": "frame_dir total_frames label [label ...]",
            "slowfast_csv": "path label",
        }[fmt]
        return f"expected '{layout}', got {' '.join(fields)!r}"
    path = root / fields[0]
    frames = None
    if fmt == "rawframes":
        if not fields[1].isdigit() or int(fields[1]) < 1:
            return f"total_frames must be a whole number >= 1, got {fields[1]!r}"
        frames, first = int(fields[1]), path / RAWFRAME_TEMPLATE.format(1)
        if not first.is_file():
            return f"frame folder {path} has no {first.name}"
    elif not path.is_file():
        return f"video not found: {path}"
    labels = _labels(fields[2:] if fmt == "rawframes" else fields[1:], num_classes)
    return labels if isinstance(labels, str) else Annotation(path, labels, frames)


def _kinetics(file: Path, root: Path, classes: list[str] | None):
    classes = classes or kinetics_classes(file)
    index = {name: i for i, name in enumerate(classes)}
    with open(file, newline="") as f:
        reader = csv.DictReader(f)
        wanted = {"label", "youtube_id", "time_start", "time_end"}
        if not wanted <= set(reader.fieldnames or ()):
            yield 1, f"expected the header {','.join(sorted(wanted))}, got {reader.fieldnames}"
            return
        for number, row in enumerate(reader, start=2):
            label = row["label"]
            if label not in index:
                yield number, f"label {label!r} is not in the label map ({len(classes)} classes)"
                continue
            try:
                start, end = int(float(row["time_start"])), int(float(row["time_end"]))
            except (TypeError, ValueError):
                yield number, f"time_start/time_end must be numbers, got {row}"
                continue
            name = f"{row['youtube_id']}_{start:06d}_{end:06d}.mp4"
            candidates = [root / label / name, root / label.replace(" ", "_") / name]
            path = next((p for p in candidates if p.is_file()), None)
            if path is None:
                yield number, f"video not found: {candidates[0]}"
                continue
            yield number, Annotation(path, (index[label],))
