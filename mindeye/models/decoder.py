"""The unCLIP decoder: latent diffusion from CLIP hidden states to an image (img2img optional).

One loop serves both worlds, differing only in the weights folder, which has Versatile Diffusion's layout
(``image_unet/``, ``vae/``, ``scheduler/``):

- real: ``shi-labs/versatile-diffusion`` from ``--vd_cache_dir`` (its image-variation UNet cross-attends to
  257 x 768 CLIP ViT-L/14 hidden states normalised by the CLS norm; MindEye feeds it brain-predicted ones);
- demo: ``assets/demo/decoder``, the small UNet + VAE this project trains on SimNSD scenes (65 x 128).

Sampling follows MindEye V1's reconstruction loop: UniPC, classifier-free guidance against a zero
embedding, and img2img that starts from the low-level image's noised latent at ``img2img_strength``.

The demo UNet reads its condition twice: it cross-attends to all hidden tokens, like VD, and it also takes
the patch tokens laid out on their grid (upsampled to the latent size) as extra input channels: a
"token-grid" input. Cross-attention alone has no position signal to map a patch token back to its place in
the image, and a UNet trained for an hour on a CPU did not learn one (its reconstructions ignored where the
objects were). Whether a UNet takes the grid is read off its config: ``in_channels`` = VAE latent channels
+ ``cross_attention_dim``. Versatile Diffusion's UNet has ``in_channels`` = 4, so the real path is unchanged.

Hidden states normalised by the CLS norm have a per-channel scale of about 1/sqrt(D) (0.08 for D = 128).
A freshly initialised UNet then sees a near-zero condition: near-uniform attention and a token grid far
below the latents' unit scale, which Adam takes ~1000 steps to grow out of. The demo decoder multiplies
the condition by ``condition_scale`` = sqrt(D) before the UNet, stored in ``decoder_config.json`` beside
the weights; a folder without that file (Versatile Diffusion) uses 1, the scale its UNet was trained at.

Brain-predicted tokens are far from the true ones (a prior sample's RMS error is about three quarters of the
tokens' own RMS on SimNSD), and a decoder trained on true tokens alone draws them badly. Conditioning augmentation
(``DecoderTrainConfig.cond_noise``) trains it on noised tokens too. With ``level_input`` the UNet is also told the
noise level, through its class embedding on the timestep features (as cascaded diffusion models are told their
augmentation level, Ho et al. 2022): at sampling time ``noise_level`` says how far off the tokens are (0 for true
tokens, the brain source's measured error for predicted ones), so one decoder keeps its ceiling on true tokens and
still learns to draw from imprecise ones. ``noise_level_scale`` in ``decoder_config.json`` maps a level to the
embedding's 0-1000 range (1000 = the largest level trained); a UNet without the embedding ignores the level.
"""
from __future__ import annotations

import glob
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.errors import DataError
from ..data.stream import VISION_ID_BASE, SceneStream, loader, to_model_input
from . import autoencoder as AE
from ..training.fit import fit

DECODER_ID_OFFSET = 40_000_000
VD_REPO = "shi-labs/versatile-diffusion"


def resolve_vd_folder(path: Path | str) -> Path:
    """A folder with ``image_unet/``: the path itself, or the VD snapshot inside a Hugging Face cache dir."""
    path = Path(path)
    if (path / "image_unet").is_dir():
        return path
    snaps = sorted(glob.glob(str(path / f"models--{VD_REPO.replace('/', '--')}" / "snapshots" / "*")))
    for s in snaps:
        if (Path(s) / "image_unet").is_dir():
            return Path(s)
    raise DataError(f"{path}: no Versatile Diffusion weights (expected image_unet/, vae/, scheduler/ there, or a "
                    f"Hugging Face cache holding {VD_REPO}); download them on a machine with internet access")


