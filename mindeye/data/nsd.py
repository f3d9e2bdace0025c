"""Readers for the real NSD layouts that MindEye's code reads, converted once to the canonical format.

V1 (MedARC-AI/fMRI-reconstruction-NSD), under ``{data_path}/webdataset_avg_split/``:
    train/train_subj0{s}_{k}.tar, val/val_subj0{s}_0.tar, test/test_subj0{s}_{k}.tar; per sample
    ``jpg``, ``nsdgeneral.npy`` [3, nvox] (repetitions stacked), ``trial.npy``, ``coco73k.npy``,
    ``num_uniques.npy`` (how many of the 3 rows are real repetitions); ``metadata_subj0{s}.json`` holds
    ``{"totals": {"train": n, "val": n, "test": n}}``, the samples per split, which the converter checks.
V2 (MedARC-AI/MindEyeV2), under ``{data_path}/``:
    betas_all_subj0{s}_fp32_renorm.hdf5 (``betas`` [trials, nvox]), coco_images_224_float16.hdf5
    (``images`` [73000, 3, 224, 224] float16 in [0, 1]), wds/subj0{s}/train/*.tar and
    wds/subj0{s}/new_test/0.tar whose samples carry ``behav.npy`` (17 columns: 0 = 73k image index,
    5 = row of the betas file, i.e. the global trial).
Captions: ``COCO_73k_annots_curated.npy`` ([73000, k] strings) if present in ``data_path``.

What the converter assumes about sessions, and says when it cannot apply it: a trial number is NSD's 0-based
index of the presentation among the subject's trials (V1 ``trial.npy``, V2 ``behav.npy`` column 5), and NSD
ran 750 trials per scan session, so session = trial // 750. A V1 ``trial.npy`` that lists fewer presentations
than ``num_uniques`` leaves the others' session unknown (-1); the summary counts them.
Real NSD ships no surface geometry in these files: pass ``vertex_map`` (an .npz with ``hemi`` [V] (0 left,
1 right) and ``vertex`` [V] (fsaverage5 vertex index, -1 if none)) to plot betas on the surface; without it
the canonical file records unknown geometry and the app says so instead of plotting.

An existing output folder is never silently reused: a new subject may be added to a converted NSD folder whose
images have the same size; anything else needs ``overwrite=True``, which replaces the whole folder atomically.
"""
from __future__ import annotations

import io
import json
import re
import tarfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from . import canonical
from .errors import DataError

NSD_VOXELS = {1: 15724, 2: 14278, 3: 15226, 4: 13153, 5: 13039, 6: 17907, 7: 12682, 8: 14386}
TRIALS_PER_SESSION = 750
MAX_SESSIONS = 40  # NSD scanned at most 40 sessions per subject: trial numbers are < 30000
SPLIT_DIRS_V1 = {"train": 0, "val": 1, "test": 2}
NSD_DEFAULT = "nsd"  # ``n_voxels`` default: NSD's nsdgeneral count for the subject


def expected_voxels(subj: int, n_voxels: int | str | None) -> int | None:
    """The voxel count to insist on: NSD's nsdgeneral count (``"nsd"``), a given int, or None (``"any"``)."""
    if n_voxels in (None, "any"):
        return None
    if n_voxels == NSD_DEFAULT:
        return NSD_VOXELS[subj]
    try:
        n = int(n_voxels)
    except (TypeError, ValueError):
        raise DataError(f"n_voxels should be a positive integer, 'nsd' or 'any'; found {n_voxels!r}") from None
    if n < 1:
        raise DataError(f"n_voxels should be a positive integer, 'nsd' or 'any'; found {n}")
    return n


# ------------------------------------------------------------------------------------------------ tar shards
def _tar_samples(path: Path):
    """Yield ``(key, {ext: bytes})`` per sample of a WebDataset tar (keys grouped by basename). A shard must end
    with tar's end-of-archive marker: one cut exactly between two samples reads cleanly otherwise."""
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
        end = tf.offset
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{path}: shard ends early (truncated download?): {e}") from e
    finally:
        tf.close()
    with open(path, "rb") as f:
        f.seek(end)
        marker = f.read(1024)
    if len(marker) < 1024 or any(marker):
        last = order[-1] if order else "none"
        raise DataError(f"{path}: shard has no end-of-archive marker after byte {end} (last sample read: {last}); "
                        f"the file was cut short, probably at a sample boundary: download it again")
    for key in order:
        yield key, samples[key]


