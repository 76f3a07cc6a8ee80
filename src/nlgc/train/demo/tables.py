"""The variants' test scores over seeds as report tables, for any variants and test metric."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from nlgc.analysis.report import Table

# seed → variant label → test metrics (and a "diagnosis" for each failed run)
Results = dict[int, dict[str, dict]]


def points(gain: float) -> str:
    """A gain in the metric (0–1) in signed points: "+17.6"."""
    return f"{100 * gain:+.1f}"


@dataclass(frozen=True)
class Criterion:
    """How variants are compared: by the test ``metric`` (named ``name`` in headers) against the
    ``baseline`` variant; a variant fails a seed when it beats the baseline by less than
    ``margin``."""

    metric: str
    name: str
    margin: float
    baseline: str = "baseline"

    def gain(self, scores: dict[str, dict], label: str) -> float:
        """``label``'s metric minus the baseline's in one seed's ``scores``."""
        return scores[label][self.metric] - scores[self.baseline][self.metric]

    def failed(self, results: Results, labels: Sequence[str]) -> list[tuple[int, str]]:
        """(seed, label) of every failed run, seed by seed."""
        return [
            (seed, label)
            for seed, scores in results.items()
            for label in labels
            if label != self.baseline and self.gain(scores, label) < self.margin
        ]


def mean_std(values: list[float], digits: int, sign: str = "") -> str:
    """ "mean ± std" over seeds, or the single value where there is one seed (no std)."""
    mean = f"{statistics.mean(values):{sign}.{digits}f}"
    return f"{mean} ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else mean


def seed_table(
    results: Results,
    labels: Sequence[str],
    criterion: Criterion,
    title: str,
    gains: dict[str, str] | None = None,
) -> Table:
    """The metric per seed and variant, the best variant's gain over the baseline, and the gain
    of each variant in ``gains`` (label → its short name in the header)."""
    shown = {label: name for label, name in (gains or {}).items() if label in labels}
    rows = []
    for seed, scores in results.items():
        best = max(
            (label for label in labels if label != criterion.baseline),
            key=lambda label: scores[label][criterion.metric],
        )
        rows.append(
            [
                seed,
                *(scores[label][criterion.metric] for label in labels),
                f"{best} {points(criterion.gain(scores, best))}",
                *(points(criterion.gain(scores, label)) for label in shown),
            ]
        )
    headers = [
        "seed",
        *labels,
        *(f"{name} − {criterion.baseline} (pts)" for name in ["best", *shown.values()]),
    ]
    return Table(title, headers, rows)


def summary_table(results: Results, labels: Sequence[str], criterion: Criterion) -> Table:
    """Per variant: mean ± std of the metric and of its gain over the baseline across the
    seeds, the worst gain, and on how many seeds it failed."""
    rows = []
    for label in labels:
        row = [label, mean_std([scores[label][criterion.metric] for scores in results.values()], 3)]
        if label == criterion.baseline:
            rows.append([*row, "-", "-", "-"])
            continue
        gains = [criterion.gain(scores, label) for scores in results.values()]
        failed = sum(gain < criterion.margin for gain in gains)
        rows.append(
            [
                *row,
                mean_std([100 * gain for gain in gains], 1, "+"),
                points(min(gains)),
                f"{failed}/{len(gains)}",
            ]
        )
    base = criterion.baseline
    return Table(
        f"Mean ± std over seeds {', '.join(map(str, results))} (std over seeds; a variant fails "
        f"a seed when it beats the {base} by less than {100 * criterion.margin:.0f} points)",
        ["variant", criterion.name, f"− {base} (pts)", f"worst − {base} (pts)", "failed seeds"],
        rows,
    )


def failure_rows(results: Results, labels: Sequence[str], criterion: Criterion) -> list[list]:
    """[seed, variant, metric, gain, diagnosis] of every failed run."""
    return [
        [
            seed,
            label,
            results[seed][label][criterion.metric],
            points(criterion.gain(results[seed], label)),
            results[seed][label]["diagnosis"],
        ]
        for seed, label in criterion.failed(results, labels)
    ]


def failure_table(rows: list[list], criterion: Criterion) -> Table:
    """``failure_rows`` as a table; one row saying so where there are none."""
    base = criterion.baseline
    return Table(
        f"Failed runs (less than {100 * criterion.margin:.0f} points above the {base}) and "
        "their diagnosis",
        ["seed", "variant", criterion.name, f"− {base} (pts)", "diagnosis"],
        rows or [["-", "none", "-", "-", f"every variant beat the {base} on every seed"]],
    )


def overview(results: Results, labels: Sequence[str], criterion: Criterion, header: str) -> str:
    """The README's digest of a run over many seeds, as Markdown: ``header``, the mean ± std
    table and one line naming the failed runs (the full tables are in ``summary.md``)."""
    failed = criterion.failed(results, labels)
    runs = len(results) * sum(label != criterion.baseline for label in labels)
    named = ", ".join(f"{label} seed {seed}" for seed, label in failed)
    return "\n".join(
        [
            summary_table(results, labels, criterion).markdown(header),
            f"Failed runs: {len(failed)} of {runs}" + (f" ({named})." if failed else "."),
            "",
        ]
    )
