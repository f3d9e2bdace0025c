"""The README's measured tables, generated from bench/results/*.json (never typed by hand).

    .venv/bin/python bench/readme_tables.py          # rewrite the README's generated blocks
    .venv/bin/python bench/readme_tables.py --check  # exit 1 if the README and the results disagree (CI)

A generated block sits between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _pct(d: dict) -> str:
    lo, hi = d.get("ci95", [None, None])
    core = f"{100 * d['mean']:.1f}" if isinstance(d, dict) and "mean" in d else f"{100 * d:.1f}"
    return f"{core} [{100 * lo:.0f}-{100 * hi:.0f}]" if lo is not None else core


def _pair(d: dict) -> str:
    def one(x):
        return _pct(x) if isinstance(x, dict) else f"{100 * x:.1f}"
    return f"{one(d['image'])} / {one(d['brain'])}" if "brain" in d else f"{one(d['image'])} / -"


def render_mindeye_table(res: dict) -> str:
    lines = ["| subj | target | oracle (3-trial avg) | oracle (1 trial) | linear ceiling (noise-free ridge) | ridge "
             "| MindEye | MindEye - ridge | s / epoch | samples / s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        me, rd = r["mindeye"], r["ridge"]
        gap = f"+{100 * (me['image']['mean'] - rd['image']['mean']):.1f} / +{100 * (me['brain']['mean'] - rd['brain']['mean']):.1f}"
        sp = r.get("speed", {})
        shape = "x".join(str(x) for x in r["target_shape"])
        lines.append(f"| {r['subj']} | {r['target']} ({shape}) | {_pair(r['oracle'])} | {100 * r['oracle_single_trial']['image']:.1f} "
                     f"| {_pair(r['linear_ceiling'])} | {_pair(rd)} | **{_pair(me)}** | {gap} "
                     f"| {sp.get('seconds_per_epoch', float('nan')):.1f} | {sp.get('samples_per_s', float('nan')):.0f} |")
    m = res["machine"]
    src = sorted({f"subject {r['subj']}: {r['mindeye_source']}, {r['mindeye_checkpoint']}" for r in res["rows"]})
    lines += ["", f"300-way top-1 %, image / brain retrieval, mean [central 95% of the 30 draws]. "
                  f"Measured on {m['cores']} cores ({m['cpu']}, {m['torch_threads']} torch threads), commit "
                  f"{m['commit']}, by `bench/mindeye_table.py`. MindEye: " + "; ".join(src) + "."]
    return "\n".join(lines)


RENDERERS = {"mindeye_table": render_mindeye_table}


def generated_readme(text: str) -> str:
    for name, render in RENDERERS.items():
        path = ROOT / "bench" / "results" / f"{name}.json"
        if not path.exists():
            continue
        block = render(json.loads(path.read_text()))
        pat = re.compile(rf"(<!-- generated:{name} -->\n).*?(\n<!-- /generated:{name} -->)", re.S)
        text = pat.sub(lambda m: m.group(1) + block + m.group(2), text)
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="fail if the README's generated blocks are stale")
    args = p.parse_args(argv)
    text = README.read_text()
    new = generated_readme(text)
    if args.check:
        if new != text:
            print("README.md is out of date with bench/results: run python bench/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
