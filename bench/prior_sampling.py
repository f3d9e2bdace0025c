"""Choose the diffusion prior's sampling settings (DDPM steps, classifier-free guidance) for the bundle's
MindEye hidden model on the VAL split, never on test: for each setting, the cosine similarity between the
prior's sampled CLIP hidden tokens and the val images' true tokens, and 300-way identification of the true
tokens from the sampled ones. The best cosine is written into the model's .json ("prior_sampling"), which the
engine reads; V1's setting (100 steps, no guidance) is the row to compare with.

    .venv/bin/python bench/prior_sampling.py [--n 100] [--steps 20 50 100] [--guidance 1 3.5 7.5] [--no-write]

V1's setting is always scored, whatever the grid.

Writes bench/results/prior_sampling.json.
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

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.machine import machine_info  # noqa: E402
from mindeye.checkpoints import record_in_meta  # noqa: E402
from mindeye.bundle import PROJECT_ROOT  # noqa: E402
from mindeye.engine import Model, get_engine  # noqa: E402
from mindeye.models.embedders import normalize_hidden  # noqa: E402

RESULTS = PROJECT_ROOT / "bench" / "results" / "prior_sampling.json"
STEPS = (20, 50, 100)
GUIDANCE = (1.0, 3.5, 7.5)
V1_SETTING = (100, 1.0)  # V1's sampling: the full DDPM chain, no guidance


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100, help="val images (the first N of the val split)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, nargs="+", default=list(STEPS), help="DDPM step counts to try")
    p.add_argument("--guidance", type=float, nargs="+", default=list(GUIDANCE), help="guidance scales to try")
    p.add_argument("--no-write", dest="write", action="store_false", help="do not update the model's .json")
    args = p.parse_args()
    e = get_engine()
    model, clip = e.model(Model.HIDDEN), e.model(Model.CLIP)
    betas, ids = e.data.averaged("val")
    betas, ids = torch.from_numpy(betas[:args.n]), ids[:args.n]
    with torch.no_grad():
        true = normalize_hidden(torch.cat([clip.hidden(e.data.images(ids[i:i + 100])).float()
                                           for i in range(0, len(ids), 100)])).cpu()
        backbone = model.voxel2clip(betas.to(next(model.parameters()).device))[0]
    rows = []
    grid = [(s, g) for s in args.steps for g in args.guidance]
    grid += [V1_SETTING] if V1_SETTING not in grid else []
    for steps, g in grid:
        t0 = time.time()
        with torch.no_grad():
            gen = torch.Generator(device=backbone.device).manual_seed(args.seed)
            out = normalize_hidden(model.sample(backbone, steps=steps, guidance_scale=g, generator=gen).float()).cpu()
        cos = F.cosine_similarity(out.flatten(1), true.flatten(1)).mean().item()
        sim = F.normalize(out.flatten(1), dim=-1) @ F.normalize(true.flatten(1), dim=-1).T
        top1 = (sim.argmax(1) == torch.arange(len(sim))).float().mean().item()
        rows.append({"steps": steps, "guidance_scale": g, "val_token_cosine": round(cos, 4),
                     f"val_{len(ids)}way_top1": round(top1, 4), "seconds": round(time.time() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
    best = max(rows, key=lambda r: r["val_token_cosine"])
    chosen = {"steps": best["steps"], "guidance_scale": best["guidance_scale"],
              "chosen_on": f"val split, {len(ids)} images, token cosine (bench/prior_sampling.py)"}
    res = {"bench": "prior_sampling", "model": str(e.model_path(Model.HIDDEN).relative_to(PROJECT_ROOT)),
           "n_val": len(ids), "seed": args.seed, "rows": rows, "chosen": chosen,
           "v1_setting": next(r for r in rows if (r["steps"], r["guidance_scale"]) == V1_SETTING),
           "machine": machine_info()}
    RESULTS.write_text(json.dumps(res, indent=1))
    print(f"chosen: {chosen}\nwrote {RESULTS}")
    if args.write:
        js = e.model_path(Model.HIDDEN).with_suffix(".json")
        record_in_meta(js, "prior_sampling", chosen)
        print(f"updated {js}")


if __name__ == "__main__":
    main()
