"""Tiny files in each real NSD layout, written here, read back through the real readers."""
import io
import tarfile

import h5py
import numpy as np
import pytest
from PIL import Image

from mindeye.data import canonical, nsd
from mindeye.data.errors import DataError

V = 37  # voxels in the tiny fixtures


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _jpg(rng) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _write_tar(path, samples):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tf:
        for key, files in samples:
            for ext, blob in files.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(blob)
                tf.addfile(info, io.BytesIO(blob))


def make_v1(root, rng, subj=1, n_vox=V):
    """V1 layout: 2 train shards (+val, +test); test images carry 3 reps."""
    base = root / "webdataset_avg_split"
    truth = {}
    coco = 100
    for split, shards, per in (("train", 2, 4), ("val", 1, 2), ("test", 1, 3)):
        for k in range(shards):
            samples = []
            for s in range(per):
                vox = rng.standard_normal((3, n_vox)).astype(np.float32)
                nu = 3 if split == "test" else int(rng.integers(1, 4))
                trials = np.array([coco * 3 + r for r in range(3)])
                samples.append((f"s{coco:06d}", {"jpg": _jpg(rng), "nsdgeneral.npy": _npy(vox),
                                                 "coco73k.npy": _npy(np.array([coco])),
                                                 "trial.npy": _npy(trials), "num_uniques.npy": _npy(np.array([nu]))}))
                truth[coco] = (split, vox[:nu], trials[:nu])
                coco += 1
            _write_tar(base / split / f"{split}_subj{subj:02d}_{k}.tar", samples)
    np.save(root / "COCO_73k_annots_curated.npy", np.array([[f"caption {i}", ""] for i in range(200)], dtype=object))
    return truth


def test_v1_roundtrip(tmp_path, rng):
    truth = make_v1(tmp_path / "nsd", rng)
    vmap = tmp_path / "vmap.npz"
    np.savez(vmap, hemi=np.arange(V) % 2, vertex=np.arange(V) * 3)
    nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out", vertex_map=vmap, image_size=32, expected_voxels=None)
    d = canonical.load_subject(tmp_path / "out", 1)
    assert d.n_voxels == V and d.n_trials == sum(len(t[1]) for t in truth.values())
    avg, ids = d.averaged("test")
    for i, coco in enumerate(ids):
        split, vox, _ = truth[int(coco)]
        assert split == "test"
        np.testing.assert_allclose(avg[i], vox.mean(0), atol=1e-5)
    train_ids = np.unique(d.image_id[d.trials("train")])
    assert all(truth[int(i)][0] == "train" for i in train_ids)
    assert len(d.trials("val")) > 0
    assert d.images(ids[:2]).shape == (2, 32, 32, 3)
    assert d.captions([100]) == ["caption 100"]
    assert d.geometry.known and d.geometry.vertex[4] == 12
    k = np.flatnonzero(d.image_id == 100)[0]
    assert d.session[k] == (300 + int(d.rep[k])) // 750


def test_v1_without_vertex_map_says_geometry_unknown(tmp_path, rng):
    make_v1(tmp_path / "nsd", rng)
    nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out", image_size=32, expected_voxels=None)
    assert not canonical.load_subject(tmp_path / "out", 1).geometry.known


def test_v1_voxel_count_mismatch(tmp_path, rng):
    make_v1(tmp_path / "nsd", rng)
    with pytest.raises(DataError, match=r"expected 15724 nsdgeneral voxels for subject 1, found 37"):
        nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out")


def test_v1_missing_and_truncated(tmp_path, rng):
    with pytest.raises(DataError, match=r"expected train/train_subj01_\*.tar and test/test_subj01_\*.tar"):
        nsd.convert_v1(tmp_path / "nothing", 1, tmp_path / "out")
    make_v1(tmp_path / "nsd", rng)
    shard = tmp_path / "nsd/webdataset_avg_split/train/train_subj01_1.tar"
    shard.write_bytes(shard.read_bytes()[:1500])
    with pytest.raises(DataError, match=r"train_subj01_1.tar: (shard ends early|not a readable tar)"):
        nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out", expected_voxels=None)


