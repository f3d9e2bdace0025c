"""A 2-D map of CLIP space: the test images' CLIP embeddings and the brain-predicted ones, laid out together by
UMAP (umap-learn) so that each pair (seen image, its brain's prediction) can be joined by a line.

UMAP is fitted on both sets jointly with a fixed ``random_state``, and cached on disk under a key made from the
embeddings themselves (and the UMAP settings): a map is fitted once per (model, target) and data, and a
different model (another run) gets its own map instead of a stale one. The first fit in a process also
compiles umap-learn's numba code, which takes tens of seconds.
"""
from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np

UMAP_PARAMS = dict(n_components=2, n_neighbors=15, min_dist=0.1, metric="cosine", random_state=0)
_LOCK = threading.Lock()  # one fit at a time: a second caller waits, then reads the first one's cache


def _flat(x) -> np.ndarray:
    x = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    return np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32)


def fit_umap(points: np.ndarray) -> np.ndarray:
    """UMAP of ``points`` [M, D] to [M, 2] with ``UMAP_PARAMS`` (n_neighbors capped for tiny sets)."""
    import warnings

    import umap  # slow first import (numba)
    params = dict(UMAP_PARAMS, n_neighbors=min(UMAP_PARAMS["n_neighbors"], len(points) - 1))
    with warnings.catch_warnings():
        # a fixed random_state makes umap single-threaded and says so; that is the point here
        warnings.filterwarnings("ignore", message=".*random_state.*", category=UserWarning)
        return umap.UMAP(**params).fit_transform(points).astype(np.float32)


def cache_key(image_emb, brain_emb) -> str:
    """Content key of a joint map: both embedding sets, the UMAP settings and umap-learn's version."""
    from importlib.metadata import version
    h = hashlib.sha256()
    for a in (_flat(image_emb), _flat(brain_emb)):
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    h.update(json.dumps(UMAP_PARAMS, sort_keys=True).encode())
    h.update(version("umap-learn").encode())
    return h.hexdigest()[:16]


def joint_umap(image_emb, brain_emb, cache_dir: Path, name: str = "umap", log=print):
    """``(image_xy [N, 2], brain_xy [N, 2], from_cache)``: the two sets (row i of each is trial i) laid out by one
    UMAP fitted on all 2N points. Read from ``cache_dir`` when this exact map was fitted before."""
    from .atomic import atomic_save
    img, brain = _flat(image_emb), _flat(brain_emb)
    if img.shape != brain.shape:
        raise ValueError(f"image embeddings {img.shape} and brain embeddings {brain.shape} differ in shape")
    path = Path(cache_dir) / f"{name}_{cache_key(img, brain)}.npz"
    with _LOCK:
        if path.exists():
            try:
                with np.load(path) as z:
                    return z["image_xy"], z["brain_xy"], True
            except Exception:  # a damaged file: fit again
                path.unlink(missing_ok=True)
        log(f"fitting UMAP on {2 * len(img)} points (once; then cached in {path.parent})")
        xy = fit_umap(np.concatenate([img, brain]))
        out = {"image_xy": xy[:len(img)], "brain_xy": xy[len(img):]}

        def save(obj, tmp):
            with open(tmp, "wb") as f:
                np.savez(f, **obj)
        atomic_save(out, path, save)
        return out["image_xy"], out["brain_xy"], False
