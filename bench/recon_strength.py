"""Choose the img2img strength on the VAL split (never test): MindEye's reconstructions of the first N val images
(repetition-averaged betas) at each strength, scored with the same metrics and scene-attribute judge as the test
table, beside the low-level model's picture alone. ``--averages 1 4`` also tries each sample's tokens as the mean of
k prior draws (``PriorHidden.average``), chosen jointly with the strength; the tokens are drawn once per k and
decoded at every strength.

The rule is fixed before looking: the chosen strength has the highest mean of the six scores the reconstruction
bars name (judge shape, colour, count and position of the largest object, bundle-CLIP 2-way, PixCorr at 96 px;
background is left out: it is near 100% everywhere). It is written into the hidden model's .json
("img2img_strength", and "prior_average" with --averages), where the engine reads it as its default strength (``Engine.default_strength``): the app's
sliders start there, ``reconstruct`` uses it without ``--img2img_strength``, and ``bench/recon_table.py`` uses it on
test. Rerun this after retraining the hidden model (and after ``bench/prior_sampling.py``, whose settings it uses).

First it measures how far each brain source's tokens sit from the val images' true tokens (elementwise RMS: one
prior sample per draw, and ridge's prediction) and writes that into the same .json ("token_noise_level"). A decoder
trained with a noise-level input (``DecoderTrainConfig.level_input``) is told it when drawing from that source; the
draws below already use it. Other decoders ignore it.

    .venv/bin/python bench/recon_strength.py [--n 100] [--samples 3] [--strengths 0.3 0.5 0.7 0.85 1] [--averages 1]
                                             [--no-write]

Writes bench/results/recon_strength.json (quick run, ``BENCH_QUICK=1``: 10 images, 1 sample, into quick/).
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

from bench.machine import machine_info, quick, save_result  # noqa: E402
from mindeye.checkpoints import record_in_meta  # noqa: E402
from mindeye.data.stream import to_model_input  # noqa: E402
from mindeye.engine import Model, Source, get_engine  # noqa: E402
from mindeye.evaluation import evaluate_reconstructions  # noqa: E402
from mindeye.pipelines.reconstruction import PriorHidden, TrueHidden  # noqa: E402
from mindeye.pipelines.settings import V1_GUIDANCE, V1_STEPS  # noqa: E402

# the scores the chosen strength maximises (their mean): the ones the reconstruction bars name
CRITERION = ("judge shape_largest", "judge colour_largest", "judge count", "judge position_largest_within_0.1",
             "bundle CLIP 2-way", "PixCorr (96 px)")


def criterion(scores: dict) -> float:
    return sum(scores[k] for k in CRITERION) / len(CRITERION)


def val_inputs(n: int):
    """What a val reconstruction bench scores with: ``(clip, judge, voxels [n, V], originals [n, 3, 96, 96], labels,
    MindEye's pipeline)`` for the first ``n`` val images (repetition-averaged betas)."""
    e = get_engine()
    betas, ids = e.data.averaged("val")
    voxels, ids = torch.from_numpy(betas[:n]), ids[:n]
    return (e.model(Model.CLIP), e.model(Model.JUDGE), voxels, to_model_input(e.data.images(ids), 96),
            e.data.labels(ids), e.pipeline(Source.MINDEYE))


def prior_draw(source, voxels: torch.Tensor, per_call: int = 25) -> torch.Tensor:
    """One prior sample per image ``[n, 1, T, D]`` from a ``HiddenSource``: the draws a pipeline call with seed=i
    makes for ``per_call`` images from i."""
    return torch.cat([source.hidden(voxels[i:i + per_call], 1, torch.Generator("cpu").manual_seed(i))
                      for i in range(0, len(voxels), per_call)])


def rms_error(hidden: torch.Tensor, true: torch.Tensor) -> float:
    """Elementwise RMS distance of token sets ``[B, n, T, D]`` from the true tokens ``[B, 1, T, D]``."""
    return float((hidden - true).pow(2).mean().sqrt())


def record_choice(model_json: Path, res: dict) -> None:
    """Write this bench's choice into a hidden model's .json (atomically), for ``Engine.default_strength`` and the
    engine's prior sampling (``prior_average``, when more than one k was tried)."""
    chosen_on = f"val split, {res['n']} images, mean of {len(res['criterion'])} scores (bench/recon_strength.py)"
    record_in_meta(model_json, "img2img_strength", {"strength": res["chosen_strength"], "chosen_on": chosen_on})
    levels = res.get("token_noise_level")
    if levels:
        record_in_meta(model_json, "token_noise_level", {
            "mindeye": levels["mindeye"][str(res.get("chosen_average", 1))], "ridge": levels["ridge"],
            "measured_on": f"val split, {res['n']} images, elementwise RMS against the true tokens "
                           "(bench/recon_strength.py)"})
    if len(res.get("averages", [1])) > 1:
        record_in_meta(model_json, "prior_average", {"k": res["chosen_average"], "chosen_on": chosen_on})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10 if quick() else 100, help="the first N val images")
    p.add_argument("--samples", type=int, default=1 if quick() else 3, help="samples per image (second-order pick)")
    p.add_argument("--strengths", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.85, 1.0],
                   help="the grid (0 is left out: it skips the decoder; the low-level picture alone is its own row)")
    p.add_argument("--averages", type=int, nargs="+", default=[1],
                   help="prior draws averaged into each sample's tokens, chosen jointly with the strength (1 = V1)")
    p.add_argument("--steps", type=int, default=V1_STEPS)
    p.add_argument("--guidance", type=float, default=V1_GUIDANCE)
    p.add_argument("--no-write", dest="write", action="store_false", help="do not update the model's .json")
    args = p.parse_args()
    clip, judge, voxels, originals, labels, pipe = val_inputs(args.n)
    with torch.no_grad():
        true = TrueHidden(clip, originals).hidden(voxels, 1, None)
        ridge = get_engine().pipeline(Source.RIDGE).source.hidden(voxels, 1, None)
    levels = {"mindeye": {}, "ridge": round(rms_error(ridge, true), 4)}
    rows = []
    for average in args.averages:
        source = PriorHidden(pipe.source.prior, pipe.source.steps, pipe.source.guidance_scale, average=average)
        t0 = time.time()
        hidden = [source.hidden(voxels[i:i + 10], args.samples, torch.Generator("cpu").manual_seed(i))
                  for i in range(0, args.n, 10)]  # the draws a pipeline call with seed=i makes
        prior_seconds = time.time() - t0
        level = levels["mindeye"][str(average)] = round(rms_error(torch.cat(hidden), true), 4)
        print(f"prior draws (k = {average}): token RMS error {level:.4f}; ridge {levels['ridge']:.4f}", flush=True)
        for s in args.strengths:
            t0 = time.time()
            picked = torch.cat([pipe.draw(voxels[i:i + 10], h, strength=s, steps=args.steps, guidance=args.guidance,
                                          seed=i, noise_level=level).picked
                                for i, h in zip(range(0, args.n, 10), hidden)])
            scores = evaluate_reconstructions(picked, originals, clip, judge, labels)
            scores = {k: v for k, v in scores.items() if isinstance(v, (int, float))}
            rows.append({"source": "mindeye", "prior_average": average, "strength": s, "scores": scores,
                         "criterion": round(criterion(scores), 4), "seconds": round(time.time() - t0, 1),
                         "prior_seconds": round(prior_seconds, 1)})
            print(json.dumps({k: rows[-1][k] for k in ("prior_average", "strength", "criterion", "seconds")}), flush=True)
    low = torch.cat([pipe.lowlevel_images(voxels[i:i + 50]) for i in range(0, args.n, 50)])
    low_scores = {k: v for k, v in evaluate_reconstructions(low, originals, clip, judge, labels).items()
                  if isinstance(v, (int, float))}
    rows.append({"source": "low-level model alone", "strength": None, "scores": low_scores,
                 "criterion": round(criterion(low_scores), 4)})
    best = max((r for r in rows if r["source"] == "mindeye"), key=lambda r: r["criterion"])
    res = {"bench": "recon_strength", "split": "val", "n": args.n, "samples_per_image": args.samples,
           "steps": args.steps, "guidance": args.guidance, "criterion": list(CRITERION), "averages": args.averages,
           "chosen_strength": best["strength"], "chosen_average": best["prior_average"], "rows": rows, "seed": 0,
           "token_noise_level": levels, "decoder_takes_noise_level": bool(pipe.decoder.takes_noise_level),
           "machine": machine_info()}
    save_result("recon_strength", res)
    print(f"chosen strength {best['strength']:g}, prior draws averaged {best['prior_average']} "
          f"(criterion {best['criterion']:.3f})")
    if args.write and not quick():  # a quick run (10 images) never sets the shipped model's default
        js = get_engine().model_path(Model.HIDDEN).with_suffix(".json")
        record_choice(js, res)
        print(f"updated {js}")


if __name__ == "__main__":
    main()
