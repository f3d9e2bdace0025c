"""Readers for the real NSD layouts that MindEye's code reads, converted once to the canonical format.

V1 (MedARC-AI/fMRI-reconstruction-NSD), under ``{data_path}/webdataset_avg_split/``:
    train/train_subj0{s}_{k}.tar, val/val_subj0{s}_0.tar, test/test_subj0{s}_{k}.tar; per sample
    ``jpg``, ``nsdgeneral.npy`` [3, nvox] (repetitions stacked), ``trial.npy``, ``coco73k.npy``,
    ``num_uniques.npy`` (how many of the 3 rows are real repetitions).
V2 (MedARC-AI/MindEyeV2), under ``{data_path}/``:
    betas_all_subj0{s}_fp32_renorm.hdf5 (``betas`` [trials, nvox]), coco_images_224_float16.hdf5
    (``images`` [73000, 3, 224, 224] float16 in [0, 1]), wds/subj0{s}/train/*.tar and
    wds/subj0{s}/new_test/0.tar whose samples carry ``behav.npy`` (17 columns: 0 = 73k image index,
    5 = row of the betas file, i.e. the global trial).
Captions: ``COCO_73k_annots_curated.npy`` ([73000, k] strings) if present in ``data_path``.

NSD has 750 trials per scan session, so session = global trial // 750.
Real NSD ships no surface geometry in these files: pass ``vertex_map`` (an .npz with ``hemi`` [V] (0 left,
1 right) and ``vertex`` [V] (fsaverage5 vertex index, -1 if none)) to plot betas on the surface; without it
the canonical file records unknown geometry and the app says so instead of plotting.
"""
from __future__ import annotations

import io
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from . import canonical
from .errors import DataError

NSD_VOXELS = {1: 15724, 2: 14278, 3: 15226, 4: 13153, 5: 13039, 6: 17907, 7: 12682, 8: 14386}
TRIALS_PER_SESSION = 750
SPLIT_DIRS_V1 = {"train": 0, "val": 1, "test": 2}


def _tar_samples(path: Path):
    """Yield ``{ext: bytes}`` per sample key from a WebDataset tar (keys grouped by basename)."""
    try:
        tf = tarfile.open(path)
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"{path}: not a readable tar shard (truncated or corrupt?): {e}") from e
    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    order = []
    try:
        for m in tf:
            if not m.isfile():
                continue
            key, _, ext = m.name.partition(".")
            if key not in samples:
                order.append(key)
            samples[key][ext] = tf.extractfile(m).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{path}: shard ends early (truncated download?): {e}") from e
    finally:
        tf.close()
    for key in order:
        yield key, samples[key]


