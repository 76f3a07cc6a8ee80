"""Copy the result tables into README.md and docs/*.md, so that they cannot drift from what was
measured.

python benchmarks/readme_tables.py             # rewrite the pages' generated regions
python benchmarks/readme_tables.py --check     # exit 1 where a page differs (a test runs it)
python benchmarks/readme_tables.py --demo demo_output   # take a new demo run's tables first

A generated region is the text between

    <!-- results: benchmarks/results/NAME.md -->
    <!-- end results -->

and is the named file's content, as the benchmark (or ``nlgc demo``: its summary.md for
docs/demo.md, its overview.md for the README) wrote it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
# a demo run's files → their copies in benchmarks/results ({task}: "" for the image task,
# "_segmentation" for --task segmentation, read from the run's metrics.json)
DEMO = {"summary.md": "demo{task}_cpu.md", "overview.md": "demo{task}_cpu_overview.md"}
REGION = re.compile(r"(<!-- results: (\S+) -->\n)(.*?)(<!-- end results -->)", re.DOTALL)


def demo_copies(demo: Path) -> dict[Path, str]:
    """A demo run's files → the names of their copies in benchmarks/results, by the run's task
    (its metrics.json)."""
    task = json.loads((demo / "metrics.json").read_text())["settings"].get("task")
    suffix = "" if task in (None, "classification") else f"_{task}"
    return {demo / name: copy.format(task=suffix) for name, copy in DEMO.items()}


def generated(text: str, page: Path) -> str:
    """``text`` with every region replaced by the current content of its file."""

    def fill(match: re.Match) -> str:
        source = ROOT / match.group(2)
        if not source.is_file():
            raise SystemExit(f"{page.name} names {match.group(2)}, which does not exist")
        return match.group(1) + "\n" + source.read_text().strip() + "\n\n" + match.group(4)

    return REGION.sub(fill, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, exit 1 on a drift")
    parser.add_argument("--demo", type=Path, help="a demo's output folder to record first")
    args = parser.parse_args()
    if args.demo:
        for source, copy in demo_copies(args.demo).items():
            shutil.copyfile(source, ROOT / "benchmarks" / "results" / copy)
    texts = {page: page.read_text() for page in PAGES}
    if not any(REGION.search(text) for text in texts.values()):
        raise SystemExit("no page has generated regions")
    drifted = []
    for page, text in texts.items():
        new = generated(text, page)
        if new != text:
            drifted.append(page.relative_to(ROOT))
            if not args.check:
                page.write_text(new)
    if args.check and drifted:
        print(f"{drifted} differ from benchmarks/results: run benchmarks/readme_tables.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
