"""Brain maps for the browser, drawn by plotly.js from two light pieces:

- the **geometry** of one dataset (``surface_geometry``): fsaverage5's inflated hemispheres with sulcal depth as
  a grey backdrop, the ROI's own patch of that mesh (the voxels' vertices and the faces between them), and the
  ROI vertices' positions on nilearn's flat map. It is the same for every trial, so the app writes it once to a
  JSON file that the browser fetches and caches;
- a **map** per update (``map_panels``): one value per voxel for each panel, its colour scale and units. For
  3,145 voxels and four panels that is well under 300 KB, against 1.6 MB for a whole nilearn figure.

No UI toolkit and no plotting library here: the app's JavaScript (``components/brain.py``) builds the figures.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

# the views the app offers: (hemispheres shown, camera eye, camera up). fsaverage is RAS: x left->right,
# y posterior->anterior, z inferior->superior. Medial and lateral views show one hemisphere (the other would
# hide the medial wall, where V1 lies).
VIEWS = {
    "posterior": (("left", "right"), (0.0, -1.35, 0.12), (0, 0, 1)),
    "left medial": (("left",), (1.9, -0.35, 0.1), (0, 0, 1)),
    "right medial": (("right",), (-1.9, -0.35, 0.1), (0, 0, 1)),
    "left lateral": (("left",), (-1.9, -0.35, 0.1), (0, 0, 1)),
    "right lateral": (("right",), (1.9, -0.35, 0.1), (0, 0, 1)),
    "ventral": (("left", "right"), (0.0, -0.2, -1.4), (0, 1, 0)),
    "dorsal": (("left", "right"), (0.0, -0.2, 1.4), (0, 1, 0)),
}
HEMIS = ("left", "right")
GEOMETRY_VERSION = 3  # bump when surface_geometry's output changes (it names the cached file)
GAP_MM = 8.0  # space between the two inflated hemispheres (their inflated meshes overlap at the midline)


def _vertex_normals(coords: np.ndarray, faces: np.ndarray) -> np.ndarray:
    n = np.zeros_like(coords)
    fn = np.cross(coords[faces[:, 1]] - coords[faces[:, 0]], coords[faces[:, 2]] - coords[faces[:, 0]])
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)


def surface_geometry(hemi: np.ndarray, vertex: np.ndarray) -> dict:
    """JSON-able geometry for voxels at fsaverage5 ``vertex`` of ``hemi`` (0 left, 1 right), one vertex each.

    ``hemis[h]``: ``x, y, z`` (the inflated mesh, hemispheres moved ``GAP_MM`` apart), ``i, j, k`` (faces),
    ``sulc`` (backdrop shade), and ``roi``: the ROI patch (``x, y, z`` lifted 0.5 mm off the surface, faces
    ``i, j, k`` between ROI vertices, ``voxels``: which voxel each patch vertex shows). ``flat``: every voxel's
    2-D position on the flat map (left hemisphere on the left, right mirrored on the right)."""
    from .viz import fsaverage5
    mesh, sulc = fsaverage5()
    hemi, vertex = np.asarray(hemi), np.asarray(vertex)
    out = {"version": GEOMETRY_VERSION, "n_voxels": int(len(hemi)), "hemis": {}}
    parts = {h: mesh["inflated"].parts[h] for h in HEMIS}
    # move the hemispheres apart along x: the left one's right edge and the right one's left edge GAP_MM apart
    shift = {"left": -GAP_MM / 2 - parts["left"].coordinates[:, 0].max(),
             "right": GAP_MM / 2 - parts["right"].coordinates[:, 0].min()}
    flat_xy = np.zeros((len(hemi), 2), np.float32)
    for h_idx, h in enumerate(HEMIS):
        coords = np.asarray(parts[h].coordinates, np.float64).copy()
        coords[:, 0] += shift[h]
        faces = np.asarray(parts[h].faces, np.int64)
        shade = np.asarray(sulc.data.parts[h], np.float64)
        sel = np.flatnonzero(hemi == h_idx)
        verts = vertex[sel]
        local = np.full(len(coords), -1)
        local[verts] = np.arange(len(verts))
        inside = (local[faces] >= 0).all(axis=1)
        lifted = coords[verts] + 0.5 * _vertex_normals(coords, faces)[verts]
        out["hemis"][h] = {
            "x": _r(coords[:, 0]), "y": _r(coords[:, 1]), "z": _r(coords[:, 2]),
            "i": faces[:, 0].tolist(), "j": faces[:, 1].tolist(), "k": faces[:, 2].tolist(),
            "sulc": _r(shade, 2),
            "roi": {"x": _r(lifted[:, 0]), "y": _r(lifted[:, 1]), "z": _r(lifted[:, 2]),
                    "i": local[faces[inside, 0]].tolist(), "j": local[faces[inside, 1]].tolist(),
                    "k": local[faces[inside, 2]].tolist(), "voxels": sel.tolist()},
            # where the "L" / "R" label sits: above the hemisphere's middle, at its back
            "label": {"x": float(np.median(coords[:, 0])), "y": float(coords[:, 1].min()),
                      "z": float(coords[:, 2].max()) + 4.0},
        }
        flat = np.asarray(mesh["flat"].parts[h].coordinates, np.float64)[verts, :2]
        flat = flat - flat.mean(0) if len(flat) else flat
        flat_xy[sel] = flat
    # place the hemispheres' flat patches side by side, the right one mirrored so both show the same way round
    for h_idx in (0, 1):
        sel = hemi == h_idx
        if sel.any():
            xy = flat_xy[sel]
            if h_idx == 1:
                xy[:, 0] = -xy[:, 0]
            half = (np.ptp(xy[:, 0]) / 2 + 10) * (-1 if h_idx == 0 else 1)
            flat_xy[sel] = xy + [half, 0]
    out["flat"] = {"x": _r(flat_xy[:, 0]), "y": _r(flat_xy[:, 1])}
    return out


def _r(a, nd: int = 1) -> list:
    return np.round(np.asarray(a, np.float64), nd).tolist()


def geometry_file(hemi: np.ndarray, vertex: np.ndarray, folder: Path) -> Path:
    """``surface_geometry`` written once to ``folder/surface_<hash>.json`` (named by the voxel -> vertex map)."""
    key = hashlib.sha1(np.asarray(hemi, np.int64).tobytes() + np.asarray(vertex, np.int64).tobytes()).hexdigest()[:12]
    path = Path(folder) / f"surface_v{GEOMETRY_VERSION}_{key}.json"
    if not path.exists():
        from .atomic import atomic_save
        path.parent.mkdir(parents=True, exist_ok=True)
        geo = surface_geometry(hemi, vertex)
        atomic_save(geo, path, lambda obj, p: Path(p).write_text(json.dumps(obj, separators=(",", ":"))))
    return path


# ---------------------------------------------------------------------------------------------- colour scales
def _scale(name: str) -> list:
    from plotly import colors
    seq = {"signed": colors.diverging.RdBu_r, "cyclic": colors.cyclical.HSV, "sequential": colors.sequential.Viridis,
           "ceiling": colors.sequential.Inferno}[name]
    return [[k / (len(seq) - 1), c] for k, c in enumerate(seq)]


def categorical_scale(names: list[str]) -> tuple[list, list[float]]:
    """A stepped colour scale for integer codes 0..n-1 (one flat band per category) and the codes' tick
    positions, so a legend shows names instead of a continuous bar."""
    from .viz import palette
    cols, n = palette(len(names)), len(names)
    scale = []
    for k, c in enumerate(cols):
        scale += [[k / n, c], [(k + 1) / n, c]]
    return scale, [k for k in range(n)]


def panel(values: np.ndarray, title: str, kind: str = "signed", unit: str = "", vmax: float | None = None,
          vmin: float | None = None, categories: list[str] | None = None, decimals: int = 2) -> dict:
    """One map: values per voxel (NaN -> null), colour range and scale, and how hover and the colour bar read."""
    v = np.asarray(values, np.float64)
    finite = v[np.isfinite(v)]
    if categories is not None:
        scale, ticks = categorical_scale(categories)
        cmin, cmax = -0.5, len(categories) - 0.5
        return {"title": title, "values": [None if not np.isfinite(x) else int(x) for x in v], "cmin": cmin,
                "cmax": cmax, "colorscale": scale, "unit": unit, "ticks": ticks, "ticktext": list(categories)}
    if vmax is None:
        vmax = float(np.percentile(np.abs(finite), 98)) if len(finite) else 1.0
    if vmin is None:
        vmin = -vmax if kind == "signed" else (float(finite.min()) if len(finite) else 0.0)
    vals = np.round(v, decimals)
    return {"title": title, "values": [None if not np.isfinite(x) else float(x) for x in vals], "cmin": float(vmin),
            "cmax": float(vmax), "colorscale": _scale(kind), "unit": unit}


def map_panels(panels: list[dict], surface: int = 0, view: str = "posterior", note: str = "") -> dict:
    """The payload of one update: the panels, which of them the 3-D surface shows, the view, a note for
    students. The UI adds where the geometry lives (``geometry``)."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {list(VIEWS)}")
    hemis, eye, up = VIEWS[view]
    return {"view": view, "camera": {"hemis": list(hemis), "eye": list(eye), "up": list(up)}, "surface": int(surface),
            "panels": panels, "note": note}
