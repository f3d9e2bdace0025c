"""Every flag of a MindEye training run (``TrainConfig``) and of a low-level one (``LowLevelTrainConfig``, V1's
train_autoencoder.py), with its default, written once: the CLI, the app's Train tab and ``build-demo`` read
them from here. Importing this module loads no torch (``--help`` stays fast)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    # --- the seed's Train_MindEye.py flags (same names and defaults)
    model_name: str = "testing"
    data_path: str | None = None  # default: the bundle's dataset
    subj: int | None = None  # default: the bundle's subject (one source, whether from the bundle or this flag)
    batch_size: int = 32
    hidden: bool = True
    clip_variant: str | None = None  # default: the bundle's CLIP (ViT-L/14 for NSD, SceneCLIP for SimNSD)
    wandb_log: bool = False
    resume_from_ckpt: bool = False
    wandb_project: str = "stability"
    mixup_pct: float = 0.33
    norm_embs: bool = True
    use_image_aug: bool = True
    num_epochs: int = 240
    prior: bool = True
    v2c: bool = True
    plot_umap: bool = False
    lr_scheduler_type: str = "cycle"
    ckpt_saving: bool = True
    ckpt_interval: int = 5
    save_at_end: bool = False
    seed: int = 42
    max_lr: float = 3e-4
    n_samples_save: int = 0
    use_projector: bool = True
    vd_cache_dir: str | None = None
    # --- ours
    bundle: str | None = None
    out: str = "train_logs"
    device: str = "auto"
    mixed_precision: str = "auto"
    hidden_dim: int = 4096  # BrainNetwork width (V1: 4096)
    n_blocks: int = 4
    proj_hidden: int = 2048
    prior_depth: int = 6
    prior_heads: int = 12
    prior_dim_head: int = 64
    prior_mult: float | None = None  # V1: 30 (hidden) / 0.03 (final)
    prior_brain_pos: bool = False  # add the prior's positional embedding (learned_query) to the brain tokens too,
    # so image token i finds brain token i by position (V1: only the noisy image tokens get it)
    align_mult: float = 0.0  # weight of the mean per-token squared distance between the BrainNetwork's backbone
    # tokens and the target tokens (V1: 0). Lines backbone token i up with image token i for the prior to refine
    ckpt_every_s: float = 120.0
    log_every: int = 10
    val_n_way: int = 300
    max_steps: int | None = None  # stop early (tests, demos); the schedule still spans num_epochs
    n_aug_views: int = 3  # cached augmented views per image when use_image_aug
    weight_decay: float = 1e-2  # AdamW, on weight matrices only (V1: 1e-2)
    drop_in: float = 0.5  # dropout after the BrainNetwork's input layer (V1: 0.5)
    drop_block: float = 0.15  # dropout in its residual blocks (V1: 0.15)
    voxel_noise: float = 0.0  # SD of Gaussian noise added to the (z-scored) train betas each step
    train_reps: str = "single"  # 'single': one random repetition per image and step (V1); 'subset': the
    # average of a random non-empty subset of the image's repetitions (closer to the averaged test betas)
    init_backbone: str | None = None  # a run folder or .pth whose BrainNetwork trunk (lin0, mlp) starts this run
    freeze_backbone: bool = False  # with init_backbone: load the whole BrainNetwork, freeze it, train the prior only
    init_scope: str = "trunk"  # with init_backbone: 'trunk' (lin0, mlp) or 'model' (the whole BrainNetwork and, when
    # both runs have one, the diffusion prior: fine-tune a finished run under a new schedule or loss)


@dataclass
class LowLevelTrainConfig(TrainConfig):
    # V1 train_autoencoder.py defaults
    model_name: str = "autoencoder"
    batch_size: int = 32
    num_epochs: int = 120
    max_lr: float = 5e-4
    ckpt_interval: int = 24
    use_cont: bool = False
    use_reconst: bool = False
    use_sobel_loss: bool = False
    use_blurred_training: bool = False
    cont_model: str = "cnx"
    ups_mode: str = "4x"
    vae_path: str | None = None  # default: the bundle's VAE
    hidden_dim: int = 4096
    map_channels: int = 64
    upsampler_channels: tuple = (64, 128, 256)
    prior: bool = False
    use_image_aug: bool = False


PRESETS = {
    # a run that learns in front of a class: SimNSD subject 1 on 2 CPU cores, final-layer target (small
    # output), no prior, metrics every few seconds
    "demo": dict(model_name="demo_run", hidden=False, prior=False, use_image_aug=False, batch_size=64,
                 num_epochs=20, hidden_dim=512, n_blocks=2, proj_hidden=256, max_lr=1e-3, mixup_pct=0.33,
                 ckpt_interval=1, log_every=5, ckpt_every_s=30.0, train_reps="subset"),
}
