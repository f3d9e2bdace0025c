"""What else could lift the shipped `final` model, tried on the VAL split only (300 images, 300-way top-1):

- test-time averaging: the embeddings of the three repetitions' pairs (and singles) averaged with the averaged
  betas' embedding (the model trained on averages of random subsets of repetitions, so it knows such inputs);
- centring: subtracting the train images' mean predicted embedding (and mean target) before the cosine, a
  common cure for hubs in retrieval;
- weight averaging: the mean of the val-best and last checkpoints' weights of the run the shipped model came from;
- a real-only fine-tune: 10 more epochs on the real trials alone, from the val-best weights, at a tenth of the
  recipe's learning rate, SoftCLIP only (pretrain on synthetic, then adapt to real).

The last two need the shipped variant's run folder, which `bench/final_recipe.py` writes (runs/bench_final/); they
are left out where it is missing. No test image is read.

    .venv/bin/python bench/final_alternatives.py

Writes bench/results/final_alternatives.json.
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.final_recipe import VARIANTS  # noqa: E402
from bench.machine import is_shipped, machine_info, quick, save_result  # noqa: E402
from mindeye.build_demo import DEMO_MINDEYE  # noqa: E402
from mindeye.bundle import DEMO_BUNDLE, PROJECT_ROOT  # noqa: E402
from mindeye.checkpoints import load_any  # noqa: E402
from mindeye.engine import Model, get_engine  # noqa: E402
from mindeye.metrics import retrieval_report  # noqa: E402
from mindeye.models.voxel2clip import brain_network  # noqa: E402

FINETUNE = {"num_epochs": 10, "lr_fraction": 0.1, "mixup_pct": 0.0}


def top1(pred: torch.Tensor, target: torch.Tensor) -> dict:
    r = retrieval_report(pred.reshape(len(pred), -1), target)
    return {"image": round(r["image"]["mean"], 4), "brain": round(r["brain"]["mean"], 4)}


def embed(model, betas: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        out = brain_network(model)(torch.from_numpy(np.ascontiguousarray(betas, np.float32)))[1]
    return F.normalize(out.flatten(1), dim=-1)


def main():
    t0 = time.time()
    from mindeye.train import TrainConfig, train
    e = get_engine()
    clip, s = e.model(Model.CLIP), e.data
    model = e.model(Model.FINAL).eval()

    def targets(ids):
        with torch.no_grad():
            return torch.cat([F.normalize(clip.final(s.images(ids[i:i + 100])).float(), dim=-1)
                              for i in range(0, len(ids), 100)])

    val_b, val_ids = s.averaged("val")
    reps, rep_ids = s.repetitions("val")
    if not np.array_equal(rep_ids, val_ids):
        raise SystemExit("final_alternatives: every val image needs 3 repetitions")
    tgt = targets(val_ids)
    shipped = embed(model, val_b)
    rows = [{"variant": "the shipped model", **top1(shipped, tgt)}]
    pairs = sum(embed(model, reps[:, list(c)].mean(1)) for c in itertools.combinations(range(3), 2))
    singles = sum(embed(model, reps[:, k]) for k in range(3))
    rows.append({"variant": "+ the 3 pairs' embeddings (test-time averaging)", **top1(3 * shipped + pairs, tgt)})
    rows.append({"variant": "+ the 3 pairs' and 3 singles' embeddings", **top1(3 * shipped + pairs + singles, tgt)})
    train_b, train_ids = s.average_trials(s.trials("train"))
    mean_pred, mean_tgt = embed(model, train_b).mean(0), targets(train_ids).mean(0)
    rows.append({"variant": "centred on the train images' mean embedding", **top1(shipped - mean_pred, tgt)})
    rows.append({"variant": "centred, predictions and targets", **top1(shipped - mean_pred, tgt - mean_tgt)})
    recipe = DEMO_MINDEYE["final"][-1]
    variant = next((k for k, (_, ch) in VARIANTS.items() if is_shipped(ch, recipe, TrainConfig)), None)
    run = PROJECT_ROOT / "runs" / "bench_final" / str(variant)
    if (run / "best.pth").exists() and (run / "last.pth").exists() and not quick():
        best, _ = load_any(run / "best.pth")
        last, _ = load_any(run / "last.pth")
        sb, sl = best.state_dict(), last.state_dict()
        best.load_state_dict({k: (sb[k].float() + sl[k].float()).div(2).to(sb[k].dtype) if sb[k].is_floating_point()
                              else sb[k] for k in sb})
        rows.append({"variant": "mean of the val-best and last weights", **top1(embed(best.eval(), val_b), tgt)})
        name = "final_real_finetune"
        kw = {**recipe, "model_name": name, "out": str(PROJECT_ROOT / "runs" / "bench_final_alt"),
              "bundle": str(DEMO_BUNDLE), "init_backbone": str(run), "init_scope": "model",
              "synthetic_trials": 0, "synthetic_frac": 1.0, "num_epochs": FINETUNE["num_epochs"],
              "max_lr": recipe["max_lr"] * FINETUNE["lr_fraction"], "mixup_pct": FINETUNE["mixup_pct"],
              "ckpt_every_s": 1e9}
        train(TrainConfig(**kw), log=lambda *a: None)
        metrics = [json.loads(x) for x in (Path(kw["out"]) / name / "metrics.jsonl").read_text().splitlines()]
        best_row = max((m for m in metrics if "val_fwd_top1" in m), key=lambda m: m["val_fwd_top1"] + m["val_bwd_top1"])
        rows.append({"variant": f"{FINETUNE['num_epochs']} more epochs on real trials only, learning rate x "
                                f"{FINETUNE['lr_fraction']:g}, no mixup (val-best epoch {best_row['epoch'] + 1})",
                     "image": best_row["val_fwd_top1"], "brain": best_row["val_bwd_top1"]})
    for r in rows:
        print(json.dumps(r), flush=True)
    save_result("final_alternatives", {"bench": "final_alternatives", "split": "val", "n": len(val_ids),
                                       "shipped_variant": variant, "rows": rows, "seconds": round(time.time() - t0, 1),
                                       "machine": machine_info()})


if __name__ == "__main__":
    main()
