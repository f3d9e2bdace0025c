"""`python -m mindeye train` on a tiny SimNSD subject with a tiny SceneCLIP: logs, checkpoints, resume, errors."""
from __future__ import annotations

import json

import pytest
import torch

from mindeye.data.errors import DataError

TINY_MODEL = ["--hidden_dim", "32", "--n_blocks", "1", "--proj_hidden", "16", "--prior_depth", "1",
              "--prior_heads", "2", "--prior_dim_head", "8", "--batch_size", "16", "--log_every", "1"]


@pytest.fixture(scope="session")
def tiny_bundle(tiny_sim, tmp_path_factory):
    """A bundle: the tiny SimNSD subject + an untrained toy SceneCLIP."""
    from mindeye.models.scene_clip import SceneCLIP, WordTokenizer, build_model
    folder, _ = tiny_sim
    root = tmp_path_factory.mktemp("bundle")
    tok = WordTokenizer.for_scenes()
    torch.manual_seed(0)
    model, cfg = build_model(tok.vocab_size, vision_layers=1, text_layers=1)
    SceneCLIP(model, tok, cfg).save(root / "clip", dtype=torch.float32)
    (root / "bundle.json").write_text(json.dumps({
        "name": "tiny", "dataset": {"kind": "simnsd", "path": str(folder), "subject": 1, "seed": 0},
        "models": {"clip": str(root / "clip")}}))
    return root


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("MINDEYE_CACHE_DIR", str(tmp_path / "cache"))


def run(args, tiny_bundle, out):
    from mindeye.cli import main
    return main(["train", "--bundle", str(tiny_bundle), "--out", str(out), "--no-use_image_aug", *TINY_MODEL, *args])


