"""Shipping trained MindEye models: a training checkpoint -> ``<name>.safetensors`` (fp16) + ``<name>.json``.

The JSON keeps what is needed to rebuild the model (its training config and target shape) and what it was
trained on (subject, voxel count, data fingerprint, simulator version and seed), so a bundle can refuse to
pair weights with data they were not trained on.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .atomic import atomic_save
from .data.errors import DataError


def load_checkpoint(path: Path, expect: dict | None = None, trust_pickle: bool = False) -> dict:
    """Load a checkpoint; a truncated file or one for another subject / voxel layout is a clear error.

    ``.pth`` files are pickles, which can run code when loaded. They are read with ``weights_only=True`` (tensors,
    numbers, strings, lists and dicts only): this project's checkpoints and MindEye V1's released ones need no
    more. ``trust_pickle`` lifts that for a file that holds other objects, when you trust where it came from."""
    import pickle
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint file")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as e:
        msg = str(e)
        blocked = "not an allowed global" in msg or "Unsupported global" in msg
        if not blocked:  # not a pickle at all, or a damaged one
            reason = next((line for line in msg.splitlines() if "Unsupported operand" in line or "load key" in line),
                          msg.splitlines()[-1] if msg else "")
            raise DataError(f"{path}: not a readable checkpoint (truncated or not a .pth file: {reason.strip()[:200]})") from e
        import re
        found = re.search(r"GLOBAL ([\w.]+)", msg)
        what = f"a {found.group(1)}" if found else ""
        raise DataError(f"{path}: holds Python objects beyond tensors, numbers and strings{f' ({what})' if what else ''}, "
                        f"so it was not loaded (a .pth file is a pickle and can run code). If you trust where it came "
                        f"from, load it with trust_pickle=True (CLI: --trust_pickle)") from e
    except Exception as e:
        raise DataError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e)[:300]})") from e
    if not isinstance(ck, dict) or "model_state_dict" not in ck:
        raise DataError(f"{path}: expected a dict with model_state_dict, found {type(ck).__name__}"
                        + (f" with keys {sorted(ck)[:8]}" if isinstance(ck, dict) else ""))
    if expect and "data" in ck:
        have = ck["data"]
        for k in ("subject", "n_voxels", "fingerprint", "target_shape"):
            if k in expect and k in have and have[k] != expect[k]:
                raise DataError(f"{path}: checkpoint is for {k}={have[k]}, this run has {k}={expect[k]} "
                                f"(trained on {have.get('dataset')} subject {have.get('subject')})")
    return ck



def build_from_config(cfg: dict, data: dict):
    """BrainNetwork (or DiffusionPrior wrapping it), or the low-level Voxel2VAE, from a run's config and data."""
    from .models.prior import DiffusionPrior, PriorConfig
    from .models.voxel2clip import BrainNetwork, Voxel2ClipConfig
    if "upsampler_channels" in cfg:  # a train-lowlevel run: voxels -> VAE latents [C, H, W]
        from .models.lowlevel import LowLevelConfig, Voxel2VAE
        c, h, _ = data["target_shape"]
        up = tuple(cfg["upsampler_channels"])
        return Voxel2VAE(LowLevelConfig(n_voxels=data["n_voxels"], hidden=cfg["hidden_dim"], n_blocks=cfg["n_blocks"],
                                        use_cont=cfg.get("maps_projector", False), map_channels=cfg["map_channels"],
                                        map_size=h // 4, proj_dim=cfg.get("maps_proj_dim", 512),
                                        block_out_channels=up, norm_num_groups=min(32, min(up)), latent_channels=c))
    tokens, dim = data["target_shape"]
    v2c = BrainNetwork(Voxel2ClipConfig(n_voxels=data["n_voxels"], hidden=cfg["hidden_dim"], n_blocks=cfg["n_blocks"],
                                        clip_tokens=tokens, clip_dim=dim, use_projector=cfg["use_projector"],
                                        proj_hidden=cfg["proj_hidden"], drop_in=cfg.get("drop_in", 0.5),
                                        drop_block=cfg.get("drop_block", 0.15)))
    if not cfg["prior"]:
        return v2c
    return DiffusionPrior(PriorConfig(dim=dim, depth=cfg["prior_depth"], heads=cfg["prior_heads"],
                                      dim_head=cfg["prior_dim_head"], num_tokens=tokens,
                                      rotary_dim=min(32, cfg["prior_dim_head"]),
                                      brain_pos_emb=cfg.get("prior_brain_pos", False),
                                      # released V1 files: the 1x768 prior is dalle2's network over 1000 steps
                                      network=cfg.get("prior_network", "versatile"),
                                      timesteps=cfg.get("prior_timesteps", PriorConfig.timesteps),
                                      max_text_len=cfg.get("prior_max_text_len", PriorConfig.max_text_len)),
                          voxel2clip=v2c)


