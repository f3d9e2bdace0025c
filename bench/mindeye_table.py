"""Decoding quality on every SimNSD subject, both targets, one table: the oracle (3-trial average and single
trial), the linear ceiling (ridge fitted to noise-free responses), ridge on the betas, and MindEye; 300-way
top-1 image and brain retrieval, mean and the central 95% of the 30 random draws. Also training speed.

    .venv/bin/python bench/mindeye_table.py [--subj 1 2 5 7] [--quick]

Subject 1's MindEye models are the shipped ones (assets/demo/mindeye/{hidden,final}, their checkpoints chosen
on the val split); the other subjects are trained here with the same recipes (build_demo.DEMO_MINDEYE: the
hidden BrainNetwork, then the final model on its trunk; the prior stage does not change retrieval and is not
run) into runs/bench/. ``--quick`` trains them for a quarter of the epochs. Every fit (ridge's alpha, MindEye's
checkpoint) uses training and val images only; the test set is scored once at the end.
Writes bench/results/mindeye_table.json; ``python bench/readme_tables.py`` puts it in the README.

Quick run (``BENCH_QUICK=1``, into bench/results/quick/): subject 1 only (the shipped models, nothing trained),
and ridge and the linear ceiling fitted once in closed form at the alpha that the full run's cross-validation
chose (read from bench/results/mindeye_table.json; the CV's 5 extra fits per model are skipped), which is the
model the full protocol ends with, so the figures should match the full table's.
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

from bench.machine import RESULTS as FULL_RESULTS, machine_info, quick, result_path, save_result  # noqa: E402
from mindeye.baselines import _rows, ridge_noise_free_ceiling, ridge_retrieval  # noqa: E402
from mindeye.build_demo import DEMO_MINDEYE, finished_run  # noqa: E402
from mindeye.bundle import DEMO_BUNDLE, PROJECT_ROOT, Bundle  # noqa: E402
from mindeye.checkpoints import export_run, load_model  # noqa: E402
from mindeye.data.canonical import load_subject  # noqa: E402
from mindeye.data.simnsd import SimConfig, simulate  # noqa: E402
from mindeye.data.splits import selection_split  # noqa: E402
from mindeye.metrics import retrieval_report  # noqa: E402
from mindeye.models.ridge import RidgeModel  # noqa: E402
from mindeye.models.scene_clip import SceneCLIP  # noqa: E402
from mindeye.models.voxel2clip import brain_network  # noqa: E402
from mindeye.train import TrainConfig, clip_targets, file_sha256, train  # noqa: E402

TARGETS = ("hidden", "final")


def full_alphas(subj: int, target: str) -> tuple[float | None, float | None]:
    """The alphas the full run's CV chose for ridge and the linear ceiling (None where it has no such row)."""
    path = FULL_RESULTS / "mindeye_table.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    row = next((r for r in rows if r["subj"] == subj and r["target"] == target), None)
    return (row["ridge"].get("alpha"), row["linear_ceiling"].get("alpha")) if row else (None, None)


def ridge_at(x: np.ndarray, y: torch.Tensor, alpha: float) -> RidgeModel:
    """Ridge at a given alpha, closed form, float64: ``W = (Xc^T Xc + alpha I)^-1 Xc^T Yc``, the same model as
    fit_ridge's final refit (its SVD form) once CV has picked ``alpha``."""
    target_shape = tuple(y.shape[1:]) if y.ndim > 2 else ()
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    y = torch.as_tensor(y).reshape(len(y), -1).to(torch.float64)
    xm, ym = x.mean(0), y.mean(0)
    x, y = x - xm, y - ym
    a = x.T @ x
    a.diagonal().add_(alpha)
    w = torch.linalg.solve(a, x.T @ y)
    return RidgeModel(w.float(), xm.float(), ym.float(), float(alpha), target_shape)


def quick_ridge(s, trn, tst, train_ids, train_trials, alpha) -> dict:
    """ridge_retrieval's model and score, at ``alpha`` instead of choosing it by CV."""
    x, ids = s.average_trials(train_trials)
    model = ridge_at(x, trn[_rows(ids, train_ids)], alpha)
    test_b, _ = s.averaged("test")
    return {**retrieval_report(model.predict(test_b), tst.flatten(1)), "alpha": model.alpha}


