"""Every flag of a MindEye training run (``TrainConfig``) and of a low-level one (``LowLevelTrainConfig``, V1's
train_autoencoder.py), with its default and help, written once: ``python -m mindeye train`` and ``train-lowlevel``
build their flags from these fields (``mindeye.flags``), and the app's Train tab and ``build-demo`` read them from
here. Importing this module loads no torch (``--help`` stays fast).

A command's flags are the fields its class declares in its own body, in that order: ``LowLevelTrainConfig``
re-declares each ``TrainConfig`` field that ``train-lowlevel`` takes (``_also``); the others keep
``TrainConfig``'s defaults there and are no flags of it. A field's metadata: ``help`` (its ``--help`` line) and,
where needed, ``choices``, ``metavar``, or ``cli=False`` for a field that is no flag."""
from __future__ import annotations

from dataclasses import dataclass, field

CLIP_VARIANTS = ["RN50", "ViT-L/14", "ViT-B/32", "RN50x64", "SceneCLIP"]
SUBJECTS = range(1, 9)  # any NSD subject the converter wrote
SYNTHETIC_FEATURES = ("clip", "clip_low_level")  # the encoding model of synthetic trials (models/encoding.py)


def flag(default, help: str, **meta):
    """A config field that is a flag of its command: ``default``, ``help`` and argparse extras (``choices``,
    ``metavar``), or ``cli=False`` for a field that is no flag."""
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class TrainConfig:
    # --- the seed's Train_MindEye.py flags (same names and defaults, and its help where it had one)
    model_name: str = flag("testing", "name of model, used for ckpt saving and wandb logging (if enabled)")
    data_path: str | None = flag(
        None, "Path to where NSD data is stored / where to download it to (default: the bundle's dataset)")
    # subj: one source, whether from the bundle or this flag
    subj: int | None = flag(None, "subject: any NSD subject 1-8 the converter wrote; SimNSD simulates 1, 2, 5, 7 "
                                  "(default: the bundle's subject)", choices=SUBJECTS, metavar="1-8")
    batch_size: int = flag(32, "Batch size can be increased by 10x if only training v2c and not diffusion prior")
    hidden: bool = flag(True, "if True, CLIP embeddings will come from last hidden layer (e.g., 257x768 - Versatile "
                              "Diffusion), rather than final layer")
    clip_variant: str | None = flag(
        None, "OpenAI clip variant (default: ViT-L/14 for NSD; SceneCLIP, the demo's small CLIP, for SimNSD)",
        choices=CLIP_VARIANTS)
    wandb_log: bool = flag(False, "whether to log to wandb")
    resume_from_ckpt: bool = flag(False, "if not using wandb and want to resume from a ckpt")
    wandb_project: str = flag("stability", "wandb project name")
    mixup_pct: float = flag(0.33, "proportion of way through training when to switch from BiMixCo to SoftCLIP")
    norm_embs: bool = flag(True, "Do l2-norming of CLIP embeddings")
    use_image_aug: bool = flag(True, "whether to use image augmentation")
    num_epochs: int = flag(240, "number of epochs of training")
    prior: bool = flag(True, "if False, will only use CLIP loss and ignore diffusion prior")
    v2c: bool = flag(True, "if False, will only use diffusion prior loss")
    plot_umap: bool = flag(False, "Plot UMAP plots alongside reconstructions (here: umap.png in the run folder at the "
                                  "end, the test images' CLIP embeddings and their brain predictions on one UMAP)")
    lr_scheduler_type: str = flag("cycle", "learning-rate schedule over num_epochs: cycle (OneCycleLR: a short "
                                           "warm-up to max_lr, then annealing) or linear (LinearLR: from max_lr/3 "
                                           "up to max_lr)",
                                  choices=["cycle", "linear"])
    ckpt_saving: bool = flag(True, "write checkpoints to the run folder (last.pth every ckpt_interval epochs, "
                                   "best.pth on the best validation score)")
    ckpt_interval: int = flag(5, "save backup ckpt and reconstruct every x epochs")
    save_at_end: bool = flag(False, "if True, saves best.ckpt at end of training. if False and ckpt_saving==True, "
                                    "will save best.ckpt whenever epoch shows best validation score")
    seed: int = flag(42, "random seed (initial weights, batch order, per-step draws)")
    max_lr: float = flag(3e-4, "peak learning rate of the schedule")
    n_samples_save: int = flag(
        0, "Number of reconstructions for monitoring progress, 0 will speed up training (1 is refused here: "
           "reconstruct from the run's checkpoint with `python -m mindeye reconstruct`)", choices=[0, 1])
    use_projector: bool = flag(True, "Additional MLP after the main MLP so model can separately learn a way to "
                                     "minimize NCE from prior loss (BYOL)")
    vd_cache_dir: str | None = flag(
        None, "Where is cached Versatile Diffusion model (here: its folder or a Hugging Face cache holding it; "
              "nothing is downloaded). With ViT-L/14 targets its image_encoder/ is the CLIP")
    # --- ours
    bundle: str | None = flag(None, "bundle folder naming dataset and CLIP (default: assets/demo)")
    out: str = flag("train_logs", "runs folder; the run goes to OUT/MODEL_NAME (default: train_logs)")
    device: str = flag("auto", "cpu, cuda, cuda:1 ... (default: cuda if available)")
    mixed_precision: str = flag("auto", "auto: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32",
                                choices=["auto", "no", "fp16", "bf16"])
    hidden_dim: int = flag(4096, "BrainNetwork width (V1: 4096)")
    n_blocks: int = flag(4, "BrainNetwork residual blocks (V1: 4)")
    proj_hidden: int = flag(2048, "projector width (V1: 2048)")
    prior_depth: int = flag(6, "diffusion prior transformer depth (V1: 6)")
    prior_heads: int = flag(12, "diffusion prior heads (V1: 12)")
    prior_dim_head: int = flag(64, "diffusion prior head width (V1: 64)")
    prior_mult: float | None = flag(None, "prior loss weight (default: 30 hidden, .03 final)")
    # prior_brain_pos: the prior's positional embedding (learned_query) on the brain tokens too, so image token i
    # finds brain token i by position (V1: only the noisy image tokens get it)
    prior_brain_pos: bool = flag(False, "add the prior's positional embedding to the brain tokens too (default: off, "
                                        "as in V1)")
    # align_mult: the mean per-token squared distance; it lines backbone token i up with image token i for the
    # prior to refine
    align_mult: float = flag(0.0, "weight of the per-token squared distance between the backbone's tokens and the "
                                  "target tokens (default: 0, as in V1)")
    ckpt_every_s: float = flag(120.0, "also write last.pth every this many seconds mid-epoch (resumable after a kill)")
    log_every: int = flag(10, "write a metrics line every N steps")
    val_n_way: int = flag(300, "N of the validation's N-way top-1 retrieval (the paper's 300-way)", cli=False)
    max_steps: int | None = flag(None, "stop after N steps (the schedule still spans num_epochs)")
    n_aug_views: int = flag(3, "cached augmented views per image when use_image_aug", cli=False)
    weight_decay: float = flag(1e-2, "AdamW weight decay on weight matrices (V1: 1e-2)")
    drop_in: float = flag(0.5, "dropout after the BrainNetwork's input layer (V1: 0.5)")
    drop_block: float = flag(0.15, "dropout in the BrainNetwork's blocks (V1: 0.15)")
    voxel_noise: float = flag(0.0, "SD of Gaussian noise added to the z-scored train betas each step (default: 0, "
                                   "off)")
    train_reps: str = flag("single", "single: one random repetition per image and step (V1); subset: the mean of a "
                                     "random non-empty subset of its repetitions (closer to the averaged test betas)",
                           choices=["single", "subset"])
    init_backbone: str | None = flag(None, "run folder, .pth or exported model (stem of .safetensors + .json) of the "
                                           "same subject whose BrainNetwork trunk starts this run (e.g. the hidden "
                                           "model's, to train the final model on top of it)")
    freeze_backbone: bool = flag(False, "with --init_backbone and --prior: load that run's whole BrainNetwork, keep "
                                        "it fixed and train only the diffusion prior (add --no-v2c)")
    synthetic_trials: int = flag(0, "also train on this many synthetic trials of images the subject never saw: an "
                                    "encoding model (ridge from CLIP features to voxels, fitted on the train images, "
                                    "alpha on val) predicts their responses, plus real trials' noise (default: 0, off)")
    synthetic_frac: float = flag(1.0, "with --synthetic_trials: synthetic trials per real trial in each batch")
    synthetic_images: str | None = flag(None, "with --synthetic_trials on NSD: a folder of pictures no subject saw "
                                              "(SimNSD renders fresh scenes)")
    synthetic_features: str = flag("clip_low_level", "with --synthetic_trials: the encoding model's features. clip: "
                                                     "the target CLIP's hidden tokens and final embedding; "
                                                     "clip_low_level: also luminance, contrast energy and colour "
                                                     "opponency on a 12 x 12 grid (SimNSD's early areas are "
                                                     "simulated from features of this kind)",
                                   choices=list(SYNTHETIC_FEATURES))
    init_scope: str = flag("trunk", "with --init_backbone: trunk = its BrainNetwork trunk only (lin0, mlp); "
                                    "trunk_projector = the trunk and the contrastive projector (it maps each token, "
                                    "so it fits a run with fewer tokens); model = its whole BrainNetwork and, when "
                                    "both runs have one, its diffusion prior (fine-tuning)",
                           choices=["trunk", "trunk_projector", "model"])


