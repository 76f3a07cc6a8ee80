"""The README's result tables are the files in benchmarks/results, not typed copies."""

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
    readme = (ROOT / "README.md").read_text()
    for name in ("blocks_cpu", "models_cpu", "video_cpu", "video_input_cpu", "demo_cpu"):
        assert f"<!-- results: benchmarks/results/{name}.md -->" in readme
