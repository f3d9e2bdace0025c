"""The canonical on-disk format every dataset is converted to once (SimNSD writes it directly).

A dataset folder holds::

    dataset.json      {"format": "mindeye-canonical", "format_version": 1, "dataset": "SimNSD"|"NSD",
                       "subjects": {"1": {...}}, ...}
    images.hdf5       images [N,H,W,3] uint8, image_id [N] int64 (NSD's 73k index or SimNSD's global id),
                      caption [N] str, labels/<name> [N,...] (SimNSD only)
    subj01.hdf5       betas [T,V] float16/32 (z-scored per session), image_id [T] int64, rep [T] int8,
                      session [T] int16 (-1 unknown), split [T] int8 (0 train, 1 val, 2 test),
                      voxels/hemi [V] int8 and voxels/vertex [V] int32 (fsaverage5; -1 = unknown),
                      ground_truth/* (SimNSD only: true pRFs, noise, session parameters)
                      attrs: subject, n_voxels, dataset

Readers never hold betas in memory unless asked; test trials come back averaged over repetitions, like V1.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .errors import DataError

FORMAT = "mindeye-canonical"
FORMAT_VERSION = 1
SPLITS = {"train": 0, "val": 1, "test": 2}
BULK_GROUND_TRUTH = ("noise_free", "noise_free_image_id")
SUBJECT_IDS = range(1, 9)
SIMNSD_SUBJECTS = (1, 2, 5, 7)  # the subjects SimNSD simulates, as the seed trains (written here: torch-free)


def subject_file(root: Path, subj: int) -> Path:
    return Path(root) / f"subj{subj:02d}.hdf5"


def check_subject(subj: int) -> int:
    if int(subj) not in SUBJECT_IDS:
        raise DataError(f"unknown subject {subj!r}: NSD has subjects 1-8")
    return int(subj)


# ----------------------------------------------------------------------------------------------- writing

def _atomic_h5(path: Path):
    """Write to ``path.tmp`` and rename on success, so a killed run never leaves a half file in place."""
    class _Ctx:
        def __enter__(self):
            path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = path.with_suffix(path.suffix + ".tmp")
            self.f = h5py.File(self.tmp, "w")
            return self.f

        def __exit__(self, exc_type, exc, tb):
            self.f.close()
            if exc_type is None:
                os.replace(self.tmp, path)
            else:
                self.tmp.unlink(missing_ok=True)
    return _Ctx()


def write_manifest(root: Path, dataset: str, subjects: dict[int, dict] | None = None, **extra) -> dict:
    """Create or update ``dataset.json`` (subject entries are merged)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "dataset.json"
    manifest = read_manifest(root) if path.exists() else {"format": FORMAT, "format_version": FORMAT_VERSION,
                                                           "dataset": dataset, "subjects": {}}
    manifest.update(extra)
    for subj, info in (subjects or {}).items():
        manifest["subjects"][str(subj)] = info
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, path)
    return manifest


def write_images(root: Path, image_ids: np.ndarray, images: np.ndarray, captions: list[str],
                 labels: dict[str, np.ndarray] | None = None) -> None:
    """Add images to ``images.hdf5`` (ids already present are skipped; the file is rewritten atomically)."""
    path = Path(root) / "images.hdf5"
    image_ids = np.asarray(image_ids, np.int64)
    old = None
    if path.exists():
        old = ImageStore(path)
        keep = ~np.isin(image_ids, old.image_ids)
        if not keep.any():
            return
        image_ids, images, captions = image_ids[keep], images[keep], [c for c, k in zip(captions, keep) if k]
        labels = {k: v[keep] for k, v in labels.items()} if labels else None
        o_ids, o_img, o_cap, o_lab = old.image_ids, old.read_all(), old.captions(old.image_ids), old.all_labels()
        image_ids = np.concatenate([o_ids, image_ids])
        images = np.concatenate([o_img, images])
        captions = list(o_cap) + list(captions)
        if labels is not None and o_lab:
            labels = {k: np.concatenate([o_lab[k], labels[k]]) for k in labels}
    order = np.argsort(image_ids, kind="stable")
    with _atomic_h5(path) as f:
        f.create_dataset("image_id", data=image_ids[order])
        f.create_dataset("images", data=images[order], chunks=(1,) + images.shape[1:], compression="lzf")
        f.create_dataset("caption", data=np.array(captions, dtype=object)[order], dtype=h5py.string_dtype())
        for k, v in (labels or {}).items():
            f.create_dataset(f"labels/{k}", data=v[order])


