"""The demo VAE: a small diffusers ``AutoencoderKL`` for 64 x 64 scenes (latent 4 x 16 x 16).

It plays the part of Stable Diffusion's VAE in MindEye: the low-level pipeline predicts its latents from
voxels, and the unCLIP decoder runs its diffusion in its latent space. Saved with ``save_pretrained``;
``scaling_factor`` is measured on training scenes so scaled latents have unit variance, as in SD.

Two phases, as Stable Diffusion's VAE got: ``train_vae`` trains the whole autoencoder, then
``finetune_decoder`` trains the decoder alone with the encoder frozen (SD's ft-MSE recipe). Phase 2 leaves
the latent space untouched (``encoder_sha256`` names it), so models built on the latents -- the unCLIP UNet,
the low-level voxel->latent model -- stay valid across it.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data.stream import VISION_ID_BASE, SceneStream, loader, render_batch, to_model_input
from ..training.fit import fit

VAE_ID_OFFSET = 20_000_000  # the VAE sees its own scenes, disjoint from the CLIP's and the test set


def build_vae(block_out_channels=(16, 32, 64), layers_per_block: int = 1, latent_channels: int = 4,
              sample_size: int = 64):
    from diffusers import AutoencoderKL
    return AutoencoderKL(in_channels=3, out_channels=3,
                         down_block_types=("DownEncoderBlock2D",) * len(block_out_channels),
                         up_block_types=("UpDecoderBlock2D",) * len(block_out_channels),
                         block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
                         latent_channels=latent_channels, norm_num_groups=16, sample_size=sample_size,
                         mid_block_add_attention=False)


def encode(vae, images01: torch.Tensor, sample: bool = False, generator=None) -> torch.Tensor:
    """Images in [0, 1] ``[B, 3, H, W]`` -> scaled latents (``* scaling_factor``, as SD's pipelines)."""
    dist = vae.encode(images01 * 2 - 1).latent_dist
    z = dist.sample(generator) if sample else dist.mean
    return z * vae.config.scaling_factor


def decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents -> images in [0, 1]."""
    return ((vae.decode(latents / vae.config.scaling_factor).sample + 1) / 2).clamp(0, 1)


@dataclass
class VAETrainConfig:
    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-3
    kl_weight: float = 1e-6
    seed: int = 0
    log_every: int = 50
    block_out_channels: tuple = (16, 32, 64)
    layers_per_block: int = 1
    latent_channels: int = 4


def _collate(scenes, images, captions, labels, step):
    return to_model_input(images)


def train_vae(cfg: VAETrainConfig, log=print, workers: int = 1, bank=None, device="cpu"):
    """Train the demo VAE (L1 + MSE + a tiny KL) on a ``SceneBank`` when given, else on freshly rendered scenes,
    on ``device``; the model comes back on the CPU."""
    torch.manual_seed(cfg.seed)
    vae = build_vae(cfg.block_out_channels, cfg.layers_per_block, cfg.latent_channels)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    stream = SceneStream(cfg.batch_size, cfg.steps, _collate, seed=cfg.seed, first_id=VISION_ID_BASE + VAE_ID_OFFSET,
                         bank=bank)
    vae.to(device).train()

    def step_fn(step, x):
        post = vae.encode(x * 2 - 1).latent_dist
        rec = (vae.decode(post.sample()).sample + 1) / 2
        l1, mse = (rec - x).abs().mean(), F.mse_loss(rec, x)
        kl = post.kl().mean() / x[0].numel()
        return l1 + mse + cfg.kl_weight * kl * x[0].numel(), {"l1": l1.item(), "mse": mse.item()}

    seconds = fit("vae", loader(stream, workers), cfg.steps, step_fn, opt, clip_params=vae.parameters(), sched=sched,
                  log_every=cfg.log_every, log=log, device=device)
    vae.eval()
    # scaling factor: 1 / std of the latents over fresh scenes (SD: 0.18215 measured the same way)
    with torch.no_grad():
        ids = VISION_ID_BASE + VAE_ID_OFFSET - 256 + np.arange(256)
        xs = to_model_input(render_batch(ids)[1]).to(device)
        z = vae.encode(xs * 2 - 1).latent_dist.mean
    vae.cpu().register_to_config(scaling_factor=float(1.0 / z.std()))
    return vae, {"train": {**asdict(cfg), "block_out_channels": list(cfg.block_out_channels)},
                 "train_seconds": round(seconds, 1), "latent_std": float(z.std())}


def encoder_sha256(vae) -> str:
    """Names the latent space: a hash of the encoder's and quant_conv's weights and the scaling factor.

    Equal for a VAE before and after ``finetune_decoder``; the low-level model and its cached targets are
    keyed on it, since they depend on what the encoder produces and on nothing the decoder does. Weights are
    hashed rounded to fp16, so a VAE and its fp16 copy (how bundles ship it) name the same latent space."""
    h = hashlib.sha256(repr(float(vae.config.scaling_factor)).encode())
    for part in (vae.encoder, vae.quant_conv):
        if part is None:
            continue
        for name, t in sorted(part.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().half().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass
class VAEDecoderFinetuneConfig:
    steps: int = 1200
    batch_size: int = 32
    lr: float = 1e-3
    chroma_weight: float = 2.0  # weight of the L1 on the colour-difference (Cb, Cr) channels of the error
    seed: int = 1
    log_every: int = 50


# RGB -> (Cb, Cr) rows of the ITU-R BT.601 YCbCr transform
_CBCR = torch.tensor([[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def chroma_l1(rec: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 of the error's colour-difference channels: hue shifts (purple -> blue, red -> orange) cost little in
    RGB L1 next to background texture, and they are what a person naming the object's colour sees."""
    return torch.einsum("ij,bjhw->bihw", _CBCR.to(rec), rec - target).abs().mean()


def finetune_decoder(vae, cfg: VAEDecoderFinetuneConfig, log=print, workers: int = 1, bank=None, device="cpu"):
    """Phase 2: train ``vae.decoder`` (+ ``post_quant_conv``) on posterior samples of the frozen encoder with
    L1 + MSE + ``chroma_weight`` x chroma L1. Returns ``(vae, meta)``; the latent space is unchanged."""
    torch.manual_seed(cfg.seed)
    before = encoder_sha256(vae)
    params = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    vae.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    stream = SceneStream(cfg.batch_size, cfg.steps, _collate, seed=cfg.seed, first_id=VISION_ID_BASE + VAE_ID_OFFSET,
                         bank=bank)
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    vae.to(device).eval()  # no dropout or batch norm in the AutoencoderKL; eval keeps the frozen encoder deterministic

    def step_fn(step, x):
        with torch.no_grad():
            z = vae.encode(x * 2 - 1).latent_dist.sample(g)
        rec = (vae.decode(z).sample + 1) / 2
        l1, mse, chroma = (rec - x).abs().mean(), F.mse_loss(rec, x), chroma_l1(rec, x)
        return l1 + mse + cfg.chroma_weight * chroma, {"l1": l1.item(), "mse": mse.item(), "chroma_l1": chroma.item()}

    seconds = fit("vae_decoder", loader(stream, workers), cfg.steps, step_fn, opt, clip_params=params, sched=sched,
                  log_every=cfg.log_every, log=log, device=device)
    vae.cpu()
    vae.requires_grad_(False)
    if encoder_sha256(vae) != before:
        raise RuntimeError("the VAE decoder fine-tune changed the encoder: the latent space must not move")
    return vae, {"decoder_finetune": asdict(cfg), "finetune_seconds": round(seconds, 1),
                 "encoder_sha256": before}
