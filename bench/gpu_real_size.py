"""The real-size path on a GPU: V1-sized models, random weights, memory / time / throughput.

    .venv/bin/python bench/gpu_real_size.py [--precision fp16|bf16] [--batch 32] [--samples 16]

1. voxel2clip (15724 voxels -> 257 x 768, width 4096, 4 blocks) + V1's diffusion prior (depth 6, 12 heads):
   one training step at V1's batch size (contrastive + 30 x prior loss) under autocast;
2. the low-level model (voxels -> 4 x 64 x 64 VAE latents): one training step;
3. one reconstruction at Versatile Diffusion's size with random weights (UNet on 64 x 64 latents,
   cross-attention to 257 x 768 tokens, 512 px VAE), ``--samples`` samples, 20 UniPC steps, img2img.

Without CUDA it says so and exits 0 (nothing is measured on CPU: these sizes are GPU work). Writes
bench/results/gpu_real_size.json when it runs (a quick run, ``BENCH_QUICK=1``: the same sizes, into
bench/results/quick/).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402


def _timed(fn, repeat=3):
    torch.cuda.synchronize()
    fn()
    torch.cuda.synchronize()
    t0 = time.time()
    for _ in range(repeat):
        fn()
    torch.cuda.synchronize()
    return (time.time() - t0) / repeat


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--precision", choices=["fp16", "bf16"], default="fp16")
    p.add_argument("--batch", type=int, default=32, help="V1's batch size")
    p.add_argument("--samples", type=int, default=16, help="reconstruction samples (V1: 16)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("gpu_real_size: skipped, no CUDA device here (the real-size path is GPU work; nothing measured)")
        return
    from bench.machine import machine_info, save_result
    from mindeye.losses import soft_clip_loss
    from mindeye.models.decoder import UnclipDecoder
    from mindeye.models.lowlevel import LowLevelConfig, Voxel2VAE
    from mindeye.models.prior import DiffusionPrior, PriorConfig
    from mindeye.models.voxel2clip import BrainNetwork, Voxel2ClipConfig
    dev, dt = "cuda", torch.float16 if args.precision == "fp16" else torch.bfloat16
    out = {"bench": "gpu_real_size", "precision": args.precision, "batch": args.batch, "machine": machine_info()}

    torch.cuda.reset_peak_memory_stats()
    v2c = BrainNetwork(Voxel2ClipConfig())
    prior = DiffusionPrior(PriorConfig(), voxel2clip=v2c).to(dev)
    out["voxel2clip_prior_params_M"] = round(sum(q.numel() for q in prior.parameters()) / 1e6, 1)
    opt = torch.optim.AdamW(prior.parameters(), lr=3e-4)
    scaler = torch.amp.GradScaler(enabled=args.precision == "fp16")
    vox = torch.randn(args.batch, 15724, device=dev)
    tgt = torch.nn.functional.normalize(torch.randn(args.batch, 257, 768, device=dev), dim=-1)

    def step():
        with torch.autocast("cuda", dtype=dt):
            b, proj, lp = prior(vox, tgt)
            loss = soft_clip_loss(torch.nn.functional.normalize(proj.flatten(1), dim=-1),
                                  torch.nn.functional.normalize(tgt.flatten(1), dim=-1), 0.006) + 30 * lp
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    s = _timed(step)
    out["train_step_s"], out["train_samples_per_s"] = round(s, 3), round(args.batch / s, 1)
    out["train_peak_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    del prior, opt
    torch.cuda.empty_cache()

    torch.cuda.reset_peak_memory_stats()
    low = Voxel2VAE(LowLevelConfig(use_cont=False)).to(dev)
    lopt = torch.optim.AdamW(low.parameters(), lr=3e-4)
    lat = torch.randn(args.batch, 4, 64, 64, device=dev)

    def lstep():
        with torch.autocast("cuda", dtype=dt):
            loss = torch.nn.functional.l1_loss(low(vox).float(), lat)
        lopt.zero_grad(set_to_none=True)
        loss.backward()
        lopt.step()
    s = _timed(lstep)
    out["lowlevel_step_s"], out["lowlevel_peak_gb"] = round(s, 3), round(torch.cuda.max_memory_allocated() / 2**30, 2)
    del low, lopt
    torch.cuda.empty_cache()

    from diffusers import AutoencoderKL, UNet2DConditionModel, UniPCMultistepScheduler
    torch.cuda.reset_peak_memory_stats()
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, block_out_channels=(320, 640, 1280, 1280),
                                layers_per_block=2, attention_head_dim=8)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, sample_size=512, layers_per_block=2)
    dec = UnclipDecoder(unet, vae, UniPCMultistepScheduler(), device=dev, dtype=torch.float16)
    hidden = torch.randn(args.samples, 257, 768, device=dev, dtype=torch.float16)
    init = torch.rand(args.samples, 3, 512, 512, device=dev)
    s = _timed(lambda: dec.decode(hidden, steps=20, guidance_scale=3.5, init_images=init, img2img_strength=0.85), repeat=1)
    out["recon_s"], out["recon_samples"] = round(s, 2), args.samples
    out["recon_peak_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    save_result("gpu_real_size", out)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