def write_subject(root: Path, subj: int, betas: np.ndarray, image_id: np.ndarray, rep: np.ndarray,
                  session: np.ndarray, split: np.ndarray, hemi: np.ndarray | None = None,
                  vertex: np.ndarray | None = None, ground_truth: dict[str, np.ndarray] | None = None,
                  attrs: dict | None = None) -> Path:
    """Write ``subjXX.hdf5`` atomically. Shapes: betas [T,V]; the per-trial arrays [T]; hemi, vertex [V]."""
    check_subject(subj)
    t, v = betas.shape
    for name, arr in (("image_id", image_id), ("rep", rep), ("session", session), ("split", split)):
        if len(arr) != t:
            raise DataError(f"{name} has {len(arr)} entries, betas have {t} trials")
    if hemi is None:
        hemi, vertex = np.full(v, -1, np.int8), np.full(v, -1, np.int32)
    path = subject_file(root, subj)
    with _atomic_h5(path) as f:
        f.create_dataset("betas", data=betas, chunks=(min(t, 256), v))
        f.create_dataset("image_id", data=np.asarray(image_id, np.int64))
        f.create_dataset("rep", data=np.asarray(rep, np.int8))
        f.create_dataset("session", data=np.asarray(session, np.int16))
        f.create_dataset("split", data=np.asarray(split, np.int8))
        f.create_dataset("voxels/hemi", data=np.asarray(hemi, np.int8))
        f.create_dataset("voxels/vertex", data=np.asarray(vertex, np.int32))
        for k, val in (ground_truth or {}).items():
            f.create_dataset(f"ground_truth/{k}", data=val)
        f.attrs.update({"subject": subj, "n_voxels": v, **(attrs or {})})
    return path


# ----------------------------------------------------------------------------------------------- reading

def not_a_dataset(root: Path) -> str:
    """Why ``root`` is not a canonical dataset, and the command that makes one from what it holds."""
    root = Path(root)
    if not root.exists():
        return (f"{root}: no such folder; expected a converted dataset (python -m mindeye convert ... --out {root}) "
                f"or a simulated one (python -m mindeye simulate --out {root})")
    if not root.is_dir():
        return f"{root}: a file, not a dataset folder"
    if (root / "webdataset_avg_split").is_dir():
        layout = "v1"
    elif any(root.glob("betas_all_subj0*_fp32_renorm.hdf5")):
        layout = "v2"
    else:
        return (f"{root}: no dataset.json, so not a canonical dataset; expected a folder written by "
                f"`python -m mindeye convert` or `python -m mindeye simulate`")
    return (f"{root}: this is an unconverted NSD download ({layout.upper()} layout); convert it once, then point "
            f"--data_path at the result: python -m mindeye convert --layout {layout} --data_path {root} --subj 1 "
            f"--out data/nsd")


def read_manifest(root: Path) -> dict:
    path = Path(root) / "dataset.json"
    if not path.exists():
        raise DataError(not_a_dataset(Path(root)))
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e
    if manifest.get("format") != FORMAT:
        raise DataError(f"{path}: expected format {FORMAT!r}, found {manifest.get('format')!r}")
    return manifest


def _open_h5(path: Path) -> h5py.File:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise DataError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {e}") from e


def _require(f: h5py.File, path: Path, name: str, ndim: int, dtype_kind: str | None = None):
    if name not in f:
        raise DataError(f"{path}: missing dataset {name!r}")
    ds = f[name]
    if ds.ndim != ndim:
        raise DataError(f"{path}: {name} should have {ndim} dimensions, found shape {ds.shape}")
    if dtype_kind and ds.dtype.kind not in dtype_kind:
        raise DataError(f"{path}: {name} should be of kind {dtype_kind!r}, found dtype {ds.dtype}")
    return ds


