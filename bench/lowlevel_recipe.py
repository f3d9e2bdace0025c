"""How the shipped low-level recipe was chosen: each variant of it trained on SimNSD subject 1 and scored on the
VAL split (PixCorr and SSIM of the decoded predictions of the first 300 val images at the epoch that val PixCorr
picks; the test set is not read here).

Each variant is the shipped recipe (build_demo.DEMO_LOWLEVEL) with the settings its row names. Runs go to
runs/bench_lowlevel/<variant>; a finished run with the same settings is reused, not trained again.

    .venv/bin/python bench/lowlevel_recipe.py [--only syn3_e40,e40]

Writes bench/results/lowlevel_recipe.json; ``python bench/readme_tables.py`` puts it in the README.
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
from mindeye.build_demo import DEMO_LOWLEVEL, finished_run  # noqa: E402
from mindeye.bundle import DEMO_BUNDLE, PROJECT_ROOT, Bundle  # noqa: E402

# name -> (what it is, its settings). Every variant names each setting the variants differ in, so a row means the
# same run whatever the shipped recipe is; the row whose settings are the recipe's is marked as shipped.
VARIANTS = {
    "e20": ("20 epochs, no synthetic trials", {"num_epochs": 20, "synthetic_trials": 0, "synthetic_frac": 1.0}),
    "e40": ("40 epochs, no synthetic trials", {"num_epochs": 40, "synthetic_trials": 0, "synthetic_frac": 1.0}),
    "syn3_e40": ("40 epochs, 50k synthetic trials, 3 per real trial",
                 {"num_epochs": 40, "synthetic_trials": 50_000, "synthetic_frac": 3.0}),
    "syn10_e40": ("40 epochs, 50k synthetic trials, 10 per real trial",
                  {"num_epochs": 40, "synthetic_trials": 50_000, "synthetic_frac": 10.0}),
}


def best_val(run_dir: Path) -> dict:
    """The val-best epoch of a run (its best.pth), by val PixCorr, as training picks."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "val_pixcorr" in r]
    best = max(rows, key=lambda r: r["val_pixcorr"])
    return {"epoch": best["epoch"] + 1, "epochs": len(rows), "pixcorr": best["val_pixcorr"], "ssim": best["val_ssim"],
            "train_seconds": rows[-1].get("elapsed_s"), "seconds_per_epoch": rows[-1].get("epoch_seconds")}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(VARIANTS), help="comma-separated variants (default: all)")
    p.add_argument("--runs", default=str(PROJECT_ROOT / "runs" / "bench_lowlevel"))
    args = p.parse_args()
    if quick():
        print("lowlevel_recipe: skipped in a QUICK run (it trains every variant)")
        return
    from mindeye.checkpoints import load_checkpoint
    from mindeye.train_lowlevel import LowLevelTrainConfig, train_lowlevel
    bundle = Bundle.load(DEMO_BUNDLE)
    runs = Path(args.runs)
    rows = []
    for name in args.only.split(","):
        what, changes = VARIANTS[name]
        kw = {**DEMO_LOWLEVEL, **changes, "model_name": name, "out": str(runs), "bundle": str(DEMO_BUNDLE),
              "vae_path": str(PROJECT_ROOT / bundle.models["vae"]), "ckpt_every_s": 1e9}
        t0 = time.time()
        reused = finished_run(runs / name, kw, LowLevelTrainConfig)
        if not reused:
            train_lowlevel(LowLevelTrainConfig(**kw), log=lambda *a: None)
        synthetic = load_checkpoint(runs / name / "last.pth")["data"].get("synthetic", {})
        rows.append({"variant": name, "what": what, "changes": changes, "reused_finished_run": reused,
                     "val": best_val(runs / name), "wall_seconds": round(time.time() - t0, 1),
                     "synthetic_build_seconds": synthetic.get("build_seconds"),
                     "encoding_val_median_r": synthetic.get("encoding_val_median_r")})
        print(json.dumps(rows[-1]), flush=True)
    rows = merge_variant_rows("lowlevel_recipe", rows, VARIANTS)  # a partial run (--only) keeps the others' rows
    for r in rows:  # against today's recipe, also for the rows kept from an earlier run
        r["shipped"] = is_shipped(r["changes"], DEMO_LOWLEVEL, LowLevelTrainConfig)
    save_result("lowlevel_recipe", {"bench": "lowlevel_recipe", "subject": bundle.subject,
                                    "protocol": "val split (first 300 images), PixCorr / SSIM of the decoded "
                                                "predictions at the val-best epoch (by PixCorr)",
                                    "rows": rows, "machine": machine_info()})


if __name__ == "__main__":
    main()
