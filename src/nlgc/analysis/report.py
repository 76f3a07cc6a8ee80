"""One self-contained HTML page (pictures embedded), a metrics.json with every number shown, and
its tables as Markdown."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nlgc.common import write_text_atomic

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #555; }
"""
# Marks on <body> how many pictures decoded, for people and for the headless-browser test.
CHECK = """
window.addEventListener("load", () => {
  const images = [...document.images];
  const ok = images.filter((i) => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.imagesLoaded = `${ok}/${images.length}`;
});
"""


@dataclass
class Table:
    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence]

    def markdown(self, caption: str) -> str:
        """The table as Markdown under ``caption`` (floats: 3 decimals up to 1, else 1)."""
        lines = [
            caption,
            "",
            "| " + " | ".join(self.headers) + " |",
            "|" + " --- |" * len(self.headers),
            *("| " + " | ".join(_markdown_cell(v) for v in row) + " |" for row in self.rows),
        ]
        return "\n".join(lines) + "\n"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _markdown_cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) <= 1 else f"{value:.1f}"
    return str(value)


def _table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in table.rows
    )
    return f"<h2>{html.escape(table.title)}</h2><table><tr>{head}</tr>{body}</table>"


def _figure(title: str, path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
    )


@dataclass
class Report:
    """What a report shows: tables, figures ((caption, png) pairs), the settings it ran with and
    the numbers for metrics.json. Parts add up: ``analysis_report(...) + complexity_report(...)``
    (the left part's title is kept; tables, figures, settings and metrics are concatenated)."""

    title: str = "nlgc analysis"
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    def __add__(self, other: Report) -> Report:
        return Report(
            self.title,
            [*self.tables, *other.tables],
            [*self.figures, *other.figures],
            {**self.settings, **other.settings},
            {**self.metrics, **other.metrics},
        )

    def write(self, out_dir: str | Path) -> Path:
        """Write ``report.html`` and ``metrics.json`` into ``out_dir``; return the page's path."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        settings_table = Table("Settings", ["setting", "value"], sorted(self.settings.items()))
        parts = [
            f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{STYLE}</style>"
            f"<script>{CHECK}</script></head><body><h1>{html.escape(self.title)}</h1>",
            *(_table(t) for t in self.tables),
            "<h2>Figures</h2>",
            *(_figure(caption, path) for caption, path in self.figures),
            _table(settings_table),
            "</body></html>",
        ]
        page = out_dir / "report.html"
        write_text_atomic(page, "\n".join(parts))
        metrics = {"settings": self.settings, **self.metrics}
        write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2))
        return page