def _npy(blob: bytes, path: Path, key: str, name: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(blob), allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any parse failure is a corrupt file
        raise DataError(f"{path}: sample {key}: {name} is not a valid .npy ({e})") from e


def _image(blob: bytes, size: int) -> np.ndarray:
    img = Image.open(io.BytesIO(blob)).convert("RGB")
    return np.asarray(img.resize((size, size), Image.BICUBIC), np.uint8)


def _load_captions(data_path: Path, ids: np.ndarray) -> list[str]:
    path = Path(data_path) / "COCO_73k_annots_curated.npy"
    if not path.exists():
        return [""] * len(ids)
    annots = np.load(path, allow_pickle=True)
    out = []
    for i in ids:
        row = np.atleast_1d(annots[int(i)])
        out.append(next((str(c).strip() for c in row if str(c).strip()), ""))
    return out


def _load_vertex_map(path: Path | None, n_voxels: int):
    if path is None:
        return None, None
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: vertex map not found")
    m = np.load(path)
    for k in ("hemi", "vertex"):
        if k not in m:
            raise DataError(f"{path}: vertex map needs arrays 'hemi' and 'vertex', found {list(m.keys())}")
        if m[k].shape != (n_voxels,):
            raise DataError(f"{path}: {k} should have shape ({n_voxels},) (one per voxel), found {m[k].shape}")
    return m["hemi"].astype(np.int8), m["vertex"].astype(np.int32)


def _check_voxels(path: Path, found: int, subj: int, expected: int | None) -> None:
    if expected is not None and found != expected:
        raise DataError(f"{path}: expected {expected} nsdgeneral voxels for subject {subj}, found {found}")


def _session_of(trial: np.ndarray) -> np.ndarray:
    return np.where(trial >= 0, trial // TRIALS_PER_SESSION, -1).astype(np.int16)


def _finish(out: Path, subj: int, betas, image_id, rep, trial, split, images: dict, data_path: Path,
            vertex_map, layout: str) -> Path:
    betas = np.stack(betas).astype(np.float32)
    if not np.isfinite(betas).all():
        bad = int((~np.isfinite(betas)).any(1).sum())
        raise DataError(f"{data_path}: {bad} trials have NaN/inf betas; expected finite z-scored betas")
    image_id = np.asarray(image_id, np.int64)
    hemi, vertex = _load_vertex_map(vertex_map, betas.shape[1])
    ids = np.array(sorted(images), np.int64)
    canonical.write_images(out, ids, np.stack([images[i] for i in ids]), _load_captions(data_path, ids))
    path = canonical.write_subject(out, subj, betas, image_id, np.asarray(rep), _session_of(np.asarray(trial)),
                                   np.asarray(split), hemi, vertex, attrs={"dataset": "NSD", "layout": layout})
    canonical.write_manifest(out, "NSD", {subj: {"n_voxels": int(betas.shape[1]), "layout": layout}},
                             surface="fsaverage5" if hemi is not None else None)
    return path


def convert_v1(data_path: Path, subj: int, out: Path, vertex_map: Path | None = None, image_size: int = 224,
               expected_voxels: int | None = -1) -> Path:
    """V1 WebDataset shards -> canonical ``out/subj0X.hdf5`` + images. Test betas keep all repetitions."""
    subj = canonical.check_subject(subj)
    expected = NSD_VOXELS.get(subj) if expected_voxels == -1 else expected_voxels
    root = Path(data_path) / "webdataset_avg_split"
    shards = []
    for split in SPLIT_DIRS_V1:
        shards += [(split, p) for p in sorted((root / split).glob(f"{split}_subj{subj:02d}_*.tar"))]
    if not any(s == "train" for s, _ in shards) or not any(s == "test" for s, _ in shards):
        raise DataError(f"{root}: expected train/train_subj{subj:02d}_*.tar and test/test_subj{subj:02d}_*.tar "
                        f"(V1 layout); found {[str(p.relative_to(root)) for _, p in shards] or 'no shards'}")
    betas, image_id, rep, trial, split_col, images = [], [], [], [], [], {}
    for split, shard in tqdm(shards, desc=f"reading V1 shards subj{subj:02d}", unit="shard"):
        for key, s in _tar_samples(shard):
            for need in ("nsdgeneral.npy", "coco73k.npy", "jpg"):
                if need not in s:
                    raise DataError(f"{shard}: sample {key} has no {need}; found {sorted(s)}")
            vox = _npy(s["nsdgeneral.npy"], shard, key, "nsdgeneral.npy")
            if vox.ndim == 1:
                vox = vox[None]
            if vox.ndim != 2:
                raise DataError(f"{shard}: sample {key}: nsdgeneral.npy should be [reps, voxels], found {vox.shape}")
            _check_voxels(shard, vox.shape[1], subj, expected)
            expected = vox.shape[1]
            coco = int(np.ravel(_npy(s["coco73k.npy"], shard, key, "coco73k.npy"))[0])
            n_valid = int(np.ravel(_npy(s["num_uniques.npy"], shard, key, "num_uniques.npy"))[0]) \
                if "num_uniques.npy" in s else vox.shape[0]
            tr = np.ravel(_npy(s["trial.npy"], shard, key, "trial.npy")) if "trial.npy" in s else np.array([])
            for r in range(min(n_valid, vox.shape[0])):
                betas.append(vox[r])
                image_id.append(coco)
                rep.append(r)
                trial.append(int(tr[r]) if r < len(tr) else -1)
                split_col.append(SPLIT_DIRS_V1[split])
            if coco not in images:
                images[coco] = _image(s["jpg"], image_size)
    return _finish(Path(out), subj, betas, image_id, rep, trial, split_col, images, Path(data_path), vertex_map, "v1")


def convert_v2(data_path: Path, subj: int, out: Path, vertex_map: Path | None = None, image_size: int = 224,
               expected_voxels: int | None = -1) -> Path:
    """V2 HDF5 betas + behav.npy in WebDataset shards -> canonical format."""
    subj = canonical.check_subject(subj)
    expected = NSD_VOXELS.get(subj) if expected_voxels == -1 else expected_voxels
    data_path = Path(data_path)
    betas_path = data_path / f"betas_all_subj{subj:02d}_fp32_renorm.hdf5"
    images_path = data_path / "coco_images_224_float16.hdf5"
    wds = data_path / "wds" / f"subj{subj:02d}"
    shards = [("train", p) for p in sorted((wds / "train").glob("*.tar"))] + \
             [("test", p) for p in sorted((wds / "new_test").glob("*.tar"))]
    if not shards:
        raise DataError(f"{wds}: expected train/*.tar and new_test/*.tar (V2 layout); found none")
    rows, split_col = [], []
    for split, shard in shards:
        for key, s in _tar_samples(shard):
            if "behav.npy" not in s:
                raise DataError(f"{shard}: sample {key} has no behav.npy; found {sorted(s)}")
            behav = _npy(s["behav.npy"], shard, key, "behav.npy")
            if behav.shape[-1] != 17:
                raise DataError(f"{shard}: sample {key}: behav.npy should have 17 columns, found shape {behav.shape}")
            for b in behav.reshape(-1, 17):
                rows.append((int(b[0]), int(b[5])))
                split_col.append(canonical.SPLITS[split])
    f = canonical._open_h5(betas_path)
    with f:
        ds = canonical._require(f, betas_path, "betas", 2, "f")
        _check_voxels(betas_path, ds.shape[1], subj, expected)
        trial = np.array([r[1] for r in rows])
        if trial.max() >= ds.shape[0]:
            raise DataError(f"{betas_path}: behav.npy refers to trial {trial.max()}, the file has {ds.shape[0]} rows")
        uniq, inv = np.unique(trial, return_inverse=True)  # h5py wants increasing, unique indices
        betas = np.asarray(ds[uniq], np.float32)[inv]
    image_id = np.array([r[0] for r in rows], np.int64)
    rep = np.zeros(len(rows), np.int8)
    seen: dict[int, int] = defaultdict(int)
    for k in np.argsort(trial, kind="stable"):
        rep[k] = seen[int(image_id[k])]
        seen[int(image_id[k])] += 1
    images = {}
    g = canonical._open_h5(images_path)
    with g:
        ds = canonical._require(g, images_path, "images", 4, "fu")
        for i in np.unique(image_id):
            arr = np.asarray(ds[int(i)], np.float32)  # [3, H, W] in [0, 1]
            img = (np.clip(arr.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)
            images[int(i)] = np.asarray(Image.fromarray(img).resize((image_size, image_size), Image.BICUBIC))
    return _finish(Path(out), subj, list(betas), image_id, rep, trial, split_col, images,
                   data_path, vertex_map, "v2")


def convert(layout: str, data_path: Path, subj: int, out: Path, **kw) -> Path:
    if layout not in ("v1", "v2"):
        raise DataError(f"unknown layout {layout!r}; expected 'v1' (WebDataset shards) or 'v2' (HDF5 betas)")
    return (convert_v1 if layout == "v1" else convert_v2)(data_path, subj, out, **kw)