def token_grid(hidden: torch.Tensor, size: int) -> torch.Tensor:
    """Hidden states ``[B, 1 + g*g, D]`` (CLS first, then a g x g patch grid in raster order) ->
    ``[B, D, size, size]``: the patch tokens at their image positions, bilinearly resized to the latent size."""
    b, t, d = hidden.shape
    g = int(round((t - 1) ** 0.5))
    if g * g != t - 1:
        raise ValueError(f"a token-grid input needs CLS + a square patch grid; found {t} tokens ({t - 1} patches)")
    grid = hidden[:, 1:].transpose(1, 2).reshape(b, d, g, g)
    return grid if g == size else F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)


def unet_input(unet, latents: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """The UNet's input: the latents, plus the token grid when the UNet was built to take one."""
    extra = unet.config.in_channels - latents.shape[1]
    if extra == 0:
        return latents
    if extra != hidden.shape[-1]:
        raise ValueError(f"this UNet takes {unet.config.in_channels} input channels: {latents.shape[1]} latent + "
                         f"{extra} token-grid channels, but the hidden states have {hidden.shape[-1]}")
    return torch.cat([latents, token_grid(hidden, latents.shape[-1]).to(latents.dtype)], dim=1)


DECODER_CONFIG = "decoder_config.json"


class UnclipDecoder:
    def __init__(self, unet, vae, scheduler, device="cpu", dtype=torch.float32, condition_scale: float = 1.0,
                 noise_level_scale: float | None = None):
        self.unet, self.vae, self.scheduler = unet.to(device, dtype).eval(), vae.to(device, dtype).eval(), scheduler
        self.device, self.dtype = torch.device(device), dtype
        self.condition_scale = float(condition_scale)
        if self.takes_noise_level and not noise_level_scale:
            raise DataError("this UNet takes a conditioning noise level (class_embed_type 'timestep') but no "
                            f"noise_level_scale was given (expected it in {DECODER_CONFIG})")
        self.noise_level_scale = float(noise_level_scale) if self.takes_noise_level else None

    @property
    def takes_noise_level(self) -> bool:
        return self.unet.config.class_embed_type == "timestep"

    def level_labels(self, noise_level: float, batch: int) -> torch.Tensor | None:
        """The UNet's class labels for tokens ``noise_level`` off (elementwise RMS), or None for a UNet without
        a level input."""
        if not self.takes_noise_level:
            return None
        if not noise_level >= 0:
            raise ValueError(f"a conditioning noise level is an RMS error >= 0, got {noise_level!r}")
        return torch.full((batch,), float(noise_level) * self.noise_level_scale, device=self.device)

    @property
    def uses_token_grid(self) -> bool:
        return self.unet.config.in_channels != self.vae.config.latent_channels

    @classmethod
    def from_pretrained(cls, folder: Path | str, device="cpu", dtype=torch.float32) -> "UnclipDecoder":
        from diffusers import AutoencoderKL, UNet2DConditionModel, UniPCMultistepScheduler
        root = resolve_vd_folder(folder)
        unet = UNet2DConditionModel.from_pretrained(root / "image_unet", local_files_only=True)
        vae = AutoencoderKL.from_pretrained(root / "vae", local_files_only=True)
        scheduler = UniPCMultistepScheduler.from_pretrained(root / "scheduler", local_files_only=True)
        extra = json.loads((root / DECODER_CONFIG).read_text()) if (root / DECODER_CONFIG).exists() else {}
        return cls(unet, vae, scheduler, device, dtype, condition_scale=extra.get("condition_scale", 1.0),
                   noise_level_scale=extra.get("noise_level_scale"))

    def save_pretrained(self, folder: Path | str, fp16: bool = True) -> None:
        from ..atomic import atomic_dir
        with atomic_dir(Path(folder)) as tmp:
            for name, m in (("image_unet", self.unet), ("vae", self.vae)):
                (m.half() if fp16 else m).save_pretrained(tmp / name, safe_serialization=True)
                m.to(self.dtype)
            self.scheduler.save_pretrained(tmp / "scheduler")
            extra = {"condition_scale": self.condition_scale}
            if self.noise_level_scale is not None:
                extra["noise_level_scale"] = self.noise_level_scale
            (tmp / DECODER_CONFIG).write_text(json.dumps(extra, indent=1) + "\n")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        s = self.unet.config.sample_size
        return self.vae.config.latent_channels, s, s

    def encode_images(self, images01: torch.Tensor) -> torch.Tensor:
        return AE.encode(self.vae, images01.to(self.device, self.dtype))

    @torch.no_grad()
    def decode(self, hidden: torch.Tensor, steps: int = 20, guidance_scale: float = 3.5,
               init_images: torch.Tensor | None = None, img2img_strength: float = 0.85, seed: int = 0,
               progress=None, noise_level: float = 0.0) -> torch.Tensor:
        """CLIP hidden states ``[B, T, D]`` -> images ``[B, 3, H, W]`` in [0, 1].

        ``init_images`` (``[B, 3, h, w]`` in [0, 1], e.g. the low-level reconstruction) switches on img2img:
        only the last ``img2img_strength`` of the schedule runs, from their noised latents. ``noise_level``: how
        far off the tokens are (their expected elementwise RMS error; 0 = true tokens), for a UNet trained with
        ``level_input``; others ignore it."""
        d = self.unet.config.cross_attention_dim
        if hidden.ndim != 3 or hidden.shape[-1] != d:
            raise ValueError(f"expected CLIP hidden states [B, T, {d}] for this decoder, found {tuple(hidden.shape)}")
        cond = hidden.to(self.device, self.dtype) * self.condition_scale
        b = cond.shape[0]
        g = torch.Generator("cpu").manual_seed(seed)
        sched = self.scheduler
        sched.set_timesteps(steps, device=self.device)
        timesteps = sched.timesteps
        c, h, w = self.latent_shape
        noise = torch.randn((b, c, h, w), generator=g).to(self.device, self.dtype)
        if init_images is not None:
            strength = float(np.clip(img2img_strength, 0.0, 1.0))
            n_run = min(max(int(round(steps * strength)), 1), steps)
            t_start = steps - n_run
            timesteps = timesteps[t_start * sched.order:]
            if hasattr(sched, "set_begin_index"):
                sched.set_begin_index(t_start * sched.order)
            x0 = init_images.to(self.device, self.dtype)
            if x0.shape[-1] != h * (self.vae_scale):
                x0 = F.interpolate(x0, size=(h * self.vae_scale,) * 2, mode="bilinear", antialias=True)
            latents = sched.add_noise(self.encode_images(x0), noise, timesteps[:1].repeat(b))
        else:
            latents = noise * sched.init_noise_sigma
        uncond = torch.zeros_like(cond)
        labels = self.level_labels(noise_level, 2 * b if guidance_scale > 1 else b)
        it = progress(timesteps) if progress else timesteps
        for t in it:
            inp = torch.cat([latents] * 2) if guidance_scale > 1 else latents
            inp = sched.scale_model_input(inp, t)
            emb = torch.cat([uncond, cond]) if guidance_scale > 1 else cond
            pred = self.unet(unet_input(self.unet, inp, emb), t, encoder_hidden_states=emb, class_labels=labels).sample
            if guidance_scale > 1:
                pu, pc = pred.chunk(2)
                pred = pu + guidance_scale * (pc - pu)
            latents = sched.step(pred, t, latents).prev_sample
        return AE.decode(self.vae, latents).float().cpu()

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


# ------------------------------------------------------------------ training the demo decoder

@dataclass
class DecoderTrainConfig:
    steps: int = 2400
    batch_size: int = 32
    lr: float = 1e-3
    cond_drop: float = 0.1
    # conditioning augmentation (as cascaded diffusion models noise their low-resolution condition, Ho et al. 2022):
    # each sample's normalised tokens get Gaussian noise of std u * cond_noise, u ~ U(0, 1), so the decoder learns
    # to draw from tokens as far off as a brain-predicted draw (bench/decoder_cond_noise.py measures that distance)
    cond_noise: float = 0.0
    # tell the UNet each sample's noise level (a class embedding on timestep features); needs cond_noise > 0
    level_input: bool = False
    # the fraction of samples whose tokens stay clean (level 0): u ~ U(0, 1) alone almost never draws a clean
    # condition, and the decoder's true-token ceiling is drawn at exactly that level
    cond_clean_frac: float = 0.0
    min_snr_gamma: float = 5.0
    block_out_channels: tuple = (64, 128, 192)
    attention_head_dim: int = 32
    token_grid: bool = True  # also feed the patch tokens on their grid as input channels (see the module doc)
    scale_condition: bool = True  # multiply the condition by sqrt(D) before the UNet (see the module doc)
    seed: int = 0
    log_every: int = 50


def build_unet(cross_attention_dim: int, sample_size: int = 16, in_channels: int = 4,
               block_out_channels=(96, 192, 256), attention_head_dim: int = 32, token_grid: bool = False,
               level_input: bool = False):
    from diffusers import UNet2DConditionModel
    n = len(block_out_channels)
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=in_channels + (cross_attention_dim if token_grid else 0),
        out_channels=in_channels, layers_per_block=1,
        block_out_channels=tuple(block_out_channels),
        # attention only below full latent resolution: CPU-affordable, and the 8 x 8 level matches the
        # SceneCLIP patch grid the cross-attention has to map back to image positions
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        cross_attention_dim=cross_attention_dim, attention_head_dim=attention_head_dim, norm_num_groups=32,
        class_embed_type="timestep" if level_input else None)  # the conditioning noise level, on timestep features


