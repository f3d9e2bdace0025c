"""MindEye training (V1's Train_MindEye.py), under HF Accelerate, for NSD or SimNSD subjects.

voxels -> BrainNetwork (+ projector) -> contrastive loss against CLIP image targets (BiMixCo for the first
``mixup_pct`` of epochs, then SoftCLIP with a cosine-annealed temperature), plus ``prior_mult`` x the
diffusion prior's loss on the backbone output. Writes ``<out>/<model_name>/``:

- ``config.json``            every flag of the run;
- ``metrics.jsonl``          per step (losses, lr) and per epoch (val loss, 300-way image / brain top-1,
                             seconds per epoch, samples per second);
- ``last.pth`` / ``best.pth`` V1's checkpoint keys (``epoch``, ``model_state_dict``, ``optimizer_state_dict``,
                             ``lr_scheduler``, ``train_losses``, ``val_losses``, ``lrs``) plus ``config``,
                             ``data`` (subject, voxel count, dataset fingerprint) and the position inside the
                             epoch, written atomically; also every ``ckpt_every_s`` seconds mid-epoch, so a
                             killed run resumes with ``--resume_from_ckpt`` where it stopped.

CLIP targets are computed once per image and cached (``cache/clip_targets``).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .atomic import atomic_save
from .bundle import PROJECT_ROOT, cache_root, under_work_root  # noqa: F401  (cache_root: also imported from here)
from .data.errors import DataError
from .flags import check_choices
from .losses import cosine_anneal, mixco, mixco_nce, soft_clip_loss
from .metrics import n_way_top1
from .checkpoints import load_checkpoint  # noqa: F401  (also imported from here)
from .train_config import PRESETS, TrainConfig  # noqa: F401  (PRESETS: re-exported for callers)


def cpu_supports_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def file_sha256(path: Path) -> str:
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def resolve_precision(requested: str, device_type: str) -> str:
    """'auto': fp16 on CUDA (as V1), bf16 on CPUs with native bf16 (else emulation makes it ~50x slower)."""
    if requested != "auto":
        return requested
    if device_type == "cuda":
        return "fp16"
    return "bf16" if cpu_supports_bf16() else "no"


# ------------------------------------------------------------------ data + targets

def load_embedder(variant: str, bundle, vd_cache_dir=None, device="cpu"):
    """'SceneCLIP' (the bundle's small CLIP) or 'ViT-L/14' (transformers, local/HF cache)."""
    if variant == "SceneCLIP":
        from .models.scene_clip import SceneCLIP
        path = bundle.models.get("clip") if bundle else None
        if not path:
            raise DataError("clip_variant SceneCLIP needs a bundle with models.clip (assets/demo has one)")
        return SceneCLIP.load(PROJECT_ROOT / path if not Path(path).is_absolute() else path, device=device)
    if variant == "ViT-L/14":
        from .models.embedders import HFClipEmbedder
        if vd_cache_dir:  # Versatile Diffusion's image_encoder is OpenAI's CLIP ViT-L/14 vision tower
            from .models.decoder import resolve_vd_folder
            folder = Path(vd_cache_dir)
            encoder = folder / "image_encoder" if (folder / "image_encoder").is_dir() \
                else resolve_vd_folder(folder) / "image_encoder"
            return HFClipEmbedder.from_pretrained(encoder, device=device)
        return HFClipEmbedder.from_pretrained("openai/clip-vit-large-patch14", device=device)
    raise DataError(f"clip_variant {variant!r} is not available here; expected 'ViT-L/14' or 'SceneCLIP' "
                    "(the seed's RN50 / ViT-B/32 / RN50x64 final-layer variants are not wired up)")


def resolve_subject(data_path, subj: int, bundle, log=print):
    """The subject to train on: ``data_path`` (a converted or simulated dataset; never simulated into), else the
    bundle's dataset, simulated on first use when it is the bundle's own SimNSD folder."""
    from .data.canonical import load_subject
    if data_path:
        return load_subject(Path(data_path), subj)
    path = bundle.data_path
    if bundle.dataset_kind == "simnsd" and not (path / "dataset.json").exists():
        from .data.simnsd import SimConfig, simulate
        simulate(path, SimConfig(subj=subj, seed=bundle.seed), log=log)
    return load_subject(path, subj)


def target_variant(clip_variant: str | None, subject) -> str:
    """The CLIP whose embeddings are the targets: as asked, else by the dataset trained on (not the bundle):
    NSD -> ViT-L/14, SimNSD -> the bundle's SceneCLIP."""
    return clip_variant or ("SceneCLIP" if subject.manifest.get("dataset") == "SimNSD" else "ViT-L/14")


def target_tag(fingerprint: str, variant: str, clip_sha256: str, hidden: bool, norm_embs: bool) -> str:
    """Cache key of a dataset's CLIP targets: data, CLIP (and its weights), layer and normalisation."""
    return (f"{fingerprint}_{variant.replace('/', '-')}{clip_sha256[:8]}_{'hidden' if hidden else 'final'}"
            f"{'' if norm_embs else '_raw'}")


def _augment_views(images: np.ndarray, n: int, seed: int) -> list[torch.Tensor]:
    """V1's image augmentation (RandomResizedCrop p.3, hflip, ColorJitter p.3, Grayscale p.3), n fixed views."""
    from torchvision.transforms import v2 as T
    from .data.stream import to_model_input
    x = to_model_input(images, images.shape[1])
    size = images.shape[1]
    aug = T.Compose([T.RandomApply([T.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True)], p=0.3),
                     T.RandomHorizontalFlip(0.5), T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.3),
                     T.RandomGrayscale(0.3)])
    torch.manual_seed(seed)
    return [torch.stack([aug(im) for im in x]) for _ in range(n)]


