"""Where MindEye's reconstructions lose the image's identity: the hidden model's BrainNetwork against its
diffusion prior, on the VAL split (never test).

For the first N val images (repetition-averaged betas) it scores, by cosine to the true SceneCLIP hidden tokens
and by N-way identification of the true tokens (top-1):
- the BrainNetwork's projected tokens (the contrastive space retrieval uses);
- its backbone tokens (what the prior is conditioned on; near the true tokens only when trained to be, with
  ``--align_mult``);
- one prior sample, at the model's chosen sampling settings (steps, guidance);
- the prior's first-step estimate of the clean tokens from pure noise (at the chosen guidance): the mean of its
  posterior, the one deterministic answer a diffusion prior gives (``prior_mean``);
- the mean of 2, 4 and 8 prior samples (is the prior noisy around a good mean, or biased?);
- of 16 prior samples, the one nearest the projected tokens (can retrieval's space pick a better sample?) and the
  one nearest the true tokens (an oracle that reads the answer: how close does the prior come at all?);
- one prior sample for N *train* images (does the prior read the network's outputs for images it was trained on
  better than for new ones?).
The ridge baseline's tokens (the engine's, fitted on the train split) are scored on the same images, as the
baseline every row should beat. ``--candidate PATH`` scores another hidden model the same way (an exported stem or a run folder, e.g. a prior
trained another way; a BrainNetwork without a prior gets its two network rows only).

    .venv/bin/python bench/prior_identity.py [--n 100] [--candidate runs/x/export --label "what it is"]

Writes bench/results/prior_identity.json (QUICK: bench/results/quick/).
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

from bench.machine import machine_info, save_result  # noqa: E402
from mindeye.bundle import PROJECT_ROOT  # noqa: E402
from mindeye.checkpoints import load_any  # noqa: E402
from mindeye.engine import Model, get_engine  # noqa: E402
from mindeye.metrics import top1_identification  # noqa: E402
from mindeye.models.embedders import normalize_hidden  # noqa: E402
from mindeye.models.voxel2clip import brain_network  # noqa: E402

MEANS_OF = (2, 4, 8)
PICK_OF = 16  # samples per image for the two picks: by the projected tokens, and by the truth (an oracle)


def scores(tokens: torch.Tensor, true: torch.Tensor) -> dict:
    """Mean cosine of ``tokens`` to ``true`` (both [N, T, D]) and N-way top-1 identification of the true tokens."""
    a, b = tokens.float().flatten(1), true.float().flatten(1)
    return {"token_cosine": round(F.cosine_similarity(a, b).mean().item(), 4),
            "top1": round(top1_identification(a, b), 4)}


@torch.no_grad()
def diagnose(model, betas: torch.Tensor, true: torch.Tensor, train_betas: torch.Tensor, train_true: torch.Tensor,
             steps: int, guidance: float) -> dict:
    model.eval()

    def sample(brain_tokens, seed):
        g = torch.Generator().manual_seed(seed)
        return normalize_hidden(model.sample(brain_tokens, steps=steps, guidance_scale=guidance, generator=g).float())
    t0 = time.time()
    network = brain_network(model)
    backbone, projected = network(betas)  # once: every sample below reads the same brain tokens
    out = {"projected": scores(projected, true), "backbone": scores(backbone, true)}
    if network is model:  # a BrainNetwork alone: no prior to sample
        return {**out, "seconds": round(time.time() - t0, 1)}
    samples = torch.stack([sample(backbone, seed) for seed in range(PICK_OF)], 1)  # [N, K, T, D]
    rows = torch.arange(len(betas))

    def pick(reference):  # each image's sample nearest ``reference`` [N, T, D] (flattened cosine)
        return samples[rows, F.cosine_similarity(samples.flatten(2), reference.float().flatten(1)[:, None], -1).argmax(1)]
    prior_mean = model.posterior_mean(backbone, guidance, generator=torch.Generator().manual_seed(PICK_OF))
    out = {**out, "one_sample": scores(samples[:, 0], true),
           "prior_mean": scores(normalize_hidden(prior_mean.float()), true),
           **{f"mean_of_{k}": scores(samples[:, :k].mean(1), true) for k in MEANS_OF},
           # the retrieval space picks among the prior's samples: how much of its identity can it hand over?
           "pick_by_projected": scores(pick(projected), true),
           # and the best the prior offers at all: the sample nearest the true tokens (uses the truth: not a method)
           "pick_by_truth": scores(pick(true), true),
           "one_sample_train_images": scores(sample(network(train_betas)[0], 0), train_true)}
    out["seconds"] = round(time.time() - t0, 1)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100, help="val images (the first N of the val split), and as many "
                                                      "train images")
    p.add_argument("--candidate", action="append", default=[], help="another hidden model (exported stem or run "
                                                                      "folder)")
    p.add_argument("--label", action="append", default=[], help="what each --candidate is, in words, in order")
    args = p.parse_args()
    e = get_engine()
    clip, shipped = e.model(Model.CLIP), e.model(Model.HIDDEN)
    meta = json.loads(e.model_path(Model.HIDDEN).with_suffix(".json").read_text())
    sampling = meta.get("prior_sampling", {"steps": 20, "guidance_scale": 3.5})
    steps, guidance = sampling["steps"], sampling["guidance_scale"]

    def split(name):
        b, ids = e.data.averaged(name)
        true = normalize_hidden(torch.cat([clip.hidden(e.data.images(ids[i:i + 100])).float()
                                           for i in range(0, args.n, 100)]))
        return torch.from_numpy(b[:args.n]), true[:args.n]
    with torch.no_grad():
        val_b, val_t = split("val")
        train_b, train_t = split("train")
    if len(args.label) not in (0, len(args.candidate)):
        p.error(f"--label: one per --candidate ({len(args.candidate)}), found {len(args.label)}")
    models = {f"shipped ({e.model_path(Model.HIDDEN).relative_to(PROJECT_ROOT)})": shipped}
    for i, stem in enumerate(args.candidate):
        models[args.label[i] if args.label else stem] = load_any(Path(stem), expect=e.model_expect())[0]
    rows = [{"model": "ridge baseline (voxels -> hidden tokens)",
             "ridge": scores(normalize_hidden(e.ridge().predict(val_b).float()), val_t)}]
    print(json.dumps(rows[-1]), flush=True)
    for name, model in models.items():
        rows.append({"model": name, **diagnose(model, val_b, val_t, train_b, train_t, steps, guidance)})
        print(json.dumps(rows[-1]), flush=True)
    save_result("prior_identity", {"bench": "prior_identity", "n": args.n, "steps": steps,
                                   "guidance_scale": guidance, "pick_of": PICK_OF, "rows": rows, "machine": machine_info()})


if __name__ == "__main__":
    main()
