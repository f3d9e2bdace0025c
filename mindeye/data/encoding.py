"""SimNSD's encoding model: image (+ its scene labels) -> noise-free voxel response.

Early visual areas (V1-V3) are population receptive fields (pRFs) that pool four image feature maps:
luminance, local contrast energy, and two colour-opponent channels (red-green, blue-yellow). Higher areas
are tuned to what a person would name: object shape class (LO), colour (VO) and layout (IPS), each with a
large, coarse receptive field over the objects' positions. A per-voxel compressive power law (as in the
compressive spatial summation model) follows, then each voxel is scaled to unit signal variance over a fixed
calibration set, so the noise model below is in units of signal standard deviation (NSD's ncsnr).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import scenes
from .cortex import VisualCortex

GRID = 24  # feature maps are pooled to GRID x GRID before the pRFs read them
CHANNELS = ("luminance", "contrast", "red-green", "blue-yellow")


def feature_maps(images: np.ndarray) -> np.ndarray:
    """``[N,H,W,3]`` uint8 -> ``[N, 4, GRID*GRID]`` float32 low-level feature maps."""
    n, h, w, _ = images.shape
    if h % GRID or w % GRID:  # pool on a grid that divides the image
        from PIL import Image

        side = GRID * max(1, round(h / GRID))
        images = np.stack([np.asarray(Image.fromarray(im).resize((side, side), Image.BILINEAR)) for im in images])
        n, h, w, _ = images.shape
    x = images.astype(np.float32) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    lum = (r + g + b) / 3
    # contrast energy: gradient magnitude of luminance
    gy, gx = np.gradient(lum, axis=(1, 2))
    contrast = np.sqrt(gx**2 + gy**2) * 4
    maps = np.stack([lum - 0.5, contrast, r - g, b - (r + g) / 2], axis=1)
    k = h // GRID
    maps = maps[:, :, : k * GRID, : k * GRID].reshape(n, 4, GRID, k, GRID, k).mean(axis=(3, 5))
    return maps.reshape(n, 4, GRID * GRID).astype(np.float32)


def _grid_xy() -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(GRID) + 0.5) / GRID * 2 - 1
    x, y = np.meshgrid(c, -c)  # y up
    return x.ravel(), y.ravel()


@dataclass
class EncodingModel:
    """All arrays are per voxel ([V] or [V, k]); ``early`` marks pRF voxels (V1-V3)."""
    cortex: VisualCortex
    early: np.ndarray
    channel_w: np.ndarray  # [V, 4]
    shape_w: np.ndarray  # [V, n_shapes]
    colour_w: np.ndarray  # [V, n_colours]
    background_w: np.ndarray  # [V, n_backgrounds]
    layout_gain: np.ndarray  # [V]
    exponent: np.ndarray  # [V] compressive nonlinearity
    bias: np.ndarray  # [V]
    drive_mean: np.ndarray | None = None
    drive_std: np.ndarray | None = None
    out_mean: np.ndarray | None = None
    out_std: np.ndarray | None = None

    @classmethod
    def create(cls, cortex: VisualCortex, rng: np.random.Generator) -> "EncodingModel":
        v = cortex.n_voxels
        area = cortex.area
        early = area <= 2
        channel_w = np.stack([rng.normal(0, 0.4, v), np.abs(rng.normal(1.0, 0.3, v)),
                              rng.normal(0, 0.5, v), rng.normal(0, 0.5, v)], axis=1)
        channel_w[area == 2, 2:] *= 1.8  # V3 is more colour-selective than V1
        gain = {3: (0.5, 1.2, 0.2), 4: (1.2, 0.35, 0.2), 5: (0.25, 0.2, 1.0)}  # area: shape, colour, layout
        shape_w = rng.normal(0, 1, (v, len(scenes.SHAPES)))
        colour_w = rng.normal(0, 1, (v, len(scenes.COLOUR_NAMES)))
        layout = np.zeros(v)
        for a, (gs, gc, gl) in gain.items():
            sel = area == a
            shape_w[sel] *= gs
            colour_w[sel] *= gc
            layout[sel] = gl
        shape_w[early] = colour_w[early] = 0
        background_w = rng.normal(0, 0.3, (v, len(scenes.BACKGROUNDS))) * (~early)[:, None]
        exponent = np.where(early, rng.uniform(0.45, 0.65, v), rng.uniform(0.25, 0.45, v))
        bias = rng.normal(0.5, 0.3, v)
        return cls(cortex, early, channel_w.astype(np.float32), shape_w.astype(np.float32),
                   colour_w.astype(np.float32), background_w.astype(np.float32), layout.astype(np.float32),
                   exponent.astype(np.float32), bias.astype(np.float32))

    def _prf_weights(self) -> np.ndarray:
        """``[GRID*GRID, V_early]``: Gaussian pRFs, normalised by their full mass so off-screen parts cost."""
        gx, gy = _grid_xy()
        c = self.cortex
        e = self.early
        d2 = (gx[:, None] - c.prf_x[e]) ** 2 + (gy[:, None] - c.prf_y[e]) ** 2
        sig = c.prf_size[e]
        w = np.exp(-d2 / (2 * sig**2)) / (2 * np.pi * sig**2 / (2 / GRID) ** 2)
        return w.astype(np.float32)

    def drive(self, images: np.ndarray, labels: dict[str, np.ndarray]) -> np.ndarray:
        """Linear drive ``[N, V]`` before normalisation and the nonlinearity."""
        n, v = len(images), self.cortex.n_voxels
        out = np.zeros((n, v), np.float32)
        fm = feature_maps(images)  # [N, 4, P]
        pooled = np.einsum("ncp,pv->ncv", fm, self._prf_weights())  # [N, 4, V_early]
        out[:, self.early] = np.einsum("ncv,vc->nv", pooled, self.channel_w[self.early])
        hi = ~self.early
        c = self.cortex
        for k in range(scenes.MAX_OBJECTS):
            shape, colour = labels["shape"][:, k], labels["colour"][:, k]
            present = shape >= 0
            if not present.any():
                continue
            area = np.where(present, np.array(scenes.SIZE_RADIUS)[np.maximum(labels["size"][:, k], 0)] ** 2 * 12, 0)
            x = np.nan_to_num(labels["x"][:, k] * 2 - 1)
            y = np.nan_to_num(1 - labels["y"][:, k] * 2)
            d2 = (x[:, None] - c.prf_x[hi]) ** 2 + (y[:, None] - c.prf_y[hi]) ** 2
            g = np.exp(-d2 / (2 * c.prf_size[hi] ** 2))  # [N, V_hi]
            tuning = (self.shape_w[hi][:, np.maximum(shape, 0)].T + self.colour_w[hi][:, np.maximum(colour, 0)].T
                      + self.layout_gain[hi])
            out[:, hi] += (area[:, None] * g * tuning).astype(np.float32)
        out[:, hi] += self.background_w[hi][:, labels["background"].astype(int)].T
        return out

    def calibrate(self, images: np.ndarray, labels: dict[str, np.ndarray]) -> None:
        """Fix the per-voxel normalisation on a calibration set (the same for every image set simulated)."""
        d = self.drive(images, labels)
        self.drive_mean, self.drive_std = d.mean(0), d.std(0) + 1e-6
        r = self._nonlinear(d)
        self.out_mean, self.out_std = r.mean(0), r.std(0) + 1e-6

    def _nonlinear(self, d: np.ndarray) -> np.ndarray:
        z = (d - self.drive_mean) / self.drive_std + self.bias
        return np.logaddexp(0, z) ** self.exponent  # softplus, then compressive power

    def response(self, images: np.ndarray, labels: dict[str, np.ndarray]) -> np.ndarray:
        """Noise-free response ``[N, V]`` in units of each voxel's signal standard deviation."""
        if self.drive_mean is None:
            raise RuntimeError("EncodingModel.calibrate must run before response")
        r = self._nonlinear(self.drive(images, labels))
        return ((r - self.out_mean) / self.out_std).astype(np.float32)
