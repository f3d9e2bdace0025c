"""Real-data failures a new user met, each now a clear error or the right result, through the CLI (issue 12).

The data are tiny V1-layout shards written by the tests; ViT-L/14 is a random-weight CLIP vision tower in
Versatile Diffusion's ``image_encoder/`` layout. Nothing here touches the network."""
import json

import numpy as np
import pytest

from mindeye.cli import main
from tests.conftest import cache_dir
from tests.test_nsd_readers import _npy, _write_tar, make_v1


def _toy_vit(folder):
    """A CLIP vision tower with the transformers layout of VD's image_encoder/ (32 px, 17 tokens x 32)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
        patch_size=8, projection_dim=32)).save_pretrained(folder / "image_encoder")
    return folder


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_train_on_an_unconverted_or_missing_folder_says_how_to_convert(tmp_path, rng, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    download = tmp_path / "nsd_download"
    make_v1(download, rng)
    before = _files(tmp_path)
    assert main(["train", "--data_path", str(download), "--out", str(tmp_path / "runs"), "--model_name", "r"]) == 2
    err = capsys.readouterr().err
    assert "unconverted NSD download (V1 layout)" in err
    assert f"python -m mindeye convert --layout v1 --data_path {download}" in err
    missing = tmp_path / "not" / "there"
    assert main(["train-lowlevel", "--data_path", str(missing), "--out", str(tmp_path / "runs")]) == 2
    assert f"{missing}: no such folder" in capsys.readouterr().err
    assert _files(tmp_path) == before  # nothing simulated, no run folder, no path created


def test_convert_cli_refuses_an_existing_output_and_names_the_shard(tmp_path, rng, capsys):
    make_v1(tmp_path / "nsd", rng)
    conv = ["convert", "--layout", "v1", "--data_path", str(tmp_path / "nsd"), "--n_voxels", "any"]
    assert main([*conv, "--out", str(tmp_path / "o"), "--image_size", "32"]) == 0
    assert main([*conv, "--out", str(tmp_path / "o"), "--image_size", "16"]) == 2
    assert "already holds subject 1; pass --overwrite" in capsys.readouterr().err
    assert main([*conv, "--out", str(tmp_path / "o"), "--image_size", "16", "--overwrite"]) == 0
    vox = np.ones((3, 37), np.float32)
    vox[1, 4] = np.inf
    _write_tar(tmp_path / "nsd/webdataset_avg_split/val/val_subj01_0.tar",
               [("bad7", {"jpg": b"", "nsdgeneral.npy": _npy(vox), "coco73k.npy": _npy(np.array([7]))})])
    assert main([*conv, "--out", str(tmp_path / "o2")]) == 2
    assert "val_subj01_0.tar: sample bad7: nsdgeneral.npy: 1 NaN/inf values (repetition(s) [1])" in \
        capsys.readouterr().err


def test_custom_roi_of_2000_voxels_converts_and_trains_for_any_subject(tmp_path, rng, capsys):
    """Subject 3 (not one of the seed's 1, 2, 5, 7), a 2000-voxel ROI, ViT-L/14 targets from a Versatile
    Diffusion folder's image_encoder: convert, then train through the CLI, with a UMAP at the end."""
    make_v1(tmp_path / "nsd", rng, subj=3, n_vox=2000, per_shard=(24, 8, 12))
    data = tmp_path / "data"
    assert main(["convert", "--layout", "v1", "--data_path", str(tmp_path / "nsd"), "--subj", "3",
                 "--out", str(data), "--image_size", "32"]) == 2
    assert "expected 15226 nsdgeneral voxels for subject 3, found 2000" in capsys.readouterr().err
    assert main(["convert", "--layout", "v1", "--data_path", str(tmp_path / "nsd"), "--subj", "3",
                 "--out", str(data), "--image_size", "32", "--n_voxels", "2000"]) == 0
    vd = _toy_vit(tmp_path / "vd")
    runs = tmp_path / "runs"
    with cache_dir(tmp_path / "cache"):
        rc = main(["train", "--data_path", str(data), "--subj", "3", "--vd_cache_dir", str(vd), "--hidden",
                   "--no-prior", "--hidden_dim", "16", "--n_blocks", "1", "--proj_hidden", "16", "--batch_size", "8",
                   "--num_epochs", "2", "--no-use_image_aug", "--plot_umap",
                   "--out", str(runs), "--model_name", "roi2000"])
    assert rc == 0, capsys.readouterr().err
    cfg = json.loads((runs / "roi2000" / "config.json").read_text())
    assert cfg["clip_variant"] == "ViT-L/14"  # from the dataset (NSD), not from the demo bundle (SimNSD)
    assert cfg["data"]["n_voxels"] == 2000 and cfg["data"]["subject"] == 3 and cfg["data"]["target_shape"] == [17, 32]
    epochs = [json.loads(line) for line in (runs / "roi2000" / "metrics.jsonl").read_text().splitlines()
              if "val_loss" in json.loads(line)]
    assert len(epochs) == 2 and all(np.isfinite(e["val_loss"]) for e in epochs)
    assert (runs / "roi2000" / "umap.png").stat().st_size > 1000


def test_v1_flags_that_cannot_work_here_are_refused(tmp_path, capsys, tiny_sim):
    assert main(["train", "--data_path", str(tiny_sim[0]), "--n_samples_save", "1", "--out", str(tmp_path),
                 "--model_name", "x"]) == 2
    assert "--n_samples_save 1 (reconstructions while training) is not done by this trainer" in capsys.readouterr().err


def test_ridge_command_scores_the_baseline_like_mindeye(tmp_path, tiny_stack, tiny_sim, capsys, monkeypatch):
    """`python -m mindeye ridge` on the same target and data as a MindEye run: closed form, alpha by CV on the
    train images, val and test retrieval with the same code, weights and metrics in a run folder. What it writes
    (the run, the cached targets) goes under $MINDEYE_HOME."""
    import torch

    from mindeye.models.ridge import RidgeModel
    monkeypatch.setenv("MINDEYE_HOME", str(tmp_path))
    monkeypatch.delenv("MINDEYE_CACHE_DIR", raising=False)
    assert main(["ridge", "--bundle", str(tiny_stack), "--data_path", str(tiny_sim[0]), "--json"]) == 0
    assert list((tmp_path / "cache" / "clip_targets").glob("*.pt"))
    tmp_path = tmp_path / "train_logs"  # --out's default, under MINDEYE_HOME
    out = capsys.readouterr().out
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics["target"] == "hidden" and metrics["clip_variant"] == "SceneCLIP"
    assert metrics["alpha"] in [float(a) for a in metrics["cv_mse"]]
    chance = 1 / metrics["n_way"]["test"]
    assert metrics["test"]["image"]["mean"] > 2 * chance  # it decodes something: the voxels carry the image
    assert "ridge test:" in out and "chance" in out
    model = RidgeModel.from_state_dict(torch.load(tmp_path / "ridge" / "ridge.pt", weights_only=True))
    assert model.predict(np.zeros((1, metrics["n_voxels"]), np.float32)).shape[1:] == tuple(metrics["target_shape"])


def test_convert_cli_catches_a_shard_cut_between_samples_and_checks_totals(tmp_path, rng, capsys):
    """The download cut exactly at a sample boundary (exit 0 and 34 samples fewer, before): with the metadata
    file the totals disagree; without it the shard's missing end-of-archive marker gives it away."""
    from tests.test_nsd_readers import _cut_last_sample
    make_v1(tmp_path / "nsd", rng)
    base = tmp_path / "nsd/webdataset_avg_split"
    _cut_last_sample(base / "train/train_subj01_1.tar")
    conv = ["convert", "--layout", "v1", "--data_path", str(tmp_path / "nsd"), "--n_voxels", "any"]
    assert main([*conv, "--out", str(tmp_path / "a")]) == 2
    assert "train_subj01_1.tar: shard has no end-of-archive marker" in capsys.readouterr().err
    (base / "metadata_subj01.json").write_text('{"totals": {"train": 8, "val": 2, "test": 3}}')
    assert main([*conv, "--out", str(tmp_path / "b")]) == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing half-written


def test_convert_cli_says_which_sessions_it_could_not_place(tmp_path, rng, capsys):
    base = tmp_path / "nsd/webdataset_avg_split"
    vox = rng.standard_normal((3, 37)).astype(np.float32)
    first_only = {"jpg": b"", "nsdgeneral.npy": _npy(vox), "coco73k.npy": _npy(np.array([6])),
                  "trial.npy": _npy(np.array([1600])), "num_uniques.npy": _npy(np.array([3]))}
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="JPEG")
    first_only["jpg"] = buf.getvalue()
    _write_tar(base / "train/train_subj01_0.tar", [("b", first_only)])
    _write_tar(base / "test/test_subj01_0.tar", [("c", first_only | {"coco73k.npy": _npy(np.array([7]))})])
    assert main(["convert", "--layout", "v1", "--data_path", str(tmp_path / "nsd"), "--n_voxels", "any",
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "4 of 6 trials have no trial number in trial.npy" in out and "session is unknown (-1)" in out


def test_vit_l14_missing_offline_says_what_to_provide_in_full(tmp_path, rng, capsys):
    """NSD's targets are ViT-L/14's; offline and without a local copy, the error names what to provide and is
    not cut off mid-sentence."""
    make_v1(tmp_path / "nsd", rng)
    assert main(["convert", "--layout", "v1", "--data_path", str(tmp_path / "nsd"), "--n_voxels", "any",
                 "--out", str(tmp_path / "data"), "--image_size", "32"]) == 0
    with cache_dir(tmp_path / "cache"):
        assert main(["train", "--data_path", str(tmp_path / "data"), "--no-prior", "--hidden_dim", "8",
                     "--out", str(tmp_path / "runs"), "--model_name", "x"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1, err  # one line, whole
    assert "no local CLIP vision weights" in err[0] and "--vd_cache_dir" in err[0] and "HF_HUB_OFFLINE=1" in err[0]
    assert "offline-mode" in err[0]  # transformers' own advice, not cut off mid-URL
