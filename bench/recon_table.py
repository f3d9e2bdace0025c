"""Brain -> image on SimNSD subject 1 with the shipped bundle: MindEye beside ridge (same decoder, same path)
and beside the true tokens (the decoder's ceiling), on a fixed subset of test trials; an img2img-strength
figure; reconstruction latency. The table's strength is the engine's default: the one ``bench/recon_strength.py``
chose on the val split for the shipped hidden model (V1's 0.85 until it has run); nothing here is tuned on these
trials.

    .venv/bin/python bench/recon_table.py [--trials 100 | --subset 300] [--samples 4] [--strength S]

Writes bench/results/recon_table.json and docs/recon_strengths.png. Quick run (``BENCH_QUICK=1``): by default
10 trials, 1 sample each, no ridge column (its first fit takes minutes), latency for N = 1 and 4 only, never the
figure; into bench/results/quick/.
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

from bench.machine import machine_info, quick, save_result  # noqa: E402
from mindeye.bundle import PROJECT_ROOT  # noqa: E402
from mindeye.data.stream import to_model_input  # noqa: E402
from mindeye.engine import Model, Source, get_engine  # noqa: E402
from mindeye.evaluation import evaluate_reconstructions, format_table  # noqa: E402



def strength_figure(e, trials, strengths, path, seed=0):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = []
    for s in strengths:
        rows.append(e.reconstruct(trials, Source.MINDEYE, strength=s, n=1, seed=seed).picked)
    low = e.pipeline(Source.MINDEYE).lowlevel_images(torch.from_numpy(e.test_betas[trials]))
    truth = to_model_input(e.data.images(e.test_ids[trials]), 96)
    cols = [("seen image", truth), ("low-level", low)] + [(f"strength {s:g}" + (" (no img2img)" if s == 1 else ""), r)
                                                            for s, r in zip(strengths, rows)]
    fig, ax = plt.subplots(len(trials), len(cols), figsize=(1.6 * len(cols), 1.6 * len(trials)))
    for j, (title, imgs) in enumerate(cols):
        for i in range(len(trials)):
            ax[i, j].imshow(imgs[i].permute(1, 2, 0).clamp(0, 1).numpy())
            ax[i, j].set_xticks([]), ax[i, j].set_yticks([])
            if i == 0:
                ax[i, j].set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=10 if quick() else 100, help="test trials 0..N-1")
    p.add_argument("--subset", type=int, default=None,
                   help="instead of the first --trials: a fixed random subset of N test trials (seed 0, sorted)")
    p.add_argument("--samples", type=int, default=1 if quick() else 4, help="samples per trial (second-order pick)")
    p.add_argument("--strength", type=float, default=None,
                   help="img2img strength for the table (default: the engine's, chosen on val by "
                        "bench/recon_strength.py, else V1's .85; never tuned on these trials)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=3.5)
    p.add_argument("--all_strengths", action="store_true", help="also MindEye and ridge without img2img (strength 1)")
    p.add_argument("--no_figure", action="store_true")
    p.add_argument("--no_latency", action="store_true")
    p.add_argument("--no_ridge", action="store_true", default=quick(),
                   help="leave the ridge column out (its first use fits ridge: minutes; the default on a quick run)")
    args = p.parse_args()
    args.no_figure = args.no_figure or quick()  # a quick run never replaces the README's figure
    e = get_engine()
    clip, judge = e.model(Model.CLIP), e.model(Model.JUDGE)
    strength_from = "given on the command line"
    if args.strength is None:
        args.strength, strength_from = e.default_strength()
    if args.subset:
        idx = np.sort(np.random.default_rng(0).choice(e.n_test, size=args.subset, replace=False))
        trials = f"a fixed random subset of {args.subset} test trials (numpy default_rng(0), sorted)"
    else:
        idx = np.arange(args.trials)
        trials = f"test trials 0-{args.trials - 1}"
    originals = to_model_input(e.data.images(e.test_ids[idx]), 96)
    labels = e.data.labels(e.test_ids[idx])
    columns, seconds = {}, {}
    runs = [(Source.MINDEYE, args.strength), (Source.RIDGE, args.strength), (Source.TRUE, 1.0)]
    if args.all_strengths:
        runs[2:2] = [(Source.MINDEYE, 1.0), (Source.RIDGE, 1.0)]
    if args.no_ridge:
        runs = [r for r in runs if r[0] != Source.RIDGE]
    for source, strength in runs:
        name = f"{source.value}, strength {strength:g}"
        t0 = time.time()
        picked = []
        for i in range(0, len(idx), 10):
            r = e.reconstruct(idx[i:i + 10], source, strength=strength, n=args.samples, steps=args.steps,
                              guidance=args.guidance, seed=int(i))
            picked.append(r.picked)
        seconds[name] = round(time.time() - t0, 1)
        columns[name] = evaluate_reconstructions(torch.cat(picked), originals, clip, judge, labels)
        print(name, json.dumps({k: v for k, v in columns[name].items() if isinstance(v, float)}), flush=True)
    low = torch.cat([e.pipeline(Source.MINDEYE).lowlevel_images(torch.from_numpy(e.test_betas[idx[i:i + 50]]))
                     for i in range(0, len(idx), 50)])
    columns["low-level model alone"] = evaluate_reconstructions(low, originals, clip, judge, labels)
    latency = {}
    if not args.no_latency:
        for n in (1, 4) if quick() else (1, 4, 16):
            e.reconstruct([0], Source.MINDEYE, strength=args.strength, n=n, steps=args.steps)  # warm
            t0 = time.time()
            e.reconstruct([1], Source.MINDEYE, strength=args.strength, n=n, steps=args.steps)
            latency[str(n)] = round(time.time() - t0, 2)
    if not args.no_figure:
        strength_figure(e, np.array([0, 3, 7, 12, 21, 30]), (0.0, 0.5, 0.85, 1.0), PROJECT_ROOT / "docs" / "recon_strengths.png")
    import resource
    res = {"bench": "recon_table", "trials": trials, "trial_indices": idx.tolist(), "strength": args.strength,
           "strength_from": strength_from, "samples_per_trial": args.samples,
           "steps": args.steps, "guidance": args.guidance, "columns": columns, "seconds": seconds,
           "latency_one_trial_s": latency, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
           "seed": 0, "machine": machine_info()}
    save_result("recon_table", res)
    print(format_table(columns))
    print(json.dumps({"latency_one_trial_s": latency, "peak_rss_mb": res["peak_rss_mb"]}))


if __name__ == "__main__":
    main()