def training_scheduler():
    from diffusers import DDPMScheduler
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")


def _collate(scenes, images, captions, labels, step):
    return to_model_input(images)


@torch.no_grad()
def _encode_bank(bank, clip, vae, chunk: int = 500):
    """CLIP hidden states (fp16) and the VAE posterior's mean and std for every scene of a ``SceneBank``:
    the UNet then trains on cached conditions instead of re-running two frozen encoders every step."""
    from tqdm import tqdm
    conds, means, stds = [], [], []
    dev = next(vae.parameters()).device
    for i in tqdm(range(0, len(bank), chunk), desc="encoding scene bank", unit="chunk"):
        x = to_model_input(bank.images[i:i + chunk]).to(dev)
        conds.append(clip.hidden(x).half().cpu())
        post = vae.encode(x * 2 - 1).latent_dist
        means.append(post.mean.cpu()), stds.append(post.std.cpu())
    return torch.cat(conds), torch.cat(means), torch.cat(stds)


def _bank_batches(bank, clip, vae, cfg, g):
    cond, mean, std = _encode_bank(bank, clip, vae)
    sf = vae.config.scaling_factor
    for _ in range(cfg.steps):
        idx = torch.randint(0, len(bank), (cfg.batch_size,), generator=g)
        m = mean[idx]
        z = m + std[idx] * torch.randn(m.shape, generator=g)
        yield cond[idx].float(), z * sf


