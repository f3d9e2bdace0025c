"""SceneCLIP: the demo's small CLIP, an open_clip model trained contrastively on SimNSD scenes.

Same shape as CLIP ViT-L/14 as MindEye uses it, only smaller:

- ``hidden(images)`` -> ``[B, T, D]``: every token of the last layer through ``ln_post`` and the visual
  projection, divided by the CLS token's norm (Versatile Diffusion's image-variation conditioning; ViT-L/14
  gives 257 x 768, SceneCLIP 65 x 128);
- ``final(images)`` -> ``[B, D]``: the L2-normalised CLIP image embedding (ViT-L/14: 768).

The architecture is an open_clip config registered under ``SCENE_CLIP_MODEL`` (``configs/``): a 3-layer,
width-128 ViT over an 8 x 8 token grid and a 3-layer text tower, with two changes that make a tiny CLIP see
shape within half an hour of CPU training:

- a convolutional stem (two 3x3 convs per stage) in place of the patchify layer (Xiao et al. 2021, "Early
  convolutions help transformers see better"), and a word-level tokenizer over the caption vocabulary
  (~45 words, not 49k BPE merges);
- training pairs every image with a hard negative caption that differs only in one object's shape
  (most often), colour, size or position, so colour and background alone cannot win the contrastive game,
  and adds linear read-outs of every object's shape and colour from the final embedding ("attribute
  anchoring": the captions name the same attributes, the read-outs make that signal dense).

The first SceneCLIP (a 6-layer width-192 ViT behind one stride-2 conv per stage, contrastive only) learned
colour and background but left the largest object's shape at 31% after 42 minutes; see the README.
"""
from __future__ import annotations

import json
import math
import random
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import scenes as S
from ..data.errors import DataError
from ..data.stream import VISION_ID_BASE, SceneStream, loader, render_batch, to_model_input
from ..training.fit import fit, to_device

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
SCENE_CLIP_MODEL = "SceneCLIP-ViT-Stem8-64"
STEM_CHANNELS = (32, 64, 128)  # the conv stem: two 3x3 convs per stage at 32, 16 and 8 px
VAL_ID_OFFSET = 60_000_000  # 256 held-out scenes on which training reports the shape read-out's accuracy
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's normalisation, kept for familiarity
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ------------------------------------------------------------------ tokenizer

class WordTokenizer:
    """Word-level tokenizer: ``<pad>=0``, ``<unk>=1``, ``<sot>=2``, words, ``<eot>`` last (open_clip's
    argmax text pooling picks the end-of-text token because it has the largest id)."""

    SPECIAL = ("<pad>", "<unk>", "<sot>")

    def __init__(self, words: list[str], context_length: int = 24):
        self.words = list(words)
        self.vocab = {w: i for i, w in enumerate(self.SPECIAL + tuple(self.words) + ("<eot>",))}
        self.eot = len(self.vocab) - 1
        self.context_length = context_length

    @classmethod
    def for_scenes(cls, context_length: int = 24) -> "WordTokenizer":
        fixed = ("a an the of and in on at above below left right top bottom middle centre").split()
        words = sorted(set(fixed) | set(S.SHAPES) | set(S.COLOUR_NAMES) | set(S.SIZES) | set(S.BACKGROUNDS))
        return cls(words, context_length)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __call__(self, texts: str | list[str]) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else texts
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = [2] + [self.vocab.get(w, 1) for w in re.findall(r"[a-z]+", t.lower())]
            ids = ids[: self.context_length - 1] + [self.eot]
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"words": self.words, "context_length": self.context_length}, indent=1))

    @classmethod
    def load(cls, path: Path) -> "WordTokenizer":
        raw = json.loads(path.read_text())
        return cls(raw["words"], raw["context_length"])


# ------------------------------------------------------------------ model

