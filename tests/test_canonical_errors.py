"""Bad input gets an error naming the file, the expected and the found."""
import json
import shutil

import h5py
import numpy as np
import pytest

from mindeye.data import canonical
from mindeye.data.errors import DataError


@pytest.fixture
def copy(tiny_sim, tmp_path):
    dst = tmp_path / "ds"
    shutil.copytree(tiny_sim[0], dst)
    return dst


def test_missing_dataset_manifest(tmp_path):
    with pytest.raises(DataError, match="no dataset.json, so not a canonical dataset"):
        canonical.load_subject(tmp_path, 1)


def test_missing_subject_file(copy):
    canonical.subject_file(copy, 1).unlink()
    with pytest.raises(DataError, match=r"subj01.hdf5: file not found"):
        canonical.load_subject(copy, 1)


def test_truncated_file(copy):
    path = canonical.subject_file(copy, 1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match=r"subj01.hdf5: not a readable HDF5 file \(truncated or corrupt"):
        canonical.load_subject(copy, 1)


def test_unknown_subject(copy):
    with pytest.raises(DataError, match="unknown subject 9"):
        canonical.load_subject(copy, 9)
    with pytest.raises(DataError, match=r"no subject 2; this dataset has subjects \[1\]"):
        canonical.load_subject(copy, 2)


def test_subject_mismatch(copy):
    with h5py.File(canonical.subject_file(copy, 1), "a") as f:
        f.attrs["subject"] = 2
    with pytest.raises(DataError, match="expected subject 1, the file says subject 2"):
        canonical.load_subject(copy, 1)


def test_voxel_count_mismatch(copy):
    m = json.loads((copy / "dataset.json").read_text())
    m["subjects"]["1"]["n_voxels"] = 15724
    (copy / "dataset.json").write_text(json.dumps(m))
    with pytest.raises(DataError, match="says subject 1 has 15724 voxels, betas have 3145"):
        canonical.load_subject(copy, 1)


def test_wrong_shapes(copy):
    with h5py.File(canonical.subject_file(copy, 1), "a") as f:
        ids = f["image_id"][()]
        del f["image_id"]
        f["image_id"] = ids[:-4]
    with pytest.raises(DataError, match=r"image_id has \d+ entries, expected \d+ \(one per trial"):
        canonical.load_subject(copy, 1)


def test_wrong_ndim(copy):
    with h5py.File(canonical.subject_file(copy, 1), "a") as f:
        del f["betas"]
        f["betas"] = np.zeros(10, np.float32)
    with pytest.raises(DataError, match=r"betas should have 2 dimensions, found shape \(10,\)"):
        canonical.load_subject(copy, 1)


def test_nan_betas(copy):
    with h5py.File(canonical.subject_file(copy, 1), "a") as f:
        b = f["betas"]
        row = b[7]
        row[3] = np.nan
        b[7] = row
    d = canonical.load_subject(copy, 1)
    with pytest.raises(DataError, match=r"1 NaN/inf values in 1 trials \(first trial 7\)"):
        d.betas()
    d.betas(np.arange(5))  # clean trials still load


def test_missing_image(copy):
    d = canonical.load_subject(copy, 1)
    with pytest.raises(DataError, match=r"images.hdf5: no image with id \[999999\]"):
        d.images([999999])


def test_unknown_split(copy):
    with pytest.raises(DataError, match="unknown split 'dev'"):
        canonical.load_subject(copy, 1).trials("dev")


def test_corrupt_manifest(copy):
    (copy / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match="dataset.json: not valid JSON"):
        canonical.load_subject(copy, 1)