def _also(name: str, help: str | None = None, **meta):
    """``TrainConfig``'s field ``name`` with its default, as a flag of ``train-lowlevel`` too; ``help``: its own
    there (default: ``TrainConfig``'s)."""
    f = TrainConfig.__dataclass_fields__[name]
    return field(default=f.default, metadata={**f.metadata, **({"help": help} if help else {}), **meta})


@dataclass
class LowLevelTrainConfig(TrainConfig):
    # V1 train_autoencoder.py's flags (same names and defaults), then ours; --help lists them in this order
    model_name: str = flag("autoencoder", "name of model, used for ckpt saving")
    data_path: str | None = _also("data_path", "dataset folder (default: the bundle's dataset)")
    subj: int | None = _also("subj")
    batch_size: int = flag(32, "training samples per step")
    num_epochs: int = flag(120, "number of epochs of training")
    max_lr: float = flag(5e-4, "peak learning rate of the schedule")
    lr_scheduler_type: str = _also("lr_scheduler_type")
    ckpt_saving: bool = _also("ckpt_saving")
    ckpt_interval: int = flag(24, "save backup ckpt every x epochs")
    save_at_end: bool = _also("save_at_end")
    resume_from_ckpt: bool = _also("resume_from_ckpt")
    seed: int = _also("seed")
    use_cont: bool = flag(False, "soft contrastive loss on ConvNeXt features (needs local ConvNeXt-XL weights)")
    use_reconst: bool = flag(False, "also an L1 loss on the VAE-decoded image")
    use_sobel_loss: bool = flag(False, "also an L1 loss on Sobel edges (with --use_reconst)")
    use_blurred_training: bool = flag(False, "(not supported here)")
    cont_model: str = flag("cnx", "Type of ConvNext model to use")
    ups_mode: str = flag("4x", "Upscaling factor for VAE embeds", choices=["4x"])
    wandb_log: bool = _also("wandb_log")
    wandb_project: str = _also("wandb_project")
    # --- ours
    vae_path: str | None = flag(None, "diffusers AutoencoderKL folder (default: the bundle's VAE)")
    bundle: str | None = _also("bundle", "bundle folder (default: assets/demo)")
    out: str = _also("out", "runs folder (default: train_logs)")
    device: str = _also("device")
    mixed_precision: str = _also("mixed_precision")
    hidden_dim: int = flag(4096, "MLP width (V1: 4096)")
    n_blocks: int = _also("n_blocks", "residual blocks (V1: 4)")
    map_channels: int = flag(64, "channels of the voxel feature map (V1: 64)")
    upsampler_channels: tuple[int, ...] = flag((64, 128, 256), "upsampling decoder widths (V1: 64 128 256)")
    ckpt_every_s: float = _also("ckpt_every_s", "also write last.pth every N seconds")
    log_every: int = _also("log_every")
    max_steps: int | None = _also("max_steps")
    synthetic_trials: int = _also("synthetic_trials", "also train on this many synthetic trials of images the subject "
                                  "never saw, labelled with their VAE latents: an encoding model (ridge from CLIP and "
                                  "low-level features to voxels, fitted on the train images, alpha on val) predicts "
                                  "their responses, plus real trials' noise (default: 0, off)")
    synthetic_frac: float = _also("synthetic_frac")
    synthetic_images: str | None = _also("synthetic_images")
    synthetic_features: str = _also("synthetic_features")
    # TrainConfig's, set for the low-level model (no flags of train-lowlevel)
    prior: bool = flag(False, "the low-level model has no diffusion prior", cli=False)
    use_image_aug: bool = flag(False, "the low-level model trains on the images as they are", cli=False)


PRESETS = {
    # a run that learns in front of a class: SimNSD subject 1 on 2 CPU cores, final-layer target (small
    # output), no prior, metrics every few seconds
    "demo": dict(model_name="demo_run", hidden=False, prior=False, use_image_aug=False, batch_size=64,
                 num_epochs=20, hidden_dim=512, n_blocks=2, proj_hidden=256, max_lr=1e-3, mixup_pct=0.33,
                 ckpt_interval=1, log_every=5, ckpt_every_s=30.0, train_reps="subset"),
}
