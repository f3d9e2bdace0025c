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


def make_v1(root, rng, subj=1, n_vox=V, per_shard=(4, 2, 3)):
    """V1 layout: 2 train shards (+val, +test) of ``per_shard`` samples; test images carry 3 reps."""
    base = root / "webdataset_avg_split"
    truth = {}
    coco = 100
    for (split, shards), per in zip((("train", 2), ("val", 1), ("test", 1)), per_shard):
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
    np.save(root / "COCO_73k_annots_curated.npy", np.array([[f"caption {i}", ""] for i in range(1000)], dtype=object))
    return truth


def test_v1_roundtrip(tmp_path, rng):
    truth = make_v1(tmp_path / "nsd", rng)
    vmap = tmp_path / "vmap.npz"
    np.savez(vmap, hemi=np.arange(V) % 2, vertex=np.arange(V) * 3)
    nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out", vertex_map=vmap, image_size=32, n_voxels="any")
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
    nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out", image_size=32, n_voxels="any")
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
        nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out", n_voxels="any")


def test_v1_sample_without_betas(tmp_path, rng):
    _write_tar(tmp_path / "nsd/webdataset_avg_split/train/train_subj01_0.tar",
               [("s1", {"jpg": _jpg(rng), "coco73k.npy": _npy(np.array([1]))})])
    _write_tar(tmp_path / "nsd/webdataset_avg_split/test/test_subj01_0.tar", [])
    with pytest.raises(DataError, match=r"sample s1 has no nsdgeneral.npy; found \['coco73k.npy', 'jpg'\]"):
        nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out", n_voxels="any")


def test_v1_nan_betas(tmp_path, rng):
    make_v1(tmp_path / "nsd", rng)
    vox = np.full((3, V), np.nan, np.float32)
    _write_tar(tmp_path / "nsd/webdataset_avg_split/test/test_subj01_0.tar",
               [("s9", {"jpg": _jpg(rng), "nsdgeneral.npy": _npy(vox), "coco73k.npy": _npy(np.array([9])),
                        "num_uniques.npy": _npy(np.array([3]))})])
    with pytest.raises(DataError, match=r"test_subj01_0.tar: sample s9: nsdgeneral.npy: 111 NaN/inf values "
                                        r"\(repetition\(s\) \[0, 1, 2\]\)"):
        nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out", n_voxels="any")
    assert not (tmp_path / "out").exists()  # nothing is written before every input is read


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
    nsd.convert_v2(tmp_path / "nsd", 1, tmp_path / "out", image_size=16, n_voxels="any")
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
        nsd.convert_v2(tmp_path / "nsd", 1, tmp_path / "out", n_voxels="any")


def test_bad_vertex_map(tmp_path, rng):
    make_v1(tmp_path / "nsd", rng)
    vmap = tmp_path / "vmap.npz"
    np.savez(vmap, hemi=np.zeros(5), vertex=np.zeros(5))
    with pytest.raises(DataError, match=r"vertex should have shape \(37,\) \(one per voxel\), found \(5,\)|hemi should"):
        nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out", vertex_map=vmap, n_voxels="any")


def test_unknown_layout(tmp_path):
    with pytest.raises(DataError, match="unknown layout 'v3'"):
        nsd.convert("v3", tmp_path, 1, tmp_path)


def _cut_last_sample(shard):
    """Rewrite a shard without its last sample and without tar's end-of-archive marker: what a download cut
    exactly at a sample boundary leaves."""
    with tarfile.open(shard) as tf:
        members = tf.getmembers()
    last_key = members[-1].name.partition(".")[0]
    keep = [m for m in members if m.name.partition(".")[0] != last_key]
    end = keep[-1].offset_data + ((keep[-1].size + 511) // 512) * 512
    shard.write_bytes(shard.read_bytes()[:end])
    return last_key


def test_v1_shard_cut_at_a_sample_boundary(tmp_path, rng):
    make_v1(tmp_path / "nsd", rng)
    shard = tmp_path / "nsd/webdataset_avg_split/train/train_subj01_1.tar"
    _cut_last_sample(shard)
    with pytest.raises(DataError, match=r"train_subj01_1.tar: shard has no end-of-archive marker .*last sample read: "
                                        r"s000106"):
        nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out", n_voxels="any")


def test_v1_totals_checked_against_metadata(tmp_path, rng, capsys):
    make_v1(tmp_path / "nsd", rng)
    base = tmp_path / "nsd/webdataset_avg_split"
    (base / "metadata_subj01.json").write_text('{"totals": {"train": 8, "val": 2, "test": 3}}')
    nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "ok", n_voxels="any")
    assert "sample totals checked against webdataset_avg_split/metadata_subj01.json" in capsys.readouterr().out
    # a shard that is a valid tar but holds one sample fewer than the metadata says
    shard = base / "train/train_subj01_1.tar"
    with tarfile.open(shard) as tf:
        members = [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()]
    keys = sorted({n.partition(".")[0] for n, _ in members})
    _write_tar(shard, [(k, {n.partition(".")[2]: b for n, b in members if n.startswith(k)}) for k in keys[:-1]])
    with pytest.raises(DataError, match=r"train: metadata 8, shards 7\); samples per train shard: "
                                        r"\{'train_subj01_0.tar': 4, 'train_subj01_1.tar': 3\}"):
        nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out", n_voxels="any")


