"""How the shipped `final` recipe was chosen: each variant of it trained on SimNSD subject 1 and scored on the
VAL split (300 images, 300-way top-1 image / brain at the epoch that val picks; the test set is not read here).

Every variant starts from the bundle's hidden network, as `build-demo --mindeye_parts final` does, and names every
setting the variants differ in; the rest is the shipped recipe's (build_demo.DEMO_MINDEYE["final"]), and the row
equal to it is marked shipped. Runs go to
runs/bench_final/<variant>; a finished run with the same settings is reused, not trained again.

    .venv/bin/python bench/final_recipe.py [--only x10_e30,x3]

Writes bench/results/final_recipe.json; ``python bench/readme_tables.py`` puts it in the README.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.machine import is_shipped, machine_info, merge_variant_rows, quick, save_result  # noqa: E402
from mindeye.build_demo import DEMO_MINDEYE, finished_run  # noqa: E402
from mindeye.bundle import DEMO_BUNDLE, PROJECT_ROOT, Bundle  # noqa: E402

# name -> (what it is, its settings). Every variant names each setting the variants differ in, so a row means the
# same run whatever the shipped recipe is; the row whose settings are the recipe's is marked as shipped.
_E30 = {"num_epochs": 30, "synthetic_trials": 50_000, "synthetic_frac": 10.0, "synthetic_features": "clip_low_level",
        "init_scope": "trunk_projector", "seed": 42}
VARIANTS = {
    "x10_e30": ("trunk + projector from the hidden network, CLIP + low-level encoding model, 50k scenes x 10 per "
                "real trial, 30 epochs", _E30),
    "x6": ("6 synthetic per real trial", {**_E30, "synthetic_frac": 6.0}),
    "x3": ("3 synthetic per real trial", {**_E30, "synthetic_frac": 3.0}),
    "100k": ("100k scenes (x 10)", {**_E30, "synthetic_trials": 100_000}),
    "clip_x3": ("CLIP-only encoding model, x 3", {**_E30, "synthetic_features": "clip", "synthetic_frac": 3.0}),
    "previous": ("trunk only, CLIP-only encoding model, x 3",
                 {**_E30, "init_scope": "trunk", "synthetic_features": "clip", "synthetic_frac": 3.0}),
    "no_synthetic": ("no synthetic trials", {**_E30, "synthetic_trials": 0, "synthetic_frac": 1.0}),
    "e60": ("60 epochs", {**_E30, "num_epochs": 60}),
    "x20": ("20 synthetic per real trial", {**_E30, "synthetic_frac": 20.0}),
    "x20_e60": ("20 synthetic per real trial, 60 epochs", {**_E30, "synthetic_frac": 20.0, "num_epochs": 60}),
    "x40_e60": ("40 synthetic per real trial, 60 epochs", {**_E30, "synthetic_frac": 40.0, "num_epochs": 60}),
    "200k_x20_e60": ("200k scenes, 20 synthetic per real trial, 60 epochs",
                     {**_E30, "synthetic_trials": 200_000, "synthetic_frac": 20.0, "num_epochs": 60}),
    "x20_e60_seed43": ("20 synthetic per real trial, 60 epochs, seed 43: the shipped row again with another seed "
                       "(how far two runs of one recipe land apart)",
                       {**_E30, "synthetic_frac": 20.0, "num_epochs": 60, "seed": 43}),
}


def best_val(run_dir: Path) -> dict:
    """The val-best epoch of a run (its best.pth), by the sum of val image and brain top-1, as training picks."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "val_fwd_top1" in r]
    best = max(rows, key=lambda r: r["val_fwd_top1"] + r["val_bwd_top1"])
    return {"epoch": best["epoch"] + 1, "image": best["val_fwd_top1"], "brain": best["val_bwd_top1"],
            "train_seconds": rows[-1].get("elapsed_s"), "seconds_per_epoch": rows[-1].get("epoch_seconds")}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(VARIANTS), help="comma-separated variants (default: all)")
    p.add_argument("--runs", default=str(PROJECT_ROOT / "runs" / "bench_final"))
    args = p.parse_args()
    if quick():
        print("final_recipe: skipped in a QUICK run (it trains every variant, ~25 min on 2 cores)")
        return
    from mindeye.checkpoints import load_checkpoint
    from mindeye.train import TrainConfig, train
    bundle = Bundle.load(DEMO_BUNDLE)
    runs = Path(args.runs)
    recipe = DEMO_MINDEYE["final"][-1]
    rows = []
    for name in args.only.split(","):
        what, changes = VARIANTS[name]
        kw = {**recipe, **changes, "model_name": name, "out": str(runs), "bundle": str(DEMO_BUNDLE),
              "init_backbone": str(PROJECT_ROOT / bundle.models["mindeye_hidden"]), "ckpt_every_s": 1e9}
        t0 = time.time()
        reused = finished_run(runs / name, kw)
        if not reused:
            train(TrainConfig(**kw), log=lambda *a: None)
        synthetic = load_checkpoint(runs / name / "last.pth")["data"].get("synthetic", {})
        rows.append({"variant": name, "what": what, "changes": changes, "reused_finished_run": reused,
                     "val": best_val(runs / name), "wall_seconds": round(time.time() - t0, 1),
                     "encoding_val_median_r": synthetic.get("encoding_val_median_r")})
        print(json.dumps(rows[-1]), flush=True)
    rows = merge_variant_rows("final_recipe", rows, VARIANTS)  # a partial run (--only) keeps the others' rows
    for r in rows:  # a variant's name stands for its settings; a kept row is marked against today's recipe too
        r["what"], r["changes"] = VARIANTS[r["variant"]]
        r["shipped"] = is_shipped(r["changes"], recipe, TrainConfig)
    save_result("final_recipe", {"bench": "final_recipe", "subject": bundle.subject,
                                 "protocol": "val split (300 images), 300-way top-1 image / brain at the val-best "
                                             "epoch", "rows": rows, "machine": machine_info()})


if __name__ == "__main__":
    main()