class ImageStore:
    """``images.hdf5``: images, captions and labels addressed by global image id."""

    def __init__(self, path: Path):
        self.path = Path(path)
        f = _open_h5(self.path)
        self._f = f
        self._images = _require(f, self.path, "images", 4, "u")
        self.image_ids = _require(f, self.path, "image_id", 1, "iu")[()]
        if len(self.image_ids) != len(self._images):
            raise DataError(f"{self.path}: {len(self.image_ids)} image ids but {len(self._images)} images")
        if self._images.shape[-1] != 3:
            raise DataError(f"{self.path}: images should be [N,H,W,3], found {self._images.shape}")
        self._caption = f["caption"] if "caption" in f else None
        self._caption_cache: np.ndarray | None = None
        self._label_cache: dict[str, np.ndarray] | None = None

    @property
    def image_size(self) -> int:
        return int(self._images.shape[1])

    def rows(self, image_ids) -> np.ndarray:
        ids = np.atleast_1d(np.asarray(image_ids, np.int64))
        rows = np.searchsorted(self.image_ids, ids)
        rows = np.clip(rows, 0, len(self.image_ids) - 1)
        missing = ids[self.image_ids[rows] != ids]
        if len(missing):
            raise DataError(f"{self.path}: no image with id {missing[:5].tolist()} "
                            f"({len(missing)} missing of {len(ids)} asked)")
        return rows

    def images(self, image_ids) -> np.ndarray:
        """``[n,H,W,3]`` uint8 for the given ids (in the given order)."""
        rows = self.rows(image_ids)
        order = np.argsort(rows)
        out = np.empty((len(rows),) + self._images.shape[1:], np.uint8)
        uniq, inv = np.unique(rows[order], return_inverse=True)
        block = self._images[uniq]
        out[order] = block[inv]
        return out

    def read_all(self) -> np.ndarray:
        return self._images[()]

    def captions(self, image_ids) -> list[str]:
        if self._caption is None:
            return [""] * len(np.atleast_1d(image_ids))
        if self._caption_cache is None:  # small; read once rather than on every lookup
            self._caption_cache = self._caption[()]
        return [c.decode() if isinstance(c, bytes) else str(c) for c in self._caption_cache[self.rows(image_ids)]]

    def labels(self, image_ids) -> dict[str, np.ndarray]:
        rows = self.rows(image_ids)
        return {k: v[rows] for k, v in self.all_labels().items()}

    def all_labels(self) -> dict[str, np.ndarray]:
        if self._label_cache is None:
            self._label_cache = {k: v[()] for k, v in self._f["labels"].items()} if "labels" in self._f else {}
        return self._label_cache


@dataclass
class VoxelGeometry:
    hemi: np.ndarray  # [V] 0 left, 1 right, -1 unknown
    vertex: np.ndarray  # [V] fsaverage5 vertex, -1 unknown

    @property
    def known(self) -> bool:
        return bool((self.vertex >= 0).any())


