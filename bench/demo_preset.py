"""Does the Train tab's demo preset learn in front of a class? Runs ``train --preset demo`` on SimNSD
subject 1, prints when it reached half of its final 300-way test accuracy and how often the metrics log
grew, and sets its final accuracy beside ridge on the same (final) target from bench/results/mindeye_table.json.

    .venv/bin/python bench/demo_preset.py [--epochs N]     # writes bench/results/demo_preset.json

Quick run (``BENCH_QUICK=1``): the preset for 4 epochs instead of its 20 (the figures are those of the short
run, marked quick), ridge from bench/results/quick/mindeye_table.json, into bench/results/quick/.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.machine import machine_info, quick, results_dir, save_result  # noqa: E402
from mindeye.bundle import PROJECT_ROOT  # noqa: E402
from mindeye.cli import main as cli  # noqa: E402


QUICK_EPOCHS = 4


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=QUICK_EPOCHS if quick() else None,
                   help=f"train this many epochs instead of the preset's (quick run: {QUICK_EPOCHS})")
    args = p.parse_args()
    out = PROJECT_ROOT / "runs" / ("bench_preset_quick" if quick() else "bench_preset")
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.time()
    cli(["train", "--preset", "demo", "--out", str(out)] + (["--num_epochs", str(args.epochs)] if args.epochs else []))
    wall = time.time() - t0
    rows = [json.loads(line) for line in (out / "demo_run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if "test_fwd_top1" in r]
    last = epochs[-1]
    final = last["test_fwd_top1"]
    half = next(r for r in epochs if r["test_fwd_top1"] >= final / 2)
    times = [r["elapsed_s"] for r in rows]
    gaps = [b - a for a, b in zip(times, times[1:])]
    table = results_dir() / "mindeye_table.json"
    ridge = next((r["ridge"] for r in json.loads(table.read_text())["rows"] if r["subj"] == 1 and r["target"] == "final"),
                 None) if table.exists() else None
    res = {"bench": "demo_preset", "final_test_image_top1": final, "final_test_brain_top1": last["test_bwd_top1"],
           "final_val_image_top1": last["val_fwd_top1"], "final_val_brain_top1": last["val_bwd_top1"],
           "ridge_final_target": {"image": ridge["image"]["mean"], "brain": ridge["brain"]["mean"]} if ridge else None,
           "half_reached_at_s": half["elapsed_s"], "half_reached_epoch": half["epoch"],
           "train_seconds": last["elapsed_s"], "wall_seconds_incl_setup": round(wall, 1),
           "max_seconds_between_metric_lines": round(max(gaps), 2),
           "epoch_seconds": [r["epoch_seconds"] for r in epochs], "seed": 42, "machine": machine_info()}
    if args.epochs:
        res["num_epochs"] = args.epochs  # not the preset's: say so
    save_result("demo_preset", res)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