class ConvStem(nn.Module):
    """Three stages of 3x3 convs, each starting with stride 2 (64 -> 8 px grid), + a 1x1 projection to the
    transformer width. Drop-in for open_clip's patchify ``conv1``: same input, same ``[B, width, grid, grid]``.

    Two convs per stage give each of the 8 x 8 tokens a 43 px receptive field of local shape evidence
    (corners, points, holes); a single stride-2 conv per stage (the first SceneCLIP) left shape to the
    transformer, which learned it too slowly for a CPU budget."""

    def __init__(self, width: int, channels=STEM_CHANNELS, convs_per_stage: int = 2):
        super().__init__()
        layers, c_in = [], 3
        for c in channels:
            for k in range(convs_per_stage):
                layers += [nn.Conv2d(c_in, c, 3, stride=2 if k == 0 else 1, padding=1, bias=False),
                           nn.BatchNorm2d(c), nn.GELU()]
                c_in = c
        layers.append(nn.Conv2d(c_in, width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def register_config() -> None:
    import open_clip
    if SCENE_CLIP_MODEL not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR)


def build_model(vocab_size: int, conv_stem: bool = True, model_name: str = SCENE_CLIP_MODEL, **overrides):
    """An untrained SceneCLIP (open_clip ``CLIP``) with the given vocabulary size."""
    import open_clip
    register_config()
    cfg = json.loads((CONFIG_DIR / f"{model_name}.json").read_text())
    cfg["text_cfg"]["vocab_size"] = vocab_size
    for k, v in overrides.items():  # e.g. vision_layers=2 for tests
        tower, key = k.split("_", 1)
        cfg[f"{tower}_cfg"][key] = v
    model = open_clip.model.CLIP(cfg["embed_dim"], cfg["vision_cfg"], cfg["text_cfg"])
    if conv_stem:
        cfg["conv_stem"] = {"channels": list(STEM_CHANNELS), "convs_per_stage": 2}
        model.visual.conv1 = ConvStem(model.visual.conv1.out_channels, **cfg["conv_stem"])
    return model, cfg


class SceneCLIP(nn.Module):
    """The trained model + tokenizer, with MindEye's two image targets."""

    def __init__(self, model, tokenizer: WordTokenizer, cfg: dict, meta: dict | None = None):
        super().__init__()
        self.model, self.tokenizer, self.cfg, self.meta = model, tokenizer, cfg, meta or {}
        tokenizer.context_length = cfg["text_cfg"]["context_length"]  # the text tower's positions decide
        self.image_size = cfg["vision_cfg"]["image_size"]
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    # shapes MindEye needs to size its heads
    @property
    def hidden_shape(self) -> tuple[int, int]:
        grid = self.image_size // 8
        return grid * grid + 1, self.cfg["embed_dim"]

    @property
    def embed_dim(self) -> int:
        return self.cfg["embed_dim"]

    def preprocess(self, images) -> torch.Tensor:
        """uint8 [N,H,W,3] or float [N,3,h,w] in [0,1] -> normalised model input."""
        x = images if isinstance(images, torch.Tensor) and images.dtype.is_floating_point else to_model_input(images)
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", antialias=True)
        x = x.to(self.mean.device)
        return (x - self.mean) / self.std

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Projected last-layer tokens [B, T, D] (not normalised); token 0 is the CLIP image embedding."""
        from .embedders import open_clip_tokens
        return open_clip_tokens(self.model.visual, x)

    def hidden(self, images, normalize: bool = True) -> torch.Tensor:
        from .embedders import normalize_hidden
        t = self.tokens(self.preprocess(images))
        return normalize_hidden(t) if normalize else t

    def final(self, images, normalize: bool = True) -> torch.Tensor:
        e = self.model.encode_image(self.preprocess(images))
        return F.normalize(e, dim=-1) if normalize else e

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return F.normalize(self.model.encode_text(self.tokenizer(texts).to(self.mean.device)), dim=-1)

    # ---- persistence: <dir>/open_clip_config.json, tokenizer.json, model.safetensors, meta.json
    def save(self, folder: Path, dtype=torch.float16) -> None:
        from safetensors.torch import save_file
        from ..atomic import atomic_dir
        with atomic_dir(Path(folder)) as tmp:
            (tmp / "open_clip_config.json").write_text(json.dumps({"model_name": SCENE_CLIP_MODEL, **self.cfg},
                                                                  indent=1))
            self.tokenizer.save(tmp / "tokenizer.json")
            sd = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in self.model.state_dict().items()}
            save_file(sd, str(tmp / "model.safetensors"))
            (tmp / "meta.json").write_text(json.dumps(self.meta, indent=1))

    @classmethod
    def load(cls, folder: Path | str, device="cpu") -> "SceneCLIP":
        from safetensors.torch import load_file
        folder = Path(folder)
        for name in ("open_clip_config.json", "tokenizer.json", "model.safetensors"):
            if not (folder / name).exists():
                raise DataError(f"{folder}: not a SceneCLIP folder (missing {name}; expected open_clip_config.json, "
                                "tokenizer.json, model.safetensors)")
        cfg = json.loads((folder / "open_clip_config.json").read_text())
        cfg.pop("model_name", None)
        stem = cfg.get("conv_stem", {"channels": [32, 64, 128], "convs_per_stage": 1})  # first SceneCLIP: 1 per stage
        tok = WordTokenizer.load(folder / "tokenizer.json")
        import open_clip
        model = open_clip.model.CLIP(cfg["embed_dim"], cfg["vision_cfg"], cfg["text_cfg"])
        model.visual.conv1 = ConvStem(model.visual.conv1.out_channels, **stem)
        sd = load_file(str(folder / "model.safetensors"))
        try:
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
        except RuntimeError as e:
            raise DataError(f"{folder / 'model.safetensors'}: weights do not fit the config ({str(e)[:300]})") from e
        meta = json.loads((folder / "meta.json").read_text()) if (folder / "meta.json").exists() else {}
        clip = cls(model, tok, cfg, meta).to(device).eval()
        clip.folder = folder
        return clip


# ------------------------------------------------------------------ hard negatives

def hard_negative(scene: S.Scene, rng: random.Random) -> str:
    """A caption for a minimally changed scene: one object's shape (most often), colour, size or place."""
    true = S.caption(scene)
    objs = list(scene.objects)
    for _ in range(8):
        kind = rng.choices(["shape0", "shape_other", "colour", "size", "place"], weights=[4, 2, 1.5, 1, 1.5])[0]
        k = 0 if kind in ("shape0", "colour", "size", "place") or len(objs) == 1 else rng.randrange(1, len(objs))
        o = objs[k]
        if kind.startswith("shape"):
            o = replace(o, shape=rng.choice([s for s in range(len(S.SHAPES)) if s != o.shape]))
        elif kind == "colour":
            o = replace(o, colour=rng.choice([c for c in range(len(S.COLOUR_NAMES)) if c != o.colour]))
        elif kind == "size":
            o = replace(o, size=rng.choice([z for z in range(len(S.SIZES)) if z != o.size]))
        else:
            o = replace(o, x=rng.uniform(0.15, 0.85), y=rng.uniform(0.15, 0.85))
        new = objs[:k] + [o] + objs[k + 1:]
        cap = S.caption(replace(scene, objects=tuple(new)))
        if cap != true:
            return cap
    return S.caption(replace(scene, background=(scene.background + 1) % len(S.BACKGROUNDS)))


# ------------------------------------------------------------------ training

@dataclass
class SceneCLIPTrainConfig:
    steps: int = 2400
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 100
    seed: int = 0
    log_every: int = 20
    overrides: dict | None = None  # smaller towers for tests, e.g. {"vision_layers": 1}
    # "attribute anchoring": linear read-outs of each object's shape and colour (and the background) from the
    # final embedding, trained jointly with the contrastive loss. The captions name the same attributes; the
    # read-outs only make that signal dense (every object slot, every step) instead of one caption in a batch.
    aux_weight: float = 1.0
    start_step: int = 0  # continue the scene stream here (a second phase from ``init``)


class AttributeHeads(nn.Module):
    """Linear read-outs from the final embedding: shape and colour per object slot (+'none'), background."""

    def __init__(self, dim: int):
        super().__init__()
        k = S.MAX_OBJECTS
        self.shape = nn.Linear(dim, k * (len(S.SHAPES) + 1))
        self.colour = nn.Linear(dim, k * (len(S.COLOUR_NAMES) + 1))
        self.background = nn.Linear(dim, len(S.BACKGROUNDS))

    def loss(self, emb: torch.Tensor, lab: dict) -> tuple[torch.Tensor, torch.Tensor]:
        b, k = emb.shape[0], S.MAX_OBJECTS
        x = emb * 10  # unit-norm embeddings; a fixed gain keeps the linear heads well scaled
        shape = self.shape(x).view(b * k, -1)
        colour = self.colour(x).view(b * k, -1)
        st, ct = (lab["shape"].long() + 1).flatten(), (lab["colour"].long() + 1).flatten()
        loss = F.cross_entropy(shape, st) + F.cross_entropy(colour, ct) + F.cross_entropy(
            self.background(x), lab["background"].long())
        acc = (shape.view(b, k, -1)[:, 0].argmax(-1) == st.view(b, k)[:, 0]).float().mean()
        return loss, acc


class _Collate:
    def __init__(self, tokenizer, seed):
        self.tokenizer, self.seed = tokenizer, seed

    def __call__(self, scenes, images, captions, labels, step):
        rng = random.Random(self.seed * 1_000_003 + step)
        negs = [hard_negative(s, rng) for s in scenes]
        lab = {k: torch.as_tensor(labels[k]) for k in ("shape", "colour", "background")}
        return to_model_input(images), self.tokenizer(captions), self.tokenizer(negs), lab


def lr_at(step: int, steps: int, warmup: int, lr: float) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def clip_loss(img, pos, neg, logit_scale):
    """Symmetric InfoNCE; the image->text side also ranks every hard negative caption."""
    s = logit_scale.exp().clamp(max=100)
    target = torch.arange(img.shape[0], device=img.device)
    i2t = s * img @ torch.cat([pos, neg]).T
    t2i = s * pos @ img.T
    return 0.5 * (F.cross_entropy(i2t, target) + F.cross_entropy(t2i, target)), (
        (img * pos).sum(-1) > (img * neg).sum(-1)).float().mean()


def train_scene_clip(cfg: SceneCLIPTrainConfig, log=print, workers: int = 1, init: SceneCLIP | None = None,
                     bank=None, device="cpu") -> SceneCLIP:
    """Contrastive training from scratch (or a further phase from ``init``), on fresh scenes or a ``SceneBank``,
    on ``device``; the model comes back on the CPU."""
    torch.manual_seed(cfg.seed + cfg.start_step)
    if init is None:
        tok = WordTokenizer.for_scenes()
        model, mcfg = build_model(tok.vocab_size, **(cfg.overrides or {}))
        clip = SceneCLIP(model, tok, mcfg, meta={"train": [asdict(cfg)]})
    else:
        clip, model, tok = init, init.model, init.tokenizer
        clip.meta.setdefault("train", []).append(asdict(cfg))
    heads = AttributeHeads(clip.embed_dim)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0}]
    if cfg.aux_weight:
        groups.append({"params": list(heads.parameters()), "weight_decay": 0})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98))
    total = cfg.start_step + cfg.steps
    stream = SceneStream(cfg.batch_size, total, _Collate(tok, cfg.seed), seed=cfg.seed, start_step=cfg.start_step,
                         bank=bank)
    val = _Collate(tok, cfg.seed)(*render_batch(VISION_ID_BASE + VAL_ID_OFFSET + np.arange(256), cfg.seed), 0)
    clip.to(device).train()
    heads.to(device)
    val = to_device(val, device)

    def step_fn(step, batch):
        x, pos_t, neg_t, lab = batch
        img = F.normalize(model.encode_image(clip.preprocess(x)), dim=-1)
        txt = F.normalize(model.encode_text(torch.cat([pos_t, neg_t])), dim=-1)
        loss, hn_acc = clip_loss(img, txt[: len(x)], txt[len(x):], model.logit_scale)
        aux_acc = float("nan")
        if cfg.aux_weight:
            aux, aux_acc = heads.loss(img, lab)
            loss, aux_acc = loss + cfg.aux_weight * aux, aux_acc.item()
        return loss, {"loss": loss.item(), "hard_negative_acc": hn_acc.item(), "train_shape_acc": aux_acc}

    def heldout(step):
        out = {"phase": len(clip.meta["train"]), "heldout_shape_acc": None}
        if cfg.aux_weight and (step % (10 * cfg.log_every) == 0 or step == cfg.steps):
            clip.eval()
            with torch.no_grad():
                e = F.normalize(model.encode_image(clip.preprocess(val[0])), dim=-1)
                out["heldout_shape_acc"] = round(heads.loss(e, val[3])[1].item(), 3)
            clip.train()
        return out

    seconds = fit("clip", loader(stream, workers), cfg.steps, step_fn, opt, clip_params=model.parameters(),
                  lr_at=lambda step: lr_at(step, cfg.steps, cfg.warmup, cfg.lr), log_every=cfg.log_every, log=log,
                  extra_log=heldout, device=device)
    clip.cpu()
    clip.meta["train_seconds"] = round(clip.meta.get("train_seconds", 0) + seconds, 1)
    return clip.eval()
