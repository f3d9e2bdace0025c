"""Does conditioning augmentation teach the decoder to draw from brain-predicted tokens? Fine-tunes on VAL only.

The shipped decoder was trained on clean SceneCLIP tokens (a base trained with ``cond_noise`` is skipped). A prior sample of a val image is far from them (its
elementwise RMS error is about three quarters of the tokens' own RMS), and the judge reads the largest object's shape
in its reconstructions at about a quarter of the true-token rate, while a linear probe still reads about half
(bench/attribute_probe.py). Noising the TRUE tokens to the same RMS error costs about as much. So this bench fine-tunes
the bundle's decoder (the base) twice from the same weights, for the same steps on the same freshly rendered training scenes:

- ``clean``: as it was trained (the control: what more steps alone do);
- ``noised``: each sample's tokens get Gaussian noise of std ``u * NOISE_MULT * sigma``, u ~ U(0, 1), where
  ``sigma`` is the prior samples' RMS error measured on the first N val images (the one number read from val).

and scores the base, clean and noised decoders on the first N val images: one prior sample per image (the
shipped sampling), at strength 1 (the decoder alone) and 0.5 (half of the low-level picture), and from the true
tokens (what the decoder gives up on clean tokens). No test image is read.

    .venv/bin/python bench/decoder_cond_noise.py [--steps 600] [--n 100]

Fine-tuned decoders go to runs/bench_decoder/<variant> (reused when their settings match).
Writes bench/results/decoder_cond_noise.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from bench.machine import machine_info, quick, save_result  # noqa: E402
from bench.recon_strength import CRITERION, prior_draw, rms_error, val_inputs  # noqa: E402
from mindeye.bundle import PROJECT_ROOT  # noqa: E402
from mindeye.engine import get_engine  # noqa: E402
from mindeye.evaluation import evaluate_reconstructions  # noqa: E402
from mindeye.models.decoder import DecoderTrainConfig, UnclipDecoder, train_decoder  # noqa: E402
from mindeye.pipelines.reconstruction import TrueHidden  # noqa: E402
from mindeye.train import file_sha256  # noqa: E402

NOISE_MULT = 1.5  # cond_noise = 1.5 sigma: u ~ U(0, 1) then spans clean tokens to 1.5x a prior sample's error
FINETUNE_LR = 2e-4  # a fifth of the from-scratch peak: a fine-tune, not a restart


def score(pipe, decoder, voxels, hidden, strength, originals, clip, judge, labels) -> dict:
    pipe.decoder = decoder
    pics = torch.cat([pipe.draw(voxels[i:i + 25], hidden[i:i + 25], strength=strength, seed=i).picked
                      for i in range(0, len(voxels), 25)])
    s = evaluate_reconstructions(pics, originals, clip, judge, labels)
    return {k: round(float(s[k]), 4) for k in CRITERION}


def finetuned(name: str, cfg: DecoderTrainConfig, base: UnclipDecoder, base_sha: str, clip,
              runs: Path) -> tuple[UnclipDecoder, dict]:
    out = runs / name
    done = out / "finetune.json"
    if done.exists():
        meta = json.loads(done.read_text())
        if meta["train"] == asdict(cfg) | {"block_out_channels": list(cfg.block_out_channels)} \
                and meta.get("init_sha256") == base_sha:
            return UnclipDecoder.from_pretrained(out), meta
    dec, meta = train_decoder(cfg, clip, base.vae, log=lambda *a: None, init=base)
    meta["init_sha256"] = base_sha
    dec.save_pretrained(out, fp16=False)
    (out / "finetune.json").write_text(json.dumps(meta, indent=1) + "\n")
    return UnclipDecoder.from_pretrained(out), meta


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20 if quick() else 600, help="fine-tuning steps per variant")
    p.add_argument("--n", type=int, default=10 if quick() else 100, help="the first N val images")
    p.add_argument("--runs", default=str(PROJECT_ROOT / "runs" / "bench_decoder"))
    args = p.parse_args()
    t0 = time.time()
    e = get_engine()
    base_dir = e.model_path("decoder")
    base = DecoderTrainConfig(**json.loads((base_dir / "train_meta.json").read_text())["train"])
    if base.cond_noise > 0:  # the experiment needs a base that never saw noised tokens; the result file stays
        print(f"skipped: the bundle's decoder ({base_dir}) was itself trained with cond_noise {base.cond_noise:g}; "
              "this bench fine-tunes a decoder trained on clean tokens only (bench/results/decoder_cond_noise.json "
              "keeps the last such measurement, with its commit)")
        return
    clip, judge, voxels, originals, labels, pipe = val_inputs(args.n)
    base_decoder = pipe.decoder
    with torch.no_grad():
        true = TrueHidden(clip, originals).hidden(voxels, 1, None)
        sample = prior_draw(pipe.source, voxels)
    sigma = rms_error(sample, true)
    token_rms = float(true.pow(2).mean().sqrt())
    print(f"prior sample RMS error {sigma:.4f} (tokens' RMS {token_rms:.4f})", flush=True)
    # cached fine-tunes are reused only for the base they started from
    base_cond_noise, base_sha = base.cond_noise, file_sha256(base_dir / "image_unet" / "diffusion_pytorch_model.safetensors")
    base = replace(base, steps=args.steps, lr=FINETUNE_LR, block_out_channels=tuple(base.block_out_channels),
                   log_every=max(1, args.steps // 10))
    variants = {"clean": replace(base, cond_noise=0.0), "noised": replace(base, cond_noise=round(NOISE_MULT * sigma, 4))}
    decoders, rows = {"base": (base_decoder, None)}, []
    for name, cfg in variants.items():
        t1 = time.time()
        decoders[name] = finetuned(name, cfg, base_decoder, base_sha, clip, Path(args.runs))
        print(f"{name}: fine-tuned in {time.time() - t1:.0f} s", flush=True)
    for name, (dec, meta) in decoders.items():
        row = {"decoder": name, "cond_noise": base_cond_noise if meta is None else meta["train"]["cond_noise"],
               "finetune_steps": 0 if meta is None else meta["train"]["steps"],
               "finetune_seconds": None if meta is None else meta.get("train_seconds")}
        for label, hidden, s in (("prior sample, strength 1", sample, 1.0),
                                 ("prior sample, strength 0.5", sample, 0.5),
                                 ("true tokens, strength 1", true, 1.0)):
            row[label] = score(pipe, dec, voxels, hidden, s, originals, clip, judge, labels)
        rows.append(row)
        print(json.dumps(row), flush=True)
    pipe.decoder = base_decoder
    save_result("decoder_cond_noise", {
        "bench": "decoder_cond_noise", "split": "val", "n": args.n, "prior_rms_error": round(sigma, 4),
        "token_rms": round(token_rms, 4), "base_sha256": base_sha, "noise_mult": NOISE_MULT, "finetune_lr": FINETUNE_LR,
        "steps": args.steps, "criterion": list(CRITERION), "sampling": "one sample per image, 20 steps, guidance 3.5",
        "rows": rows, "seconds": round(time.time() - t0, 1), "machine": machine_info()})


if __name__ == "__main__":
    main()
