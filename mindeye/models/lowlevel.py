"""Low-level ("blurry reconstruction") pathway of MindEye V1: voxels -> Stable Diffusion VAE latents.

``Voxel2VAE`` at V1 sizes has the parameters of the released ``autoencoder_subj01_4x_locont_no_reconst``
checkpoint. That checkpoint was saved with diffusers 0.13, whose VAE mid-block attention was named
``query/key/value/proj_attn``; current diffusers uses ``to_q/to_k/to_v/to_out.0``.
``convert_v1_lowlevel_state_dict`` maps the old names to the new ones (``Voxel2VAE.load_v1_state_dict`` applies it).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.autoencoders.vae import Decoder
from torch import nn

_OLD_TO_NEW = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def _rename(sd: dict, mapping: dict) -> dict:
    out = {}
    for k, v in sd.items():
        for old, new in mapping.items():
            marker = f".attentions.0.{old}."
            if marker in k and ".mid_block." in f".{k}":
                k = k.replace(marker, f".attentions.0.{new}.")
                break
        out[k] = v
    return out


def convert_v1_lowlevel_state_dict(sd: dict) -> dict:
    """diffusers-0.13 VAE attention names (``query``, ``key``, ``value``, ``proj_attn``) -> current names."""
    return _rename(sd, _OLD_TO_NEW)


def to_v1_lowlevel_state_dict(sd: dict) -> dict:
    """Inverse of :func:`convert_v1_lowlevel_state_dict` (current names -> diffusers-0.13 names)."""
    return _rename(sd, {v: k for k, v in _OLD_TO_NEW.items()})


@dataclass
class LowLevelConfig:
    n_voxels: int = 15724
    hidden: int = 4096
    n_blocks: int = 4
    use_cont: bool = True
    # the fields below are fixed in V1; configurable only so tests can build tiny models
    map_channels: int = 64  # channels of the voxel feature map fed to the decoder
    map_size: int = 16  # side of that feature map (latents come out 4x larger: 64)
    block_out_channels: tuple[int, ...] = (64, 128, 256)
    norm_num_groups: int = 32
    latent_channels: int = 4
    proj_dim: int = 512  # maps_projector width
    drop_in: float = 0.5
    drop_block: float = 0.25


class Voxel2VAE(nn.Module):
    """voxels ``[B, V]`` -> SD VAE latents ``[B, 4, 64, 64]`` (V1 "4x" upsampling mode)."""

    def __init__(self, config: LowLevelConfig | None = None, **overrides):
        super().__init__()
        cfg = config or LowLevelConfig()
        if overrides:
            cfg = LowLevelConfig(**{**cfg.__dict__, **overrides})
        self.config = cfg
        h, c = cfg.hidden, cfg.map_channels
        self.lin0 = nn.Sequential(nn.Linear(cfg.n_voxels, h, bias=False), nn.LayerNorm(h), nn.SiLU(inplace=True),
                                  nn.Dropout(cfg.drop_in))
        self.mlp = nn.ModuleList(
            nn.Sequential(nn.Linear(h, h, bias=False), nn.LayerNorm(h), nn.SiLU(inplace=True), nn.Dropout(cfg.drop_block))
            for _ in range(cfg.n_blocks)
        )
        self.lin1 = nn.Linear(h, c * cfg.map_size ** 2, bias=False)
        self.norm = nn.GroupNorm(1, c)
        self.upsampler = Decoder(
            in_channels=c, out_channels=cfg.latent_channels, up_block_types=["UpDecoderBlock2D"] * len(cfg.block_out_channels),
            block_out_channels=list(cfg.block_out_channels), layers_per_block=1, norm_num_groups=cfg.norm_num_groups,
        )
        if cfg.use_cont:
            p = cfg.proj_dim
            self.maps_projector = nn.Sequential(
                nn.Conv2d(c, p, 1, bias=False), nn.GroupNorm(1, p), nn.ReLU(True),
                nn.Conv2d(p, p, 1, bias=False), nn.GroupNorm(1, p), nn.ReLU(True),
                nn.Conv2d(p, p, 1, bias=True),
            )
        else:
            self.maps_projector = None

    def forward(self, voxels: torch.Tensor):
        """voxels ``[B, V]`` -> latents ``[B, 4, 4*map_size, 4*map_size]``; with ``use_cont`` also the contrastive
        maps ``[B, map_size**2, proj_dim]`` (one projected vector per feature-map location)."""
        cfg = self.config
        x = self.lin0(voxels)
        for block in self.mlp:
            x = block(x) + x
        x = self.norm(self.lin1(x).reshape(voxels.shape[0], cfg.map_channels, cfg.map_size, cfg.map_size))
        latents = self.upsampler(x)
        if self.maps_projector is None:
            return latents
        return latents, self.maps_projector(x).flatten(2).transpose(1, 2)

    def load_v1_state_dict(self, sd: dict, strict: bool = True):
        """Load a V1 checkpoint ``model_state_dict`` (diffusers-0.13 names). With ``use_cont=False`` the
        ``maps_projector.*`` keys are dropped, as V1 inference did."""
        sd = convert_v1_lowlevel_state_dict(sd)
        if self.maps_projector is None:
            sd = {k: v for k, v in sd.items() if not k.startswith("maps_projector.")}
        return self.load_state_dict(sd, strict=strict)
