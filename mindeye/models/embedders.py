"""CLIP image embedders: the two targets MindEye regresses voxels onto, behind one interface.

``hidden(images) -> [B, T, D]`` (last-layer tokens through the final LayerNorm and visual projection,
divided by the CLS token's norm: Versatile Diffusion's conditioning, MindEye's ``--hidden`` target) and
``final(images) -> [B, D]`` (the L2-normalised CLIP image embedding, the ``--no-hidden`` target).
Images are uint8 ``[N, H, W, 3]`` or float ``[N, 3, H, W]`` in [0, 1].

- ``SceneCLIP`` (models/scene_clip.py): the demo's small CLIP, 65 x 128;
- ``HFClipEmbedder``: transformers ``CLIPVisionModelWithProjection`` from a local folder or the HF cache
  (openai/clip-vit-large-patch14: 257 x 768), exactly as V1's Clipper and VD's image-variation pipeline;
- ``OpenClipEmbedder``: an open_clip model (ViT-L-14) from a local checkpoint file.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.errors import DataError
from ..data.stream import to_model_input

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _prep(images, size: int, mean, std, device, dtype) -> torch.Tensor:
    x = images if isinstance(images, torch.Tensor) and images.dtype.is_floating_point else to_model_input(images, size)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x.float(), size=(size, size), mode="bicubic", antialias=True).clamp(0, 1)
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return ((x.to(device) - m) / s).to(dtype)


def normalize_hidden(tokens: torch.Tensor) -> torch.Tensor:
    """Divide every token by the CLS token's norm (V1 Clipper ``norm_embs``; VD's image prompt)."""
    return tokens / tokens[:, :1].norm(dim=-1, keepdim=True)


def open_clip_tokens(visual, x: torch.Tensor) -> torch.Tensor:
    """All last-layer tokens of an open_clip ``VisionTransformer`` through ``ln_post`` and ``proj``."""
    h = visual.transformer(visual._embeds(x))
    return visual.ln_post(h) @ visual.proj


class HFClipEmbedder:
    def __init__(self, model, image_size: int = 224, device="cpu", dtype=torch.float32):
        self.model = model.to(device, dtype).eval()
        self.image_size, self.device, self.dtype = image_size, torch.device(device), dtype

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = "openai/clip-vit-large-patch14", cache_dir=None,
                        device="cpu", dtype=torch.float32) -> "HFClipEmbedder":
        from transformers import CLIPVisionModelWithProjection
        try:
            model = CLIPVisionModelWithProjection.from_pretrained(str(name_or_path), cache_dir=cache_dir,
                                                                  local_files_only=True)
        except OSError as e:
            raise DataError(f"{name_or_path}: no local CLIP vision weights. Expected a transformers "
                            f"CLIPVisionModelWithProjection folder, e.g. Versatile Diffusion's image_encoder/ "
                            f"(train --vd_cache_dir VD_FOLDER), or a copy of openai/clip-vit-large-patch14 in the "
                            f"Hugging Face cache (nothing is downloaded here: HF_HUB_OFFLINE=1). "
                            f"transformers said: {type(e).__name__}: {' '.join(str(e).split())}") from e
        return cls(model, model.config.image_size, device, dtype)

    @property
    def hidden_shape(self):
        c = self.model.config
        return (c.image_size // c.patch_size) ** 2 + 1, c.projection_dim

    @torch.no_grad()
    def hidden(self, images, normalize: bool = True) -> torch.Tensor:
        x = _prep(images, self.image_size, OPENAI_MEAN, OPENAI_STD, self.device, self.dtype)
        out = self.model.vision_model(pixel_values=x)
        tokens = self.model.visual_projection(self.model.vision_model.post_layernorm(out.last_hidden_state))
        return (normalize_hidden(tokens) if normalize else tokens).float()

    @torch.no_grad()
    def final(self, images, normalize: bool = True) -> torch.Tensor:
        x = _prep(images, self.image_size, OPENAI_MEAN, OPENAI_STD, self.device, self.dtype)
        e = self.model(pixel_values=x).image_embeds.float()
        return F.normalize(e, dim=-1) if normalize else e


class OpenClipEmbedder:
    def __init__(self, model, device="cpu", dtype=torch.float32):
        self.model = model.to(device, dtype).eval()
        self.visual = model.visual
        size = self.visual.image_size
        self.image_size = size[0] if isinstance(size, (tuple, list)) else size
        self.device, self.dtype = torch.device(device), dtype

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path, model_name: str = "ViT-L-14", device="cpu", dtype=torch.float32):
        import open_clip
        if not Path(checkpoint).exists():
            raise DataError(f"{checkpoint}: no open_clip checkpoint there (expected a local {model_name} weights file)")
        model = open_clip.create_model(model_name, pretrained=str(checkpoint))
        return cls(model, device, dtype)

    @torch.no_grad()
    def hidden(self, images, normalize: bool = True) -> torch.Tensor:
        x = _prep(images, self.image_size, OPENAI_MEAN, OPENAI_STD, self.device, self.dtype)
        t = open_clip_tokens(self.visual, x)
        return (normalize_hidden(t) if normalize else t).float()

    @torch.no_grad()
    def final(self, images, normalize: bool = True) -> torch.Tensor:
        x = _prep(images, self.image_size, OPENAI_MEAN, OPENAI_STD, self.device, self.dtype)
        e = self.model.encode_image(x).float()
        return F.normalize(e, dim=-1) if normalize else e