def _stream_batches(clip, vae, cfg, g, workers):
    stream = SceneStream(cfg.batch_size, cfg.steps, _collate, seed=cfg.seed,
                         first_id=VISION_ID_BASE + DECODER_ID_OFFSET)
    dev = next(vae.parameters()).device
    for x in loader(stream, workers):
        with torch.no_grad():  # (yielding inside the block would leave grad off for the caller's training step)
            x = x.to(dev)
            batch = clip.hidden(x).cpu(), AE.encode(vae, x, sample=True, generator=g if dev.type == "cpu" else None).cpu()
        yield batch


def condition_levels(n: int, cfg: DecoderTrainConfig, g: torch.Generator) -> torch.Tensor:
    """Each sample's conditioning noise std ``[n]``: ``u * cond_noise`` with u ~ U(0, 1), and exactly 0 for a
    ``cond_clean_frac`` share of the samples."""
    level = torch.rand(n, generator=g) * cfg.cond_noise
    if cfg.cond_clean_frac > 0:
        level = level * (torch.rand(n, generator=g) >= cfg.cond_clean_frac)
    return level


def train_decoder(cfg: DecoderTrainConfig, clip, vae, log=print, workers: int = 1, bank=None,
                  device="cpu", init: UnclipDecoder | None = None) -> tuple[UnclipDecoder, dict]:
    """Train the small image-variation UNet on ``clip.hidden`` of scenes (v-prediction, min-SNR): a cached
    ``SceneBank`` when given, else freshly rendered scenes. ``init``: fine-tune that decoder's UNet (a copy) instead
    of starting from random weights; ``cfg``'s architecture fields are then ignored."""
    import copy

    from diffusers import UniPCMultistepScheduler
    torch.manual_seed(cfg.seed)
    if cfg.level_input and not cfg.cond_noise > 0:
        raise ValueError(f"level_input needs conditioning noise to tell the UNet about; cond_noise is {cfg.cond_noise}")
    if init is not None:
        if init.takes_noise_level != cfg.level_input:
            raise ValueError(f"cannot fine-tune a decoder {'with' if init.takes_noise_level else 'without'} a noise-level "
                             f"input with level_input={cfg.level_input}")
        unet = copy.deepcopy(init.unet).float().requires_grad_(True)
    else:
        vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        latent_size = vae.config.sample_size // vae_scale
        unet = build_unet(clip.embed_dim, latent_size, vae.config.latent_channels, cfg.block_out_channels,
                          cfg.attention_head_dim, cfg.token_grid, cfg.level_input)
    # a level's class label: the trained range [0, cond_noise] onto the timestep features' [0, 1000] (a fine-tune
    # keeps its init's mapping)
    level_scale = init.noise_level_scale if init is not None else (1000.0 / cfg.cond_noise if cfg.level_input else None)
    noise_sched = training_scheduler()
    alphas = noise_sched.alphas_cumprod
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    clip.to(device).eval(), vae.to(device).eval()
    unet.to(device)
    alphas = alphas.to(device)
    scale = float(clip.embed_dim) ** 0.5 if cfg.scale_condition else 1.0
    g = torch.Generator().manual_seed(cfg.seed)
    batches = _bank_batches(bank, clip, vae, cfg, g) if bank is not None else _stream_batches(clip, vae, cfg, g, workers)
    unet.train()

    def step_fn(step, batch):
        cond, z0 = batch
        labels = None
        if cfg.cond_noise > 0:
            level = condition_levels(len(cond), cfg, g)[:, None, None]
            cond = cond + level.to(cond.device) * torch.randn(cond.shape, generator=g).to(cond.device)
            if level_scale is not None:
                labels = (level.flatten() * level_scale).to(z0.device)
        cond = cond * scale
        drop = (torch.rand(len(z0), generator=g) < cfg.cond_drop).to(z0.device)  # draws on the CPU: one stream
        cond = torch.where(drop[:, None, None], torch.zeros_like(cond), cond)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (len(z0),), generator=g).to(z0.device)
        eps = torch.randn(z0.shape, generator=g).to(z0.device)
        zt = noise_sched.add_noise(z0, eps, t)
        target = noise_sched.get_velocity(z0, eps, t)
        pred = unet(unet_input(unet, zt, cond), t, encoder_hidden_states=cond, class_labels=labels).sample
        snr = alphas[t] / (1 - alphas[t])
        w = torch.clamp(snr, max=cfg.min_snr_gamma) / (snr + 1)
        loss = (w * F.mse_loss(pred, target, reduction="none").mean((1, 2, 3))).mean()
        return loss, {"loss": loss.item()}

    seconds = fit("decoder", batches, cfg.steps, step_fn, opt, clip_params=unet.parameters(), sched=sched,
                  log_every=cfg.log_every, log=log, device=device)
    unet.cpu(), clip.cpu(), vae.cpu()
    sampler = UniPCMultistepScheduler.from_config(noise_sched.config)
    from .autoencoder import encoder_sha256
    meta = {"train": {**asdict(cfg), "block_out_channels": list(cfg.block_out_channels)},
            "train_seconds": round(seconds, 1), "vae_encoder_sha256": encoder_sha256(vae)}
    return UnclipDecoder(unet.eval(), vae, sampler, condition_scale=scale, noise_level_scale=level_scale), meta
