"""Which second-order pick: V1's, or each sample's own tokens? Scored on the VAL split (never test).

MindEye V1 (src/utils.py, ``reconstruction``) draws ``recons_per_sample`` images per trial and keeps the one whose
CLIP embedding is nearest the BrainNetwork's *projector* output (the contrastive head, which identifies the seen
image best). Our pipeline keeps the one whose CLIP tokens are nearest the tokens *it was drawn from* (the prior's
sample): a check that the decoder rendered what it was asked to. This bench draws the same samples once per
strength and scores three picks of them: the first sample (no selection), the own-token pick, and V1's projector
pick, with the six scores ``recon_strength`` chooses by.

    .venv/bin/python bench/recon_selection.py [--n 100] [--samples 16] [--strengths 0.5 0.85]

Writes bench/results/recon_selection.json.
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

from bench.machine import machine_info, quick, save_result  # noqa: E402
from bench.recon_strength import CRITERION, criterion, val_inputs  # noqa: E402
from mindeye.evaluation import evaluate_reconstructions  # noqa: E402
from mindeye.pipelines.settings import V1_GUIDANCE, V1_STEPS  # noqa: E402

PICKS = ("first sample (no selection)", "own tokens (ours)", "projector output (V1)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10 if quick() else 100, help="the first N val images")
    p.add_argument("--samples", type=int, default=4 if quick() else 16, help="samples per image (V1: 16)")
    p.add_argument("--strengths", type=float, nargs="+", default=[0.5, 0.85])
    args = p.parse_args()
    clip, judge, voxels, originals, labels, pipe = val_inputs(args.n)
    t0 = time.time()
    hidden = [pipe.source.hidden(voxels[i:i + 10], args.samples, torch.Generator("cpu").manual_seed(i))
              for i in range(0, args.n, 10)]  # the draws a pipeline call with seed=i makes
    with torch.no_grad():
        projected = torch.cat([pipe.source.prior.voxel2clip(voxels[i:i + 50])[1]
                               for i in range(0, args.n, 50)]).float().flatten(1)
    prior_seconds = time.time() - t0
    rows, ar = [], torch.arange(args.n)
    for s in args.strengths:
        t0 = time.time()
        recs = [pipe.draw(voxels[i:i + 10], h, strength=s, steps=V1_STEPS, guidance=V1_GUIDANCE, seed=i)
                for i, h in zip(range(0, args.n, 10), hidden)]
        samples = torch.cat([r.samples for r in recs])  # [N, n, 3, H, W]
        with torch.no_grad():
            emb = torch.cat([pipe.embedder.hidden(samples[i:i + 10].flatten(0, 1), normalize=True).float().cpu()
                             for i in range(0, args.n, 10)]).view(args.n, args.samples, -1)
        picks = {PICKS[0]: torch.zeros(args.n, dtype=torch.long),
                 PICKS[1]: torch.cat([torch.as_tensor(r.best, dtype=torch.long) for r in recs]),
                 PICKS[2]: F.cosine_similarity(emb, projected[:, None], dim=-1).argmax(1)}
        for name, pick in picks.items():
            scores = evaluate_reconstructions(samples[ar, pick], originals, clip, judge, labels)
            scores = {k: v for k, v in scores.items() if isinstance(v, (int, float))}
            rows.append({"strength": s, "pick": name, "scores": scores, "criterion": round(criterion(scores), 4)})
            print(json.dumps({"strength": s, "pick": name, "criterion": rows[-1]["criterion"],
                              **{k: round(scores[k], 3) for k in CRITERION}}), flush=True)
        rows[-1]["seconds"] = round(time.time() - t0, 1)
    save_result("recon_selection", {"bench": "recon_selection", "split": "val", "n": args.n,
                                    "samples_per_image": args.samples, "steps": V1_STEPS, "guidance": V1_GUIDANCE,
                                    "criterion": list(CRITERION), "prior_seconds": round(prior_seconds, 1),
                                    "rows": rows, "seed": 0, "machine": machine_info()})


if __name__ == "__main__":
    main()
