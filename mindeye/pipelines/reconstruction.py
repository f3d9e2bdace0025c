"""Brain -> image, MindEye V1's way.

voxels -> BrainNetwork -> diffusion prior (sampled) -> CLIP hidden tokens -> unCLIP decoder (Versatile
Diffusion's image-variation UNet, or the demo's), with img2img from the low-level model's picture
(voxels -> VAE latents -> VAE decoder) at ``strength`` (V1's convention: the fraction of the denoising schedule
that runs; 1 = no img2img, start from noise). ``n`` samples per trial are drawn in one batch and a second-order
selection keeps one: the sample whose CLIP tokens are nearest the tokens it was drawn from (the prior's sample),
i.e. the one the decoder rendered most faithfully. V1 instead keeps the sample nearest the BrainNetwork's
projector output (src/utils.py, ``reconstruction``); on SimNSD's val split that pick scored no better than ours
(bench/recon_selection.py), so ours stays, and it serves ridge and the true tokens, which have no projector.

The same drawing path serves every source of hidden tokens (``HiddenSource``): MindEye's prior
(``PriorHidden``), the ridge baseline (``RidgeHidden``), and the true image's tokens (``TrueHidden``, the
decoder's ceiling), so their reconstructions differ only in where the tokens came from.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ..data.errors import DataError
from ..models.embedders import normalize_hidden

from .settings import MAX_AVERAGE, MAX_SAMPLES, V1_GUIDANCE, V1_STEPS, V1_STRENGTH, check_settings  # noqa: F401  (MAX_SAMPLES re-exported)


class HiddenSource(Protocol):
    name: str
    # how far its tokens sit from the true ones (elementwise RMS, measured on val): a decoder trained with a
    # noise-level input (DecoderTrainConfig.level_input) is told it; 0 = exact tokens
    noise_level: float

    def hidden(self, voxels: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """voxels ``[B, V]`` -> CLIP hidden tokens ``[B, n, T, D]`` (CLS-norm normalised)."""


class PriorHidden:
    """MindEye: BrainNetwork backbone -> diffusion prior sampling (``steps`` of its DDPM chain).

    ``average`` k > 1: each of the ``n`` token sets is the mean of k prior draws (each CLS-norm normalised, the
    mean normalised again): it moves the sample towards the prior's posterior mean, trading the detail one draw
    invents for what every draw agrees on. It costs k times the prior's sampling. V1 draws one (k = 1)."""
    name = "mindeye"

    def __init__(self, prior, steps: int | None = None, guidance_scale: float = 1.0, average: int = 1,
                 noise_level: float = 0.0):
        if not hasattr(prior, "sample") or getattr(prior, "voxel2clip", None) is None:
            raise DataError("the MindEye hidden model has no diffusion prior; reconstruction needs the hidden model "
                            "with its prior (mindeye_hidden), not the final-layer model")
        if not (isinstance(average, (int, np.integer)) and 1 <= int(average) <= MAX_AVERAGE):
            raise DataError(f"prior draws averaged per sample must be an integer from 1 to {MAX_AVERAGE}, got {average!r}")
        self.prior, self.steps, self.guidance_scale, self.average = prior, steps, guidance_scale, int(average)
        self.noise_level = float(noise_level)

    @torch.no_grad()
    def backbone(self, voxels: torch.Tensor) -> torch.Tensor:
        return self.prior.voxel2clip(voxels)[0]

    @torch.no_grad()
    def hidden(self, voxels, n, generator):
        b = self.backbone(voxels)  # [B, T, D]
        k = self.average
        bb = b.repeat_interleave(n * k, dim=0)
        out = normalize_hidden(self.prior.sample(bb, steps=self.steps, guidance_scale=self.guidance_scale,
                                                 generator=generator).float())
        out = out.view(len(voxels), n, k, *out.shape[1:])
        if k == 1:
            return out[:, :, 0]
        return normalize_hidden(out.mean(2).flatten(0, 1)).view(len(voxels), n, *out.shape[3:])


class RidgeHidden:
    """The ridge baseline: a linear map from voxels to the hidden tokens (deterministic: one draw)."""
    name = "ridge"

    def __init__(self, ridge, noise_level: float = 0.0):
        self.ridge, self.noise_level = ridge, float(noise_level)

    @torch.no_grad()
    def hidden(self, voxels, n, generator):
        y = self.ridge.predict(voxels.float().cpu()).to(voxels.device)
        return normalize_hidden(y.float())[:, None].expand(-1, n, -1, -1)


class TrueHidden:
    """The decoder's ceiling: the seen image's own CLIP tokens (needs the images, not voxels)."""
    name = "true"
    noise_level = 0.0

    def __init__(self, embedder, images: torch.Tensor):
        self.embedder, self.images = embedder, images

    @torch.no_grad()
    def hidden(self, voxels, n, generator):
        h = self.embedder.hidden(self.images, normalize=True).float()
        return h[:, None].expand(-1, n, -1, -1)