def test_v1_sample_without_betas(tmp_path, rng):
    _write_tar(tmp_path / "nsd/webdataset_avg_split/train/train_subj01_0.tar",
               [("s1", {"jpg": _jpg(rng), "coco73k.npy": _npy(np.array([1]))})])
    _write_tar(tmp_path / "nsd/webdataset_avg_split/test/test_subj01_0.tar", [])
    with pytest.raises(DataError, match=r"sample s1 has no nsdgeneral.npy; found \['coco73k.npy', 'jpg'\]"):
        nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out", expected_voxels=None)


def test_v1_nan_betas(tmp_path, rng):
    make_v1(tmp_path / "nsd", rng)
    vox = np.full((3, V), np.nan, np.float32)
    _write_tar(tmp_path / "nsd/webdataset_avg_split/test/test_subj01_0.tar",
               [("s9", {"jpg": _jpg(rng), "nsdgeneral.npy": _npy(vox), "coco73k.npy": _npy(np.array([9])),
                        "num_uniques.npy": _npy(np.array([3]))})])
    with pytest.raises(DataError, match="3 trials have NaN/inf betas"):
        nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out", expected_voxels=None)


def make_v2(root, rng, subj=1, n_vox=V):
    n_trials = 30
    betas = rng.standard_normal((n_trials, n_vox)).astype(np.float32)
    with h5py.File(root / f"betas_all_subj{subj:02d}_fp32_renorm.hdf5", "w") as f:
        f["betas"] = betas
    with h5py.File(root / "coco_images_224_float16.hdf5", "w") as f:
        f["images"] = rng.random((20, 3, 16, 16)).astype(np.float16)
    plan = [(t, t % 10) for t in range(24)] + [(t, 10 + (t % 3)) for t in range(24, 30)]  # (trial, image)
    wds = root / "wds" / f"subj{subj:02d}"
    for folder, items in (("train", plan[:24]), ("new_test", plan[24:])):
        samples = []
        for t, img in items:
            behav = np.zeros((1, 17), np.float32)
            behav[0, 0], behav[0, 5] = img, t
            samples.append((f"t{t:05d}", {"behav.npy": _npy(behav)}))
        _write_tar(wds / folder / "0.tar", samples)
    return betas, plan


def test_v2_roundtrip(tmp_path, rng):
    (tmp_path / "nsd").mkdir()
    betas, plan = make_v2(tmp_path / "nsd", rng)
    nsd.convert_v2(tmp_path / "nsd", 1, tmp_path / "out", image_size=16, expected_voxels=None)
    d = canonical.load_subject(tmp_path / "out", 1)
    assert d.n_trials == 30
    all_b = d.betas()
    for k in range(d.n_trials):
        t = [p[0] for p in plan if p[1] == d.image_id[k]][d.rep[k]]
        np.testing.assert_allclose(all_b[k], betas[t], atol=1e-6)
    avg, ids = d.averaged("test")
    assert list(ids) == [10, 11, 12]
    np.testing.assert_allclose(avg[0], betas[[24, 27]].mean(0), atol=1e-5)
    img = d.images([3])[0]
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8


def test_v2_errors(tmp_path, rng):
    with pytest.raises(DataError, match="V2 layout"):
        nsd.convert_v2(tmp_path, 1, tmp_path / "out")
    (tmp_path / "nsd").mkdir()
    make_v2(tmp_path / "nsd", rng)
    with pytest.raises(DataError, match=r"expected 14278 nsdgeneral voxels for subject 2"):
        make_v2(tmp_path / "nsd", rng, subj=2)
        nsd.convert_v2(tmp_path / "nsd", 2, tmp_path / "out")
    (tmp_path / "nsd" / "betas_all_subj01_fp32_renorm.hdf5").write_bytes(b"\x89HDF garbage")
    with pytest.raises(DataError, match=r"betas_all_subj01_fp32_renorm.hdf5: not a readable HDF5 file"):
        nsd.convert_v2(tmp_path / "nsd", 1, tmp_path / "out", expected_voxels=None)


def test_bad_vertex_map(tmp_path, rng):
    make_v1(tmp_path / "nsd", rng)
    vmap = tmp_path / "vmap.npz"
    np.savez(vmap, hemi=np.zeros(5), vertex=np.zeros(5))
    with pytest.raises(DataError, match=r"vertex should have shape \(37,\) \(one per voxel\), found \(5,\)|hemi should"):
        nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out", vertex_map=vmap, expected_voxels=None)


def test_unknown_layout(tmp_path):
    with pytest.raises(DataError, match="unknown layout 'v3'"):
        nsd.convert("v3", tmp_path, 1, tmp_path)
