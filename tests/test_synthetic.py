"""Synthetic trials (`train --synthetic_trials`): the noise they carry, the encoding model that predicts them, and a
run that trains on them through the CLI without letting the test set or the val split in."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mindeye.data.errors import DataError
from mindeye.training.synthetic import SYNTHETIC_ID_BASE, SyntheticTrials, fit_encoding, residual_noise
from tests.test_train import TINY_MODEL, cache_in_tmp, run, tiny_bundle  # noqa: F401  (fixtures)


def test_residual_noise_has_one_trials_sd_whatever_the_number_of_repetitions(rng):
    sd, n_vox = 0.7, 200
    images = np.repeat(np.arange(3000), [2, 3, 3] * 1000)  # images seen twice or three times
    signal = rng.standard_normal((3000, n_vox)).astype(np.float32)
    betas = signal[images] + sd * rng.standard_normal((len(images), n_vox)).astype(np.float32)
    res = residual_noise(betas, images).astype(np.float32)
    assert res.shape == betas.shape
    np.testing.assert_allclose(res.std(), sd, rtol=0.02)  # the sqrt(n / (n - 1)) correction, not the raw spread
    with pytest.raises(DataError, match="repeated"):
        residual_noise(betas[:5], np.arange(5))


def test_encoding_model_recovers_a_linear_response_and_picks_alpha_on_val(rng):
    n, f, v = 250, 300, 30  # more features than images: the penalty matters
    w = rng.standard_normal((f, v)).astype(np.float32)
    x = torch.from_numpy(rng.standard_normal((n + 400, f)).astype(np.float32))
    y = x @ torch.from_numpy(w) + 15.0 * torch.randn(n + 400, v, generator=torch.Generator().manual_seed(0))
    alphas = (1e-3, 1e1, 1e2, 1e3, 1e4, 1e7)
    enc = fit_encoding(x[:n], y[:n], x[n:n + 200], y[n:n + 200], alphas=alphas)
    each = {a: fit_encoding(x[:n], y[:n], x[n:n + 200], y[n:n + 200], alphas=(a,)).val_r for a in alphas}
    assert enc.alpha == max(each, key=each.get) and enc.val_r == each[enc.alpha]  # the val split's best
    assert enc.alpha not in (1e-3, 1e7)  # neither the near-least-squares fit nor the one that predicts the mean
    pred, true = enc.predict(x[n + 200:]), x[n + 200:] @ torch.from_numpy(w)
    r = torch.stack([torch.corrcoef(torch.stack([pred[:, i], true[:, i]]))[0, 1] for i in range(v)])
    assert r.median() > 0.5  # held-out images: the noise-free response, predicted


def test_a_feature_groups_weight_survives_standardising(rng):
    """Weights apply after each feature is standardised: a group weighted up pulls the fit toward itself (the
    old FINAL_WEIGHT multiplied features before standardising, which undid it)."""
    n = 300
    useful = torch.from_numpy(rng.standard_normal((n + 200, 5)).astype(np.float32))
    clutter = torch.from_numpy(rng.standard_normal((n + 200, 400)).astype(np.float32))
    y = useful @ torch.ones(5, 3) + 0.5 * torch.randn(n + 200, 3, generator=torch.Generator().manual_seed(2))
    x = torch.cat([clutter, useful], 1)
    r = {}
    for w_useful in (1.0, 8.0):
        w = torch.ones(405)
        w[400:] = w_useful
        enc = fit_encoding(x[:n], y[:n], x[n:], y[n:], alphas=(1e3,), weights=w)
        r[w_useful] = enc.val_r
        scaled = fit_encoding(x[:n] * 100, y[:n], x[n:] * 100, y[n:], alphas=(1e3,), weights=w)
        assert abs(scaled.val_r - enc.val_r) < 1e-4  # a feature's units never matter, only its group's weight
    assert r[8.0] > r[1.0] + 0.05


def test_low_level_features_read_luminance_contrast_and_colour_where_they_are():
    from mindeye.models.encoding import LOW_LEVEL_GRID, features_of, group_weights, low_level_features
    g = LOW_LEVEL_GRID
    x = torch.full((3, 3, 48, 48), 0.5)
    x[1, :, :24, :24] = 1.0  # a bright top-left quadrant
    x[2, 0, 24:, 24:], x[2, 1, 24:, 24:] = 0.9, 0.1  # a red bottom-right quadrant
    f = low_level_features(x).reshape(3, 4, g, g)  # luminance, contrast, red-green, blue-yellow
    assert f[1, 0, 0, 0] > f[0, 0, 0, 0] and torch.allclose(f[1, 0, -1, -1], f[0, 0, -1, -1])
    assert f[0, 1].abs().max() < 1e-6 and f[1, 1].max() > 0.1  # contrast only at the bright quadrant's edge
    assert f[2, 2, -1, -1] > 0.7 and f[2, 2, 0, 0].abs() < 1e-6  # red-green only where the red is
    feats = features_of(torch.randn(3, 5, 8), torch.randn(3, 8), x)
    assert feats.shape == (3, 5 * 8 + 8 + 4 * g * g)
    w = group_weights(feats.shape[1])
    assert (w[:48] == 1).all() and (w[48:] == 4).all()
    assert features_of(torch.randn(3, 5, 8), torch.randn(3, 8), None).shape == (3, 48)  # --synthetic_features clip
    assert (group_weights(48, low_level=False) == 1).all()


def test_drawn_trials_add_the_mean_noise_of_one_to_three_real_trials(rng):
    syn = SyntheticTrials(betas=torch.zeros(10, 50, dtype=torch.float16), targets=torch.ones(10, 1, 8).half(),
                          residuals=torch.randn(5000, 50, generator=torch.Generator().manual_seed(1)).half(), info={})
    vox, t = syn.draw(4000, rng)
    assert vox.shape == (4000, 50) and t.shape == (4000, 1, 8)
    # mean of k ~ U{1,2,3} unit-variance vectors: variance E[1/k] = (1 + 1/2 + 1/3) / 3
    np.testing.assert_allclose(vox.var().item(), (1 + 1 / 2 + 1 / 3) / 3, rtol=0.05)


def test_train_with_synthetic_trials_through_the_cli(tiny_bundle, tmp_path):
    assert run(["--model_name", "s", "--num_epochs", "1", "--no-hidden", "--no-prior", "--synthetic_trials", "48",
                "--synthetic_frac", "0.5"], tiny_bundle, tmp_path) == 0
    ck = torch.load(tmp_path / "s" / "last.pth", weights_only=False)
    info = ck["data"]["synthetic"]
    assert info["n"] == 48 and info["per_real_trial"] == 0.5 and str(SYNTHETIC_ID_BASE) in info["source"]
    assert info["encoding_alpha"] > 0 and -1 <= info["encoding_val_median_r"] <= 1
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    assert config["synthetic_trials"] == 48
    assert info["encoding_features"].startswith("v2: CLIP + low-level")  # the default
    assert run(["--model_name", "c", "--num_epochs", "1", "--no-hidden", "--no-prior", "--synthetic_trials", "48",
                "--synthetic_features", "clip"], tiny_bundle, tmp_path) == 0
    assert torch.load(tmp_path / "c" / "last.pth", weights_only=False)["data"]["synthetic"]["encoding_features"] \
        == "v2: CLIP only"
    epochs = [json.loads(x) for x in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines() if "val_loss" in x]
    assert len(epochs) == 1 and "test_fwd_top1" in epochs[0]


def test_train_lowlevel_labels_synthetic_trials_with_the_unseen_images_vae_latents(tiny_sim, tiny_bundle, tmp_path):
    """`train-lowlevel --synthetic_trials`: the unseen images' targets are their VAE latents (what the low-level
    model learns), not CLIP embeddings, and the set is cached apart from a CLIP run's set of the same images."""
    from mindeye.cli import main
    from mindeye.data.canonical import load_subject
    from mindeye.data.stream import to_model_input
    from mindeye.models.autoencoder import build_vae, encode
    from mindeye.training.synthetic import unseen_images
    torch.manual_seed(0)
    vae = build_vae((16, 16, 32))
    vae.save_pretrained(tmp_path / "vae")
    args = ["train-lowlevel", "--bundle", str(tiny_bundle), "--out", str(tmp_path), "--vae_path", str(tmp_path / "vae"),
            "--model_name", "lo", "--num_epochs", "1", "--batch_size", "16", "--hidden_dim", "32", "--n_blocks", "1",
            "--map_channels", "16", "--upsampler_channels", "16", "16", "32", "--synthetic_trials", "24"]
    assert main(args) == 0
    info = torch.load(tmp_path / "lo" / "last.pth", weights_only=False)["data"]["synthetic"]
    assert info["n"] == 24 and info["per_real_trial"] == 1.0
    sets = list((tmp_path / "cache" / "synthetic").glob("synthetic_*.pt"))
    assert len(sets) == 1
    targets = torch.load(sets[0], weights_only=True)["targets"]
    assert targets.shape == (24, 4, 16, 16)
    images = unseen_images(load_subject(tiny_sim[0], 1), 24, 0, 24, None, seed=0)
    with torch.no_grad():
        want = encode(vae.eval(), to_model_input(images, vae.config.sample_size))
    torch.testing.assert_close(targets.float(), want, atol=1e-2, rtol=1e-2)  # stored as float16
    assert run(["--model_name", "c", "--num_epochs", "1", "--no-prior", "--synthetic_trials", "24"], tiny_bundle,
               tmp_path) == 0
    assert len(list((tmp_path / "cache" / "synthetic").glob("synthetic_*.pt"))) == 2  # the CLIP run made its own


