"""Does the Train tab's demo preset learn in front of a class? Runs ``train --preset demo`` on SimNSD
subject 1 and prints when it reached half of its final 300-way accuracy, and how often the metrics log grew.

    .venv/bin/python bench/demo_preset.py
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from mindeye.bundle import PROJECT_ROOT  # noqa: E402
from mindeye.cli import main as cli  # noqa: E402


def main():
    out = PROJECT_ROOT / "runs" / "bench_preset"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.time()
    cli(["train", "--preset", "demo", "--out", str(out)])
    wall = time.time() - t0
    rows = [json.loads(line) for line in (out / "demo_run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if "val_fwd_top1" in r]
    final = epochs[-1]["val_fwd_top1"]
    half = next(r for r in epochs if r["val_fwd_top1"] >= final / 2)
    times = [r["elapsed_s"] for r in rows]
    gaps = [b - a for a, b in zip(times, times[1:])]
    print(json.dumps({"final_image_top1": final, "final_brain_top1": epochs[-1]["val_bwd_top1"],
                      "half_reached_at_s": half["elapsed_s"], "half_reached_epoch": half["epoch"],
                      "train_seconds": epochs[-1]["elapsed_s"], "wall_seconds_incl_setup": round(wall, 1),
                      "max_seconds_between_metric_lines": round(max(gaps), 2),
                      "epoch_seconds": [r["epoch_seconds"] for r in epochs], "threads": torch.get_num_threads()}, indent=1))


if __name__ == "__main__":
    main()
