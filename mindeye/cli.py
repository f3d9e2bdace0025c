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
    """V1 train_autoencoder.py's settings as flags (same names and defaults), then ours."""
    B = argparse.BooleanOptionalAction
    t.add_argument("--model_name", help="name of model, used for ckpt saving")
    t.add_argument("--data_path", help="dataset folder (default: the bundle's dataset)")
    t.add_argument("--subj", type=int, choices=range(1, 9), metavar="1-8",
                   help="subject: any NSD subject 1-8 the converter wrote; SimNSD simulates 1, 2, 5, 7 (default: the "
                        "bundle's subject)")
    t.add_argument("--batch_size", type=int)
    t.add_argument("--num_epochs", type=int, help="number of epochs of training")
    t.add_argument("--max_lr", type=float)
    t.add_argument("--lr_scheduler_type", choices=["cycle", "linear"])
    t.add_argument("--ckpt_saving", action=B)
    t.add_argument("--ckpt_interval", type=int, help="save backup ckpt every x epochs")
    t.add_argument("--save_at_end", action=B)
    t.add_argument("--resume_from_ckpt", action=B)
    t.add_argument("--seed", type=int)
    t.add_argument("--use_cont", action=B,
                   help="soft contrastive loss on ConvNeXt features (needs local ConvNeXt-XL weights)")
    t.add_argument("--cont_model", help="Type of ConvNext model to use")
    t.add_argument("--use_reconst", action=B, help="also an L1 loss on the VAE-decoded image")
    t.add_argument("--use_sobel_loss", action=B, help="also an L1 loss on Sobel edges (with --use_reconst)")
    t.add_argument("--use_blurred_training", action=B, help="(not supported here)")
    t.add_argument("--ups_mode", choices=["4x"], help="Upscaling factor for VAE embeds")
    t.add_argument("--wandb_log", action=B, help="whether to log to wandb")
    t.add_argument("--wandb_project", help="wandb project name")
    # ours
    t.add_argument("--vae_path", help="diffusers AutoencoderKL folder (default: the bundle's VAE)")
    t.add_argument("--bundle", help="bundle folder (default: assets/demo)")
    t.add_argument("--out", help="runs folder (default: train_logs)")
    t.add_argument("--device")
    t.add_argument("--mixed_precision", choices=["auto", "no", "fp16", "bf16"])
    t.add_argument("--hidden_dim", type=int, help="MLP width (V1: 4096)")
    t.add_argument("--n_blocks", type=int, help="residual blocks (V1: 4)")
    t.add_argument("--map_channels", type=int, help="channels of the voxel feature map (V1: 64)")
    t.add_argument("--upsampler_channels", type=int, nargs="+",
                   help="upsampling decoder widths (V1: 64 128 256)")
    t.add_argument("--ckpt_every_s", type=float, help="also write last.pth every N seconds")
    t.add_argument("--log_every", type=int)
    t.add_argument("--max_steps", type=int)
    # every default comes from LowLevelTrainConfig (V1's train_autoencoder.py values, written once there)
    import dataclasses

    from .train_config import LowLevelTrainConfig
    t.set_defaults(**{f.name: f.default for f in dataclasses.fields(LowLevelTrainConfig)})


