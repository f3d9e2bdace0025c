"""`reconstruct`, `evaluate` and `retrieve`: the seed's Reconstructions.py, Reconstruction_Metrics.py and
Retrievals.py (its LAION-5B part) as commands over the engine (same flag names and output file names;
``--bundle``, ``--ridge``, ``--true_tokens``, ``--pool``, ``--json`` are ours), and `index build`, which makes
the large pools `retrieve` searches."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .pipelines.settings import V1_GUIDANCE, V1_STEPS


def add_reconstruct_flags(r: argparse.ArgumentParser) -> None:
    r.add_argument("--model_name", default=None,
                   help="MindEye hidden model with its prior: a run folder (train_logs/NAME or a path, best.pth is "
                        "used) or a shipped stem; default: the bundle's mindeye_hidden")
    r.add_argument("--autoencoder_name", default=None,
                   help="low-level model (run folder or shipped stem); default: the bundle's lowlevel; 'None' for none")
    r.add_argument("--data_path", default=None, help="dataset folder (default: the bundle's)")
    r.add_argument("--subj", type=int, default=None, help="subject (default: the bundle's)")
    r.add_argument("--img2img_strength", type=float, default=None,
                   help="fraction of the denoising schedule run from the low-level image (1 = no img2img; V1: .85); "
                        "default: the strength chosen on val for the hidden model (bench/recon_strength.py), else .85")
    r.add_argument("--recons_per_sample", type=int, default=16, help="samples per trial, best picked by CLIP (V1: 16)")
    r.add_argument("--vd_cache_dir", default=None,
                   help="Versatile Diffusion snapshot folder (default: the bundle's decoder)")
    r.add_argument("--bundle", default=None, help="bundle folder (default: assets/demo)")
    r.add_argument("--ridge", action="store_true", help="decode with the ridge baseline's tokens instead of MindEye's")
    r.add_argument("--true_tokens", action="store_true",
                   help="decode the seen images' own CLIP tokens (the decoder's ceiling; no brain involved)")
    r.add_argument("--trials", default=None,
                   help="test trials: 'all' (default), 'N' (the first N), or 'a-b' (a range, end excluded)")
    r.add_argument("--steps", type=int, default=V1_STEPS, help="denoising steps (V1: 20 UniPC)")
    r.add_argument("--guidance", type=float, default=V1_GUIDANCE, help="classifier-free guidance scale (V1: 3.5)")
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
    if getattr(args, "vd_cache_dir", None):
        bundle.models["decoder"] = str(Path(args.vd_cache_dir).resolve())
    e = Engine(bundle, simulate_if_missing=args.data_path is None)
    for flag, key in (("model_name", Model.HIDDEN), ("model_name2", Model.FINAL), ("autoencoder_name", Model.LOWLEVEL)):
        value = getattr(args, flag, None)
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
    from .pipelines.settings import check_settings
    e = _engine(args)
    if args.img2img_strength is None:
        args.img2img_strength, why = e.default_strength()
        print(f"img2img strength {args.img2img_strength:g}: {why}", file=sys.stderr)
    check_settings(args.img2img_strength, args.recons_per_sample, args.steps, args.guidance)
    idx = _trials(args.trials, e.n_test)
    source = Source.TRUE if args.true_tokens else Source.RIDGE if args.ridge else Source.MINDEYE
    picked, lows = [], []
    for i in tqdm(range(0, len(idx), args.batch), desc=f"reconstructing ({source.value})", unit="batch"):
        r = e.reconstruct(idx[i:i + args.batch], source, strength=args.img2img_strength, n=args.recons_per_sample,
                          steps=args.steps, guidance=args.guidance, seed=args.seed + int(idx[i]))
        picked.append(r.picked)
        if r.lowlevel is not None:
            lows.append(r.lowlevel)
    from .bundle import under_work_root
    out = under_work_root(args.out)
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


# ----------------------------------------------------------------------------------------- retrieve

def add_retrieve_flags(r: argparse.ArgumentParser) -> None:
    """The seed's Retrievals.py flags (same names and help, adapted to bundles), then ours."""
    r.add_argument("--model_name", default=None,
                   help="name of the hidden-token model (257x768 in V1), used for everything except large-pool "
                        "(LAION-5B) retrieval; here its projector output makes the second-order pick among the "
                        "pool's top 16. A run folder (train_logs/NAME or a path) or a shipped stem; default: the "
                        "bundle's mindeye_hidden")
    r.add_argument("--model_name2", default=None,
                   help="name of the final-layer model (1x768 in V1), used for large-pool (LAION-5B) retrieval. A run "
                        "folder or a shipped stem; default: the bundle's mindeye_final")
    r.add_argument("--data_path", default=None, help="dataset folder (default: the bundle's)")
    r.add_argument("--subj", type=int, default=None, help="subject (default: the bundle's)")
    r.add_argument("--pool", default=None,
                   help="what to search: a pool folder (python -m mindeye index build), a clip-retrieval index folder "
                        "(image.index + metadata/*.parquet) or a clip-retrieval server URL (http://HOST:PORT; V1 used "
                        "knn.laion.ai, offline since 2024); default: the bundle's pool, else data/pool")
    r.add_argument("--indice_name", default=None,
                   help="index on a clip-retrieval server (default: the first it lists; V1: laion5B-L-14)")
    r.add_argument("--trials", default=None,
                   help="test trials: 'all' (default), 'N' (the first N), or 'a-b' (a range, end excluded)")
    r.add_argument("--num_retrieved", type=int, default=16, help="pool candidates per trial before the second-order pick (V1: 16)")
    r.add_argument("--bundle", default=None, help="bundle folder (default: assets/demo)")
    r.add_argument("--out", default="evals", help="output folder (default: evals)")
    r.add_argument("--json", action="store_true", help="print a machine-readable summary (ids and scores per trial)")