def _npy(blob: bytes, path: Path, key: str, name: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(blob), allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any parse failure is a corrupt file
        raise DataError(f"{path}: sample {key}: {name} is not a valid .npy ({e})") from e


def _image(blob: bytes, size: int, path: Path, key: str) -> np.ndarray:
    try:
        img = Image.open(io.BytesIO(blob)).convert("RGB")
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: sample {key}: jpg is not a readable image ({e})") from e
    return np.asarray(img.resize((size, size), Image.BICUBIC), np.uint8)


def _shard_index(path: Path) -> int | None:
    m = re.search(r"_(\d+)\.tar$", path.name)
    return int(m.group(1)) if m else None


def _check_continuity(split: str, shards: list[Path]) -> None:
    idx = sorted(i for i in (_shard_index(p) for p in shards) if i is not None)
    missing = sorted(set(range(idx[-1] + 1)) - set(idx)) if idx else []
    if missing:
        raise DataError(f"{shards[0].parent}: {split} shards are numbered 0-{idx[-1]} but {missing[:10]} are missing "
                        f"({len(missing)} in all): download them again")


# ------------------------------------------------------------------------------------------------ collected trials
@dataclass
class _Trials:
    betas: list = field(default_factory=list)
    image_id: list = field(default_factory=list)
    rep: list = field(default_factory=list)
    trial: list = field(default_factory=list)
    split: list = field(default_factory=list)
    images: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def _check_trial_numbers(tr: np.ndarray, where: str) -> None:
    bad = tr[(tr < 0) | (tr >= MAX_SESSIONS * TRIALS_PER_SESSION)]
    if len(bad):
        raise DataError(f"{where}: trial number {int(bad[0])} is outside 0-{MAX_SESSIONS * TRIALS_PER_SESSION - 1}; "
                        f"expected NSD's 0-based trial index ({TRIALS_PER_SESSION} per session)")


def _check_finite(vox: np.ndarray, where: str) -> None:
    bad = ~np.isfinite(vox)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(len(vox), -1).any(1)).tolist()
        raise DataError(f"{where}: {int(bad.sum())} NaN/inf values (repetition(s) {rows}); expected finite "
                        f"z-scored betas")


