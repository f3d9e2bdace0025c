"""`python -m mindeye <command>`: the command-line face of the engine.

Commands: simulate (SimNSD), convert (real NSD layouts -> canonical), download (public NSD copies), train,
ridge (the linear baseline), import-v1 (released checkpoints), train-lowlevel, reconstruct, evaluate, retrieve (large-pool retrieval), index (build a pool), build-demo (train
the shipped demo vision stack).
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

    convert(args.layout, Path(args.data_path), args.subj, Path(args.out),
            vertex_map=Path(args.vertex_map) if args.vertex_map else None, image_size=args.image_size,
            n_voxels=args.n_voxels, overwrite=args.overwrite)
    return 0


def _download(args) -> int:
    from .data.download import download

    paths = download(args.layout, args.subj, Path(args.data_path))
    print(f"{len(paths)} files in {args.data_path}")
    return 0


def _csv_subset(text: str, allowed, what: str) -> list[str]:
    """A comma-separated list, every item one of ``allowed`` (SystemExit naming the unknown ones)."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in allowed]
    if bad:
        raise SystemExit(f"error: unknown {what}(s) {bad}; expected a comma-separated subset of {','.join(allowed)}")
    return items


def _build_demo(args) -> int:
    from .build_demo import MINDEYE_PARTS, STAGES, build_demo

    stages = _csv_subset(args.stages, STAGES, "stage")
    parts = tuple(_csv_subset(args.mindeye_parts, MINDEYE_PARTS, "MindEye part"))
    build_demo(Path(args.out), stages=stages, work=Path(args.work) if args.work else None, seed=args.seed,
               tiny=args.tiny, workers=args.workers, mindeye_parts=parts, device=args.device)
    return 0


def explicit_train_flags(argv: list[str]) -> set[str]:
    """The ``train`` flags (dest names) that ``argv`` gives, whatever their value."""
    p = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    add_train_flags(p, defaults=False)
    given, _ = p.parse_known_args(argv)
    return set(vars(given))


def train_config_from_args(args, argv: list[str]):
    """TrainConfig from parsed ``train`` flags; a preset fills only the flags ``argv`` (the command line after
    ``train``) does not give, even one given at its default value (``--preset demo --hidden``)."""
    import dataclasses

    from .train_config import PRESETS, TrainConfig

    values = {k: v for k, v in vars(args).items() if k in {f.name for f in dataclasses.fields(TrainConfig)}}
    if args.preset:
        given = explicit_train_flags(argv)
        values.update({k: v for k, v in PRESETS[args.preset].items() if k not in given})
    return TrainConfig(**values)


def parse_train(argv: list[str]):
    """``python -m mindeye train ARGV`` -> TrainConfig, as the command would run it."""
    args = build_parser().parse_args(["train", *argv])
    return train_config_from_args(args, argv)


def _train(args) -> int:
    from .train import train

    train(train_config_from_args(args, args.argv))
    return 0


def _ridge(args) -> int:
    import json

    from .baselines import ridge_run

    metrics = ridge_run(data_path=args.data_path, subj=args.subj, hidden=args.hidden, clip_variant=args.clip_variant,
                        norm_embs=args.norm_embs, vd_cache_dir=args.vd_cache_dir, bundle=args.bundle, out=args.out,
                        model_name=args.model_name)
    if args.json:
        print(json.dumps(metrics))
    return 0


def _import_v1(args) -> int:
    from .v1_checkpoints import export_v1

    meta = export_v1(Path(args.ckpt), Path(args.out), subject=args.subj, trust_pickle=args.trust_pickle)
    print(f"{args.ckpt}: MindEye V1 {meta['v1_kind']} ({meta['data']['n_voxels']} voxels -> "
          f"{' x '.join(map(str, meta['data']['target_shape']))}) written to {args.out}.safetensors + .json")
    return 0


