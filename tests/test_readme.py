"""The result tables of README.md and docs/ are the files in benchmarks/results, not typed
copies; the README stays a front door."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_tables_are_the_measured_results():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "readme_tables.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    pages = "".join(p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
    results = (
        "blocks_cpu",
        "models_cpu",
        "video_cpu",
        "video_input_cpu",
        "sdpa_cuda",
        "blocks_cuda",
    )
    demos = (
        "demo_cpu",
        "demo_cpu_overview",
        "demo_segmentation_cpu",
        "demo_segmentation_cpu_overview",
    )
    for name in (*results, *demos):
        assert f"<!-- results: benchmarks/results/{name}.md -->" in pages


def test_demo_runs_are_recorded_under_their_task(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from readme_tables import demo_copies

    for task, name in (("classification", "demo_cpu"), ("segmentation", "demo_segmentation_cpu")):
        (tmp_path / "metrics.json").write_text(json.dumps({"settings": {"task": task}}))
        assert demo_copies(tmp_path) == {
            tmp_path / "summary.md": f"{name}.md",
            tmp_path / "overview.md": f"{name}_overview.md",
        }


def test_readme_is_a_front_door_with_working_links():
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) < 400
    first_code = next(i for i, line in enumerate(lines) if line.startswith("```python"))
    assert first_code < 60  # the quickstart is on the first screen
    for page in ("blocks", "models", "weights", "analysis", "training", "benchmarks", "demo"):
        assert f"docs/{page}.md" in readme and (ROOT / "docs" / f"{page}.md").is_file()