def export_run(run_dir: Path, stem: Path, which: str = "best.pth", dtype=torch.float16) -> dict:
    """Write ``stem.safetensors`` + ``stem.json`` from ``run_dir/which`` (falls back to last.pth)."""
    from safetensors.torch import save_file
    run_dir = Path(run_dir)
    if run_dir.suffix == ".pth" and run_dir.is_file():  # a released V1 file rather than a run folder
        from .v1_checkpoints import export_v1
        return export_v1(run_dir, stem, dtype=dtype)
    path = run_dir / which if (run_dir / which).exists() else run_dir / "last.pth"
    ck = load_checkpoint(path)
    sd = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in ck["model_state_dict"].items()
          if not k.startswith("noise_scheduler.")}  # the schedule is rebuilt from the config
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()] \
        if (run_dir / "metrics.jsonl").exists() else []
    epochs = [m for m in metrics if "val_loss" in m]  # per-epoch lines (retrieval or low-level metrics)
    # the figures of the exported checkpoint's own epoch (its counter is one past the epoch index), not the last
    chosen = next((m for m in epochs if m.get("epoch") == ck["epoch"] - 1), None)
    from .bundle import PROJECT_ROOT

    def portable(p):  # a shipped file names no path of the machine it was built on
        try:
            return str(Path(p).resolve().relative_to(PROJECT_ROOT)) if p and Path(p).is_absolute() else p
        except ValueError:
            return p
    if ck["data"].get("init_backbone", {}).get("from"):
        ck["data"]["init_backbone"]["from"] = portable(ck["data"]["init_backbone"]["from"])
    for key in ("out", "bundle", "init_backbone", "data_path", "vae_path"):
        if isinstance(ck["config"].get(key), str):
            ck["config"][key] = portable(ck["config"][key])
    meta = {"config": ck["config"], "data": ck["data"], "checkpoint": path.name, "epoch": ck["epoch"],
            "val": chosen, "last_epoch": epochs[-1] if epochs else None}
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(sd, stem.with_suffix(".safetensors"), lambda obj, p: save_file(obj, p))
    atomic_save(meta, stem.with_suffix(".json"), lambda obj, p: Path(p).write_text(json.dumps(obj, indent=1)))
    return meta


def record_in_meta(model_json: Path | str, key: str, value) -> None:
    """Set ``key`` in an exported model's .json (a setting chosen on val for it, which the engine reads), atomically;
    every other key is kept."""
    model_json = Path(model_json)
    meta = json.loads(model_json.read_text())
    meta[key] = value
    atomic_save(meta, model_json, lambda obj, p: Path(p).write_text(json.dumps(obj, indent=1)))


def load_model(stem: Path | str, expect: dict | None = None, device="cpu"):
    """``(model, meta)`` from ``stem.safetensors`` + ``stem.json``; ``expect`` (e.g. ``{"subject": 1,
    "n_voxels": 3145, "fingerprint": ...}``) must match what the model was trained on."""
    from safetensors.torch import load_file
    stem = Path(stem)
    js, st = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    for p in (js, st):
        if not p.exists():
            raise DataError(f"{p}: missing (a shipped MindEye model is a .safetensors + .json pair)")
    try:
        meta = json.loads(js.read_text())
        have = meta["data"]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{js}: not a readable model description ({type(e).__name__}: {e}); expected the JSON that "
                        f"`build-demo` or `export` writes beside {st.name}") from None
    for k, v in (expect or {}).items():
        if k in have and have[k] != v:
            raise DataError(f"{st}: trained on {k}={have[k]}, but the loaded data has {k}={v} "
                            f"({have.get('dataset')} subject {have.get('subject')}); retrain or load the matching data")
    model = build_from_config(meta["config"], have)
    try:
        sd = {k: v.float() for k, v in load_file(str(st)).items()}
    except Exception as e:  # safetensors raises its own error types for truncated or foreign files
        raise DataError(f"{st}: unreadable weights ({type(e).__name__}: {e}); the file is truncated or not a "
                        f"safetensors file: rebuild it (python -m mindeye build-demo) or restore it from git") from None
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith("noise_scheduler.")]
    if missing or unexpected:
        raise DataError(f"{st}: weights do not fit the model in {js.name} (missing {missing[:4]}, "
                        f"unexpected {unexpected[:4]})")
    return model.to(device).eval(), meta


def load_any(path: Path | str, expect: dict | None = None, device="cpu"):
    """``(model, meta)`` from a run folder (its best.pth, else last.pth), a ``.pth`` checkpoint, or a shipped
    ``stem`` (.safetensors + .json); ``expect`` as in ``load_model``."""
    path = Path(path)
    if path.is_dir() or path.suffix == ".pth":
        ck_path = path if path.suffix == ".pth" else (path / "best.pth" if (path / "best.pth").exists() else path / "last.pth")
        ck = load_checkpoint(ck_path, expect=expect)
        if "config" not in ck or "data" not in ck:  # a released V1 file: rebuilt from its keys and shapes
            from .v1_checkpoints import check_expect, load_v1_state_dict
            v1 = load_v1_state_dict(ck.get("model_state_dict", ck), device=device, source=ck_path)
            check_expect(ck_path, v1.data, expect)
            return v1.model.eval(), {"config": v1.config, "data": v1.data, "checkpoint": ck_path.name,
                                     "epoch": ck.get("epoch"), "v1_kind": v1.kind}
        model = build_from_config(ck["config"], ck["data"])
        model.load_state_dict(ck["model_state_dict"])
        return model.to(device).eval(), {"config": ck["config"], "data": ck["data"], "checkpoint": ck_path.name,
                                         "epoch": ck.get("epoch")}
    return load_model(path.with_suffix("") if path.suffix in (".json", ".safetensors") else path, expect, device)
