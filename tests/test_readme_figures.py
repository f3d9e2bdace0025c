"""Every measured table in the README is generated from bench/results/*.json; CI fails on drift."""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_tables_match_bench_results():
    from bench.readme_tables import generated_readme
    text = (ROOT / "README.md").read_text()
    assert generated_readme(text) == text, "README.md is stale: run python bench/readme_tables.py"


def test_every_generated_block_has_its_results_file():
    from bench.readme_tables import RENDERERS
    text = (ROOT / "README.md").read_text()
    for name in RENDERERS:
        if f"<!-- generated:{name} -->" in text:
            res = json.loads((ROOT / "bench" / "results" / f"{name}.json").read_text())
            assert res["bench"] == name and "machine" in res


def test_a_stale_block_is_detected(tmp_path, monkeypatch):
    import bench.readme_tables as rt
    text = (ROOT / "README.md").read_text()
    if "<!-- generated:simnsd_oracle -->" in text:
        tampered = text.replace("<!-- generated:simnsd_oracle -->\n", "<!-- generated:simnsd_oracle -->\n| typed by hand |\n", 1)
        assert rt.generated_readme(tampered) != tampered