def data_fingerprint(image_id, hemi, vertex, sample_images) -> str:
    import hashlib
    h = hashlib.sha256()
    for a in (image_id, hemi, vertex, sample_images):
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.astype(a.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()[:16]


class SubjectData:
    """One subject of a canonical dataset: trials, splits, repetition-averaged test set, images, geometry."""

    def __init__(self, root: Path, subj: int):
        self.root = Path(root)
        self.subj = check_subject(subj)
        self.manifest = read_manifest(self.root)
        if str(self.subj) not in self.manifest["subjects"]:
            have = sorted(int(s) for s in self.manifest["subjects"])
            raise DataError(f"{self.root / 'dataset.json'}: no subject {self.subj}; this dataset has subjects {have}")
        self.path = subject_file(self.root, self.subj)
        f = self._f = _open_h5(self.path)
        self._betas = _require(f, self.path, "betas", 2, "f")
        t, v = self._betas.shape
        self.n_trials, self.n_voxels = t, v
        found_subj = int(f.attrs.get("subject", -1))
        if found_subj != self.subj:
            raise DataError(f"{self.path}: expected subject {self.subj}, the file says subject {found_subj}")
        self.image_id = _require(f, self.path, "image_id", 1, "iu")[()]
        self.rep = _require(f, self.path, "rep", 1, "iu")[()]
        self.session = _require(f, self.path, "session", 1, "iu")[()]
        self.split = _require(f, self.path, "split", 1, "iu")[()]
        for name in ("image_id", "rep", "session", "split"):
            n = len(getattr(self, name))
            if n != t:
                raise DataError(f"{self.path}: {name} has {n} entries, expected {t} (one per trial of betas)")
        hemi = _require(f, self.path, "voxels/hemi", 1, "iu")[()]
        vertex = _require(f, self.path, "voxels/vertex", 1, "iu")[()]
        if len(hemi) != v or len(vertex) != v:
            raise DataError(f"{self.path}: voxel geometry has {len(vertex)} voxels, betas have {v}")
        self.geometry = VoxelGeometry(hemi, vertex)
        expected_v = self.manifest["subjects"][str(self.subj)].get("n_voxels")
        if expected_v is not None and int(expected_v) != v:
            raise DataError(f"{self.path}: dataset.json says subject {self.subj} has {expected_v} voxels, "
                            f"betas have {v}")
        self._images: ImageStore | None = None

    # -- trials
    def trials(self, split: str) -> np.ndarray:
        """Trial indices of a split ('train', 'val', 'test')."""
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        return np.flatnonzero(self.split == SPLITS[split])

    def betas(self, trials=None) -> np.ndarray:
        """``[n, V]`` float32 betas of the given trials (all if None). NaNs are an error, not a silent zero."""
        if trials is None:
            b = self._betas[()]
            trials = np.arange(self.n_trials)
        else:
            trials = np.asarray(trials)
            if len(trials) > 256:  # h5py reads a long list of rows one by one: read the whole array instead
                b = self._betas[()][trials]
            else:
                order = np.argsort(trials)
                b = np.empty((len(trials), self.n_voxels), np.float32)
                b[order] = self._betas[np.sort(trials)]
        b = np.asarray(b, np.float32)
        bad = ~np.isfinite(b)
        if bad.any():
            rows = np.flatnonzero(bad.any(1))
            raise DataError(f"{self.path}: betas contain {int(bad.sum())} NaN/inf values in {len(rows)} trials "
                            f"(first trial {int(np.asarray(trials)[rows[0]])}); expected finite z-scored betas")
        return b

    def averaged(self, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
        """Repetition-averaged betas of a split: ``(betas [n_images, V], image_ids [n_images])``."""
        return self.average_trials(self.trials(split))

    def average_trials(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Betas of trials ``idx`` averaged per image: ``(betas [n_images, V], image_ids [n_images])``."""
        idx = np.asarray(idx)
        b = self.betas(idx)
        ids, inv = np.unique(self.image_id[idx], return_inverse=True)
        out = np.zeros((len(ids), self.n_voxels), np.float64)
        np.add.at(out, inv, b)
        out /= np.bincount(inv)[:, None]
        return out.astype(np.float32), ids

    def repetitions(self, split: str = "test", n_reps: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """Single repetitions of images seen ``n_reps`` times: ``(betas [n_images, n_reps, V], image_ids)``."""
        idx = self.trials(split)
        ids, counts = np.unique(self.image_id[idx], return_counts=True)
        ids = ids[counts >= n_reps]
        out = np.empty((len(ids), n_reps, self.n_voxels), np.float32)
        pos = {int(i): k for k, i in enumerate(ids)}
        seen = np.zeros(len(ids), int)
        order = idx[np.lexsort((self.rep[idx], self.image_id[idx]))]
        b = self.betas(order)
        for row, t in zip(b, order):
            k = pos.get(int(self.image_id[t]))
            if k is not None and seen[k] < n_reps:
                out[k, seen[k]] = row
                seen[k] += 1
        return out, ids

    def fingerprint(self) -> str:
        """What a trained model depends on: the trial order of image ids, the voxel layout, and the pixels
        of a few test images. Checkpoints record it; a different subject or a drifted simulator won't match."""
        test = np.unique(self.image_id[self.trials("test")])[:8]
        return data_fingerprint(self.image_id, self.geometry.hemi, self.geometry.vertex, self.images(test))

    # -- images
    @property
    def image_store(self) -> ImageStore:
        if self._images is None:
            self._images = ImageStore(self.root / "images.hdf5")
        return self._images

    def images(self, image_ids) -> np.ndarray:
        return self.image_store.images(image_ids)

    def captions(self, image_ids) -> list[str]:
        return self.image_store.captions(image_ids)

    def labels(self, image_ids) -> dict[str, np.ndarray]:
        return self.image_store.labels(image_ids)

    def ground_truth(self, keys=None) -> dict[str, np.ndarray]:
        """SimNSD only: true pRFs, areas, noise; empty for real data. The bulky per-image arrays
        (``BULK_GROUND_TRUTH``: every image's noise-free response, tens of MB) are read only when named."""
        g = self._f.get("ground_truth")
        if g is None:
            return {}
        keys = [k for k in g if k not in BULK_GROUND_TRUTH] if keys is None else [k for k in keys if k in g]
        return {k: g[k][()] for k in keys}

    @property
    def attrs(self) -> dict:
        return dict(self._f.attrs)

    def close(self) -> None:
        self._f.close()
        if self._images is not None:
            self._images._f.close()


def load_subject(root, subj: int) -> SubjectData:
    return SubjectData(Path(root), subj)