def quick_ceiling(s, trn, tst, train_ids, test_ids, alpha) -> dict:
    """ridge_noise_free_ceiling's model and score, at ``alpha`` instead of choosing it by CV."""
    gt = s.ground_truth(["noise_free", "noise_free_image_id"])
    of = gt["noise_free_image_id"]
    x_train = np.asarray(gt["noise_free"][np.sort(_rows(train_ids, of))], np.float32)
    order = np.argsort(_rows(train_ids, of))
    model = ridge_at(x_train, trn[order], alpha)
    x_test = np.asarray(gt["noise_free"][_rows(test_ids, of)], np.float32)
    return {**retrieval_report(model.predict(x_test), tst.flatten(1)), "alpha": model.alpha}


def epoch_speed(metrics_path: Path) -> dict:
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines()] if metrics_path.exists() else []
    ep = [r for r in rows if "epoch_seconds" in r]
    if not ep:
        return {}
    return {"seconds_per_epoch": float(np.median([r["epoch_seconds"] for r in ep])),
            "samples_per_s": float(np.median([r["samples_per_s"] for r in ep])), "epochs": len(ep),
            "train_seconds": float(ep[-1]["elapsed_s"])}


def keep_recorded_speed(rows: list[dict], previous: list[dict]) -> None:
    """A shipped model's training speed is read from its run folder, which only the machine that trained it has
    (cache/build/train_logs): where this machine lacks it, keep the speed an earlier run of this bench read there
    for the same subject, target and run."""
    old = {(r["subj"], r["target"], r.get("speed_run")): r for r in previous}
    for r in rows:
        prev = old.get((r["subj"], r["target"], r.get("speed_run")))
        if not r.get("speed") and prev and prev.get("speed"):
            r["speed"] = {**prev["speed"], "note": "read on the machine that trained the run"}