@torch.no_grad()
def clip_targets(embedder, images: np.ndarray, hidden: bool, norm_embs: bool, cache: Path | None,
                 key: str, use_image_aug: bool = False, n_views: int = 3, batch: int = 256, log=print) -> torch.Tensor:
    """``[n_images, views, T, D]`` targets (view 0 = the unaugmented image), cached on disk by ``key``."""
    if cache is not None:
        path = cache / f"{key}.pt"
        if path.exists():
            try:
                return torch.load(path, weights_only=True)
            except Exception:  # a corrupt cache is recomputed, never trusted
                path.unlink(missing_ok=True)
    from .data.stream import to_model_input
    from tqdm import tqdm
    views = [to_model_input(images, images.shape[1])]
    if use_image_aug:
        views += _augment_views(images, n_views, seed=0)
    out = []
    for v in views:
        parts = []
        for i in tqdm(range(0, len(v), batch), desc="CLIP targets", leave=False):
            x = v[i:i + batch]
            # norm_embs: hidden tokens divided by the CLS norm (VD), final embeddings L2-normalised
            t = embedder.hidden(x, normalize=norm_embs) if hidden else embedder.final(x, normalize=norm_embs)[:, None]
            parts.append(t.float().cpu())
        out.append(torch.cat(parts))
    targets = torch.stack(out, 1)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        atomic_save(targets, cache / f"{key}.pt", torch.save)
    return targets


# ------------------------------------------------------------------ the run

