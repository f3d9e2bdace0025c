"""Fetch the public NSD copies MindEye uses, behind an explicit command (`python -m mindeye download`).

Files already on disk are never fetched again (V1's scripts re-download 30+ GB on every run). This is the
only module that reaches the network, and only when called: the demo and the tests run with
HF_HUB_OFFLINE=1 and never import it for real work.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .errors import DataError

V1_REPO = "pscotti/naturalscenesdataset"
V2_REPO = "pscotti/mindeyev2"


def v1_files(subj: int) -> list[str]:
    s = f"subj{subj:02d}"
    files = [f"webdataset_avg_split/train/train_{s}_{k}.tar" for k in range(18)]
    files += [f"webdataset_avg_split/val/val_{s}_0.tar"]
    files += [f"webdataset_avg_split/test/test_{s}_{k}.tar" for k in range(2)]
    files += [f"webdataset_avg_split/metadata_{s}.json", "COCO_73k_annots_curated.npy"]
    return files


def v2_files(subj: int, listing: list[str]) -> list[str]:
    s = f"subj{subj:02d}"
    wanted = [f"betas_all_{s}_fp32_renorm.hdf5", "coco_images_224_float16.hdf5"]
    wanted += sorted(f for f in listing if f.startswith(f"wds/{s}/train/") or f.startswith(f"wds/{s}/new_test/"))
    return wanted


def _hf_fetch(repo: str, filename: str, local_dir: Path) -> None:
    from huggingface_hub import constants, hf_hub_download

    constants.HF_HUB_OFFLINE = False  # this command is the explicit exception to offline mode
    hf_hub_download(repo_id=repo, filename=filename, repo_type="dataset", local_dir=str(local_dir))


def _hf_list(repo: str) -> list[str]:
    from huggingface_hub import constants, list_repo_files

    constants.HF_HUB_OFFLINE = False
    return list_repo_files(repo, repo_type="dataset")


def download(layout: str, subj: int, data_path: Path, fetch: Callable[[str, str, Path], None] = _hf_fetch,
             list_files: Callable[[str], list[str]] = _hf_list, log=print) -> list[Path]:
    """Download one subject's files for a layout into ``data_path``; returns the local paths.

    ``fetch(repo, filename, local_dir)`` and ``list_files(repo)`` are injectable so tests run offline.
    """
    data_path = Path(data_path)
    data_path.mkdir(parents=True, exist_ok=True)
    if layout == "v1":
        repo, files = V1_REPO, v1_files(subj)
    elif layout == "v2":
        repo = V2_REPO
        files = v2_files(subj, list_files(repo))
    else:
        raise DataError(f"unknown layout {layout!r}; expected 'v1' or 'v2'")
    paths = []
    for name in files:
        local = data_path / name
        if local.exists() and local.stat().st_size > 0:
            log(f"cached  {local}")
        else:
            log(f"fetch   {repo}/{name}")
            fetch(repo, name, data_path)
            if not local.exists():
                raise DataError(f"{local}: download of {repo}/{name} finished but the file is not there")
        paths.append(local)
    return paths
