"""Pictures of data: brain maps on fsaverage5 (interactive plotly through nilearn, static matplotlib) and
stimulus grids. No UI toolkit here; the app and bench scripts both call these."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .data.cortex import to_surface


@lru_cache(maxsize=None)
def _fsaverage5():
    from nilearn import datasets

    mesh = datasets.load_fsaverage("fsaverage5")  # bundled with nilearn: offline
    sulc = datasets.load_fsaverage_data(mesh="fsaverage5", data_type="sulcal", mesh_type="inflated")
    return mesh, sulc


def surface_image(values: np.ndarray, hemi: np.ndarray, vertex: np.ndarray, mesh_type: str = "inflated"):
    """Per-voxel values [V] -> nilearn SurfaceImage on fsaverage5 (vertices outside the ROI are NaN)."""
    from nilearn.surface import SurfaceImage

    mesh, _ = _fsaverage5()
    return SurfaceImage(mesh=mesh[mesh_type], data=to_surface(values, hemi, vertex))


VIEWS = ("posterior", "left medial", "right medial", "left lateral", "right lateral", "ventral", "dorsal")


def split_view(view: str) -> tuple[str, str]:
    """'left medial' -> ('left', 'medial'); 'posterior' -> ('both', 'posterior'). nilearn draws medial and
    lateral views of one hemisphere only (V1 sits on the medial surface), the others of both."""
    parts = view.split()
    if len(parts) == 2 and parts[0] in ("left", "right") and parts[1] in ("medial", "lateral"):
        return parts[0], parts[1]
    if view in ("posterior", "anterior", "ventral", "dorsal"):
        return "both", view
    raise ValueError(f"unknown view {view!r}; expected one of {list(VIEWS)}")


def surface_figure(values: np.ndarray, hemi: np.ndarray, vertex: np.ndarray, title: str = "",
                   view: str = "posterior", cmap: str = "cold_hot", vmax: float | None = None,
                   symmetric: bool = True, threshold: float | None = None, colorbar_title: str = ""):
    """Interactive plotly figure of per-voxel values on the inflated fsaverage5 surface (both hemispheres, or
    one for 'left medial' and the like)."""
    from nilearn import plotting

    which, view = split_view(view)

    _, sulc = _fsaverage5()
    finite = values[np.isfinite(values)]
    if vmax is None:
        vmax = float(np.percentile(np.abs(finite), 98)) if len(finite) else 1.0
    fig = plotting.plot_surf(surf_map=surface_image(values, hemi, vertex), bg_map=sulc, hemi=which, view=view,
                             engine="plotly", cmap=cmap, symmetric_cmap=symmetric, vmax=vmax,
                             vmin=-vmax if symmetric else float(finite.min()) if len(finite) else 0.0,
                             threshold=threshold, colorbar=True, title=title).figure
    fig.update_layout(height=480, margin=dict(l=0, r=0, t=40 if title else 0, b=0),
                      paper_bgcolor="white")
    if colorbar_title:
        for tr in fig.data:
            if getattr(tr, "colorbar", None) is not None:
                tr.colorbar.title = colorbar_title
    return fig


def retinotopy_figure(gt: dict[str, np.ndarray], hemi: np.ndarray, vertex: np.ndarray, title: str = ""):
    """Static matplotlib figure: true polar angle and eccentricity of V1-V3, posterior and medial views."""
    import matplotlib.pyplot as plt
    from nilearn import plotting

    mesh, sulc = _fsaverage5()
    early = gt["area"] <= 2  # V1-V3; higher areas have coarse, non-retinotopic receptive fields
    pa, ecc = np.where(early, gt["polar_angle"], np.nan), np.where(early, gt["eccentricity"], np.nan)
    rows = [("polar angle (deg)", pa, "hsv", -180, 180),
            ("eccentricity (image half-widths)", ecc, "viridis", 0, float(np.nanmax(ecc)))]
    views = [("left", "medial"), ("both", "posterior"), ("right", "medial")]
    fig, axes = plt.subplots(2, 3, subplot_kw={"projection": "3d"}, figsize=(13, 8.5))
    for r, (label, vals, cmap, vmin, vmax) in enumerate(rows):
        img = surface_image(vals, hemi, vertex)
        for c, (h, view) in enumerate(views):
            plotting.plot_surf(surf_map=img, bg_map=sulc, hemi=h, view=view, cmap=cmap, vmin=vmin, vmax=vmax,
                               axes=axes[r, c], figure=fig, colorbar=(c == 2), title=f"{label}\n{h}, {view}")
    if title:
        fig.suptitle(title, fontsize=14)
    return fig


def stimulus_grid(images: np.ndarray, captions: list[str], cols: int = 4, title: str = ""):
    """Matplotlib grid of stimuli with their captions underneath."""
    import textwrap

    import matplotlib.pyplot as plt

    rows = int(np.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 4.0 * rows))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, img, cap in zip(np.ravel(axes), images, captions):
        ax.imshow(img)
        ax.text(0.5, -0.03, "\n".join(textwrap.wrap(cap, 32)), transform=ax.transAxes, ha="center", va="top",
                fontsize=9)
    if title:
        fig.suptitle(title, fontsize=13)
    fig.subplots_adjust(hspace=0.35, wspace=0.05, top=0.95)
    return fig
