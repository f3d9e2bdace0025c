"""MindEye V1's released checkpoints -> ready models of this package, in one call: ``load_v1(path)``.

Three files were released for subject 1 (keys and shapes: ``tests/data/v1_checkpoint_manifest.json``):

=================================================  ===========================  =================================
file                                               kind                         model here
=================================================  ===========================  =================================
prior_257_final_subj01_bimixco_softclip_byol       ``prior_257`` (hidden)       ``DiffusionPrior`` (PriorNetwork)
prior_1x768_final_subj01_bimixco_softclip_byol     ``prior_1x768`` (final)      ``DiffusionPrior`` (Dalle2PriorNetwork)
autoencoder_subj01_4x_locont_no_reconst            ``autoencoder`` (low-level)  ``Voxel2VAE``
=================================================  ===========================  =================================

The kind is read off the keys and every size off the shapes, so a file of the same architecture at another size
(another subject's voxel count, a smaller retrain) loads too. Loading is strict: a key the model lacks, a key
the file lacks, or a shape that differs is an error that lists them. The autoencoder's VAE-decoder attention was
saved under diffusers 0.13's names (``query``/``key``/``value``/``proj_attn``); they are mapped to today's.

The files are pickles (``torch.save``). They are read with ``weights_only=True``, which loads tensors and plain
containers only and runs no code; ``trust_pickle=True`` lifts that for a file that needs more.
Models can be built on the ``meta`` device (no memory) to check a file's layout before loading its weights.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .data.errors import DataError

KINDS = ("prior_257", "prior_1x768", "autoencoder")


@dataclass
class V1Model:
    kind: str  # one of KINDS
    model: torch.nn.Module
    config: dict  # in a training run's vocabulary (``checkpoints.build_from_config`` rebuilds the model from it)
    data: dict  # what the model reads and predicts: n_voxels, target_shape, subject, source


def identify(sd: dict) -> str:
    """Which released file a state dict is, from its keys."""
    keys = set(sd)
    if "net.null_text_encodings" in keys:
        return "prior_1x768"
    if "net.null_brain_embeds" in keys:
        return "prior_257"
    if "lin0.0.weight" in keys and any(k.startswith("upsampler.") for k in keys):
        return "autoencoder"
    raise DataError(f"not a MindEye V1 checkpoint this code knows: expected the keys of a diffusion prior "
                    f"(net.*, voxel2clip.*) or of the low-level autoencoder (lin0.*, upsampler.*); found "
                    f"{sorted(keys)[:6]}{' ...' if len(keys) > 6 else ''} ({len(keys)} keys)")


def _count(sd: dict, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def _shape(sd: dict, key: str) -> tuple:
    if key not in sd:
        raise DataError(f"the checkpoint has no {key}, which every MindEye V1 file of this kind holds")
    return tuple(sd[key].shape)


def v1_config(sd: dict, kind: str, subject: int = 1) -> tuple[dict, dict]:
    """``(config, data)`` of the model a V1 state dict holds, every size read off its shapes."""
    if kind == "autoencoder":
        hidden, n_voxels = _shape(sd, "lin0.0.weight")
        channels = [_shape(sd, f"upsampler.up_blocks.{i}.resnets.0.conv1.weight")[0]
                    for i in range(_count(sd, r"upsampler\.up_blocks\.(\d+)\."))][::-1]
        map_channels = _shape(sd, "upsampler.conv_in.weight")[1]
        map_size = int(round((_shape(sd, "lin1.weight")[0] / map_channels) ** 0.5))
        latent = _shape(sd, "upsampler.conv_out.weight")[0]
        config = {"hidden_dim": hidden, "n_blocks": _count(sd, r"mlp\.(\d+)\."), "map_channels": map_channels,
                  "upsampler_channels": channels, "maps_projector": "maps_projector.0.weight" in sd,
                  "maps_proj_dim": _shape(sd, "maps_projector.0.weight")[0] if "maps_projector.0.weight" in sd else 512}
        data = {"n_voxels": n_voxels, "target_shape": [latent, 4 * map_size, 4 * map_size]}
    else:
        hidden, n_voxels = _shape(sd, "voxel2clip.lin0.0.weight")
        q_dim, dim = _shape(sd, "net.causal_transformer.layers.0.0.to_q.weight")
        dim_head = _shape(sd, "net.causal_transformer.layers.0.0.to_kv.weight")[0] // 2
        tokens = _shape(sd, "net.learned_query")[0] if kind == "prior_257" else 1
        config = {"hidden_dim": hidden, "n_blocks": _count(sd, r"voxel2clip\.mlp\.(\d+)\."),
                  "use_projector": "voxel2clip.projector.2.weight" in sd,
                  "proj_hidden": _shape(sd, "voxel2clip.projector.2.weight")[0]
                  if "voxel2clip.projector.2.weight" in sd else 2048,
                  "prior": True, "prior_depth": _count(sd, r"net\.causal_transformer\.layers\.(\d+)\."),
                  "prior_heads": q_dim // dim_head, "prior_dim_head": dim_head,
                  "prior_network": "dalle2" if kind == "prior_1x768" else "versatile",
                  "prior_timesteps": _shape(sd, "noise_scheduler.betas")[0]}
        if kind == "prior_1x768":
            config["prior_max_text_len"] = _shape(sd, "net.null_text_encodings")[1]
        data = {"n_voxels": n_voxels, "target_shape": [tokens, dim]}
    data.update(subject=subject, dataset="NSD", source=f"MindEye V1 release ({kind})")
    return config, data


def _mismatch(sd: dict, expected: dict, source) -> str | None:
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [f"{k} {tuple(sd[k].shape)} (expected {tuple(expected[k].shape)})" for k in expected
              if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or shapes):
        return None
    parts = [f"{len(missing)} missing {missing[:8]}" if missing else "",
             f"{len(unexpected)} unexpected {unexpected[:8]}" if unexpected else "",
             f"{len(shapes)} of another shape {shapes[:4]}" if shapes else ""]
    return f"{source}: the weights do not fit the model their keys describe: " + "; ".join(p for p in parts if p)


def load_v1_state_dict(sd: dict, device="cpu", subject: int = 1, source="state dict") -> V1Model:
    """A V1 ``model_state_dict`` -> ``V1Model``, loaded strictly. ``device="meta"`` checks the layout without
    allocating: the state dict may hold meta tensors then."""
    from .checkpoints import build_from_config
    from .models.lowlevel import convert_v1_lowlevel_state_dict
    if not isinstance(sd, dict) or not sd:
        raise DataError(f"{source}: expected a state dict (parameter name -> tensor), found {type(sd).__name__}")
    kind = identify(sd)
    config, data = v1_config(sd, kind, subject)
    if kind == "autoencoder":
        sd = convert_v1_lowlevel_state_dict(sd)  # diffusers-0.13 attention names -> today's
    with torch.device("meta"):
        model = build_from_config(config, data)
    problem = _mismatch(sd, model.state_dict(), source)
    if problem:
        raise DataError(problem)
    model.load_state_dict(sd, strict=True, assign=True)
    if str(device) != "meta":
        left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
        if left:
            raise DataError(f"{source}: no weights for {left[:4]} ({len(left)} tensors); the file is incomplete")
        model = model.float().to(device)
    return V1Model(kind, model.eval(), config, data)


def load_v1(path: Path | str, device="cpu", subject: int = 1, trust_pickle: bool = False) -> V1Model:
    """Any of the three released subject-1 files (``last.pth`` / ``epoch120.pth``, or a bare state dict) ->
    ``V1Model`` with the model ready on ``device``. See the module docstring."""
    from .checkpoints import load_checkpoint
    path = Path(path)
    try:
        ck = load_checkpoint(path, trust_pickle=trust_pickle)
    except DataError as e:
        if "expected a dict with model_state_dict" not in str(e):
            raise
        ck = {"model_state_dict": torch.load(path, map_location="cpu", weights_only=not trust_pickle)}
    return load_v1_state_dict(ck["model_state_dict"], device=device, subject=subject, source=path)


def check_expect(source, data: dict, expect: dict | None) -> None:
    """A V1 model against what the loading data says (subject, voxel count)."""
    for k in ("subject", "n_voxels"):
        if expect and k in expect and data.get(k) != expect[k]:
            raise DataError(f"{source}: a MindEye V1 {data.get('source', '')} model for {k}={data.get(k)}, but the "
                            f"loaded data has {k}={expect[k]}; load the matching subject's data or checkpoint")


def export_v1(path: Path | str, stem: Path | str, subject: int = 1, dtype=torch.float16,
              trust_pickle: bool = False) -> dict:
    """A released file -> ``stem.safetensors`` (``dtype``) + ``stem.json``, the pair bundles and the engine
    load (``checkpoints.load_model``)."""
    import json

    from safetensors.torch import save_file

    from .atomic import atomic_save
    v1 = load_v1(path, subject=subject, trust_pickle=trust_pickle)
    sd, seen = {}, set()
    for k, v in v1.model.state_dict().items():
        if k.startswith("noise_scheduler."):
            continue  # rebuilt from the config
        v = v.to(dtype) if v.is_floating_point() else v
        if v.data_ptr() in seen:  # shared tensors (the rotary frequencies of every layer) are stored per key
            v = v.clone()
        seen.add(v.data_ptr())
        sd[k] = v.contiguous()
    meta = {"config": v1.config, "data": v1.data, "checkpoint": Path(path).name, "epoch": None, "v1_kind": v1.kind}
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(sd, stem.with_suffix(".safetensors"), lambda obj, p: save_file(obj, p))
    atomic_save(meta, stem.with_suffix(".json"), lambda obj, p: Path(p).write_text(json.dumps(obj, indent=1)))
    return meta