def _metadata_totals(root: Path, subj: int) -> dict | None:
    path = root / f"metadata_subj{subj:02d}.json"
    if not path.exists():
        return None
    try:
        totals = json.loads(path.read_text())["totals"]
        return {k: int(totals[k]) for k in SPLIT_DIRS_V1 if k in totals}
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: expected {{\"totals\": {{\"train\": n, \"val\": n, \"test\": n}}}} "
                        f"({type(e).__name__}: {e})") from None


def read_v1(data_path: Path, subj: int, image_size: int, expected: int | None) -> _Trials:
    root = Path(data_path) / "webdataset_avg_split"
    by_split = {s: sorted((root / s).glob(f"{s}_subj{subj:02d}_*.tar"), key=lambda p: (_shard_index(p) or 0, p.name))
                for s in SPLIT_DIRS_V1}
    if not by_split["train"] or not by_split["test"]:
        found = [str(p.relative_to(root)) for ps in by_split.values() for p in ps]
        raise DataError(f"{root}: expected train/train_subj{subj:02d}_*.tar and test/test_subj{subj:02d}_*.tar "
                        f"(V1 layout); found {found or 'no shards'}")
    for split, shards in by_split.items():
        if shards:
            _check_continuity(split, shards)
    totals = _metadata_totals(root, subj)
    out = _Trials()
    out.notes.append(f"sample totals checked against {root.name}/metadata_subj{subj:02d}.json" if totals is not None
                     else f"no {root.name}/metadata_subj{subj:02d}.json: sample totals not checked (shard numbering "
                          f"and end-of-archive markers were)")
    counts = {s: 0 for s in SPLIT_DIRS_V1}
    per_shard: dict[str, int] = {}
    unknown_session = 0
    shards = [(s, p) for s, ps in by_split.items() for p in ps]
    for split, shard in tqdm(shards, desc=f"reading V1 shards subj{subj:02d}", unit="shard"):
        n_in_shard = 0
        for key, s in _tar_samples(shard):
            where = f"{shard}: sample {key}"
            for need in ("nsdgeneral.npy", "coco73k.npy", "jpg"):
                if need not in s:
                    raise DataError(f"{shard}: sample {key} has no {need}; found {sorted(s)}")
            vox = _npy(s["nsdgeneral.npy"], shard, key, "nsdgeneral.npy")
            if vox.ndim == 1:
                vox = vox[None]
            if vox.ndim != 2:
                raise DataError(f"{where}: nsdgeneral.npy should be [reps, voxels], found {vox.shape}")
            if expected is not None and vox.shape[1] != expected:
                raise DataError(f"{where}: expected {expected} nsdgeneral voxels for subject {subj}, found "
                                f"{vox.shape[1]} (a custom ROI? pass --n_voxels {vox.shape[1]} or --n_voxels any)")
            expected = vox.shape[1]
            coco = int(np.ravel(_npy(s["coco73k.npy"], shard, key, "coco73k.npy"))[0])
            n_valid = int(np.ravel(_npy(s["num_uniques.npy"], shard, key, "num_uniques.npy"))[0]) \
                if "num_uniques.npy" in s else vox.shape[0]
            n_valid = min(max(n_valid, 1), vox.shape[0])
            _check_finite(vox[:n_valid], f"{where}: nsdgeneral.npy")
            tr = np.ravel(_npy(s["trial.npy"], shard, key, "trial.npy")).astype(np.int64) if "trial.npy" in s \
                else np.array([], np.int64)
            _check_trial_numbers(tr[:n_valid], f"{where}: trial.npy")
            for r in range(n_valid):
                out.betas.append(vox[r])
                out.image_id.append(coco)
                out.rep.append(r)
                out.trial.append(int(tr[r]) if r < len(tr) else -1)
                unknown_session += r >= len(tr)
                out.split.append(SPLIT_DIRS_V1[split])
            if coco not in out.images:
                out.images[coco] = _image(s["jpg"], image_size, shard, key)
            n_in_shard += 1
        counts[split] += n_in_shard
        per_shard[shard.name] = n_in_shard
    if totals is not None:
        wrong = {k: (totals[k], counts[k]) for k in totals if totals[k] != counts[k]}
        if wrong:
            detail = "; ".join(f"{k}: metadata {a}, shards {b}" for k, (a, b) in wrong.items())
            split = next(iter(wrong))
            shard_counts = {n: c for n, c in per_shard.items() if n.startswith(split)}
            raise DataError(f"{root}: the shards do not hold the samples metadata_subj{subj:02d}.json lists ({detail}); "
                            f"samples per {split} shard: {shard_counts}. A shard is incomplete: download it again")
    if unknown_session:
        out.notes.append(f"{unknown_session} of {len(out.trial)} trials have no trial number in trial.npy (it lists "
                         f"fewer presentations than num_uniques): their session is unknown (-1)")
    return out


def read_v2(data_path: Path, subj: int, image_size: int, expected: int | None) -> _Trials:
    data_path = Path(data_path)
    betas_path = data_path / f"betas_all_subj{subj:02d}_fp32_renorm.hdf5"
    images_path = data_path / "coco_images_224_float16.hdf5"
    wds = data_path / "wds" / f"subj{subj:02d}"
    shards = [("train", p) for p in sorted((wds / "train").glob("*.tar"))] + \
             [("test", p) for p in sorted((wds / "new_test").glob("*.tar"))]
    if not shards:
        raise DataError(f"{wds}: expected train/*.tar and new_test/*.tar (V2 layout); found none")
    rows, where, out = [], [], _Trials()
    for split, shard in shards:
        for key, s in _tar_samples(shard):
            if "behav.npy" not in s:
                raise DataError(f"{shard}: sample {key} has no behav.npy; found {sorted(s)}")
            behav = _npy(s["behav.npy"], shard, key, "behav.npy")
            if behav.shape[-1] != 17:
                raise DataError(f"{shard}: sample {key}: behav.npy should have 17 columns, found shape {behav.shape}")
            for b in behav.reshape(-1, 17):
                rows.append((int(b[0]), int(b[5])))
                where.append(f"{shard}: sample {key}")
                out.split.append(canonical.SPLITS[split])
    trial = np.array([r[1] for r in rows], np.int64)
    for k in np.flatnonzero((trial < 0) | (trial >= MAX_SESSIONS * TRIALS_PER_SESSION))[:1]:
        _check_trial_numbers(trial[k:k + 1], f"{where[k]}: behav.npy column 5")
    f = canonical._open_h5(betas_path)
    with f:
        ds = canonical._require(f, betas_path, "betas", 2, "f")
        if expected is not None and ds.shape[1] != expected:
            raise DataError(f"{betas_path}: expected {expected} nsdgeneral voxels for subject {subj}, found "
                            f"{ds.shape[1]} (a custom ROI? pass --n_voxels {ds.shape[1]} or --n_voxels any)")
        if trial.max() >= ds.shape[0]:
            k = int(np.argmax(trial))
            raise DataError(f"{where[k]}: behav.npy refers to trial {trial.max()}, {betas_path.name} has "
                            f"{ds.shape[0]} rows")
        uniq, inv = np.unique(trial, return_inverse=True)  # h5py wants increasing, unique indices
        betas = np.asarray(ds[uniq], np.float32)[inv]
    bad = np.flatnonzero(~np.isfinite(betas).all(1))
    if len(bad):
        k = int(bad[0])
        raise DataError(f"{where[k]}: its betas (row {trial[k]} of {betas_path.name}) have NaN/inf values "
                        f"({len(bad)} trials affected in all); expected finite z-scored betas")
    out.betas, out.trial = list(betas), trial.tolist()
    out.image_id = [r[0] for r in rows]
    image_id = np.array(out.image_id, np.int64)
    rep = np.zeros(len(rows), np.int8)
    seen: dict[int, int] = defaultdict(int)
    for k in np.argsort(trial, kind="stable"):
        rep[k] = seen[int(image_id[k])]
        seen[int(image_id[k])] += 1
    out.rep = rep.tolist()
    g = canonical._open_h5(images_path)
    with g:
        ds = canonical._require(g, images_path, "images", 4, "fu")
        for i in np.unique(image_id):
            if not 0 <= int(i) < ds.shape[0]:
                raise DataError(f"{images_path}: behav.npy names image {int(i)}, the file has {ds.shape[0]} images")
            arr = np.asarray(ds[int(i)], np.float32)  # [3, H, W] in [0, 1]
            img = (np.clip(arr.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)
            out.images[int(i)] = np.asarray(Image.fromarray(img).resize((image_size, image_size), Image.BICUBIC))
    return out


# ------------------------------------------------------------------------------------------------ writing
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


def session_of(trial: np.ndarray) -> np.ndarray:
    """NSD session of each 0-based global trial number (750 per session); -1 where the trial is unknown."""
    trial = np.asarray(trial)
    return np.where(trial >= 0, trial // TRIALS_PER_SESSION, -1).astype(np.int16)


def output_mode(out: Path, subj: int, image_size: int, overwrite: bool) -> str:
    """'new' (write a fresh folder), 'add' (a new subject beside others of the same image size) or 'replace'
    (``overwrite``). Refuses anything that would mix a new conversion with files it did not write."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is a file; expected a folder for the converted dataset")
    if not out.exists() or not any(out.iterdir()):
        return "new"
    if overwrite:
        return "replace"
    hint = "pass --overwrite to replace the whole folder, or pick another --out"
    try:
        manifest = canonical.read_manifest(out)
    except DataError:
        names = sorted(p.name for p in out.iterdir())[:5]
        raise DataError(f"{out}: exists and is not a converted dataset (holds {names}); {hint}") from None
    if manifest.get("dataset") != "NSD":
        raise DataError(f"{out}: holds a {manifest.get('dataset')} dataset, not converted NSD; {hint}")
    if str(subj) in manifest.get("subjects", {}) or canonical.subject_file(out, subj).exists():
        raise DataError(f"{out}: already holds subject {subj}; {hint}")
    images = out / "images.hdf5"
    if images.exists():
        store = canonical.ImageStore(images)
        if store.image_size != image_size:
            raise DataError(f"{out}: its images are {store.image_size} px, this conversion asks for {image_size} px; "
                            f"use --image_size {store.image_size} to add subject {subj}, or {hint}")
    return "add"


def _write(root: Path, subj: int, t: _Trials, data_path: Path, vertex_map, layout: str) -> Path:
    betas = np.stack(t.betas).astype(np.float32)
    hemi, vertex = _load_vertex_map(vertex_map, betas.shape[1])
    ids = np.array(sorted(t.images), np.int64)
    path = canonical.write_subject(root, subj, betas, np.asarray(t.image_id, np.int64), np.asarray(t.rep),
                                   session_of(np.asarray(t.trial)), np.asarray(t.split), hemi, vertex,
                                   attrs={"dataset": "NSD", "layout": layout})
    canonical.write_images(root, ids, np.stack([t.images[i] for i in ids]), _load_captions(data_path, ids))
    canonical.write_manifest(root, "NSD", {subj: {"n_voxels": int(betas.shape[1]), "layout": layout}},
                             surface="fsaverage5" if hemi is not None else None)
    return path


def convert(layout: str, data_path: Path, subj: int, out: Path, *, vertex_map: Path | None = None,
            image_size: int = 224, n_voxels: int | str | None = NSD_DEFAULT, overwrite: bool = False,
            log=print) -> Path:
    """Read one subject of a real NSD layout ('v1' or 'v2') and write the canonical ``out/subj0X.hdf5`` + images.

    ``n_voxels``: ``"nsd"`` (NSD's nsdgeneral count), an int (a custom ROI) or ``"any"``/None. Nothing is written
    until every input has been read and checked; a new or replaced folder appears complete or not at all."""
    from ..atomic import atomic_dir
    if layout not in ("v1", "v2"):
        raise DataError(f"unknown layout {layout!r}; expected 'v1' (WebDataset shards) or 'v2' (HDF5 betas)")
    subj = canonical.check_subject(subj)
    expected = expected_voxels(subj, n_voxels)
    out = Path(out)
    mode = output_mode(out, subj, image_size, overwrite)
    trials = (read_v1 if layout == "v1" else read_v2)(Path(data_path), subj, image_size, expected)
    if mode == "add":
        path = _write(out, subj, trials, Path(data_path), vertex_map, layout)
    else:
        with atomic_dir(out) as tmp:
            _write(tmp, subj, trials, Path(data_path), vertex_map, layout)
        path = canonical.subject_file(out, subj)
    split = np.asarray(trials.split)
    counts = ", ".join(f"{name} {int((split == k).sum())}" for name, k in canonical.SPLITS.items())
    log(f"subject {subj} ({layout}): {len(trials.betas)} trials ({counts}), {len(trials.images)} images, "
        f"{len(trials.betas[0])} voxels; {'added to' if mode == 'add' else 'replaced' if mode == 'replace' else 'wrote'} "
        f"{out}")
    for note in trials.notes:
        log(f"  note: {note}")
    return path


def convert_v1(data_path: Path, subj: int, out: Path, **kw) -> Path:
    """V1 WebDataset shards -> canonical format (test betas keep all repetitions); see ``convert``."""
    return convert("v1", data_path, subj, out, **kw)


def convert_v2(data_path: Path, subj: int, out: Path, **kw) -> Path:
    """V2 HDF5 betas + behav.npy in WebDataset shards -> canonical format; see ``convert``."""
    return convert("v2", data_path, subj, out, **kw)
