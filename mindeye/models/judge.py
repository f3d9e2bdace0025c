"""The judge: an independent scene-attribute classifier that scores reconstructions by what a person would
name in them (shape class, colour and position of each object, the background, the object count).

It is trained on SimNSD labels only (never on CLIP embeddings or on reconstructions), with blur and noise
augmentation so that soft, decoded images are read the way a person reads them. Objects are slots in
size order (largest first), so slot 0 is "the largest object".
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import scenes as S
from ..data.errors import DataError
from ..data.stream import VISION_ID_BASE, VISION_SIZE, SceneStream, loader, to_model_input
from ..training.fit import fit

JUDGE_ID_OFFSET = 30_000_000
NONE = -1  # padded slot


def _block(c_in, c_out, stride):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SceneJudge(nn.Module):
    """CNN 64 px -> 4 x 4 x 4w -> 256 -> heads per object slot (shape/colour with a 'none' class, x, y),
    background and object count."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.features = nn.Sequential(_block(3, w, 2), _block(w, 2 * w, 2), _block(2 * w, 4 * w, 2),
                                      _block(4 * w, 4 * w, 2), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                                      nn.Linear(16 * 4 * w, 256), nn.ReLU(inplace=True), nn.Dropout(0.1))
        k = S.MAX_OBJECTS
        self.shape = nn.Linear(256, k * (len(S.SHAPES) + 1))
        self.colour = nn.Linear(256, k * (len(S.COLOUR_NAMES) + 1))
        self.xy = nn.Linear(256, k * 2)
        self.background = nn.Linear(256, len(S.BACKGROUNDS))
        self.count = nn.Linear(256, k)

    def forward(self, x01: torch.Tensor) -> dict[str, torch.Tensor]:
        if x01.shape[-1] != VISION_SIZE:
            x01 = F.interpolate(x01, size=(VISION_SIZE,) * 2, mode="bilinear", antialias=True)
        h = self.features(x01 * 2 - 1)
        b, k = h.shape[0], S.MAX_OBJECTS
        return {"shape": self.shape(h).view(b, k, -1), "colour": self.colour(h).view(b, k, -1),
                "xy": self.xy(h).view(b, k, 2).sigmoid(), "background": self.background(h), "count": self.count(h)}

    @torch.no_grad()
    def predict(self, images, batch_size: int = 128) -> dict[str, np.ndarray]:
        """uint8 [N,H,W,3] or float [N,3,H,W] in [0,1] -> labels in the format of ``scenes.labels_of``."""
        self.eval()
        x = images if isinstance(images, torch.Tensor) and images.dtype.is_floating_point else to_model_input(images)
        outs = [self(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        cat = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
        n_obj = cat["count"].argmax(-1).numpy() + 1
        shape = cat["shape"][..., 1:].argmax(-1).numpy()  # index 0 is "none"
        colour = cat["colour"][..., 1:].argmax(-1).numpy()
        slot = np.arange(S.MAX_OBJECTS)[None] < n_obj[:, None]
        return {"background": cat["background"].argmax(-1).numpy(), "n_objects": n_obj,
                "shape": np.where(slot, shape, NONE), "colour": np.where(slot, colour, NONE),
                "x": np.where(slot, cat["xy"][..., 0].numpy(), np.nan), "y": np.where(slot, cat["xy"][..., 1].numpy(), np.nan)}

    def save(self, folder: Path, meta: dict) -> None:
        from safetensors.torch import save_file
        from ..atomic import atomic_dir
        with atomic_dir(Path(folder)) as tmp:
            save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(tmp / "judge.safetensors"))
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, folder: Path | str) -> "SceneJudge":
        from safetensors.torch import load_file
        path = Path(folder) / "judge.safetensors"
        if not path.exists():
            raise DataError(f"{folder}: no judge weights (expected judge.safetensors)")
        meta = json.loads((Path(folder) / "meta.json").read_text())
        judge = cls(width=meta.get("width", 16))
        judge.load_state_dict(load_file(str(path)))
        return judge.eval()


