"""The low-level pipeline's training (V1's train_autoencoder.py): voxels -> VAE latents with an L1 loss.

Targets are the bundle VAE's latents of each image (demo: 4 x 16 x 16 of the small VAE; real: SD's VAE,
4 x 64 x 64 of 512 px images, from ``--vae_path``), cached per image. Shares the run machinery of
``mindeye.train`` (Accelerate, metrics JSONL, atomic resumable checkpoints). Validation decodes the
predicted latents of the averaged test betas and reports PixCorr and SSIM against the stimuli.

``--synthetic_trials N`` adds trials of N images the subject never saw, as in ``train`` (``training/synthetic.py``):
the encoding model's predicted response plus real noise, labelled with the image's VAE latents.

``--use_reconst`` adds an L1 on the decoded image and ``--use_sobel_loss`` an L1 on its Sobel edges. The
soft contrastive term (``--use_cont``) needs ConvNeXt-XL features, whose weights are not available
offline; asking for it says so instead of silently training without it.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F

from .bundle import PROJECT_ROOT
from .data.errors import DataError
from .models import autoencoder as AE
from .bundle import cache_root
from .train import Run
from .train_config import LowLevelTrainConfig  # noqa: F401  (also imported from here)


def load_vae(cfg: LowLevelTrainConfig, bundle):
    from diffusers import AutoencoderKL
    path = cfg.vae_path or bundle.models.get("vae")
    if not path:
        raise DataError("train-lowlevel needs a VAE: pass --vae_path (a diffusers AutoencoderKL folder, e.g. SD's) "
                        "or use a bundle with models.vae")
    path = Path(path) if Path(path).is_absolute() else PROJECT_ROOT / path
    try:
        vae = AutoencoderKL.from_pretrained(path, local_files_only=True).float().eval()
    except (OSError, EnvironmentError) as e:
        raise DataError(f"{path}: not a diffusers AutoencoderKL folder ({str(e)[:200]})") from e
    # names the latent space (encoder weights + scaling factor): cached targets and shipped models are keyed on
    # it, not on the config alone; a decoder-only fine-tune of the VAE keeps it
    vae.encoder_sha256 = AE.encoder_sha256(vae)
    return vae


def sobel(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]], device=x.device)
    kx = k.view(1, 1, 3, 3).repeat(x.shape[1], 1, 1, 1)
    gx = F.conv2d(x, kx, padding=1, groups=x.shape[1])
    gy = F.conv2d(x, kx.transpose(2, 3), padding=1, groups=x.shape[1])
    return torch.sqrt(gx ** 2 + gy ** 2 + 1e-8)


def vae_latents(vae, images, pixel_size: int) -> torch.Tensor:
    """uint8 images ``[N, H, W, 3]`` -> the VAE's scaled latents, at the VAE's own input size."""
    from .data.stream import to_model_input
    with torch.no_grad():
        return AE.encode(vae, to_model_input(images, pixel_size))


class VaeTargets:
    """Synthetic trials' targets for the low-level pipeline (``training.synthetic.SyntheticTargets``): the VAE
    latents of the unseen images, as ``make_targets`` computes them for the seen ones."""

    def __init__(self, vae, pixel_size: int, vae_tag: str):
        self.vae, self.pixel_size, self.key = vae, pixel_size, f"vae {vae_tag}"

    def __call__(self, images, x, h, f):
        return vae_latents(self.vae, images, self.pixel_size)


class LowLevelRun(Run):
    def __init__(self, cfg: LowLevelTrainConfig, log=print):
        if cfg.use_cont:
            raise DataError(f"--use_cont needs ConvNeXt features (--cont_model {cfg.cont_model}), whose weights are "
                            "not available offline; train without it or add a local ConvNeXt-XL")
        if cfg.use_blurred_training:
            raise DataError("--use_blurred_training is not supported by this implementation")
        if cfg.use_sobel_loss and not cfg.use_reconst:
            raise DataError("--use_sobel_loss works on decoded images: add --use_reconst")
        super().__init__(cfg, log)

    def make_targets(self):
        from .atomic import atomic_save
        from .data.stream import to_model_input
        self.vae = load_vae(self.cfg, self.bundle)
        self.pixel_size = self.vae.config.sample_size
        cache = cache_root() / "vae_targets"
        key = json_key(self.vae.config) + self.vae.encoder_sha256
        vae_tag = self.vae_tag = hashlib.sha256(key.encode()).hexdigest()[:10]
        out = []
        for name, ids in (("train", self.train_ids), ("val", self.val_ids), ("test", self.test_ids)):
            path = cache / f"{self.fingerprint}_{vae_tag}_{name}.pt"
            lat = None
            if path.exists():
                try:
                    lat = torch.load(path, weights_only=True)
                except Exception:
                    path.unlink(missing_ok=True)
            if lat is None:
                lat = torch.cat([vae_latents(self.vae, self.subject.images(ids[i:i + 128]), self.pixel_size)
                                 for i in range(0, len(ids), 128)])
                cache.mkdir(parents=True, exist_ok=True)
                atomic_save(lat, path, torch.save)
            out.append(lat)
        self.data_info["vae"] = {"scaling_factor": self.vae.config.scaling_factor, "sample_size": self.pixel_size,
                                 "encoder_sha256": self.vae.encoder_sha256}
        self.eval_images = {name: to_model_input(self.subject.images(ids[:300]), self.pixel_size)
                            for name, ids in (("val", self.val_ids), ("test", self.test_ids))}
        return out[0][:, None], out[1], out[2]

    def synthetic_targets(self, embedder):
        """Synthetic trials (``--synthetic_trials``) are labelled with the unseen images' VAE latents."""
        return VaeTargets(self.vae, self.pixel_size, self.vae_tag)

    def build_model(self):
        from .checkpoints import build_from_config
        return build_from_config(dataclasses.asdict(self.cfg), self.data_info)

    def _decode(self, latents):
        return AE.decode(self.vae, latents)

    def train_step(self, vox, target, epoch, g):
        cfg = self.cfg
        with self.acc.autocast():
            pred = self.model(vox)
            loss = F.l1_loss(pred, target)
            if cfg.use_reconst:
                img, true = self._decode(pred), self._decode(target)
                loss = loss + F.l1_loss(img, true)
                if cfg.use_sobel_loss:
                    loss = loss + 0.1 * F.l1_loss(sobel(img), sobel(true))
        self.opt.zero_grad(set_to_none=True)
        self.acc.backward(loss)
        self.opt.step()
        self.sched.step()
        return loss.item(), loss.item(), 0.0

    @property
    def v2c(self):
        return self.acc.unwrap_model(self.model)

    def score(self, ev):
        return ev["val_pixcorr"]

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict:
        """PixCorr / SSIM of decoded predictions on (the first 300 images of) val, which picks best.pth, and
        test, reported beside it; L1 latent loss on val."""
        from .metrics import pixcorr, ssim
        self.model.eval()
        m = self.acc.unwrap_model(self.model)
        out = {}
        for name, betas, targets in (("val", self.val_betas, self.val_targets), ("test", self.test_betas, self.test_targets)):
            images = self.eval_images[name]
            n = len(images)
            pred = torch.cat([m(betas[i:i + 100].to(self.device)).float().cpu() for i in range(0, n, 100)])
            if name == "val":
                out["val_loss"] = round(float(F.l1_loss(pred, targets[:n])), 5)
            imgs = torch.cat([self._decode(pred[i:i + 100]) for i in range(0, n, 100)])
            out[f"{name}_pixcorr"] = round(pixcorr(imgs, images), 4)
            out[f"{name}_ssim"] = round(ssim(imgs, images), 4)
        self.model.train()
        return out


def json_key(config) -> str:
    import json
    return json.dumps({k: v for k, v in dict(config).items() if not k.startswith("_")}, sort_keys=True, default=str)


def train_lowlevel(cfg: LowLevelTrainConfig, log=print) -> dict:
    run = LowLevelRun(cfg, log=log)
    log(f"training {cfg.model_name} (low-level): {run.n_params / 1e6:.1f}M parameters, {len(run.train_ids)} train "
        f"images, {run.steps_per_epoch} steps/epoch, target VAE latents {tuple(run.test_targets.shape[1:])}")
    return run.fit()
