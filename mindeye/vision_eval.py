"""How good is the demo vision stack? The measurements behind issue 3's bar, on held-out scenes.

Test scenes are SimNSD's shared test images (ids 0..n-1), which no vision-stack model trained on; the linear
probe is fitted on other fresh scenes. Reconstructions are drawn from each test image's own SceneCLIP hidden
states (no brain, no img2img), so this is the ceiling the brain pipeline decodes towards.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from .data.stream import VISION_ID_BASE, render_batch, to_model_input
from .metrics import pixcorr, ssim, top1_identification, two_way_identification
from .models.judge import judge_scores

PROBE_ID_OFFSET = 50_000_000


@torch.no_grad()
def _batched(fn, x, bs=100):
    return torch.cat([fn(x[i:i + bs]) for i in range(0, len(x), bs)])


@torch.no_grad()
def evaluate_clip(clip, n_test: int = 300, n_probe: int = 3000, seed: int = 0) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    _, test_img, test_caps, test_lab = render_batch(np.arange(n_test), seed)
    _, probe_img, _, probe_lab = render_batch(VISION_ID_BASE + PROBE_ID_OFFSET + np.arange(n_probe), seed)
    f_test = _batched(clip.final, to_model_input(test_img)).numpy()
    f_probe = _batched(clip.final, to_model_input(probe_img)).numpy()
    out = {}
    scaler = StandardScaler().fit(f_probe)
    for attr in ("shape", "colour"):
        lr = LogisticRegression(max_iter=3000, C=1.0).fit(scaler.transform(f_probe), probe_lab[attr][:, 0])
        out[f"probe_{attr}_largest"] = float(lr.score(scaler.transform(f_test), test_lab[attr][:, 0]))
    lr = LogisticRegression(max_iter=3000).fit(scaler.transform(f_probe), probe_lab["background"])
    out["probe_background"] = float(lr.score(scaler.transform(f_test), test_lab["background"]))
    t = clip.encode_text(test_caps)
    best = (torch.as_tensor(f_test) @ t.T).argmax(1).numpy()
    out["caption_top1"] = float(np.mean([test_caps[b] == c for b, c in zip(best, test_caps)]))
    return out


@torch.no_grad()
def evaluate_decoder(clip, decoder, judge, n_test: int = 300, steps: int = 20, guidance_scale: float = 3.5,
                     seed: int = 0, batch_size: int = 50, progress=None) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Returns ``(metrics, originals [N,3,96,96], recons [N,3,64,64])``."""
    _, img, _, lab = render_batch(np.arange(n_test), seed)
    originals = to_model_input(img, size=img.shape[1])
    x = to_model_input(img)
    hidden = _batched(clip.hidden, x)
    recons, t0 = [], time.time()
    rng = range(0, n_test, batch_size)
    for i in (progress(rng) if progress else rng):
        recons.append(decoder.decode(hidden[i:i + batch_size], steps=steps, guidance_scale=guidance_scale, seed=seed + i))
    recons = torch.cat(recons)
    seconds = time.time() - t0
    j_orig = judge_scores(judge.predict(x), lab)
    j_rec = judge_scores(judge.predict(recons), lab)
    # the decoder's ceiling: what survives the VAE alone (encode -> decode of the originals)
    from .models import autoencoder as AE
    def through_vae(b):
        b = b.to(decoder.device, decoder.dtype)
        return AE.decode(decoder.vae, AE.encode(decoder.vae, b)).float().cpu()
    vae_rec = _batched(through_vae, x)
    j_vae = judge_scores(judge.predict(vae_rec), lab)
    f_rec, f_orig = _batched(clip.final, recons), _batched(clip.final, x)
    m = {"n": n_test, "steps": steps, "guidance_scale": guidance_scale,
         "judge_on_recons": j_rec, "judge_on_originals": j_orig, "judge_on_vae_recons": j_vae,
         "clip_top1_of_n": top1_identification(f_rec, f_orig),
         "clip_2way": two_way_identification(f_rec, f_orig),
         "pixcorr": pixcorr(recons, originals), "ssim": ssim(recons, originals),
         "vae_pixcorr": pixcorr(vae_rec, originals), "vae_ssim": ssim(vae_rec, originals),
         "pixel_metrics_at": originals.shape[-1], "decode_seconds": round(seconds, 1)}
    return m, originals, recons


def recon_grid(originals: torch.Tensor, recons: torch.Tensor, path, n: int = 12, cols: int = 6, captions=None):
    """Pairs (original above, reconstruction below) in a grid; saved as PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(2 * rows, cols, figsize=(1.9 * cols, 3.9 * rows))
    size = originals.shape[-1]
    r = torch.nn.functional.interpolate(recons[:n], size=(size, size), mode="bicubic", antialias=True).clamp(0, 1)
    for k in range(rows * cols):
        top, bot = axes[2 * (k // cols), k % cols], axes[2 * (k // cols) + 1, k % cols]
        for ax in (top, bot):
            ax.axis("off")
        if k >= n:
            continue
        top.imshow(originals[k].permute(1, 2, 0).numpy())
        bot.imshow(r[k].permute(1, 2, 0).numpy())
        if captions is not None:
            import textwrap
            top.set_title("\n".join(textwrap.wrap(captions[k], 32)), fontsize=5.5)
        if k % cols == 0:
            top.text(-8, size / 2, "original", rotation=90, va="center", ha="right", fontsize=8)
            bot.text(-8, size / 2, "recon", rotation=90, va="center", ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