class Run:
    """One training run; ``fit()`` trains, checkpoints and logs."""

    def __init__(self, cfg: TrainConfig, log=print):
        from accelerate import Accelerator
        from .bundle import DEMO_BUNDLE, Bundle

        self.cfg, self.log = cfg, log
        if cfg.wandb_log:
            try:
                import wandb  # noqa: F401
            except ImportError as e:
                raise DataError("--wandb_log needs the wandb package (pip install wandb); it is optional and "
                                "not installed here") from e
        if cfg.n_samples_save:
            raise DataError("--n_samples_save 1 (reconstructions while training) is not done by this trainer: "
                            "reconstruct from the run's checkpoint instead (python -m mindeye reconstruct "
                            "--model_name RUN_FOLDER), or leave it at 0")
        if cfg.lr_scheduler_type not in ("cycle", "linear"):
            raise DataError(f"--lr_scheduler_type should be 'cycle' or 'linear', found {cfg.lr_scheduler_type!r}")
        self.bundle = Bundle.load(cfg.bundle or DEMO_BUNDLE)
        if cfg.subj is None:
            cfg.subj = self.bundle.subject
        self.subject = resolve_subject(cfg.data_path, cfg.subj, self.bundle, log)
        variant = self.variant = target_variant(cfg.clip_variant, self.subject)
        check_choices(cfg)

        device = cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.precision = resolve_precision(cfg.mixed_precision, device)
        self.acc = Accelerator(mixed_precision=self.precision, cpu=device == "cpu",
                               log_with="wandb" if cfg.wandb_log else None)
        self.device = self.acc.device

        # -- data: train (fit), val (model selection: best.pth), test (reported, never used to choose).
        # Val and test are repetition-averaged; train draws repetitions per step (``train_reps``).
        from .data.splits import selection_split
        s = self.subject
        split = selection_split(s)
        tr = split.train_trials
        self.train_ids, inv = np.unique(s.image_id[tr], return_inverse=True)
        self.train_betas = torch.from_numpy(s.betas(tr))
        self.train_trials_of = [np.flatnonzero(inv == k) for k in range(len(self.train_ids))]
        self.val_betas, self.val_ids = torch.from_numpy(split.val_betas), split.val_ids
        test_b, self.test_ids = s.averaged("test")
        self.test_betas = torch.from_numpy(test_b)
        self.fingerprint = s.fingerprint()
        self.data_info = {"subject": cfg.subj, "n_voxels": int(s.n_voxels), "fingerprint": self.fingerprint,
                          "dataset": s.manifest.get("dataset", "?"), "val_split": split.source,
                          "simulator": {k: v for k, v in s.manifest["subjects"][str(cfg.subj)].items()
                                        if k in ("simulator_version", "seed")}}
        log(f"splits: {len(self.train_ids)} train images, val = {split.source}, {len(self.test_ids)} test images "
            "(test is scored every epoch but never used to pick best.pth)")
        self.train_targets, self.val_targets, self.test_targets = self.make_targets()
        self.data_info["target_shape"] = [int(d) for d in self.test_targets.shape[1:]]
        self.synthetic = self.make_synthetic() if cfg.synthetic_trials > 0 else None
        torch.manual_seed(cfg.seed)
        self.model = self.build_model()
        if cfg.freeze_backbone and not (cfg.init_backbone and cfg.prior):
            raise DataError("--freeze_backbone trains the diffusion prior on a fixed BrainNetwork: it needs --prior and "
                            "--init_backbone RUN (a finished run of the same subject and target)")
        if cfg.init_backbone:
            self._init_backbone(Path(cfg.init_backbone))
        no_decay = ("bias", "LayerNorm.bias", "LayerNorm.weight", "norm")
        params = list(self.model.named_parameters())
        params = [(n, p) for n, p in params if p.requires_grad]
        groups = [{"params": [p for n, p in params if not any(k in n for k in no_decay) and p.ndim > 1],
                   "weight_decay": cfg.weight_decay},
                  {"params": [p for n, p in params if any(k in n for k in no_decay) or p.ndim <= 1],
                   "weight_decay": 0.0}]
        self.opt = torch.optim.AdamW(groups, lr=cfg.max_lr)
        world = self.acc.num_processes
        self.steps_per_epoch = max(1, len(self.train_ids) // (cfg.batch_size * world))
        # Accelerate's prepared scheduler steps once per process per optimizer step (as V1 counts it)
        total = cfg.num_epochs * self.steps_per_epoch * world
        if cfg.lr_scheduler_type == "cycle":
            self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=cfg.max_lr, total_steps=total,
                                                             final_div_factor=1000, last_epoch=-1,
                                                             pct_start=min(2 / cfg.num_epochs, 0.25))
        else:
            self.sched = torch.optim.lr_scheduler.LinearLR(self.opt, total_iters=total, last_epoch=-1)
        self.model, self.opt, self.sched = self.acc.prepare(self.model, self.opt, self.sched)
        self.soft_temps = cosine_anneal(0.004, 0.0075, cfg.num_epochs - int(cfg.mixup_pct * cfg.num_epochs))

        self.dir = under_work_root(Path(cfg.out) / cfg.model_name)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.train_losses, self.val_losses, self.lrs = [], [], []
        self.best = -math.inf
        if cfg.resume_from_ckpt:
            self._resume()
        elif self.acc.is_main_process:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "metrics.jsonl").unlink(missing_ok=True)
        if cfg.wandb_log:  # through Accelerate's trackers: only the main process logs
            self.acc.init_trackers(cfg.wandb_project, config={**dataclasses.asdict(cfg), "clip_variant": variant},
                                   init_kwargs={"wandb": {"name": cfg.model_name}})
        if self.acc.is_main_process:
            (self.dir / "config.json").write_text(json.dumps({**dataclasses.asdict(cfg), "clip_variant": variant,
                                                              "mixed_precision": self.precision,
                                                              "data": self.data_info}, indent=1))
        self.n_params = sum(p.numel() for p in self.model.parameters())

    # -- task hooks (train-lowlevel overrides these)
    def make_targets(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(train [n_images, views, ...], val [n_val, ...], test [n_test, ...])`` CLIP targets, cached per image."""
        cfg, s = self.cfg, self.subject
        embedder = load_embedder(self.variant, self.bundle, cfg.vd_cache_dir)
        self.data_info["clip_variant"] = self.variant
        if self.variant == "SceneCLIP":  # targets change whenever the CLIP is retrained
            self.data_info["clip_sha256"] = file_sha256(Path(embedder.folder) / "model.safetensors")
        cache = cache_root() / "clip_targets"
        tag = target_tag(self.fingerprint, self.variant, self.data_info.get("clip_sha256", ""), cfg.hidden,
                         cfg.norm_embs)
        train = clip_targets(embedder, s.images(self.train_ids), cfg.hidden, cfg.norm_embs, cache,
                             f"{tag}_train_aug{int(cfg.use_image_aug)}", cfg.use_image_aug, cfg.n_aug_views,
                             log=self.log)
        val, test = (clip_targets(embedder, s.images(ids), cfg.hidden, cfg.norm_embs, cache, f"{tag}_{name}",
                                  log=self.log)[:, 0] for name, ids in (("val", self.val_ids), ("test", self.test_ids)))
        return train, val, test

    def synthetic_targets(self, embedder):
        """What synthetic trials are labelled with: the run's CLIP targets (train-lowlevel: VAE latents)."""
        from .training.synthetic import ClipTargets
        return ClipTargets(embedder, self.cfg.hidden, self.cfg.norm_embs)

    def make_synthetic(self):
        """Synthetic trials of unseen images (``--synthetic_trials``; ``training/synthetic.py``)."""
        from .training.synthetic import build_synthetic
        cfg, s = self.cfg, self.subject
        if cfg.synthetic_frac <= 0:
            raise DataError(f"--synthetic_frac should be > 0 with --synthetic_trials, found {cfg.synthetic_frac}")
        embedder = load_embedder(self.variant, self.bundle, cfg.vd_cache_dir)
        # the encoding model reads this CLIP's features: a retrained CLIP must not reuse a cached set
        clip_sha = "" if self.variant != "SceneCLIP" else self.data_info.get("clip_sha256") or \
            file_sha256(Path(embedder.folder) / "model.safetensors")  # a low-level run has not hashed it yet
        key = target_tag(self.fingerprint, self.variant, clip_sha, cfg.hidden, cfg.norm_embs)
        syn = build_synthetic(s, embedder, self.train_ids, self.train_betas, self.train_trials_of, self.val_betas,
                              self.val_ids, n=cfg.synthetic_trials, targets=self.synthetic_targets(embedder),
                              folder=cfg.synthetic_images, seed=int(self.data_info["simulator"].get("seed", 0)),
                              cache=cache_root() / "synthetic", key=key, features=cfg.synthetic_features,
                              log=self.log)
        self.data_info["synthetic"] = {**syn.info, "per_real_trial": cfg.synthetic_frac}
        return syn

    def build_model(self):
        from .checkpoints import build_from_config
        self.prior_mult = self.cfg.prior_mult if self.cfg.prior_mult is not None else (30.0 if self.cfg.hidden else 0.03)
        return build_from_config(dataclasses.asdict(self.cfg), self.data_info)

    def _init_backbone(self, path: Path):
        """Start this run from another run of the same subject. ``init_scope='trunk'``: the BrainNetwork's trunk
        (``lin0``, ``mlp``: voxels -> hidden features), e.g. the hidden-token model's, whose 65 x D targets teach
        the trunk far more per image than one final embedding does; the output layer and projector start fresh.
        ``'model'`` (or ``freeze_backbone``): the whole BrainNetwork, and with ``'model'`` also the diffusion prior
        when both runs have one."""
        expect = {k: v for k, v in self.data_info.items() if k in ("subject", "n_voxels", "fingerprint")}
        path = path / "best.pth" if path.is_dir() else path
        if path.suffix in ("", ".safetensors", ".json") and path.with_suffix(".json").exists():
            from .checkpoints import load_model  # an exported model (stem.safetensors + stem.json), e.g. a shipped one
            model, meta = load_model(path.with_suffix(""), expect=expect)
            ck = {"model_state_dict": model.state_dict(), "epoch": meta.get("epoch")}
        else:
            ck = load_checkpoint(path, expect=expect)
        sd = ck["model_state_dict"]
        prefix = "voxel2clip." if any(k.startswith("voxel2clip.") for k in sd) else ""
        whole = self.cfg.freeze_backbone or self.cfg.init_scope == "model"
        parts = ("lin0.", "mlp.", "projector.") if self.cfg.init_scope == "trunk_projector" else ("lin0.", "mlp.")
        take = (lambda k: True) if whole else (lambda k: k.startswith(parts))
        trunk = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix) and take(k[len(prefix):])}
        v2c = self.model.voxel2clip if self.cfg.prior else self.model
        own = {k for k in v2c.state_dict() if take(k)}
        if set(trunk) != own or any(trunk[k].shape != v2c.state_dict()[k].shape for k in own):
            raise DataError(f"{path}: its BrainNetwork does not fit this run's (hidden_dim / n_blocks / target "
                            f"differ: found {sorted(trunk)[:3]}..., expected {sorted(own)[:3]}...)")
        v2c.load_state_dict(trunk, strict=False)
        loaded = "whole BrainNetwork" if whole else ("trunk and projector" if "projector." in parts else "trunk")
        prior_sd = {k: v for k, v in sd.items() if k.startswith("net.")}
        if self.cfg.init_scope == "model" and self.cfg.prior and prior_sd:
            net = self.model.net.state_dict()
            if {k[4:] for k in prior_sd} != set(net) or any(prior_sd[k].shape != net[k[4:]].shape for k in prior_sd):
                raise DataError(f"{path}: its diffusion prior does not fit this run's (prior_depth / prior_heads / "
                                f"prior_dim_head differ)")
            self.model.net.load_state_dict({k[4:]: v for k, v in prior_sd.items()})
            loaded += " and diffusion prior"
        if self.cfg.freeze_backbone:
            v2c.requires_grad_(False)
        try:
            shown = str(path.resolve().relative_to(PROJECT_ROOT))
        except ValueError:
            shown = str(path)
        self.data_info["init_backbone"] = {"from": shown, "epoch": ck.get("epoch"), "loaded": loaded}
        self.log(f"{loaded} {'loaded and frozen' if self.cfg.freeze_backbone else 'initialised'} from {path} "
                 f"(epoch {ck.get('epoch')})")

    def _train_mode(self):
        self.model.train()
        if self.cfg.freeze_backbone:  # a frozen BrainNetwork gives the prior the embeddings it will see at inference
            self.acc.unwrap_model(self.model).voxel2clip.eval()

    # -- the brain network, unwrapped
    @property
    def v2c(self):
        m = self.acc.unwrap_model(self.model)
        return m.voxel2clip if self.cfg.prior else m

    # -- checkpoints
    def state(self) -> dict:
        return {"epoch": self.epoch, "model_state_dict": self.acc.unwrap_model(self.model).state_dict(),
                "optimizer_state_dict": self.opt.state_dict(), "lr_scheduler": self.sched.state_dict(),
                "train_losses": self.train_losses, "val_losses": self.val_losses, "lrs": self.lrs,
                "step_in_epoch": self.step_in_epoch, "global_step": self.global_step, "best": self.best,
                "config": dataclasses.asdict(self.cfg), "data": self.data_info,
                "torch_rng": torch.get_rng_state()}

    def save(self, name: str) -> Path:
        path = self.dir / name
        if self.acc.is_main_process:
            atomic_save(self.state(), path, torch.save)
        return path

    def _resume(self):
        path = self.dir / "last.pth"
        if not path.exists():
            raise DataError(f"{path}: --resume_from_ckpt but there is no checkpoint (expected last.pth from an "
                            f"earlier run named {self.cfg.model_name!r})")
        ck = load_checkpoint(path, expect=self.data_info)
        self.acc.unwrap_model(self.model).load_state_dict(ck["model_state_dict"])
        self.opt.load_state_dict(ck["optimizer_state_dict"])
        self.sched.load_state_dict(ck["lr_scheduler"])
        self.epoch, self.step_in_epoch = ck["epoch"], ck.get("step_in_epoch", 0)
        self.global_step, self.best = ck.get("global_step", 0), ck.get("best", -math.inf)
        self.train_losses, self.val_losses, self.lrs = ck["train_losses"], ck["val_losses"], ck["lrs"]
        if "torch_rng" in ck:
            torch.set_rng_state(ck["torch_rng"])
        self.log(f"resumed {path} at epoch {self.epoch}, step {self.step_in_epoch}/{self.steps_per_epoch}")

    def _metric(self, rec: dict):
        if self.acc.is_main_process:
            with open(self.dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
        if self.cfg.wandb_log:
            self.acc.log({k: v for k, v in rec.items() if isinstance(v, (int, float))}, step=self.global_step)

    def plot_umap(self) -> Path:
        """``umap.png`` in the run folder: one UMAP of the test set's CLIP targets and the model's predictions
        for them (V1's --plot_umap); near pairs mean the brain lands where the image is."""
        from .embedding_map import joint_umap
        from .viz import umap_png
        pred = self.predict(self.test_betas).cpu()
        image_xy, brain_xy, _ = joint_umap(self.test_targets, pred, cache_root() / "umap", log=self.log)
        return umap_png(image_xy, brain_xy, self.dir / "umap.png",
                        title=f"{self.cfg.model_name}: test images (CLIP) and their brain predictions")

    # -- one step
    def _batch(self, idx: np.ndarray, rng: np.random.Generator):
        if self.cfg.train_reps == "subset":  # mean of a random non-empty subset of each image's repetitions
            vox = torch.stack([self.train_betas[rng.choice(t, rng.integers(1, len(t) + 1), replace=False)].mean(0)
                               for t in (self.train_trials_of[i] for i in idx)])
        else:
            vox = self.train_betas[np.array([rng.choice(self.train_trials_of[i]) for i in idx])]
        if self.cfg.voxel_noise > 0:
            vox = vox + self.cfg.voxel_noise * torch.from_numpy(rng.standard_normal(vox.shape, np.float32))
        t = self.train_targets[idx]
        view = rng.integers(t.shape[1], size=len(idx)) if t.shape[1] > 1 else np.zeros(len(idx), int)
        t = t[np.arange(len(idx)), view]
        if self.synthetic is not None:  # unseen images' predicted responses + real noise, in the same loss
            sv, st = self.synthetic.draw(int(round(len(idx) * self.cfg.synthetic_frac)), rng)
            vox, t = torch.cat([vox, sv]), torch.cat([t, st])
        return vox.to(self.device), t.to(self.device)

    def _contrastive(self, proj, target, epoch, perm=None, betas=None):
        p = F.normalize(proj.flatten(1), dim=-1)
        t = F.normalize(target.flatten(1), dim=-1)
        world = self.acc.num_processes
        if world > 1:
            p, t, perm, betas = self._global_batch(p, t, perm, betas)
        if epoch < int(self.cfg.mixup_pct * self.cfg.num_epochs):
            loss = mixco_nce(p, t, temp=0.006, perm=perm, betas=betas)
        else:
            k = min(epoch - int(self.cfg.mixup_pct * self.cfg.num_epochs), len(self.soft_temps) - 1)
            loss = soft_clip_loss(p, t, temp=self.soft_temps[k])
        # each process's gradient reaches only its own rows; DDP averages over processes, so scale the gradient
        # (not the value) by the number of processes: the sum is then the gradient of the global-batch loss
        return loss if world == 1 else loss + (world - 1) * (loss - loss.detach())

    def _global_batch(self, p, t, perm, betas):
        """The contrastive loss over every process's batch, as one process with the whole batch would see it:
        other processes' rows are gathered (without gradient) around this process's own rows (with it)."""
        rank, n = self.acc.process_index, len(p)
        others = self.acc.gather(p.detach())
        p = torch.cat([others[:rank * n], p, others[(rank + 1) * n:]])
        t = self.acc.gather(t)
        if perm is not None:  # MixCo's partners are rows of the local batch: index them globally
            perm, betas = self.acc.gather(perm + rank * n), self.acc.gather(betas)
        return p, t, perm, betas

    def train_step(self, vox, target, epoch, g):
        cfg = self.cfg
        model = self.model  # the Accelerate-prepared module: calling it (not its submodules) keeps DDP's sync
        perm = betas = None
        unmixed = slice(None)
        if epoch < int(cfg.mixup_pct * cfg.num_epochs):
            vox, perm, betas, select = mixco(vox, generator=g)
            # the prior learns brain -> CLIP tokens of one image: a mixed voxel pattern has no such target
            # (V1 fed it the unmixed image's tokens, which teaches the prior to denoise towards the wrong image)
            unmixed = ~select
        with self.acc.autocast():
            backbone, proj, loss_prior = model(vox, target, unmixed) if cfg.prior else (*model(vox), None)
            loss_nce = self._contrastive(proj, target, epoch, perm, betas) if cfg.v2c else torch.zeros((), device=vox.device)
            if loss_prior is None:
                loss_prior = torch.zeros((), device=vox.device)
            loss = loss_nce + self.prior_mult * loss_prior
            if cfg.align_mult > 0 and len(backbone[unmixed]):  # a mixed voxel pattern has no image to line up with
                loss = loss + cfg.align_mult * (backbone[unmixed] - target[unmixed]).float().pow(2).sum(-1).mean()
        self.opt.zero_grad(set_to_none=True)
        self.acc.backward(loss)
        self.opt.step()
        self.sched.step()
        return loss.item(), loss_nce.item(), loss_prior.item()

    def score(self, ev: dict) -> float:
        """Higher is better; picks best.pth. Only val figures: the test set never chooses a checkpoint. A run
        that trains a diffusion prior is scored by its val prior loss: the prior is what reconstruction reads, and
        retrieval (logged beside) barely moves once the BrainNetwork has learned."""
        if self.cfg.prior:
            return -ev["val_prior_loss"]
        return (ev["val_fwd_top1"] + ev["val_bwd_top1"]) / 2

    @torch.no_grad()
    def predict(self, betas: torch.Tensor) -> torch.Tensor:
        v2c = self.v2c
        outs = []
        for i in range(0, len(betas), 256):
            with self.acc.autocast():
                outs.append(v2c(betas[i:i + 256].to(self.device))[1].float().cpu())
        return torch.cat(outs)

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict:
        """300-way retrieval on val (selection) and test (report), labelled; loss on val."""
        self.model.eval()
        out = {}
        for name, betas, targets in (("val", self.val_betas, self.val_targets), ("test", self.test_betas, self.test_targets)):
            proj = self.predict(betas)
            fwd, bwd = n_way_top1(proj, targets, n=self.cfg.val_n_way, draws=30, seed=0)
            if name == "val":
                out["val_loss"] = round(float(self._contrastive(proj[:300], targets[:300], epoch).item()), 5)
            out[f"{name}_fwd_top1"], out[f"{name}_bwd_top1"] = round(fwd, 4), round(bwd, 4)
        if self.cfg.prior:  # the prior's denoising loss on val, at fixed timesteps and noise (comparable across epochs)
            prior = self.acc.unwrap_model(self.model)
            g = torch.Generator().manual_seed(0)
            losses = []
            for i in range(0, len(self.val_betas), 100):
                with self.acc.autocast():
                    backbone = prior.voxel2clip(self.val_betas[i:i + 100].to(self.device))[0]
                    losses.append(float(prior.loss(backbone, self.val_targets[i:i + 100].to(self.device), generator=g)))
            out["val_prior_loss"] = round(float(np.mean(losses)), 5)
        self._train_mode()
        return out

    def fit(self) -> dict:
        cfg = self.cfg
        self._train_mode()
        t_start, last_ckpt = time.time(), time.time()
        rank, world = self.acc.process_index, self.acc.num_processes
        result = {}
        done = False
        for epoch in range(self.epoch, cfg.num_epochs):
            self.epoch = epoch
            perm = np.random.default_rng([cfg.seed, epoch]).permutation(len(self.train_ids))
            t_epoch, n_samples = time.time(), 0
            for step in range(self.step_in_epoch, self.steps_per_epoch):
                b0 = (step * world + rank) * cfg.batch_size
                idx = perm[b0:b0 + cfg.batch_size]
                rng = np.random.default_rng([cfg.seed, epoch, step, rank])
                g = torch.Generator().manual_seed(int(rng.integers(2 ** 31)))
                vox, target = self._batch(idx, rng)
                loss, l_nce, l_prior = self.train_step(vox, target, epoch, g)
                self.global_step += 1
                self.step_in_epoch = step + 1
                n_samples += len(idx) * world
                self.train_losses.append(loss)
                self.lrs.append(self.sched.get_last_lr()[0])
                if self.global_step % cfg.log_every == 0:
                    self._metric({"step": self.global_step, "epoch": epoch, "loss": round(loss, 5),
                                  "loss_nce": round(l_nce, 5), "loss_prior": round(l_prior, 5),
                                  "lr": self.lrs[-1], "elapsed_s": round(time.time() - t_start, 2)})
                if cfg.ckpt_saving and time.time() - last_ckpt > cfg.ckpt_every_s:
                    self.save("last.pth")
                    last_ckpt = time.time()
                if cfg.max_steps is not None and self.global_step >= cfg.max_steps:
                    done = True
                    break
            if done and self.step_in_epoch < self.steps_per_epoch:
                break
            seconds = time.time() - t_epoch
            ev = self.evaluate(epoch)
            self.val_losses.append(ev["val_loss"])
            self.epoch, self.step_in_epoch = epoch + 1, 0
            rec = {"epoch": epoch, "step": self.global_step, **ev, "epoch_seconds": round(seconds, 2),
                   "samples_per_s": round(n_samples / max(seconds, 1e-9), 1),
                   "elapsed_s": round(time.time() - t_start, 2)}
            self._metric(rec)
            self.log(json.dumps(rec))
            result = rec
            score = self.score(ev)
            improved = score > self.best
            if improved:
                self.best = score
            if cfg.ckpt_saving:
                if (epoch + 1) % cfg.ckpt_interval == 0 or epoch + 1 == cfg.num_epochs:
                    self.save("last.pth")
                    last_ckpt = time.time()
                if improved and not cfg.save_at_end:
                    self.save("best.pth")
            if done:
                break
        if cfg.ckpt_saving:
            self.save("last.pth")
            if cfg.save_at_end:
                self.save("best.pth")
        if cfg.plot_umap and self.acc.is_main_process:
            self.log(f"UMAP written to {self.plot_umap()}")
        if cfg.wandb_log:
            self.acc.end_training()
        self.acc.wait_for_everyone()
        return result


def train(cfg: TrainConfig, log=print) -> dict:
    run = Run(cfg, log=log)
    log(f"training {cfg.model_name}: {run.n_params / 1e6:.1f}M parameters, {len(run.train_ids)} train images, "
        f"{run.steps_per_epoch} steps/epoch, device {run.device}, precision {run.precision}, "
        f"target {run.variant} {'hidden' if cfg.hidden else 'final'} {tuple(run.test_targets.shape[1:])}")
    return run.fit()