def metrics(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_train_hidden_with_prior_logs_and_checkpoints(tiny_bundle, tmp_path):
    assert run(["--model_name", "h", "--num_epochs", "2", "--ckpt_interval", "1"], tiny_bundle, tmp_path) == 0
    d = tmp_path / "h"
    assert {"config.json", "metrics.jsonl", "last.pth", "best.pth"} <= {p.name for p in d.iterdir()}
    rows = metrics(d / "metrics.jsonl")
    steps = [r for r in rows if "loss" in r]
    epochs = [r for r in rows if "val_fwd_top1" in r]
    assert len(epochs) == 2 and steps
    assert all(r["loss_prior"] > 0 for r in steps)
    assert {"val_loss", "val_fwd_top1", "val_bwd_top1", "test_fwd_top1", "test_bwd_top1", "epoch_seconds",
            "samples_per_s"} <= set(epochs[0])
    ck = torch.load(d / "last.pth", weights_only=False)
    assert {"epoch", "model_state_dict", "optimizer_state_dict", "lr_scheduler", "train_losses", "val_losses",
            "lrs"} <= set(ck)
    assert ck["epoch"] == 2
    keys = list(ck["model_state_dict"])
    assert keys[0].startswith("noise_scheduler.") and any(k.startswith("voxel2clip.") for k in keys)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["clip_variant"] == "SceneCLIP" and cfg["data"]["target_shape"] == [65, 128]


def test_killed_run_resumes_where_it_stopped(tiny_bundle, tmp_path):
    # "kill" mid-epoch: stop after 3 steps with a checkpoint written every step
    args = ["--model_name", "r", "--num_epochs", "3", "--no-hidden", "--no-prior", "--ckpt_every_s", "0"]
    assert run([*args, "--max_steps", "3"], tiny_bundle, tmp_path) == 0
    ck = torch.load(tmp_path / "r" / "last.pth", weights_only=False)
    assert ck["global_step"] == 3 and ck["epoch"] == 0 and ck["step_in_epoch"] == 3
    assert run([*args, "--resume_from_ckpt"], tiny_bundle, tmp_path) == 0
    ck = torch.load(tmp_path / "r" / "last.pth", weights_only=False)
    assert ck["epoch"] == 3
    rows = metrics(tmp_path / "r" / "metrics.jsonl")
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == sorted(set(steps)) and steps[:3] == [1, 2, 3]  # no step repeated, none lost


def test_resume_refuses_a_checkpoint_for_another_subject_or_a_corrupt_file(tiny_bundle, tmp_path):
    from mindeye.train import load_checkpoint
    args = ["--model_name", "x", "--num_epochs", "1", "--no-hidden", "--no-prior"]
    assert run(args, tiny_bundle, tmp_path) == 0
    ck = torch.load(tmp_path / "x" / "last.pth", weights_only=False)
    ck["data"]["subject"] = 5
    torch.save(ck, tmp_path / "x" / "last.pth")
    with pytest.raises(DataError, match="subject=5, this run has subject=1"):
        load_checkpoint(tmp_path / "x" / "last.pth", expect={"subject": 1})
    # and through the CLI: resuming that run is refused, exit status 2
    from mindeye.cli import main
    assert main(["train", "--bundle", str(tiny_bundle), "--out", str(tmp_path), "--no-use_image_aug", *TINY_MODEL,
                 *args, "--resume_from_ckpt"]) == 2
    (tmp_path / "x" / "last.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "x" / "last.pth")
    assert main(["train", "--bundle", str(tiny_bundle), "--out", str(tmp_path), "--no-use_image_aug", *TINY_MODEL,
                 "--model_name", "none", "--resume_from_ckpt", "--no-prior"]) == 2


def test_wandb_requested_but_missing_is_a_clear_error(tiny_bundle, tmp_path, monkeypatch):
    import builtins
    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "wandb":
            raise ImportError("no wandb")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", fake)
    from mindeye.train import TrainConfig, train
    with pytest.raises(DataError, match="wandb"):
        train(TrainConfig(wandb_log=True, bundle=str(tiny_bundle), out=str(tmp_path)))


def test_train_help_keeps_the_seed_flags(capsys):
    from mindeye.cli import main
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ["--model_name", "--data_path", "--subj", "--batch_size", "--hidden", "--no-hidden", "--clip_variant",
                 "--wandb_log", "--resume_from_ckpt", "--wandb_project", "--mixup_pct", "--norm_embs",
                 "--use_image_aug", "--num_epochs", "--prior", "--v2c", "--plot_umap", "--lr_scheduler_type",
                 "--ckpt_saving", "--ckpt_interval", "--save_at_end", "--seed", "--max_lr", "--n_samples_save",
                 "--use_projector", "--vd_cache_dir", "--bundle", "--device", "--out"]:
        assert flag in text, flag


def test_train_lowlevel_learns_vae_latents_and_reports_pixel_metrics(tiny_bundle, tmp_path):
    from mindeye.cli import main
    from mindeye.models.autoencoder import build_vae
    torch.manual_seed(0)
    build_vae((16, 16, 32)).save_pretrained(tmp_path / "vae")
    args = ["train-lowlevel", "--bundle", str(tiny_bundle), "--out", str(tmp_path), "--vae_path", str(tmp_path / "vae"),
            "--model_name", "lo", "--num_epochs", "2", "--batch_size", "16", "--hidden_dim", "32", "--n_blocks", "1",
            "--map_channels", "16", "--upsampler_channels", "16", "16", "32", "--log_every", "1"]
    assert main(args) == 0
    rows = metrics(tmp_path / "lo" / "metrics.jsonl")
    ep = [r for r in rows if "val_pixcorr" in r]
    assert len(ep) == 2 and -1 <= ep[-1]["val_pixcorr"] <= 1 and 0 < ep[-1]["val_ssim"] <= 1
    ck = torch.load(tmp_path / "lo" / "last.pth", weights_only=False)
    assert ck["data"]["target_shape"] == [4, 16, 16]
    assert main([*args[:-2], "--use_cont"]) == 2  # no ConvNeXt here: a clear error, not a silent skip


def test_exported_model_loads_and_refuses_other_data(tiny_bundle, tmp_path):
    from mindeye.checkpoints import build_from_config, export_run, load_model
    assert run(["--model_name", "e", "--num_epochs", "1"], tiny_bundle, tmp_path) == 0
    meta = export_run(tmp_path / "e", tmp_path / "ship" / "hidden")
    model, meta2 = load_model(tmp_path / "ship" / "hidden", expect={"subject": 1})
    assert meta2["data"]["fingerprint"] == meta["data"]["fingerprint"]
    ck = torch.load(tmp_path / "e" / "best.pth", weights_only=False)
    v = torch.randn(2, meta["data"]["n_voxels"])
    ref = build_from_config(ck["config"], ck["data"])
    ref.load_state_dict(ck["model_state_dict"])
    with torch.no_grad():  # fp16 shipping costs little
        a, b = model.eval().voxel2clip(v)[1], ref.eval().voxel2clip(v)[1]
    assert torch.allclose(a, b, atol=2e-2 * b.abs().max().item())
    with pytest.raises(DataError, match="trained on n_voxels"):
        load_model(tmp_path / "ship" / "hidden", expect={"n_voxels": 15724})


def test_demo_preset_fills_defaults_but_not_explicit_flags():
    from mindeye.cli import parse_train
    cfg = parse_train(["--preset", "demo", "--num_epochs", "3"])
    assert cfg.num_epochs == 3  # explicit flag wins
    assert cfg.hidden is False and cfg.prior is False and cfg.hidden_dim == 512 and cfg.log_every == 5
    # a flag given at its default value is still given: the preset does not override it
    both = parse_train(["--preset", "demo", "--hidden", "--hidden_dim", "4096", "--prior"])
    assert both.hidden is True and both.hidden_dim == 4096 and both.prior is True and both.batch_size == 64
    plain = parse_train([])
    assert plain.num_epochs == 240 and plain.hidden and plain.prior and plain.max_lr == 3e-4  # V1 defaults


def test_train_flag_defaults_are_written_once_in_train_config():
    """The CLI's defaults are TrainConfig's (no second copy to drift), and --help does not import torch."""
    import dataclasses
    import subprocess
    import sys

    from mindeye.cli import build_parser
    from mindeye.train_config import TrainConfig
    parsed = vars(build_parser().parse_args(["train"]))
    assert {f.name: parsed[f.name] for f in dataclasses.fields(TrainConfig)} == dataclasses.asdict(TrainConfig())
    code = "import sys; from mindeye.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
