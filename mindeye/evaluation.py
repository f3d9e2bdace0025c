"""Scoring reconstructions the paper's way (REFERENCE.md, V1 Reconstruction_Metrics), plus, on SimNSD, the
scene-attribute judge.

Low-level: PixCorr and SSIM (grayscale, gaussian weights) at the originals' size and at 425 px, MindEye's
resolution (the two differ a lot on the same images; never set one beside the paper's number under the
other's label). High-level: 2-way identification with the bundle's CLIP (SceneCLIP on SimNSD). The paper's
feature nets (AlexNet(2), AlexNet(5), InceptionV3, CLIP ViT-L/14, EffNet-B, SwAV) need their weights in a
local torch-hub / HF cache; where they are absent the table says "not available", never a number from
random weights.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
# torch (and .metrics, which needs it) load inside the scoring functions: the app's Evaluate tab imports this
# module for its tables while building the page, and a page should not wait for torch

PAPER_FEATURE_METRICS = ("AlexNet(2)", "AlexNet(5)", "InceptionV3", "CLIP ViT-L/14", "EffNet-B", "SwAV")
NOT_AVAILABLE = "not available"

# The published numbers (REFERENCE.md), as printed there: real NSD, 425 px images, the paper's feature nets.
# Never comparable with SimNSD's numbers; shown beside them only as a labelled reference.
PAPER_COLUMNS = ("PixCorr", "SSIM", "AlexNet(2)", "AlexNet(5)", "InceptionV3", "CLIP", "EffNet-B ↓", "SwAV ↓",
                 "image retrieval", "brain retrieval")
PAPER_ROWS = {
    "MindEye (V1), subject 1": (".392", ".347", "97.4%", "98.7%", "94.5%", "94.3%", ".635", ".358", "97.2%", "94.7%"),
    "MindEye (V1), low-level pipeline alone": (".456", ".493", "", "", "", "", "", "", "", ""),
    "MindEye (V1), mean of 4 subjects": ("", "", "", "", "", "", "", "", "93.6%", "90.0%"),
    "MindEye2 (40 sessions), subject 1": (".374", ".439", "97.9%", "99.1%", "96.0%", "93.7%", ".607", ".336",
                                          "99.96%", "99.87%"),
    "ridge to CLIP (Brain-Diffuser style, re-scored by MindEye2)": ("", "", "", "", "", "", "", "", "~18.8%", ""),
}


def paper_table() -> str:
    """The published numbers as a Markdown table (blank: not reported)."""
    head = f"| method | {' | '.join(PAPER_COLUMNS)} |\n" + "|---" * (len(PAPER_COLUMNS) + 1) + "|"
    return "\n".join([head, *(f"| {k} | " + " | ".join(v) + " |" for k, v in PAPER_ROWS.items())])


def _clip_final(clip, images):
    """The bundle CLIP's final embeddings of ``images`` ``[N, 3, H, W]``, 100 at a time, on the CPU."""
    import torch
    with torch.no_grad():
        return torch.cat([clip.final(images[i:i + 100]).float().cpu() for i in range(0, len(images), 100)])


def per_trial_scores(recons: torch.Tensor, originals: torch.Tensor, clip=None) -> dict[str, np.ndarray]:
    """Per-image PixCorr and SSIM at the originals' size and, with ``clip``, each recon's CLIP 2-way
    identification among the others: ``{metric: [N]}``, whose means are ``evaluate_reconstructions``' numbers."""
    from .metrics import pixcorr, ssim, two_way_per_item
    out = {"PixCorr": np.array([pixcorr(r[None], o[None]) for r, o in zip(recons, originals)]),
           "SSIM": np.array([ssim(r[None], o[None]) for r, o in zip(recons, originals)])}
    if clip is not None and len(recons) > 1:
        out["CLIP 2-way"] = two_way_per_item(_clip_final(clip, recons), _clip_final(clip, originals))
    return out


def untied_largest(labels: dict) -> np.ndarray:
    """Scenes whose largest object is unambiguous: no other object shares its size class."""
    size = np.asarray(labels["size"])
    first = size[:, 0]
    others = size[:, 1:]
    return ~((others == first[:, None]) & (others >= 0)).any(1)


def judge_table(judge, recons: torch.Tensor, labels: dict) -> dict:
    """The judge's attribute accuracies on the reconstructions, as labelled and on untied scenes only."""
    from .models.judge import judge_scores
    pred = judge.predict(recons)
    out = {f"judge {k}": v for k, v in judge_scores(pred, labels).items()}
    keep = untied_largest(labels)
    if keep.any():
        sub = {k: np.asarray(v)[keep] for k, v in labels.items()}
        ps = {k: np.asarray(v)[keep] for k, v in pred.items()}
        for k, v in judge_scores(ps, sub).items():
            if "largest" in k:
                out[f"judge {k} (untied, n={int(keep.sum())})"] = v
    return out


def evaluate_reconstructions(recons: torch.Tensor, originals: torch.Tensor, clip=None, judge=None,
                             labels: dict | None = None) -> dict:
    """``recons``, ``originals``: ``[N, 3, H, W]`` in [0, 1] (any sizes; compared at the originals' size and at
    425 px). Returns an ordered dict of metric -> value (float or ``NOT_AVAILABLE``)."""
    from .metrics import pixcorr, ssim, two_way_identification
    size = originals.shape[-1]
    out = {"n": len(recons),
           f"PixCorr ({size} px)": pixcorr(recons, originals),
           f"SSIM ({size} px)": ssim(recons, originals),
           "PixCorr (425 px)": pixcorr(recons, originals, size=425),
           "SSIM (425 px)": ssim(recons, originals, size=425)}
    if clip is not None:
        out["bundle CLIP 2-way"] = two_way_identification(_clip_final(clip, recons), _clip_final(clip, originals))
    for name in PAPER_FEATURE_METRICS:
        out[name] = NOT_AVAILABLE
    if judge is not None and labels is not None:
        out.update(judge_table(judge, recons, labels))
    return out


def format_table(columns: dict[str, dict]) -> str:
    """Markdown table: one column per method (``{method: metrics}``), one row per metric."""
    names = list(columns)
    rows = []
    for metric in next(iter(columns.values())):
        cells = []
        for n in names:
            v = columns[n].get(metric, "")
            cells.append(f"{v:.3f}" if isinstance(v, float) else str(v))
        rows.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join([f"| metric | {' | '.join(names)} |", "|---" * (len(names) + 1) + "|", *rows])
