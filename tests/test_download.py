import pytest

from mindeye.data import download
from mindeye.data.errors import DataError


def fake_fetch(calls):
    def fetch(repo, name, local_dir):
        calls.append(name)
        p = local_dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    return fetch


def test_v1_fetches_once(tmp_path):
    calls = []
    paths = download.download("v1", 1, tmp_path, fetch=fake_fetch(calls), log=lambda *a: None)
    assert len(calls) == len(paths) == 23
    assert "webdataset_avg_split/train/train_subj01_17.tar" in calls
    calls.clear()
    download.download("v1", 1, tmp_path, fetch=fake_fetch(calls), log=lambda *a: None)
    assert calls == [], "cached files are never fetched again"


def test_v2_uses_listing(tmp_path):
    listing = ["wds/subj01/train/0.tar", "wds/subj01/train/1.tar", "wds/subj01/new_test/0.tar",
               "wds/subj02/train/0.tar", "other.txt"]
    calls = []
    download.download("v2", 1, tmp_path, fetch=fake_fetch(calls), list_files=lambda repo: listing,
                      log=lambda *a: None)
    assert sorted(calls) == sorted(["betas_all_subj01_fp32_renorm.hdf5", "coco_images_224_float16.hdf5",
                                    "wds/subj01/new_test/0.tar", "wds/subj01/train/0.tar", "wds/subj01/train/1.tar"])


def test_fetch_that_writes_nothing(tmp_path):
    with pytest.raises(DataError, match="finished but the file is not there"):
        download.download("v1", 1, tmp_path, fetch=lambda *a: None, log=lambda *a: None)


def test_unknown_layout(tmp_path):
    with pytest.raises(DataError, match="unknown layout"):
        download.download("v9", 1, tmp_path)