def retrieve_cmd(args) -> int:
    import torch
    from tqdm.auto import tqdm

    from .atomic import atomic_save
    from .data.errors import DataError
    from .data.stream import to_model_input
    from .pipelines.pool import ClipRetrievalServer, jsonable
    if not 1 <= args.num_retrieved <= 1000:
        raise DataError(f"--num_retrieved must be from 1 to 1000, got {args.num_retrieved}")
    e = _engine(args)
    idx = _trials(args.trials, e.n_test)
    pool = e.pool(args.pool, indice_name=args.indice_name)
    if isinstance(pool, ClipRetrievalServer):
        pool.indice_name  # noqa: B018  (ask the server now: an unreachable one fails before any work)
    size = e.data.image_store.image_size
    res = e.pool_retrieve(idx, pool, k=args.num_retrieved, size=size,
                          progress=lambda it: tqdm(it, desc="retrieving from the pool", unit="trial"))
    from .bundle import under_work_root
    out = under_work_root(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ids = e.test_ids[idx]
    atomic_save(to_model_input(e.data.images(ids), size), out / "all_images.pt", torch.save)
    name = Path(args.model_name).name if args.model_name else e.bundle.name.replace(" ", "_")
    path = out / f"{name}_laion_retrievals_top{args.num_retrieved}.pt"
    atomic_save(res.picked_images(), path, torch.save)
    rows = [{"trial": int(t), "image_id": int(i), "picked": jsonable(res.keys[q][res.best[q]]),
             "picked_rank": int(res.best[q]) + 1, "ids": [jsonable(k) for k in res.keys[q]],
             "scores": [round(float(s), 5) for s in res.scores[q]],
             "second_order_scores": [None if np.isnan(s) else round(float(s), 5) for s in res.second_order[q]],
             "captions": res.captions[q]}
            for q, (t, i) in enumerate(zip(idx, ids))]
    side = {"pool": res.source, "num_retrieved": args.num_retrieved, "subject": e.bundle.subject,
            "data_path": str(e.bundle.data_path), "image_ids": [int(i) for i in ids], "trials": [int(t) for t in idx],
            "second_order": "hidden" if not np.isnan(res.second_order[0]).all() else "none (no hidden model)",
            "all_images": str(out / "all_images.pt"), "retrievals": str(path), "rows": rows}
    path.with_suffix(".json").write_text(json.dumps(side, indent=1))
    if args.json:
        print(json.dumps({"n": len(idx), **side}))
    else:
        print(f"wrote {path} ({len(idx)} trials, top-1 of {args.num_retrieved} after the second-order pick) and "
              f"{out / 'all_images.pt'}; pool: {res.source}")
    return 0


# ----------------------------------------------------------------------------------------- index build

def add_index_flags(ix: argparse.ArgumentParser) -> None:
    sub = ix.add_subparsers(dest="index_command", required=True)
    b = sub.add_parser("build", help="render or read images, embed them with the bundle's CLIP, write a pool folder",
                       description="Build a retrieval pool folder (pool.json, embeddings.npy, ids.npy or paths.txt). "
                                   "An interrupted build resumes from its last finished batch.")
    what = b.add_mutually_exclusive_group(required=True)
    what.add_argument("--scenes", type=int, default=None,
                      help="N procedural scenes (ids from 200,000,000 up: never SimNSD's own images)")
    what.add_argument("--images", default=None, help="a folder of jpg/png images (searched recursively)")
    b.add_argument("--out", required=True, help="pool folder to write (e.g. data/pool, the default pool)")
    b.add_argument("--seed", type=int, default=None, help="scene seed (default: the bundle's dataset seed)")
    b.add_argument("--bundle", default=None, help="bundle whose CLIP embeds the pool (default: assets/demo)")
    b.add_argument("--size", type=int, default=None,
                   help="image size in pixels: scenes are rendered and folder images centre-cropped to it "
                        "(default: 96 for scenes, 224 for folders)")
    b.add_argument("--batch", type=int, default=256, help="images per batch (and per resumable chunk)")
    b.add_argument("--workers", type=int, default=1, help="processes rendering or reading images (default: 1)")
    b.add_argument("--json", action="store_true", help="print the pool's pool.json")


def index_cmd(args) -> int:
    import time

    from .bundle import DEMO_BUNDLE, Bundle
    from .data.errors import DataError
    from .models.scene_clip import SceneCLIP
    from .pipelines.pool import build_folder_pool, build_scene_pool
    bundle = Bundle.load(args.bundle or DEMO_BUNDLE)
    if "clip" not in bundle.models:
        raise DataError(f"bundle {bundle.name!r} names no clip model to embed the pool with")
    clip = SceneCLIP.load(bundle.resolve(bundle.models["clip"]))
    t0 = time.time()
    if args.scenes is not None:
        out = build_scene_pool(clip, args.scenes, Path(args.out), seed=bundle.seed if args.seed is None else args.seed,
                               size=args.size or 96, batch=args.batch, workers=args.workers)
    else:
        out = build_folder_pool(clip, Path(args.images), Path(args.out), size=args.size or 224,
                                batch=min(args.batch, 64), workers=args.workers)
    meta = json.loads((out / "pool.json").read_text())
    if args.json:
        print(json.dumps({**meta, "path": str(out), "seconds": round(time.time() - t0, 1)}))
    else:
        print(f"wrote {out}: {meta['n']:,} {meta['kind']} embeddings of {meta['dim']} dims "
              f"({meta['embedder']['variant']} {meta['embedder']['sha256']}) in {time.time() - t0:.0f} s")
    return 0