def add_train_flags(t: argparse.ArgumentParser, defaults: bool = True) -> None:
    """The seed's Train_MindEye.py flags (same names, defaults and help), then ours. ``defaults``: fill in
    TrainConfig's defaults (off only to learn which flags a command line gives)."""
    B = argparse.BooleanOptionalAction
    t.add_argument("--model_name", type=str,
                   help="name of model, used for ckpt saving and wandb logging (if enabled)")
    t.add_argument("--data_path", type=str,
                   help="Path to where NSD data is stored / where to download it to (default: the bundle's dataset)")
    t.add_argument("--subj", type=int, choices=range(1, 9), metavar="1-8",
                   help="subject: any NSD subject 1-8 the converter wrote; SimNSD simulates 1, 2, 5, 7 (default: the "
                        "bundle's subject)")
    t.add_argument("--batch_size", type=int,
                   help="Batch size can be increased by 10x if only training v2c and not diffusion prior")
    t.add_argument("--hidden", action=B,
                   help="if True, CLIP embeddings will come from last hidden layer (e.g., 257x768 - Versatile "
                        "Diffusion), rather than final layer")
    t.add_argument("--clip_variant", type=str, choices=["RN50", "ViT-L/14", "ViT-B/32", "RN50x64", "SceneCLIP"],
                   help="OpenAI clip variant (default: ViT-L/14 for NSD; SceneCLIP, the demo's small CLIP, for SimNSD)")
    t.add_argument("--wandb_log", action=B, help="whether to log to wandb")
    t.add_argument("--resume_from_ckpt", action=B,
                   help="if not using wandb and want to resume from a ckpt")
    t.add_argument("--wandb_project", type=str, help="wandb project name")
    t.add_argument("--mixup_pct", type=float,
                   help="proportion of way through training when to switch from BiMixCo to SoftCLIP")
    t.add_argument("--norm_embs", action=B, help="Do l2-norming of CLIP embeddings")
    t.add_argument("--use_image_aug", action=B, help="whether to use image augmentation")
    t.add_argument("--num_epochs", type=int, help="number of epochs of training")
    t.add_argument("--prior", action=B,
                   help="if False, will only use CLIP loss and ignore diffusion prior")
    t.add_argument("--v2c", action=B, help="if False, will only use diffusion prior loss")
    t.add_argument("--plot_umap", action=B,
                   help="Plot UMAP plots alongside reconstructions (here: umap.png in the run folder at the end, the "
                        "test images' CLIP embeddings and their brain predictions on one UMAP)")
    t.add_argument("--lr_scheduler_type", type=str, choices=["cycle", "linear"])
    t.add_argument("--ckpt_saving", action=B)
    t.add_argument("--ckpt_interval", type=int, help="save backup ckpt and reconstruct every x epochs")
    t.add_argument("--save_at_end", action=B,
                   help="if True, saves best.ckpt at end of training. if False and ckpt_saving==True, will save "
                        "best.ckpt whenever epoch shows best validation score")
    t.add_argument("--seed", type=int)
    t.add_argument("--max_lr", type=float)
    t.add_argument("--n_samples_save", type=int, choices=[0, 1],
                   help="Number of reconstructions for monitoring progress, 0 will speed up training (1 is refused "
                        "here: reconstruct from the run's checkpoint with `python -m mindeye reconstruct`)")
    t.add_argument("--use_projector", action=B,
                   help="Additional MLP after the main MLP so model can separately learn a way to minimize NCE "
                        "from prior loss (BYOL)")
    t.add_argument("--vd_cache_dir", type=str,
                   help="Where is cached Versatile Diffusion model (here: its folder or a Hugging Face cache holding "
                        "it; nothing is downloaded). With ViT-L/14 targets its image_encoder/ is the CLIP")
    # ours
    t.add_argument("--bundle", help="bundle folder naming dataset and CLIP (default: assets/demo)")
    t.add_argument("--out", help="runs folder; the run goes to OUT/MODEL_NAME (default: train_logs)")
    t.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    t.add_argument("--mixed_precision", choices=["auto", "no", "fp16", "bf16"],
                   help="auto: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32")
    t.add_argument("--hidden_dim", type=int, help="BrainNetwork width (V1: 4096)")
    t.add_argument("--n_blocks", type=int, help="BrainNetwork residual blocks (V1: 4)")
    t.add_argument("--proj_hidden", type=int, help="projector width (V1: 2048)")
    t.add_argument("--prior_depth", type=int, help="diffusion prior transformer depth (V1: 6)")
    t.add_argument("--prior_heads", type=int, help="diffusion prior heads (V1: 12)")
    t.add_argument("--prior_dim_head", type=int, help="diffusion prior head width (V1: 64)")
    t.add_argument("--prior_mult", type=float, help="prior loss weight (default: 30 hidden, .03 final)")
    t.add_argument("--prior_brain_pos", action=argparse.BooleanOptionalAction,
                   help="add the prior's positional embedding to the brain tokens too (default: off, as in V1)")
    t.add_argument("--align_mult", type=float,
                   help="weight of the per-token squared distance between the backbone's tokens and the target "
                        "tokens (default: 0, as in V1)")
    t.add_argument("--weight_decay", type=float, help="AdamW weight decay on weight matrices (V1: 1e-2)")
    t.add_argument("--drop_in", type=float, help="dropout after the BrainNetwork's input layer (V1: 0.5)")
    t.add_argument("--drop_block", type=float, help="dropout in the BrainNetwork's blocks (V1: 0.15)")
    t.add_argument("--voxel_noise", type=float,
                   help="SD of Gaussian noise added to the z-scored train betas each step (default: 0, off)")
    t.add_argument("--train_reps", choices=["single", "subset"],
                   help="single: one random repetition per image and step (V1); subset: the mean of a random "
                        "non-empty subset of its repetitions")
    t.add_argument("--freeze_backbone", action=argparse.BooleanOptionalAction,
                   help="with --init_backbone and --prior: load that run's whole BrainNetwork, keep it fixed and "
                        "train only the diffusion prior (add --no-v2c)")
    t.add_argument("--init_backbone",
                   help="run folder or .pth of the same subject whose BrainNetwork trunk starts this run "
                        "(e.g. the hidden model's, to train the final model on top of it)")
    t.add_argument("--init_scope", choices=["trunk", "model"],
                   help="with --init_backbone: trunk = its BrainNetwork trunk only (lin0, mlp); model = its whole "
                        "BrainNetwork and, when both runs have one, its diffusion prior (fine-tuning)")
    t.add_argument("--ckpt_every_s", type=float,
                   help="also write last.pth every this many seconds mid-epoch (resumable after a kill)")
    t.add_argument("--log_every", type=int, help="write a metrics line every N steps")
    t.add_argument("--max_steps", type=int, help="stop after N steps (the schedule still spans num_epochs)")
    from .train_config import PRESETS
    t.add_argument("--preset", choices=sorted(PRESETS),
                   help="demo: a small final-layer model that learns SimNSD subject 1 within minutes on a laptop CPU")
    # every default comes from TrainConfig (written once there); a preset fills what the command line leaves
    import dataclasses

    from .train_config import TrainConfig
    if defaults:
        t.set_defaults(**{f.name: f.default for f in dataclasses.fields(TrainConfig)})


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
