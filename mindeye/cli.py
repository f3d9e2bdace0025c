"""`python -m mindeye <command>`: the command-line face of the engine.

Commands: simulate (SimNSD), convert (real NSD layouts -> canonical), download (public NSD copies),
build-demo (train the shipped demo vision stack).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _simulate(args) -> int:
    from .data.simnsd import SimConfig, format_summary, simulate

    for subj in args.subj:
        cfg = SimConfig(subj=subj, seed=args.seed, n_train=args.n_train, n_test=args.n_test,
                        image_size=args.image_size, ncsnr_scale=args.ncsnr_scale)
        summary = simulate(Path(args.out), cfg, workers=args.workers, force=args.force)
        print(format_summary(summary))
    return 0


def _convert(args) -> int:
    from .data.nsd import convert

    path = convert(args.layout, Path(args.data_path), args.subj, Path(args.out),
                   vertex_map=Path(args.vertex_map) if args.vertex_map else None, image_size=args.image_size)
    print(f"wrote {path}")
    return 0


def _download(args) -> int:
    from .data.download import download

    paths = download(args.layout, args.subj, Path(args.data_path))
    print(f"{len(paths)} files in {args.data_path}")
    return 0


def _build_demo(args) -> int:
    from .build_demo import STAGES, build_demo

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise SystemExit(f"error: unknown stage(s) {bad}; expected a comma-separated subset of {','.join(STAGES)}")
    build_demo(Path(args.out), stages=stages, work=Path(args.work) if args.work else None, seed=args.seed,
               tiny=args.tiny, workers=args.workers)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mindeye", description="MindEye Explorer engine commands")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="generate SimNSD subjects in the canonical format (cached)")
    s.add_argument("--subj", type=int, nargs="+", default=[1], choices=[1, 2, 5, 7],
                   help="simulated subject(s), as the seed supports (default: 1)")
    s.add_argument("--out", default="data/simnsd", help="dataset folder (default: data/simnsd)")
    s.add_argument("--seed", type=int, default=0, help="simulator seed (default: 0)")
    s.add_argument("--n_train", type=int, default=6000, help="train images per subject (default: 6000)")
    s.add_argument("--n_test", type=int, default=1000, help="shared test images, seen 3x (default: 1000)")
    s.add_argument("--image_size", type=int, default=96, help="stimulus size in pixels (default: 96)")
    s.add_argument("--ncsnr_scale", type=float, default=1.0,
                   help="multiply the calibrated noise-ceiling SNR (default: 1.0; <1 = noisier)")
    s.add_argument("--workers", type=int, default=None, help="processes for rendering (default: all cores)")
    s.add_argument("--force", action="store_true", help="simulate again even if a cached copy matches")
    s.set_defaults(func=_simulate)

    c = sub.add_parser("convert", help="read a real NSD layout once and write the canonical format")
    c.add_argument("--layout", choices=["v1", "v2"], required=True,
                   help="v1: webdataset_avg_split shards; v2: betas_all_*.hdf5 + wds behav.npy")
    c.add_argument("--data_path", required=True, help="folder holding the downloaded NSD files")
    c.add_argument("--subj", type=int, default=1, help="NSD subject 1-8 (default: 1)")
    c.add_argument("--out", required=True, help="canonical dataset folder to write")
    c.add_argument("--vertex_map", default=None,
                   help=".npz with 'hemi' [V] and 'vertex' [V] (fsaverage5) for surface plots (optional)")
    c.add_argument("--image_size", type=int, default=224, help="stored image size (default: 224)")
    c.set_defaults(func=_convert)

    d = sub.add_parser("download", help="fetch one subject's public NSD files (skips files already there)")
    d.add_argument("--layout", choices=["v1", "v2"], default="v1")
    d.add_argument("--subj", type=int, default=1)
    d.add_argument("--data_path", required=True, help="where to put them")
    d.set_defaults(func=_download)
    b = sub.add_parser("build-demo", help="train the demo vision stack (SceneCLIP, VAE, judge, decoder) from scratch")
    b.add_argument("--out", default="assets/demo", help="bundle folder to write (default: assets/demo)")
    b.add_argument("--stages", default="clip,vae,judge,decoder",
                   help="comma-separated stages to (re)build, in order (default: all)")
    b.add_argument("--work", default=None, help="scratch folder for logs and intermediates (default: cache/build)")
    b.add_argument("--seed", type=int, default=0, help="seed for every stage (default: 0)")
    b.add_argument("--workers", type=int, default=1, help="scene-rendering worker processes (default: 1)")
    b.add_argument("--tiny", action="store_true", help="toy-sized models and a few steps (tests, smoke checks)")
    b.set_defaults(func=_build_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    from .data.errors import DataError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
