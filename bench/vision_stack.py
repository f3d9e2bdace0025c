"""Measure the demo vision stack (issue 3's bar) and draw the originals-vs-reconstructions grid.

    .venv/bin/python bench/vision_stack.py [--bundle assets/demo] [--n 300] [--steps 20]

Prints the CLIP probe / caption retrieval figures, the decoder's figures (judge on reconstructions and on
originals, CLIP top-1 of 300, 2-way, PixCorr, SSIM) and sampling latency per image (20 steps, batch 1 and
16), writes them to bench/results/vision_stack.json (the README's tables) and draws docs/vision_recon_grid.png.
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
from tqdm import tqdm  # noqa: E402

from bench.machine import machine_info, quick, save_result  # noqa: E402
from mindeye.bundle import DEMO_BUNDLE, PROJECT_ROOT, Bundle  # noqa: E402
from mindeye.data.stream import render_batch  # noqa: E402
from mindeye.models.decoder import UnclipDecoder  # noqa: E402
from mindeye.models.judge import SceneJudge  # noqa: E402
from mindeye.models.scene_clip import SceneCLIP  # noqa: E402
from mindeye.vision_eval import evaluate_clip, evaluate_decoder, recon_grid  # noqa: E402


def latency(decoder, hidden, steps, batch, repeats=2):
    decoder.decode(hidden[:batch], steps=steps)  # warm-up
    t0 = time.time()
    for r in range(repeats):
        decoder.decode(hidden[:batch], steps=steps, seed=r)
    return (time.time() - t0) / repeats / batch


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=str(DEMO_BUNDLE))
    p.add_argument("--n", type=int, default=50 if quick() else 300, help="held-out test scenes (quick: 50)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance_scale", type=float, default=3.5)
    p.add_argument("--grid", default=str(PROJECT_ROOT / "docs" / "vision_recon_grid.png"))
    p.add_argument("--skip_latency", action="store_true")
    args = p.parse_args()
    b = Bundle.load(args.bundle)
    root = PROJECT_ROOT
    clip = SceneCLIP.load(root / b.models["clip"])
    decoder = UnclipDecoder.from_pretrained(root / b.models["decoder"])
    judge = SceneJudge.load(root / b.models["judge"])
    print(f"threads: {torch.get_num_threads()}", flush=True)
    res = {"clip": evaluate_clip(clip, n_test=args.n)}
    print(json.dumps(res["clip"]), flush=True)
    m, orig, rec = evaluate_decoder(clip, decoder, judge, n_test=args.n, steps=args.steps,
                                    guidance_scale=args.guidance_scale, progress=lambda r: tqdm(r, desc="decode"))
    res["decoder"] = m
    print(json.dumps(m), flush=True)
    caps = render_batch(range(12))[2]
    if not quick():  # the docs figure comes from the full run only
        recon_grid(orig, rec, args.grid, n=12, captions=caps)
        print(f"grid: {args.grid}")
    if not args.skip_latency:
        hidden = clip.hidden(orig[:16])
        res["latency_s_per_image"] = {f"batch{bs}": round(latency(decoder, hidden, args.steps, bs), 4) for bs in (1, 16)}
        print(json.dumps(res["latency_s_per_image"]))
    res.update(bench="vision_stack", n_test=args.n, steps=args.steps, guidance_scale=args.guidance_scale,
               threads=torch.get_num_threads(), machine=machine_info())
    print(f"wrote {save_result('vision_stack', res)}")


if __name__ == "__main__":
    with torch.no_grad():
        main()