def test_v1_without_metadata_says_so_and_checks_shard_numbering(tmp_path, rng, capsys):
    make_v1(tmp_path / "nsd", rng)
    nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out", n_voxels="any")
    assert "no webdataset_avg_split/metadata_subj01.json: sample totals not checked" in capsys.readouterr().out
    (tmp_path / "nsd/webdataset_avg_split/train/train_subj01_0.tar").unlink()
    with pytest.raises(DataError, match=r"train shards are numbered 0-1 but \[0\] are missing"):
        nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out2", n_voxels="any")


def test_existing_output_is_refused_unless_overwrite(tmp_path, rng):
    make_v1(tmp_path / "nsd", rng)
    out = tmp_path / "out"
    nsd.convert_v1(tmp_path / "nsd", 1, out, image_size=32, n_voxels="any")
    with pytest.raises(DataError, match=r"already holds subject 1; pass --overwrite"):
        nsd.convert_v1(tmp_path / "nsd", 1, out, image_size=16, n_voxels="any")
    assert canonical.load_subject(out, 1).images([100]).shape[1] == 32  # untouched
    nsd.convert_v1(tmp_path / "nsd", 1, out, image_size=16, n_voxels="any", overwrite=True)
    assert canonical.load_subject(out, 1).images([100]).shape[1] == 16
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temp folders left
    # another subject may join a converted folder with the same image size, not with another one
    make_v1(tmp_path / "nsd", rng, subj=2)
    with pytest.raises(DataError, match=r"its images are 16 px, this conversion asks for 32 px"):
        nsd.convert_v1(tmp_path / "nsd", 2, out, image_size=32, n_voxels="any")
    nsd.convert_v1(tmp_path / "nsd", 2, out, image_size=16, n_voxels="any")
    assert canonical.load_subject(out, 1).n_trials and canonical.load_subject(out, 2).n_trials
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"other: exists and is not a converted dataset \(holds \['notes.txt'\]\)"):
        nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "other", n_voxels="any")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_custom_roi_voxel_count(tmp_path, rng):
    make_v1(tmp_path / "nsd", rng)
    with pytest.raises(DataError, match=r"expected 36 nsdgeneral voxels for subject 1, found 37 \(a custom ROI\? "
                                        r"pass --n_voxels 37"):
        nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out", n_voxels=36)
    nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out", n_voxels=37)
    with pytest.raises(DataError, match=r"n_voxels should be a positive integer, 'nsd' or 'any'; found 'lots'"):
        nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out2", n_voxels="lots")


def test_sessions_from_trial_numbers(tmp_path, rng, capsys):
    """Sessions are trial // 750 where trial.npy lists the presentation; where it lists only the first one, the
    others' session is unknown and the summary says how many."""
    base = tmp_path / "nsd/webdataset_avg_split"
    vox = rng.standard_normal((3, V)).astype(np.float32)
    s_full = {"jpg": _jpg(rng), "nsdgeneral.npy": _npy(vox), "coco73k.npy": _npy(np.array([5])),
              "trial.npy": _npy(np.array([10, 800, 2300])), "num_uniques.npy": _npy(np.array([3]))}
    s_first = {"jpg": _jpg(rng), "nsdgeneral.npy": _npy(vox), "coco73k.npy": _npy(np.array([6])),
               "trial.npy": _npy(np.array([1600])), "num_uniques.npy": _npy(np.array([3]))}
    _write_tar(base / "train/train_subj01_0.tar", [("a", s_full), ("b", s_first)])
    _write_tar(base / "test/test_subj01_0.tar", [("c", s_full | {"coco73k.npy": _npy(np.array([7]))})])
    nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out", n_voxels="any")
    assert "2 of 9 trials have no trial number in trial.npy" in capsys.readouterr().out
    d = canonical.load_subject(tmp_path / "out", 1)
    assert d.session[d.image_id == 5].tolist() == [0, 1, 3]
    assert d.session[d.image_id == 6].tolist() == [2, -1, -1]
    _write_tar(base / "train/train_subj01_0.tar", [("a", s_full | {"trial.npy": _npy(np.array([10, 800, 31000]))})])
    with pytest.raises(DataError, match=r"train_subj01_0.tar: sample a: trial.npy: trial number 31000 is outside "
                                        r"0-29999; expected NSD's 0-based trial index"):
        nsd.convert_v1(tmp_path / "nsd", 1, tmp_path / "out2", n_voxels="any")


def test_v2_nan_names_shard_and_sample(tmp_path, rng):
    (tmp_path / "nsd").mkdir()
    betas, _ = make_v2(tmp_path / "nsd", rng)
    betas[7, 3] = np.nan
    with h5py.File(tmp_path / "nsd" / "betas_all_subj01_fp32_renorm.hdf5", "w") as f:
        f["betas"] = betas
    with pytest.raises(DataError, match=r"train/0.tar: sample t00007: its betas \(row 7 of "
                                        r"betas_all_subj01_fp32_renorm.hdf5\) have NaN/inf values"):
        nsd.convert_v2(tmp_path / "nsd", 1, tmp_path / "out", n_voxels="any")