def _train_lowlevel(args) -> int:
    import dataclasses

    from .train_config import LowLevelTrainConfig
    from .train_lowlevel import train_lowlevel

    values = {k: v for k, v in vars(args).items() if k in {f.name for f in dataclasses.fields(LowLevelTrainConfig)}}
    if values.get("upsampler_channels"):
        values["upsampler_channels"] = tuple(values["upsampler_channels"])
    train_lowlevel(LowLevelTrainConfig(**values))
    return 0


def add_lowlevel_flags(t: argparse.ArgumentParser) -> None:
    """V1 train_autoencoder.py's settings as flags (same names and defaults), then ours: LowLevelTrainConfig's
    fields, each with its default and help (written once there)."""
    from .flags import add_dataclass_flags
    from .train_config import LowLevelTrainConfig
    add_dataclass_flags(t, LowLevelTrainConfig)


def add_train_flags(t: argparse.ArgumentParser, defaults: bool = True) -> None:
    """The seed's Train_MindEye.py flags (same names, defaults and help), then ours: TrainConfig's fields, each
    with its default and help (written once there), and --preset. ``defaults``: fill in TrainConfig's defaults
    (off only to learn which flags a command line gives; a preset fills what the command line leaves)."""
    from .flags import add_dataclass_flags
    from .train_config import PRESETS, TrainConfig
    add_dataclass_flags(t, TrainConfig, defaults=defaults)
    t.add_argument("--preset", choices=sorted(PRESETS),
                   help="demo: a small final-layer model that learns SimNSD subject 1 within minutes on a laptop CPU")


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
    c.add_argument("--subj", type=int, default=1, choices=range(1, 9), metavar="1-8", help="NSD subject (default: 1)")
    c.add_argument("--out", required=True,
                   help="canonical dataset folder to write; an existing one is refused unless it is converted NSD "
                        "without this subject and with the same image size (the subject is added)")
    c.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUT entirely (every subject in it), atomically, once the new data is read")
    c.add_argument("--n_voxels", default="nsd",
                   help="voxels per trial to insist on: 'nsd' (nsdgeneral: 15724 for subject 1 ...), a number for a "
                        "custom ROI, or 'any' (default: nsd)")
    c.add_argument("--vertex_map", default=None,
                   help=".npz with 'hemi' [V] and 'vertex' [V] (fsaverage5) for surface plots (optional)")
    c.add_argument("--image_size", type=int, default=224, help="stored image size (default: 224)")
    c.set_defaults(func=_convert)

    d = sub.add_parser("download", help="fetch one subject's public NSD files (skips files already there)")
    d.add_argument("--layout", choices=["v1", "v2"], default="v1")
    d.add_argument("--subj", type=int, default=1)
    d.add_argument("--data_path", required=True, help="where to put them")
    d.set_defaults(func=_download)
    t = sub.add_parser("train", help="train MindEye (voxel2clip + projector + diffusion prior), as Train_MindEye.py")
    add_train_flags(t)
    t.set_defaults(func=_train)

    rd = sub.add_parser("ridge", help="fit the ridge baseline (closed form, alpha by CV) on a train target's flags, "
                                      "scored with MindEye's retrieval code")
    B = argparse.BooleanOptionalAction
    rd.add_argument("--model_name", default="ridge", help="the run folder's name under --out (default: ridge)")
    rd.add_argument("--data_path", default=None, help="dataset folder (default: the bundle's dataset)")
    rd.add_argument("--subj", type=int, default=None, choices=range(1, 9), metavar="1-8",
                    help="subject (default: the bundle's)")
    rd.add_argument("--hidden", action=B, default=True,
                    help="the last hidden layer's tokens as target (as train --hidden); --no-hidden: the final embedding")
    rd.add_argument("--clip_variant", choices=["ViT-L/14", "SceneCLIP"], default=None,
                    help="default: ViT-L/14 for NSD, the bundle's SceneCLIP for SimNSD")
    rd.add_argument("--norm_embs", action=B, default=True, help="normalise the targets as train does")
    rd.add_argument("--vd_cache_dir", default=None, help="Versatile Diffusion folder whose image_encoder/ is ViT-L/14")
    rd.add_argument("--bundle", default=None, help="bundle folder (default: assets/demo)")
    rd.add_argument("--out", default="train_logs", help="runs folder (default: train_logs)")
    rd.add_argument("--json", action="store_true", help="print the metrics as JSON")
    rd.set_defaults(func=_ridge)

    iv = sub.add_parser("import-v1", help="a released MindEye V1 checkpoint (either prior or the autoencoder) -> the "
                                          ".safetensors + .json pair bundles and the engine load")
    iv.add_argument("--ckpt", required=True, help="the released .pth (e.g. prior_257_final_subj01_bimixco_softclip_byol/last.pth)")
    iv.add_argument("--out", required=True, help="output stem: writes OUT.safetensors (fp16) and OUT.json")
    iv.add_argument("--subj", type=int, default=1, choices=range(1, 9), metavar="1-8",
                    help="the subject the file was trained on (the released files: 1)")
    iv.add_argument("--trust_pickle", action="store_true",
                    help="load a .pth that holds more than tensors (a pickle can run code: only for files you trust)")
    iv.set_defaults(func=_import_v1)

    lo = sub.add_parser("train-lowlevel", help="train the low-level voxel -> VAE latent model, as train_autoencoder.py")
    add_lowlevel_flags(lo)
    lo.set_defaults(func=_train_lowlevel)

    from .inference_cli import (add_evaluate_flags, add_index_flags, add_reconstruct_flags, add_retrieve_flags,
                                evaluate_cmd, index_cmd, reconstruct_cmd, retrieve_cmd)
    r = sub.add_parser("reconstruct", help="brain -> images for test trials, as Reconstructions.py")
    add_reconstruct_flags(r)
    r.set_defaults(func=reconstruct_cmd)
    v = sub.add_parser("evaluate", help="score reconstructions with the paper's metrics, as Reconstruction_Metrics.py")
    add_evaluate_flags(v)
    v.set_defaults(func=evaluate_cmd)
    rt = sub.add_parser("retrieve", help="brain -> nearest images of a large pool + second-order pick, as Retrievals.py "
                                         "(its LAION-5B part)")
    add_retrieve_flags(rt)
    rt.set_defaults(func=retrieve_cmd)
    ix = sub.add_parser("index", help="build a large retrieval pool (scenes or a folder of images) for retrieve")
    add_index_flags(ix)
    ix.set_defaults(func=index_cmd)

    b = sub.add_parser("build-demo", help="train the demo vision stack (SceneCLIP, VAE, judge, decoder) from scratch")
    b.add_argument("--out", default="assets/demo", help="bundle folder to write (default: assets/demo)")
    b.add_argument("--stages", default="clip,vae,judge,decoder,mindeye",
                   help="comma-separated stages to (re)build, in order (default: all)")
    b.add_argument("--work", default=None, help="scratch folder for logs and intermediates (default: cache/build)")
    b.add_argument("--seed", type=int, default=0, help="seed for every stage (default: 0)")
    b.add_argument("--workers", type=int, default=1, help="scene-rendering worker processes (default: 1)")
    b.add_argument("--mindeye_parts", default="hidden,final,lowlevel",
                   help="which MindEye models the mindeye stage trains (default: hidden,final,lowlevel; a new VAE "
                        "needs only lowlevel, a new SceneCLIP hidden,final)")
    b.add_argument("--tiny", action="store_true", help="toy-sized models and a few steps (tests, smoke checks)")
    b.add_argument("--device", default="cpu",
                   help="where every stage trains: cpu (default; the shipped bundle was built there), cuda, cuda:1 ...")
    b.set_defaults(func=_build_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    from .data.errors import DataError

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv[1:]  # the command's own flags (a preset fills only the ones not given)
    try:
        return args.func(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