def test_synthetic_scenes_never_repeat_a_test_or_train_image(tiny_sim):
    from mindeye.data.canonical import load_subject
    from mindeye.training.synthetic import unseen_images
    folder, _ = tiny_sim
    s = load_subject(folder, 1)
    assert SYNTHETIC_ID_BASE > int(s.image_id.max())
    imgs = unseen_images(s, 4, 0, 4, None, seed=0)
    seen = s.images(np.unique(s.image_id))
    assert imgs.shape[1:] == seen.shape[1:]
    assert not any((imgs[i] == seen).all(axis=(1, 2, 3)).any() for i in range(len(imgs)))


def test_synthetic_trials_on_nsd_need_a_picture_folder(tmp_path):
    from mindeye.training.synthetic import unseen_images

    class Fake:
        manifest = {"dataset": "NSD"}

        image_store = type("S", (), {"image_size": 32})()

    with pytest.raises(DataError, match="--synthetic_images"):
        unseen_images(Fake(), 4, 0, 4, None, seed=0)
    with pytest.raises(DataError, match="not a folder"):
        unseen_images(Fake(), 4, 0, 4, str(tmp_path / "nope"), seed=0)
    from PIL import Image
    (tmp_path / "pics").mkdir()
    for i in range(3):
        Image.new("RGB", (40, 30), (i * 60, 0, 0)).save(tmp_path / "pics" / f"{i}.png")
    with pytest.raises(DataError, match="3 pictures"):
        unseen_images(Fake(), 4, 0, 4, str(tmp_path / "pics"), seed=0)
    got = unseen_images(Fake(), 3, 1, 2, str(tmp_path / "pics"), seed=0)
    assert got.shape == (2, 32, 32, 3) and got[0, 0, 0, 0] == 60
    (tmp_path / "pics" / "3.png").write_bytes(b"not a picture")
    with pytest.raises(DataError, match=r"3.png: not a readable image"):
        unseen_images(Fake(), 4, 0, 4, str(tmp_path / "pics"), seed=0)