@dataclass
class Reconstruction:
    samples: torch.Tensor  # [B, n, 3, H, W] in [0, 1]
    best: np.ndarray  # [B] index of the second-order pick among the n samples
    selection_scores: torch.Tensor  # [B, n] cosine(sample's CLIP tokens, the tokens it was drawn from)
    lowlevel: torch.Tensor | None  # [B, 3, h, w] the low-level model's picture (img2img init), or None
    hidden: torch.Tensor  # [B, n, T, D] the tokens each sample was drawn from
    strength: float
    source: str

    @property
    def picked(self) -> torch.Tensor:
        """``[B, 3, H, W]``: each trial's second-order pick."""
        return self.samples[torch.arange(len(self.best)), torch.as_tensor(self.best)]


class ReconstructionPipeline:
    """Holds its models on one device; safe to call from several threads (calls are serialised: the
    diffusion scheduler is stateful)."""

    def __init__(self, source: HiddenSource, decoder, embedder, lowlevel=None, vae=None):
        self.source, self.decoder, self.embedder, self.lowlevel = source, decoder, embedder, lowlevel
        self.vae = vae if vae is not None else decoder.vae
        self._lock = threading.Lock()

    @property
    def device(self):
        return self.decoder.device

    @torch.no_grad()
    def lowlevel_images(self, voxels: torch.Tensor) -> torch.Tensor | None:
        """The low-level model's pictures ``[B, 3, h, w]`` in [0, 1] (blurry layout and colour), or None."""
        if self.lowlevel is None:
            return None
        from ..models import autoencoder as AE
        p = next(self.lowlevel.parameters())
        lat = self.lowlevel(voxels.to(p.device, p.dtype))
        lat = lat[0] if isinstance(lat, tuple) else lat
        return AE.decode(self.vae, lat.to(self.vae.device, self.vae.dtype)).float().cpu()

    @torch.no_grad()
    def __call__(self, voxels, strength: float = V1_STRENGTH, n: int = 4, steps: int = V1_STEPS, guidance: float = V1_GUIDANCE,
                 seed: int = 0, progress=None) -> Reconstruction:
        check_settings(strength, n, steps, guidance)
        v = _voxels(voxels)
        with self._lock:
            hidden = self.source.hidden(v, int(n), torch.Generator("cpu").manual_seed(int(seed)))  # [B, n, T, D]
            return self._draw(v, hidden, strength, steps, guidance, seed, progress, self.source.noise_level)

    @torch.no_grad()
    def draw(self, voxels, hidden: torch.Tensor, strength: float = V1_STRENGTH, steps: int = V1_STEPS,
             guidance: float = V1_GUIDANCE, seed: int = 0, progress=None,
             noise_level: float | None = None) -> Reconstruction:
        """Decode given hidden tokens ``[B, n, T, D]`` (e.g. one source's draw, reused across strengths) with
        img2img from ``voxels``' low-level pictures; the same drawing as a call. ``noise_level``: how far off
        ``hidden`` is, when it did not come from this pipeline's source (None: the source's)."""
        check_settings(strength, hidden.shape[1], steps, guidance)
        level = self.source.noise_level if noise_level is None else noise_level
        with self._lock:
            return self._draw(_voxels(voxels), hidden, strength, steps, guidance, seed, progress, level)

    def _draw(self, v, hidden, strength, steps, guidance, seed, progress, noise_level) -> Reconstruction:
        b, n_, t, d = hidden.shape
        low = self.lowlevel_images(v) if float(strength) < 1.0 else None
        init = low.repeat_interleave(n_, dim=0) if low is not None else None
        samples = self.decoder.decode(hidden.reshape(b * n_, t, d), steps=int(steps), guidance_scale=float(guidance),
                                      init_images=init, img2img_strength=float(strength), seed=int(seed),
                                      progress=progress, noise_level=float(noise_level))
        samples = samples.view(b, n_, *samples.shape[1:])
        # second-order selection: the sample whose CLIP tokens are nearest the tokens it was drawn from
        emb = self.embedder.hidden(samples.flatten(0, 1), normalize=True).float().cpu()
        sel = F.cosine_similarity(emb.flatten(1), hidden.reshape(b * n_, -1).float().cpu(), dim=1).view(b, n_)
        return Reconstruction(samples, sel.argmax(1).numpy(), sel, low, hidden, float(strength), self.source.name)


def _voxels(voxels) -> torch.Tensor:
    v = torch.as_tensor(np.asarray(voxels) if not isinstance(voxels, torch.Tensor) else voxels).float()
    return v[None] if v.ndim == 1 else v