def judge_scores(pred: dict, true: dict) -> dict[str, float]:
    """Accuracy of what the judge names in images against the true labels (largest object = slot 0)."""
    def acc(a, b):
        return float(np.mean(np.asarray(a) == np.asarray(b)))
    pos_err = np.hypot(pred["x"][:, 0] - true["x"][:, 0], pred["y"][:, 0] - true["y"][:, 0])
    return {"shape_largest": acc(pred["shape"][:, 0], true["shape"][:, 0]),
            "colour_largest": acc(pred["colour"][:, 0], true["colour"][:, 0]),
            "background": acc(pred["background"], true["background"]),
            "count": acc(pred["n_objects"], true["n_objects"]),
            "position_largest_within_0.1": float(np.mean(pos_err < 0.1))}


@dataclass
class JudgeTrainConfig:
    steps: int = 4000  # shape is learnt late: ~40k samples before it leaves chance, ~100k to reach 60%
    batch_size: int = 64
    lr: float = 3e-3
    width: int = 24
    seed: int = 0
    log_every: int = 50


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Blur (what decoders produce), noise and slight brightness changes; never hue (colour is a label)."""
    b = x.shape[0]
    sigma = torch.rand(b, generator=g) * 1.8
    out = x.clone()
    for i in range(b):
        if sigma[i] > 0.3:
            k = int(2 * round(float(3 * sigma[i])) + 1)
            out[i] = _gauss_blur(x[i:i + 1], float(sigma[i]), k)[0]
    out = out * (0.85 + 0.3 * torch.rand(b, 1, 1, 1, generator=g))
    out = out + 0.04 * torch.rand(b, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)
    return out.clamp(0, 1)


def _gauss_blur(x, sigma, k):
    t = torch.arange(k, dtype=torch.float32) - k // 2
    w = torch.exp(-t ** 2 / (2 * sigma ** 2))
    w = (w / w.sum()).view(1, 1, 1, k).repeat(3, 1, 1, 1)
    x = F.conv2d(F.pad(x, (k // 2, k // 2, 0, 0), mode="reflect"), w, groups=3)
    return F.conv2d(F.pad(x, (0, 0, k // 2, k // 2), mode="reflect"), w.transpose(2, 3), groups=3)


def _collate(scenes, images, captions, labels, step):
    g = torch.Generator().manual_seed(step)
    x = _augment(to_model_input(images), g)
    lab = {k: torch.as_tensor(v) for k, v in labels.items()}
    return x, lab


def judge_loss(out, lab):
    shape_t = lab["shape"].long() + 1  # -1 (none) -> class 0
    colour_t = lab["colour"].long() + 1
    present = lab["shape"] >= 0
    ce_shape = F.cross_entropy(out["shape"].flatten(0, 1), shape_t.flatten())
    ce_colour = F.cross_entropy(out["colour"].flatten(0, 1), colour_t.flatten())
    xy_t = torch.stack([lab["x"], lab["y"]], -1).nan_to_num(0.5)
    xy = (F.smooth_l1_loss(out["xy"], xy_t, reduction="none", beta=0.05).sum(-1) * present).sum() / present.sum()
    return (ce_shape + ce_colour + 4 * xy + F.cross_entropy(out["background"], lab["background"].long())
            + F.cross_entropy(out["count"], lab["n_objects"].long() - 1))


def train_judge(cfg: JudgeTrainConfig, log=print, workers: int = 1, bank=None,
                device="cpu") -> tuple[SceneJudge, dict]:
    """Supervised training on scene labels: a cached ``SceneBank`` when given, else freshly rendered scenes."""
    torch.manual_seed(cfg.seed)
    judge = SceneJudge(cfg.width)
    opt = torch.optim.AdamW(judge.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    stream = SceneStream(cfg.batch_size, cfg.steps, _collate, seed=cfg.seed, first_id=VISION_ID_BASE + JUDGE_ID_OFFSET,
                         bank=bank)
    judge.to(device).train()

    def step_fn(step, batch):
        x, lab = batch
        loss = judge_loss(judge(x), lab)
        return loss, {"loss": loss.item()}

    seconds = fit("judge", loader(stream, workers), cfg.steps, step_fn, opt, sched=sched, log_every=cfg.log_every,
                  log=log, device=device)
    judge.cpu()
    return judge.eval(), {"train": asdict(cfg), "width": cfg.width, "train_seconds": round(seconds, 1)}
