"""Ridge vs MindEye vs the oracle on every SimNSD subject (300-way top-1, mean of 30 draws), plus training
speed on this machine.

    .venv/bin/python bench/mindeye_table.py [--subj 1 2 5 7] [--epochs 30]

Subject 1's MindEye is the shipped model (assets/demo/mindeye/hidden); the others are trained here with
the same recipe (build_demo.DEMO_MINDEYE["hidden"]) into runs/bench/. Ridge maps voxels to the same target
(SceneCLIP hidden states, 65 x 128) in closed form with cross-validated alpha. The oracle is Bayes-optimal
under the simulator's true model (the ceiling any decoder can reach).
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mindeye.baselines import ridge_retrieval  # noqa: E402
from mindeye.build_demo import DEMO_MINDEYE  # noqa: E402
from mindeye.bundle import DEMO_BUNDLE, PROJECT_ROOT, Bundle  # noqa: E402
from mindeye.checkpoints import export_run, load_model  # noqa: E402
from mindeye.data.canonical import load_subject  # noqa: E402
from mindeye.data.simnsd import SimConfig, simulate  # noqa: E402
from mindeye.metrics import n_way_top1  # noqa: E402
from mindeye.models.scene_clip import SceneCLIP  # noqa: E402
from mindeye.train import TrainConfig, clip_targets, file_sha256, train  # noqa: E402


def epoch_speed(metrics_path: Path) -> tuple[float, float]:
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines()]
    ep = [r for r in rows if "epoch_seconds" in r]
    return float(np.median([r["epoch_seconds"] for r in ep])), float(np.median([r["samples_per_s"] for r in ep]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subj", type=int, nargs="+", default=[1, 2, 5, 7])
    p.add_argument("--data", default=str(PROJECT_ROOT / "data" / "simnsd"))
    p.add_argument("--runs", default=str(PROJECT_ROOT / "runs" / "bench"))
    p.add_argument("--epochs", type=int, default=DEMO_MINDEYE["hidden"]["num_epochs"])
    p.add_argument("--retrain_subj1", action="store_true", help="train subject 1 here too instead of the shipped model")
    args = p.parse_args()
    bundle = Bundle.load(DEMO_BUNDLE)
    clip = SceneCLIP.load(PROJECT_ROOT / bundle.models["clip"])
    rows = []
    for subj in args.subj:
        summary = simulate(Path(args.data), SimConfig(subj=subj), log=lambda *a: None)
        if "oracle_brain_top1_averaged" not in summary:  # simulated before brain retrieval was recorded
            summary = simulate(Path(args.data), SimConfig(subj=subj), force=True, log=lambda *a: None)
        s = load_subject(Path(args.data), subj)
        train_ids = np.unique(s.image_id[s.trials("train")])
        _, test_ids = s.averaged("test")
        cache = PROJECT_ROOT / "cache" / "clip_targets"
        tag = f"{s.fingerprint()}_SceneCLIP{file_sha256(clip.folder / 'model.safetensors')[:8]}_hidden"
        trn = clip_targets(clip, s.images(train_ids), True, True, cache, f"{tag}_train_aug0")[:, 0]
        tst = clip_targets(clip, s.images(test_ids), True, True, cache, f"{tag}_test")[:, 0]
        t0 = time.time()
        ridge, _ = ridge_retrieval(s, trn, tst, train_ids)
        ridge_s = time.time() - t0
        stem = PROJECT_ROOT / bundle.models.get("mindeye_hidden", "assets/demo/mindeye/hidden")
        run_dir = Path(args.runs) / f"hidden_subj{subj}"
        if subj == bundle.subject and stem.with_suffix(".json").exists() and not args.retrain_subj1:
            model, meta = load_model(stem, expect={"subject": subj, "fingerprint": s.fingerprint()})
            metrics_path = PROJECT_ROOT / "cache" / "build" / "train_logs" / DEMO_MINDEYE["hidden"]["model_name"] / "metrics.jsonl"
        else:
            cfg = {**DEMO_MINDEYE["hidden"], "model_name": run_dir.name, "out": str(run_dir.parent), "subj": subj,
                   "num_epochs": args.epochs, "data_path": args.data, "ckpt_every_s": 1e9}
            train(TrainConfig(**cfg), log=lambda *a: None)
            export_run(run_dir, run_dir / "export")
            model, meta = load_model(run_dir / "export")
            metrics_path = run_dir / "metrics.jsonl"
        with torch.no_grad():
            proj = model.voxel2clip(torch.from_numpy(s.averaged("test")[0]))[1]
        fwd, bwd = n_way_top1(proj, tst)
        ep_s, sps = epoch_speed(metrics_path) if metrics_path.exists() else (float("nan"), float("nan"))
        row = {"subj": subj, "ridge_image": ridge["image_top1"], "ridge_brain": ridge["brain_top1"],
               "ridge_alpha": ridge["alpha"], "ridge_seconds": round(ridge_s, 1),
               "mindeye_image": fwd, "mindeye_brain": bwd,
               "oracle_image": summary["oracle_top1_averaged"], "oracle_brain": summary["oracle_brain_top1_averaged"],
               "epoch_seconds": ep_s, "samples_per_s": sps}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| subj | ridge image / brain | MindEye image / brain | oracle image / brain | MindEye / oracle (image, brain) "
          "| s / epoch | samples / s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['subj']} | {100 * r['ridge_image']:.1f}% / {100 * r['ridge_brain']:.1f}% "
              f"| {100 * r['mindeye_image']:.1f}% / {100 * r['mindeye_brain']:.1f}% "
              f"| {100 * r['oracle_image']:.1f}% / {100 * r['oracle_brain']:.1f}% "
              f"| {r['mindeye_image'] / r['oracle_image']:.2f}, {r['mindeye_brain'] / r['oracle_brain']:.2f} "
              f"| {r['epoch_seconds']:.1f} | {r['samples_per_s']:.0f} |")
    print(f"threads: {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