def train_subject(subj: int, data: str, runs: Path, quick: bool) -> dict[str, Path]:
    """Train the hidden BrainNetwork and the final model for one subject; returns each export's stem."""
    out = {}
    stages = {"hidden": DEMO_MINDEYE["hidden"][0], "final": DEMO_MINDEYE["final"][0]}
    for target, kw in stages.items():
        name = f"subj{subj}_{kw['model_name']}"
        kw = {**kw, "model_name": name, "out": str(runs), "subj": subj, "data_path": data, "ckpt_every_s": 1e9}
        if quick:
            kw["num_epochs"] = max(2, kw["num_epochs"] // 4)
        if kw.get("init_backbone"):
            kw["init_backbone"] = str(runs / f"subj{subj}_{kw['init_backbone']}")
        if not finished_run(runs / name, kw):  # a finished run with the same settings is reused
            train(TrainConfig(**kw), log=lambda *a: None)
        export_run(runs / name, runs / name / "export")
        out[target] = runs / name / "export"
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subj", type=int, nargs="+", default=[1] if quick() else [1, 2, 5, 7])
    p.add_argument("--data", default=str(PROJECT_ROOT / "data" / "simnsd"))
    p.add_argument("--runs", default=str(PROJECT_ROOT / "runs" / "bench"))
    p.add_argument("--quick", action="store_true", help="a quarter of the epochs for the subjects trained here")
    p.add_argument("--retrain_subj1", action="store_true", help="train subject 1 here too instead of loading the shipped models")
    args = p.parse_args()
    args.quick = args.quick or quick()
    bundle = Bundle.load(DEMO_BUNDLE)
    clip = SceneCLIP.load(PROJECT_ROOT / bundle.models["clip"])
    clip_sha = file_sha256(clip.folder / "model.safetensors")
    cache = PROJECT_ROOT / "cache" / "clip_targets"
    rows = []
    for subj in args.subj:
        summary = simulate(Path(args.data), SimConfig(subj=subj), log=lambda *a: None)
        s = load_subject(Path(args.data), subj)
        split = selection_split(s)
        train_ids = np.unique(s.image_id[split.train_trials])
        test_b, test_ids = s.averaged("test")
        shipped = subj == bundle.subject and not args.retrain_subj1
        if shipped:
            stems = {t: PROJECT_ROOT / bundle.models[f"mindeye_{t}"] for t in TARGETS}
            build_logs = PROJECT_ROOT / "cache" / "build" / "train_logs"
        else:
            stems = train_subject(subj, args.data, Path(args.runs), args.quick)
            build_logs = Path(args.runs)
        for target in TARGETS:
            tag = f"{s.fingerprint()}_SceneCLIP{clip_sha[:8]}_{target}"
            trn = clip_targets(clip, s.images(train_ids), target == "hidden", True, cache, f"{tag}_train_aug0")[:, 0]
            tst = clip_targets(clip, s.images(test_ids), target == "hidden", True, cache, f"{tag}_test")[:, 0]
            alpha, ceiling_alpha = full_alphas(subj, target) if quick() else (None, None)
            t0 = time.time()
            if alpha is not None:
                ridge = quick_ridge(s, trn, tst, train_ids, split.train_trials, alpha)
            else:
                ridge, _ = ridge_retrieval(s, trn, tst, train_ids, split.train_trials)
            ridge_s = time.time() - t0
            if ceiling_alpha is not None:
                ceiling = quick_ceiling(s, trn, tst, train_ids, test_ids, ceiling_alpha)
            else:
                ceiling = ridge_noise_free_ceiling(s, trn, tst, train_ids, test_ids)
            model, meta = load_model(stems[target], expect={"subject": subj, "fingerprint": s.fingerprint()})
            v2c = brain_network(model)
            with torch.no_grad():
                proj = v2c(torch.from_numpy(test_b))[1]
            mindeye = retrieval_report(proj, tst)
            run_name = meta["config"]["model_name"]
            speed_run = meta["data"].get("init_backbone", {}).get("from") if meta["config"].get("freeze_backbone") else None
            if speed_run and not Path(speed_run).is_absolute():
                speed_run = PROJECT_ROOT / speed_run
            speed_dir = Path(speed_run).parent if speed_run else build_logs / run_name
            if shipped and speed_run and not (speed_dir / "metrics.jsonl").exists():
                # the frozen network came from the bundle's own export, not a run folder: it was trained by the
                # recipe's first stage, whose run build-demo names
                speed_dir = build_logs / DEMO_MINDEYE[target][0]["model_name"]
            speed = epoch_speed(speed_dir / "metrics.jsonl")
            row = {"subj": subj, "target": target, "target_shape": meta["data"]["target_shape"],
                   "oracle": {"image": summary["oracle_top1_averaged"], "brain": summary["oracle_brain_top1_averaged"]},
                   "oracle_single_trial": {"image": summary["oracle_top1_single_trial"]},
                   "linear_ceiling": ceiling, "ridge": ridge, "ridge_seconds": round(ridge_s, 1),
                   "mindeye": mindeye, "mindeye_checkpoint": f"{meta['checkpoint']} (epoch {meta['epoch']}, chosen on val)",
                   "mindeye_source": "shipped" if shipped else ("trained here, quick" if args.quick else "trained here"),
                   "synthetic_trials": int(meta["config"].get("synthetic_trials", 0)),
                   "synthetic_frac": meta["config"].get("synthetic_frac") if meta["config"].get("synthetic_trials")
                   else None,
                   "synthetic_encoding": meta["data"].get("synthetic", {}).get("encoding_features"),
                   "init_scope": meta["config"].get("init_scope") if meta["config"].get("init_backbone")
                   and not meta["config"].get("freeze_backbone") else None,  # (a frozen network is the prior stage's)
                   "median_ncsnr": summary["median_ncsnr"], "speed": speed, "speed_run": speed_dir.name}
            if quick():
                row["ridge_protocol"] = ("alpha chosen by 5-fold CV" if alpha is None else
                                         "quick: alpha from the full run's CV, one closed-form fit")
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("subj", "target", "mindeye_source")}),
                  f"MindEye {100 * mindeye['image']['mean']:.1f}/{100 * mindeye['brain']['mean']:.1f}",
                  f"ridge {100 * ridge['image']['mean']:.1f}/{100 * ridge['brain']['mean']:.1f}",
                  f"ceiling {100 * ceiling['image']['mean']:.1f}/{100 * ceiling['brain']['mean']:.1f}", flush=True)
    result = {"bench": "mindeye_table", "protocol": "300-way top-1, mean and central 95% of 30 random draws, "
              "repetition-averaged test betas", "seed": 0, "rows": rows, "machine": machine_info()}
    path = result_path("mindeye_table")
    old = json.loads(path.read_text()) if path.exists() else {"rows": []}
    old_rows = old["rows"]
    keep_recorded_speed(rows, old_rows)
    for r in rows:
        r["machine"] = result["machine"]
    if old_rows and set(args.subj) != {1, 2, 5, 7}:  # a partial rerun updates its subjects only; the rows it
        # keeps name the machine and commit that measured them
        kept = [{**r, "machine": r.get("machine", old["machine"])} for r in old_rows if r["subj"] not in args.subj]
        result["rows"] = kept + rows
        result["rows"].sort(key=lambda r: (r["subj"], TARGETS.index(r["target"])))
    save_result("mindeye_table", result)
    from bench.readme_tables import render_mindeye_table
    print(render_mindeye_table(result))


if __name__ == "__main__":
    main()
