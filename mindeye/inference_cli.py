"""`reconstruct` and `evaluate`: the seed's Reconstructions.py and Reconstruction_Metrics.py as commands over
the engine (same flag names and output file names; ``--bundle``, ``--ridge``, ``--true_tokens``, ``--json`` are
ours)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def add_reconstruct_flags(r: argparse.ArgumentParser) -> None:
    r.add_argument("--model_name", default=None,
                   help="MindEye hidden model with its prior: a run folder (train_logs/NAME or a path, best.pth is "
                        "used) or a shipped stem; default: the bundle's mindeye_hidden")
    r.add_argument("--autoencoder_name", default=None,
                   help="low-level model (run folder or shipped stem); default: the bundle's lowlevel; 'None' for none")
    r.add_argument("--data_path", default=None, help="dataset folder (default: the bundle's)")
    r.add_argument("--subj", type=int, default=None, help="subject (default: the bundle's)")
    r.add_argument("--img2img_strength", type=float, default=0.85,
                   help="fraction of the denoising schedule run from the low-level image (1 = no img2img; V1: .85)")
    r.add_argument("--recons_per_sample", type=int, default=16, help="samples per trial, best picked by CLIP (V1: 16)")
    r.add_argument("--vd_cache_dir", default=None,
                   help="Versatile Diffusion snapshot folder (default: the bundle's decoder)")
    r.add_argument("--bundle", default=None, help="bundle folder (default: assets/demo)")
    r.add_argument("--ridge", action="store_true", help="decode with the ridge baseline's tokens instead of MindEye's")
    r.add_argument("--true_tokens", action="store_true",
                   help="decode the seen images' own CLIP tokens (the decoder's ceiling; no brain involved)")
    r.add_argument("--trials", default=None,
                   help="test trials: 'all' (default), 'N' (the first N), or 'a-b' (a range, end excluded)")
    r.add_argument("--steps", type=int, default=20, help="denoising steps (V1: 20 UniPC)")
    r.add_argument("--guidance", type=float, default=3.5, help="classifier-free guidance scale (V1: 3.5)")
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--batch", type=int, default=8, help="trials per batch")
    r.add_argument("--out", default="evals", help="output folder (default: evals)")
    r.add_argument("--json", action="store_true", help="print a machine-readable summary")


def _trials(spec: str | None, n_test: int) -> np.ndarray:
    from .data.errors import DataError
    if spec in (None, "all"):
        return np.arange(n_test)
    try:
        if "-" in spec:
            a, b = (int(x) for x in spec.split("-"))
            idx = np.arange(a, b)
        else:
            idx = np.arange(int(spec))
    except ValueError:
        raise DataError(f"--trials expects 'all', N or a-b, got {spec!r}") from None
    if not len(idx) or idx[0] < 0 or idx[-1] >= n_test:
        raise DataError(f"--trials {spec!r} is outside the test set (0-{n_test - 1})")
    return idx


def _engine(args):
    from .bundle import DEMO_BUNDLE, Bundle
    from .data.errors import DataError
    from .engine import Engine, Model
    bundle = Bundle.load(args.bundle or DEMO_BUNDLE, args.data_path)
    if args.subj is not None and args.subj != bundle.subject:
        bundle.subject = args.subj
    if args.vd_cache_dir:
        bundle.models["decoder"] = str(Path(args.vd_cache_dir).resolve())
    e = Engine(bundle, simulate_if_missing=args.data_path is None)
    for flag, key in (("model_name", Model.HIDDEN), ("autoencoder_name", Model.LOWLEVEL)):
        value = getattr(args, flag)
        if value == "None" and key == Model.LOWLEVEL:
            bundle.models.pop(key.value, None)
        elif value:
            from .checkpoints import load_any
            path = Path(value)
            if not path.exists() and (Path("train_logs") / value).exists():
                path = Path("train_logs") / value
            if not path.exists() and not path.with_suffix(".json").exists():
                raise DataError(f"--{flag} {value!r}: no run folder or shipped model there (expected train_logs/NAME "
                                "with best.pth, or a .safetensors + .json stem)")
            model, meta = load_any(path, expect={"subject": bundle.subject, "n_voxels": e.data.n_voxels,
                                                 "fingerprint": e.data.fingerprint()})
            model.meta = meta
            e.use_model(key, model)
    return e


def reconstruct_cmd(args) -> int:
    import torch
    from tqdm.auto import tqdm

    from .data.stream import to_model_input
    from .engine import Source
    from .pipelines.reconstruction import check_settings
    check_settings(args.img2img_strength, args.recons_per_sample, args.steps, args.guidance)
    e = _engine(args)
    idx = _trials(args.trials, e.n_test)
    source = Source.TRUE if args.true_tokens else Source.RIDGE if args.ridge else Source.MINDEYE
    picked, lows = [], []
    for i in tqdm(range(0, len(idx), args.batch), desc=f"reconstructing ({source.value})", unit="batch"):
        r = e.reconstruct(idx[i:i + args.batch], source, strength=args.img2img_strength, n=args.recons_per_sample,
                          steps=args.steps, guidance=args.guidance, seed=args.seed + int(idx[i]))
        picked.append(r.picked)
        if r.lowlevel is not None:
            lows.append(r.lowlevel)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ids = e.test_ids[idx]
    all_images = to_model_input(e.data.images(ids), e.data.image_store.image_size)
    name = Path(args.model_name).name if args.model_name else e.bundle.name.replace(" ", "_")
    if source != Source.MINDEYE:
        name = f"{name}_{source.value}"
    from .atomic import atomic_save
    atomic_save(all_images, out / "all_images.pt", torch.save)
    recon_path = out / f"{name}_recons_img2img{args.img2img_strength}_{args.recons_per_sample}samples.pt"
    atomic_save(torch.cat(picked), recon_path, torch.save)
    side = {"image_ids": [int(i) for i in ids], "trials": [int(i) for i in idx], "source": source.value,
            "img2img_strength": args.img2img_strength, "recons_per_sample": args.recons_per_sample,
            "steps": args.steps, "guidance": args.guidance, "seed": args.seed, "subject": e.bundle.subject,
            "data_path": str(e.bundle.data_path), "all_images": str(out / "all_images.pt")}
    if lows:
        low_path = recon_path.with_name(recon_path.stem + "_lowlevel.pt")
        atomic_save(torch.cat(lows), low_path, torch.save)
        side["lowlevel"] = str(low_path)
    recon_path.with_suffix(".json").write_text(json.dumps(side, indent=1))
    summary = {"recons": str(recon_path), "all_images": str(out / "all_images.pt"), "n": len(idx), **side}
    print(json.dumps(summary) if args.json else f"wrote {recon_path} ({len(idx)} trials) and {out / 'all_images.pt'}")
    return 0


def add_evaluate_flags(v: argparse.ArgumentParser) -> None:
    v.add_argument("--recon_path", required=True, nargs="+",
                   help="reconstructions .pt [N, 3, H, W] (several: one table column each)")
    v.add_argument("--all_images_path", required=True, help="the seen images .pt [N, 3, H, W]")
    v.add_argument("--bundle", default=None, help="bundle whose CLIP and judge score the images (default: assets/demo)")
    v.add_argument("--csv", default=None, help="CSV to write (default: next to the first recon file)")
    v.add_argument("--json", action="store_true", help="print the metrics as JSON")


def evaluate_cmd(args) -> int:
    import csv

    import torch

    from .bundle import DEMO_BUNDLE, Bundle
    from .data.canonical import load_subject
    from .data.errors import DataError
    from .evaluation import evaluate_reconstructions, format_table
    from .models.judge import SceneJudge
    from .models.scene_clip import SceneCLIP

    def load(p):
        try:
            t = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:
            raise DataError(f"{p}: not a readable tensor file ({type(e).__name__}: {str(e)[:120]})") from e
        if not isinstance(t, torch.Tensor) or t.ndim != 4 or t.shape[1] != 3:
            raise DataError(f"{p}: expected images [N, 3, H, W], found "
                            f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
        return t.float()

    originals = load(args.all_images_path)
    bundle = Bundle.load(args.bundle or DEMO_BUNDLE)
    clip = SceneCLIP.load(bundle.resolve(bundle.models["clip"])) if bundle.dataset_kind == "simnsd" else None
    judge = SceneJudge.load(bundle.resolve(bundle.models["judge"])) if "judge" in bundle.models else None
    columns = {}
    for path in args.recon_path:
        recons = load(path)
        if len(recons) != len(originals):
            raise DataError(f"{path}: {len(recons)} reconstructions for {len(originals)} images in {args.all_images_path}")
        side = Path(path).with_suffix(".json")
        labels = None
        if judge is not None and side.exists():
            meta = json.loads(side.read_text())
            d = load_subject(meta["data_path"], meta["subject"])
            labels = d.labels(np.array(meta["image_ids"]))
        columns[Path(path).stem] = evaluate_reconstructions(recons, originals, clip, judge, labels)
    table = format_table(columns)
    out = Path(args.csv) if args.csv else Path(args.recon_path[0]).with_suffix(".csv")
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["metric", *columns])
        for metric in next(iter(columns.values())):
            w.writerow([metric, *[c.get(metric, "") for c in columns.values()]])
    print(json.dumps(columns, indent=1) if args.json else table)
    if not args.json:
        print(f"\nwrote {out}. 'not available': the paper's feature nets need local weights (none here); "
              "no number is computed from random weights.")
    return 0
