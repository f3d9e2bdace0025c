"""``python -m mindeye build-demo``: train the demo vision stack from scratch and write it into a bundle.

Stages (each seeded, with a progress bar, logged to ``<work>/build_log.jsonl``):

1. ``clip``    SceneCLIP (open_clip, conv stem, word tokenizer, hard negative captions, attribute read-outs):
               2400 steps, then a warm restart of 800
2. ``vae``     a small diffusers AutoencoderKL (64 px -> 4 x 16 x 16), 1500 steps on the scene bank
   ``vae_decoder``  phase 2 of the VAE: its decoder fine-tuned alone, encoder frozen (SD's ft-MSE recipe),
               with a chroma loss; the latent space does not move, so on a built bundle it refreshes the
               shipped VAE in place and the UNet and low-level model stay valid
3. ``judge``   the scene-attribute classifier used to score reconstructions
4. ``decoder`` the unCLIP UNet on the VAE's latents, cross-attending to SceneCLIP hidden states and taking
               their patch tokens on the 8 x 8 grid as extra input channels
5. ``mindeye`` MindEye for SimNSD subject 1 (hidden + prior, final-layer) and the low-level model

Outputs land in ``<out>/clip``, ``<out>/decoder/{image_unet,vae,scheduler}`` (Versatile Diffusion's layout),
``<out>/judge``, ``<out>/mindeye/{hidden,final,lowlevel}.{safetensors,json}``; ``<out>/bundle.json`` gets
their paths. Later stages load earlier ones from ``<out>``, so
``--stages decoder`` retrains only the decoder. ``--tiny`` builds toy-sized models in seconds (for tests).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .bundle import PROJECT_ROOT, cache_root
from .data.errors import DataError

STAGES = ("clip", "vae", "vae_decoder", "judge", "decoder", "mindeye")
BANK_SIZE = 60_000  # scenes rendered once and shared by the vision stack's stages (~720 MB in memory)

# The shipped MindEye models for SimNSD subject 1 (V1's recipe at laptop size). "hidden" maps to the 65 x 128
# SceneCLIP hidden states (+ diffusion prior) for reconstruction; "final" to the 128-d final embedding.
# The shipped MindEye recipes for SimNSD subject 1, chosen on the val split (README, "Training MindEye").
# Each part is a list of runs trained in order; the last one is exported. V1's schedule shape: BiMixCo for the
# first third, then SoftCLIP with a cosine-annealed temperature, OneCycle; trained until val retrieval stopped
# rising. "hidden" trains in two stages: the BrainNetwork with its contrastive loss (a step costs a quarter of
# one with the prior), then the diffusion prior on that frozen network (scored by its val denoising loss), 30
# epochs on averages of random subsets of repetitions: 8 epochs on single trials left its samples carrying little
# of the brain's identity (val token cosine 0.61 against 0.63; see bench/prior_sampling.py for its sampling). The
# prior also learns from synthetic trials (as "final" does, below), one per real trial: it overfitted the network's
# outputs for the 5700 train images (bench/prior_identity.py); with them its val denoising loss fell from 0.150 to
# 0.137 and one sample's val top-1 rose from 39% to 43% (cosine 0.702 to 0.704, the same draw).
# "final" starts its trunk and its (per-token) projector from the hidden network: 65 x 128 targets teach the
# trunk more per image than one 128-d embedding. It also trains on synthetic trials of 50k unseen scenes, 20 per
# real trial in each batch (training/synthetic.py), whose responses an encoding model of CLIP and low-level
# features predicts, for 60 epochs. Both halves of that were chosen on val by bench/final_recipe.py (its README
# table has every variant): more synthetic trials per real one and more epochs each helped, and together most.
_ME = dict(use_image_aug=False, batch_size=32, hidden_dim=512, n_blocks=2, proj_hidden=256, max_lr=1e-3,
           ckpt_interval=5, seed=42)
_PRIOR = dict(prior_depth=2, prior_heads=4, prior_dim_head=32)  # stage 1 trains no prior: these only name its shape
_PRIOR_STAGE2 = dict(_PRIOR, prior_depth=4, prior_heads=8)  # chosen on val (bench/prior_identity.py): depth 2 was too small
DEMO_MINDEYE = {
    "hidden": [dict(_ME, **_PRIOR, model_name="demo_hidden_v2c", hidden=True, prior=False, num_epochs=40),
               dict(_ME, **_PRIOR_STAGE2, model_name="demo_hidden", hidden=True, prior=True, num_epochs=30, v2c=False,
                    mixup_pct=0.0, train_reps="subset", init_backbone="demo_hidden_v2c", freeze_backbone=True,
                    synthetic_trials=50_000, synthetic_frac=1.0)],
    "final": [dict(_ME, model_name="demo_final", hidden=False, prior=False, num_epochs=60, train_reps="subset",
                   init_backbone="demo_hidden_v2c", init_scope="trunk_projector", synthetic_trials=50_000,
                   synthetic_frac=20.0)],
}
MINDEYE_PARTS = (*DEMO_MINDEYE, "lowlevel")  # what the mindeye stage can train
# synthetic trials labelled with VAE latents, ten per real trial: chosen on val by bench/lowlevel_recipe.py
DEMO_LOWLEVEL = dict(model_name="demo_lowlevel", batch_size=32, num_epochs=40, hidden_dim=512, n_blocks=2,
                     map_channels=32, upsampler_channels=(32, 32, 64), max_lr=1e-3, ckpt_interval=5, seed=42,
                     synthetic_trials=50_000, synthetic_frac=10.0)
TINY_MINDEYE = dict(num_epochs=1, hidden_dim=32, n_blocks=1, proj_hidden=16, prior_depth=1, prior_heads=2,
                    prior_dim_head=8, batch_size=16)
TINY_SYNTHETIC = 32  # synthetic trials in a tiny build (the recipe's 50k would take minutes)
TINY_LOWLEVEL = dict(num_epochs=1, hidden_dim=32, n_blocks=1, map_channels=16, upsampler_channels=(16, 16, 32),
                     batch_size=16)


_RUN_PLACE = ("model_name", "out", "bundle", "ckpt_every_s", "init_backbone")  # where a run is, not what it learns


def finished_run(run_dir: Path, kw: dict, config_cls=None) -> bool:
    """True when ``run_dir`` holds a run that trained every epoch with the same settings as ``kw`` (so a
    build that was stopped, or rerun, does not train it again). ``config_cls``: the run's config class
    (``TrainConfig``, or ``LowLevelTrainConfig`` for a low-level run)."""
    path = run_dir / "last.pth"
    if not path.exists():
        return False
    import dataclasses

    from .checkpoints import load_checkpoint
    from .train import TrainConfig
    config_cls = config_cls or TrainConfig
    try:
        ck = load_checkpoint(path)
    except Exception:
        return False
    # a setting left None is resolved when the run starts (subj: the bundle's subject): any resolved value matches
    want = {k: v for k, v in dataclasses.asdict(config_cls(**kw)).items() if k not in _RUN_PLACE and v is not None}
    # a flag added after the run was trained did not exist then: the run used what is now its default
    have = {**dataclasses.asdict(config_cls()), **ck.get("config", {})}
    # and a flag removed since then cannot be set any more: only today's flags are compared
    have = {k: v for k, v in have.items() if k not in _RUN_PLACE and k in want}
    return have == want and ck.get("epoch") == want["num_epochs"]


def _configs(tiny: bool, seed: int):
    from .models.autoencoder import VAEDecoderFinetuneConfig, VAETrainConfig
    from .models.decoder import DecoderTrainConfig
    from .models.judge import JudgeTrainConfig
    from .models.scene_clip import SceneCLIPTrainConfig
    if tiny:
        return {"bank_size": 64,
                "clip": SceneCLIPTrainConfig(steps=3, batch_size=8, warmup=1, seed=seed, log_every=1,
                                             overrides={"vision_layers": 1, "text_layers": 1}),
                "clip_phase2": SceneCLIPTrainConfig(steps=2, batch_size=8, warmup=1, seed=seed, log_every=1,
                                                    start_step=3),
                "vae": VAETrainConfig(steps=2, batch_size=4, seed=seed, log_every=1, block_out_channels=(16, 16, 32)),
                "vae_decoder": VAEDecoderFinetuneConfig(steps=2, batch_size=4, seed=seed + 1, log_every=1),
                "judge": JudgeTrainConfig(steps=2, batch_size=8, width=8, seed=seed, log_every=1),
                "decoder": DecoderTrainConfig(steps=2, batch_size=4, seed=seed, log_every=1,
                                              block_out_channels=(32, 32, 64))}
    # SceneCLIP: 2400 steps of cosine decay, then a warm restart (SGDR-style) for 800 more: the shape read-out
    # was still climbing (55% held out at step 1600) when the first schedule ran out of learning rate
    return {"bank_size": BANK_SIZE, "clip": SceneCLIPTrainConfig(seed=seed),
            "clip_phase2": SceneCLIPTrainConfig(steps=800, lr=1e-3, warmup=20, seed=seed, start_step=2400),
            "vae": VAETrainConfig(seed=seed), "vae_decoder": VAEDecoderFinetuneConfig(seed=seed + 1),
            "judge": JudgeTrainConfig(seed=seed), "decoder": DecoderTrainConfig(seed=seed)}


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path.resolve())


def _write_json(path: Path, obj: dict, indent: int = 1) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=indent) + "\n")
    tmp.replace(path)


def update_bundle(out: Path, models: dict) -> None:
    path = out / "bundle.json"
    raw = json.loads(path.read_text()) if path.exists() else {
        "name": "SimNSD demo", "dataset": {"kind": "simnsd", "path": "data/simnsd", "subject": 1, "seed": 0}}
    raw.setdefault("models", {}).update(models)
    _write_json(path, raw, indent=2)


def _load_vae(folder: Path):
    from diffusers import AutoencoderKL
    return AutoencoderKL.from_pretrained(folder, local_files_only=True).float().eval()


def _vae_meta(folder: Path) -> dict:
    path = folder / "train_meta.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save_vae(vae, meta: dict, folder: Path, fp16: bool = False) -> None:
    from .atomic import atomic_dir
    with atomic_dir(folder) as tmp:
        (vae.half() if fp16 else vae).save_pretrained(tmp, safe_serialization=True)
        vae.float()
        (tmp / "train_meta.json").write_text(json.dumps(meta, indent=1))


def _phase1_vae(work: Path, out: Path):
    """The VAE phase 2 starts from: ``<work>/vae_phase1`` (written by the ``vae`` stage), else the bundle's
    VAE when it has not been fine-tuned yet (that copy is then kept as ``vae_phase1``)."""
    for folder in (work / "vae_phase1", out / "decoder" / "vae"):
        if not folder.exists():
            continue
        meta = _vae_meta(folder)
        if "decoder_finetune" in meta:
            raise DataError(f"{folder}: expected a phase-1 VAE to fine-tune, found one whose decoder is already "
                            f"fine-tuned (and no phase-1 copy in {work}); run the vae stage first "
                            "(--stages vae,vae_decoder)")
        vae = _load_vae(folder)
        if folder != work / "vae_phase1":
            _save_vae(vae, meta, work / "vae_phase1")
        return vae, meta
    raise DataError(f"no VAE to fine-tune: expected {work / 'vae_phase1'} or {out / 'decoder' / 'vae'}, found "
                    "neither; run the vae stage first")


def build_demo(out: Path, stages=STAGES, work: Path | None = None, seed: int = 0, tiny: bool = False,
               workers: int = 1, log=print, mindeye_parts=MINDEYE_PARTS, device: str = "cpu") -> dict:
    """Train the stages in order on ``device`` ("cpu", "cuda", "cuda:1"; every stage, MindEye's included) and
    write them into the bundle ``out``. The shipped bundle was built on the CPU."""
    from .models import autoencoder as AE
    from .models.decoder import train_decoder
    from .models.judge import train_judge
    from .models.scene_clip import SceneCLIP, train_scene_clip

    out = Path(out)
    work = Path(work) if work else cache_root() / "build"
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    logf = open(work / "build_log.jsonl", "a")

    def jlog(line: str):
        logf.write(line + "\n")
        logf.flush()

    cfgs = _configs(tiny, seed)
    torch.manual_seed(seed)
    timings = {}
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; expected some of {STAGES}")
    _bank = []

    def bank():  # rendered once (or read from the cache) by the first stage that needs it
        if not _bank:
            from .data.stream import SceneBank
            _bank.append(SceneBank.build(cfgs["bank_size"], seed, cache_dir=work, workers=max(1, workers), log=log))
        return _bank[0]

    if "clip" in stages:
        t0 = time.time()
        clip = train_scene_clip(cfgs["clip"], log=jlog, workers=workers, bank=bank(), device=device)
        clip.save(work / "clip_phase1", dtype=torch.float32)
        clip = train_scene_clip(cfgs["clip_phase2"], log=jlog, workers=workers, init=clip, bank=bank(),
                                device=device)
        clip.save(out / "clip")
        timings["clip"] = time.time() - t0
        update_bundle(out, {"clip": _rel(out / "clip")})
    if "vae" in stages:
        t0 = time.time()
        vae, meta = AE.train_vae(cfgs["vae"], log=jlog, workers=workers, bank=bank(), device=device)
        for folder in ("vae_phase1", "vae"):  # phase 2 always starts again from vae_phase1
            _save_vae(vae, meta, work / folder)
        timings["vae"] = time.time() - t0
    if "vae_decoder" in stages:
        t0 = time.time()
        vae, meta = _phase1_vae(work, out)
        vae, ft_meta = AE.finetune_decoder(vae, cfgs["vae_decoder"], log=jlog, workers=workers, bank=bank(),
                                           device=device)
        meta = {**meta, **ft_meta}
        _save_vae(vae, meta, work / "vae")
        shipped = out / "decoder" / "vae"
        if shipped.exists() and AE.encoder_sha256(_load_vae(shipped)) == ft_meta["encoder_sha256"]:
            _save_vae(vae, meta, shipped, fp16=True)  # same latent space: the shipped UNet and low-level model stay valid
            unet_meta = out / "decoder" / "train_meta.json"  # the UNet shipped with this encoder, so was trained on it
            if unet_meta.exists():
                um = json.loads(unet_meta.read_text())
                um.setdefault("vae_encoder_sha256", ft_meta["encoder_sha256"])
                _write_json(unet_meta, um)
            log(f"vae_decoder: refreshed {shipped}")
        timings["vae_decoder"] = time.time() - t0
    if "judge" in stages:
        t0 = time.time()
        judge, meta = train_judge(cfgs["judge"], log=jlog, workers=workers, bank=bank(), device=device)
        judge.save(out / "judge", meta)
        timings["judge"] = time.time() - t0
        update_bundle(out, {"judge": _rel(out / "judge")})
    if "decoder" in stages:
        t0 = time.time()
        clip = SceneCLIP.load(out / "clip")
        vae_dir = work / "vae" if (work / "vae").exists() else out / "decoder" / "vae"
        vae = _load_vae(vae_dir)
        vae_meta = _vae_meta(vae_dir)
        dec, meta = train_decoder(cfgs["decoder"], clip, vae, log=jlog, workers=workers, bank=bank(), device=device)
        dec.save_pretrained(out / "decoder")
        _write_json(out / "decoder" / "train_meta.json", meta)
        _write_json(out / "decoder" / "vae" / "train_meta.json", vae_meta)
        timings["decoder"] = time.time() - t0
        update_bundle(out, {"decoder": _rel(out / "decoder"), "vae": _rel(out / "decoder" / "vae")})
    if "mindeye" in stages:
        from .checkpoints import export_run
        from .train import TrainConfig, train
        from .train_lowlevel import LowLevelTrainConfig, train_lowlevel
        t0 = time.time()
        runs = work / "train_logs"
        common = dict(bundle=str(out), out=str(runs), ckpt_every_s=1e9, device=device)
        exported = {}
        for name, recipe in DEMO_MINDEYE.items():
            if name not in mindeye_parts:
                continue
            for kw in recipe:
                kw = {**kw, **(TINY_MINDEYE if tiny else {}), **common}
                if tiny and kw.get("synthetic_trials"):
                    kw["synthetic_trials"] = TINY_SYNTHETIC
                if kw.get("init_backbone"):  # a run of this build, by name; when this build has not trained it
                    # (``--mindeye_parts final`` alone), the bundle's exported hidden model, which holds the same
                    # BrainNetwork (its prior stage kept the network frozen)
                    run_dir, shipped = runs / kw["init_backbone"], out / "mindeye" / "hidden"
                    use_shipped = not (run_dir / "best.pth").exists() and "hidden" not in mindeye_parts \
                        and shipped.with_suffix(".json").exists()
                    kw["init_backbone"] = str(shipped if use_shipped else run_dir)
                if finished_run(runs / kw["model_name"], kw):
                    log(f"mindeye {kw['model_name']}: reusing the finished run in {runs / kw['model_name']}")
                else:
                    train(TrainConfig(**kw), log=jlog)
            meta = export_run(runs / kw["model_name"], out / "mindeye" / name)
            exported[f"mindeye_{name}"] = _rel(out / "mindeye" / name)
            log(f"mindeye {name}: {json.dumps(meta['val'])}")
        if "lowlevel" in mindeye_parts:
            vae_dir = out / "decoder" / "vae" if (out / "decoder" / "vae").exists() else work / "vae"
            kw = {**DEMO_LOWLEVEL, **(TINY_LOWLEVEL if tiny else {}), **common, "vae_path": str(vae_dir.resolve())}
            if tiny and kw.get("synthetic_trials"):
                kw["synthetic_trials"] = TINY_SYNTHETIC
            if finished_run(runs / kw["model_name"], kw, LowLevelTrainConfig):
                log(f"lowlevel {kw['model_name']}: reusing the finished run in {runs / kw['model_name']}")
            else:
                train_lowlevel(LowLevelTrainConfig(**kw), log=jlog)
            meta = export_run(runs / kw["model_name"], out / "mindeye" / "lowlevel")
            exported["lowlevel"] = _rel(out / "mindeye" / "lowlevel")
            log(f"lowlevel: {json.dumps(meta['val'])}")
        timings["mindeye"] = time.time() - t0
        update_bundle(out, exported)
    summary = {"stages": list(stages), "seconds": {k: round(v, 1) for k, v in timings.items()},
               "total_seconds": round(sum(timings.values()), 1), "threads": torch.get_num_threads(), "device": device}
    jlog(json.dumps({"build": summary}))
    log(f"build-demo: {json.dumps(summary)}")
    return summary