def test_synthetic_frac_must_be_positive(tiny_bundle, tmp_path, capsys):
    assert run(["--model_name", "z", "--num_epochs", "1", "--no-hidden", "--no-prior", "--synthetic_trials", "8",
                "--synthetic_frac", "0"], tiny_bundle, tmp_path) == 2
    assert "--synthetic_frac should be > 0 with --synthetic_trials, found 0.0" in capsys.readouterr().err


def test_build_demo_final_alone_starts_from_the_bundles_hidden_model_and_uses_synthetic_trials(tiny_stack, tmp_path):
    """`build-demo --stages mindeye --mindeye_parts final` on a bundle that ships the hidden model, with no
    hidden run in this build's work folder: the final model's trunk comes from the shipped hidden model, and
    the recipe's synthetic trials are used (a tiny build: TINY_SYNTHETIC of them)."""
    import shutil

    from mindeye.build_demo import DEMO_MINDEYE, TINY_SYNTHETIC
    from mindeye.cli import main
    from tests.conftest import cache_dir
    out = tmp_path / "demo"
    shutil.copytree(tiny_stack, out)
    before = (out / "mindeye" / "final.safetensors").read_bytes()
    with cache_dir(tmp_path / "cache"):
        assert main(["build-demo", "--tiny", "--out", str(out), "--work", str(tmp_path / "work"), "--workers", "0",
                     "--stages", "mindeye", "--mindeye_parts", "final"]) == 0
    meta = json.loads((out / "mindeye" / "final.json").read_text())
    assert meta["data"]["init_backbone"]["from"].endswith("mindeye/hidden")
    recipe = DEMO_MINDEYE["final"][-1]
    assert meta["data"]["synthetic"]["n"] == TINY_SYNTHETIC
    assert meta["config"]["synthetic_frac"] == recipe["synthetic_frac"] and recipe["synthetic_frac"] > 0
    assert meta["data"]["init_backbone"]["loaded"] == {"trunk": "trunk", "trunk_projector": "trunk and projector"}[
        recipe["init_scope"]]
    assert meta["data"]["synthetic"]["encoding_features"].startswith("v2: CLIP + low-level")
    assert (out / "mindeye" / "final.safetensors").read_bytes() != before
    assert not (tmp_path / "work" / "train_logs" / "demo_hidden_v2c").exists()  # the hidden model was not retrained


def test_build_demo_trains_the_low_level_model_with_the_recipes_synthetic_trials(tiny_stack):
    """The low-level recipe (build_demo.DEMO_LOWLEVEL) asks for synthetic trials; a tiny build uses TINY_SYNTHETIC
    of them, labelled with VAE latents (the shipped model's data records the set)."""
    from mindeye.build_demo import DEMO_LOWLEVEL, TINY_SYNTHETIC
    meta = json.loads((tiny_stack / "mindeye" / "lowlevel.json").read_text())
    assert DEMO_LOWLEVEL["synthetic_trials"] > 0
    assert meta["data"]["synthetic"]["n"] == TINY_SYNTHETIC
    assert meta["data"]["synthetic"]["per_real_trial"] == DEMO_LOWLEVEL["synthetic_frac"]
    assert meta["data"]["target_shape"] == [4, 16, 16]
