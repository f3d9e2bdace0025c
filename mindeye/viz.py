"""Pictures of data: static brain maps on fsaverage5 (matplotlib through nilearn), the UMAP scatter and
stimulus grids. No UI toolkit here; the app and bench scripts both call these."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .data.cortex import to_surface


@lru_cache(maxsize=None)
def fsaverage5():
    """nilearn's bundled fsaverage5 meshes (pial, inflated, flat, ...) and inflated sulcal depth (offline)."""
    from nilearn import datasets

    mesh = datasets.load_fsaverage("fsaverage5")  # bundled with nilearn: offline
    sulc = datasets.load_fsaverage_data(mesh="fsaverage5", data_type="sulcal", mesh_type="inflated")
    return mesh, sulc


def surface_image(values: np.ndarray, hemi: np.ndarray, vertex: np.ndarray, mesh_type: str = "inflated"):
    """Per-voxel values [V] -> nilearn SurfaceImage on fsaverage5 (vertices outside the ROI are NaN)."""
    from nilearn.surface import SurfaceImage

    mesh, _ = fsaverage5()
    return SurfaceImage(mesh=mesh[mesh_type], data=to_surface(values, hemi, vertex))


def retinotopy_figure(gt: dict[str, np.ndarray], hemi: np.ndarray, vertex: np.ndarray, title: str = ""):
    """Static matplotlib figure: true polar angle and eccentricity of V1-V3, posterior and medial views."""
    import matplotlib.pyplot as plt
    from nilearn import plotting

    mesh, sulc = fsaverage5()
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


def palette(n: int) -> list[str]:
    """``n`` distinct categorical colours (plotly's qualitative sets, repeating past their length)."""
    from plotly.colors import qualitative
    base = qualitative.Plotly + qualitative.Set2
    return [base[i % len(base)] for i in range(n)]


def embedding_map_figure(image_xy: np.ndarray, brain_xy: np.ndarray, groups: list[str], hover: list[str],
                         colours: dict[str, str] | None = None, highlight: int | None = None, title: str = "",
                         uirevision: str = "embedding-map"):
    """Interactive plotly scatter of a joint 2-D map: seen images (circles) and their brain-predicted
    embeddings (crosses), each pair joined by a thin line, coloured by ``groups`` (one label per trial; legend
    order = first appearance unless ``colours`` gives an order), hover text ``hover`` (one per trial).
    ``highlight`` (a trial) is drawn large. ``uirevision`` keeps zoom and pan across redraws."""
    import plotly.graph_objects as go

    n = len(image_xy)
    order = list(colours) if colours else list(dict.fromkeys(groups))
    order = [g for g in order if g in set(groups)]
    group_colours = colours or dict(zip(order, palette(len(order))))
    seg = np.full((n, 3, 2), np.nan, np.float32)
    seg[:, 0], seg[:, 1] = image_xy, brain_xy
    seg = seg.reshape(-1, 2)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=seg[:, 0], y=seg[:, 1], mode="lines", line=dict(width=0.5, color="rgba(120,120,120,0.35)"),
                             hoverinfo="skip", showlegend=False, connectgaps=False, name="pairs"))
    groups_a = np.asarray(groups, dtype=object)
    hover_a = np.asarray(hover, dtype=object)
    for g in order:
        idx = np.flatnonzero(groups_a == g)
        for xy, symbol, what, legend in ((image_xy, "circle", "seen image", True),
                                         (brain_xy, "x", "brain prediction", False)):
            fig.add_trace(go.Scatter(
                x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=str(g), legendgroup=str(g), showlegend=legend,
                marker=dict(symbol=symbol, size=7 if symbol == "circle" else 6, color=group_colours[g],
                            line=dict(width=0.5, color="rgba(60,60,60,0.8)")),
                customdata=idx, text=hover_a[idx],
                hovertemplate=f"<b>trial %{{customdata}}</b> ({what})<br>%{{text}}<extra>{g}</extra>"))
    for label, symbol in (("seen image (CLIP)", "circle"), ("predicted from the brain", "x")):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=label, legendgroup="_symbols",
                                 marker=dict(symbol=symbol, color="grey", size=8), hoverinfo="skip"))
    if highlight is not None and 0 <= int(highlight) < n:
        h = int(highlight)
        fig.add_trace(go.Scatter(x=[image_xy[h, 0], brain_xy[h, 0]], y=[image_xy[h, 1], brain_xy[h, 1]],
                                 mode="lines+markers", name=f"trial {h}", line=dict(width=2, color="black"),
                                 marker=dict(symbol=["circle", "x"], size=14, color=group_colours[groups[h]],
                                             line=dict(width=2, color="black")),
                                 customdata=[h, h], text=[hover[h], hover[h]],
                                 hovertemplate="<b>trial %{customdata}</b><br>%{text}<extra>selected</extra>"))
    fig.update_layout(height=560, margin=dict(l=10, r=10, t=40 if title else 10, b=10), title=title or None,
                      plot_bgcolor="white", paper_bgcolor="white", legend=dict(itemsizing="constant"),
                      uirevision=uirevision, hovermode="closest")
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, title="UMAP 1")
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, title="UMAP 2", scaleanchor="x")
    return fig


def umap_png(image_xy: np.ndarray, brain_xy: np.ndarray, path, title: str = ""):
    """A still of a joint 2-D map (seen images as circles, their brain predictions as crosses, pairs joined),
    written atomically to ``path`` (PNG); for run folders, where no browser is at hand."""
    from pathlib import Path

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    from .atomic import atomic_save
    fig, ax = plt.subplots(figsize=(6, 6), dpi=120)
    ax.add_collection(LineCollection(np.stack([image_xy, brain_xy], 1), colors=(0.5, 0.5, 0.5, 0.3), linewidths=0.5))
    ax.scatter(image_xy[:, 0], image_xy[:, 1], s=10, marker="o", label="seen image (CLIP)")
    ax.scatter(brain_xy[:, 0], brain_xy[:, 1], s=10, marker="x", label="predicted from the brain")
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_xlabel("UMAP 1"), ax.set_ylabel("UMAP 2")
    ax.legend(loc="best", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    atomic_save(fig, Path(path), lambda f, tmp: f.savefig(tmp, format="png"))
    plt.close(fig)
    return Path(path)
