"""Where is the largest object's shape lost between the brain and the reconstruction? Linear probes on VAL.

The judge reads shape, colour and count in MindEye's reconstructions far below what the true tokens give
(bench/recon_table.py). This bench asks each stage of the path what it still carries, with linear probes
(multinomial logistic regression, fitted on the 5700 train images, scored on the first N val images):

- voxels: a probe fitted on the train images' repetition-averaged betas, applied to the val betas;
- tokens: a probe fitted on the train images' TRUE SceneCLIP hidden tokens, applied to the val images' true
  tokens (the ceiling), to ridge's predicted tokens and to one prior sample (the shipped sampling settings).

A probe rate well above the judge's rate on the reconstructions from the same tokens says the decoder, not the
brain-to-token map, drops the attribute. Chance is the most frequent class of the val images.

    .venv/bin/python bench/attribute_probe.py [--n 100]

Writes bench/results/attribute_probe.json.
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
from bench.recon_strength import prior_draw  # noqa: E402
from mindeye.data.stream import to_model_input  # noqa: E402
from mindeye.engine import Model, Source, get_engine  # noqa: E402

C = 0.01  # the probes' inverse L2 strength (one value for every probe, fixed before looking at val)


def attributes(labels: dict) -> dict[str, np.ndarray]:
    """The judge's attributes of the largest object (slot 0) and the object count."""
    return {"shape": labels["shape"][:, 0], "colour": labels["colour"][:, 0], "count": (labels["shape"] >= 0).sum(1)}


def probe(x_train: np.ndarray, y_train: dict, x_tests: dict[str, np.ndarray], y_test: dict) -> dict[str, dict]:
    """Fit one standardised logistic-regression probe per attribute on ``x_train``; its accuracy on each test set."""
    from sklearn.linear_model import LogisticRegression
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    out = {name: {} for name in x_tests}
    for attr, y in y_train.items():
        m = LogisticRegression(C=C, max_iter=500).fit((x_train - mu) / sd, y)
        for name, x in x_tests.items():
            out[name][attr] = float((m.predict((x - mu) / sd) == y_test[attr]).mean())
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20 if quick() else 100, help="the first N val images")
    args = p.parse_args()
    t0 = time.time()
    e = get_engine()
    clip, d = e.model(Model.CLIP), e.data
    train_b, train_ids = d.average_trials(d.trials("train"))
    val_b, val_ids = d.averaged("val")
    val_b, val_ids = val_b[:args.n], val_ids[:args.n]
    y_train, y_val = attributes(d.labels(train_ids)), attributes(d.labels(val_ids))

    def tokens(ids):
        with torch.no_grad():
            return torch.cat([clip.hidden(to_model_input(d.images(ids[i:i + 200]), 96), normalize=True).float().flatten(1)
                              for i in range(0, len(ids), 200)]).numpy()

    voxels = probe(train_b, y_train, {"voxels": val_b}, y_val)
    v = torch.from_numpy(val_b)
    prior = e.pipeline(Source.MINDEYE).source
    sample = prior_draw(prior, v)[:, 0]
    ridge = e.pipeline(Source.RIDGE).source.hidden(v, 1, None)[:, 0]
    toks = probe(tokens(train_ids), y_train, {"true tokens": tokens(val_ids), "ridge tokens": ridge.flatten(1).numpy(),
                                              "one prior sample": sample.flatten(1).numpy()}, y_val)
    chance = {k: float(np.bincount(y).max() / len(y)) for k, y in y_val.items()}
    rows = [{"input": "voxels (probe fitted on train betas)", **voxels["voxels"]}] + \
           [{"input": f"{k} (probe fitted on train images' true tokens)", **v_} for k, v_ in toks.items()]
    res = {"bench": "attribute_probe", "split": "val", "n": args.n, "n_train_images": len(train_ids), "C": C,
           "prior_sampling": {"steps": prior.steps, "guidance_scale": prior.guidance_scale, "average": prior.average},
           "chance": chance, "rows": rows, "seconds": round(time.time() - t0, 1), "machine": machine_info()}
    save_result("attribute_probe", res)
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
