"""The demo vision stack (SceneCLIP, VAE, unCLIP decoder, judge) and the real-model paths, on toy sizes."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from mindeye.data import scenes as S
from mindeye.data.errors import DataError
from mindeye.data.stream import render_batch, to_model_input
from mindeye.metrics import n_way_top1, pixcorr, ssim, top1_identification, two_way_identification
from mindeye.models.scene_clip import SceneCLIP, WordTokenizer, build_model, clip_loss, hard_negative

TINY_CLIP = {"vision_layers": 1, "text_layers": 1}


@pytest.fixture(scope="module")
def images():
    _, img, caps, lab = render_batch(range(6))
    return img, caps, lab


def tiny_clip():
    tok = WordTokenizer.for_scenes()
    model, cfg = build_model(tok.vocab_size, **TINY_CLIP)
    return SceneCLIP(model, tok, cfg).eval()


# ---------------------------------------------------------------- tokenizer and hard negatives

def test_word_tokenizer_covers_every_caption_word_and_ends_with_the_largest_id():
    tok = WordTokenizer.for_scenes()
    _, _, caps, _ = render_batch(range(200))
    ids = tok(caps)
    assert ids.shape == (200, tok.context_length)
    assert not (ids == 1).any(), "a caption word is missing from the vocabulary"
    assert (ids.argmax(1) == (ids != 0).sum(1) - 1).all(), "<eot> must be the largest id (argmax pooling)"
    assert tok("a blue zebra")[0, 3].item() == 1  # unknown word -> <unk>
    assert tok(" ".join(["a"] * 100))[0, -1].item() == tok.eot  # truncated, still terminated


def test_hard_negative_changes_one_thing_and_keeps_the_background():
    rng = random.Random(0)
    for i in range(100):
        scene = S.sample_scene(0, i)
        neg = hard_negative(scene, rng)
        assert neg != scene.caption
        assert neg.split()[-1] == scene.caption.split()[-1]


def test_clip_loss_hand_computed():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pos = img.clone()
    neg = torch.tensor([[0.6, 0.8], [0.8, 0.6]])
    scale = torch.tensor(0.0)  # exp(0) = 1
    loss, acc = clip_loss(img, pos, neg, scale)
    # image 0 vs texts [pos0, pos1, neg0, neg1]: logits [1, 0, .6, .8]; text 0 vs images: [1, 0]
    i2t = -1 + np.log(np.exp(1) + 1 + np.exp(.6) + np.exp(.8))
    t2i = -1 + np.log(np.exp(1) + 1)
    assert loss.item() == pytest.approx(0.5 * (i2t + t2i), abs=1e-5)
    assert acc.item() == 1.0


# ---------------------------------------------------------------- SceneCLIP

def test_scene_clip_targets_have_mindeye_shapes(images):
    clip = tiny_clip()
    with torch.no_grad():
        h, f = clip.hidden(images[0]), clip.final(images[0])
    assert h.shape == (6, *clip.hidden_shape) == (6, 65, 128)
    assert torch.allclose(h[:, 0].norm(dim=-1), torch.ones(6), atol=1e-5)  # normalised by the CLS norm
    assert torch.allclose(f.norm(dim=-1), torch.ones(6), atol=1e-5)
    assert torch.allclose(torch.nn.functional.normalize(h[:, 0], dim=-1), f, atol=1e-5)  # CLS == final


def test_scene_clip_save_load_roundtrip(tmp_path, images):
    clip = tiny_clip()
    clip.save(tmp_path / "clip", dtype=torch.float32)
    again = SceneCLIP.load(tmp_path / "clip")
    with torch.no_grad():
        assert torch.allclose(clip.hidden(images[0]), again.hidden(images[0]), atol=1e-5)
        assert torch.allclose(clip.encode_text(images[1]), again.encode_text(images[1]), atol=1e-5)
    with pytest.raises(DataError, match="missing open_clip_config.json"):
        SceneCLIP.load(tmp_path)


def test_open_clip_registry_knows_the_scene_clip_config():
    import open_clip
    from mindeye.models.scene_clip import SCENE_CLIP_MODEL, register_config
    register_config()
    assert SCENE_CLIP_MODEL in open_clip.list_models()


# ---------------------------------------------------------------- decoder: the real VD path on a toy VD

def _tiny_vd(folder, cross_dim=32, with_encoder=True):
    """A Versatile-Diffusion-shaped folder with random weights: image_unet/, vae/, scheduler/, image_encoder/."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    torch.manual_seed(0)
    UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                         block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                         up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=cross_dim,
                         attention_head_dim=8, norm_num_groups=32).save_pretrained(folder / "image_unet")
    AutoencoderKL(block_out_channels=(32, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=32,
                  sample_size=16).save_pretrained(folder / "vae")
    PNDMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                  skip_prk_steps=True).save_pretrained(folder / "scheduler")
    if with_encoder:
        CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
            patch_size=8, projection_dim=cross_dim)).save_pretrained(folder / "image_encoder")
    return folder


def test_tiny_versatile_diffusion_runs_the_real_decoding_path(tmp_path, images):
    """HF CLIP vision hidden states (VD normalisation) -> image-variation UNet -> VAE, with and without img2img."""
    from mindeye.models.decoder import UnclipDecoder
    from mindeye.models.embedders import HFClipEmbedder
    # the layout of a Hugging Face cache, as --vd_cache_dir points at
    snap = tmp_path / "models--shi-labs--versatile-diffusion" / "snapshots" / "0123abc"
    _tiny_vd(snap)
    clip = HFClipEmbedder.from_pretrained(snap / "image_encoder")
    dec = UnclipDecoder.from_pretrained(tmp_path)
    hidden = clip.hidden(images[0][:2])
    assert hidden.shape == (2, 17, 32) == (2, *clip.hidden_shape)
    out = dec.decode(hidden, steps=3, guidance_scale=2.0, seed=1)
    assert out.shape == (2, 3, 16, 16) and 0 <= out.min() and out.max() <= 1
    again = dec.decode(hidden, steps=3, guidance_scale=2.0, seed=1)
    assert torch.equal(out, again)  # seeded
    init = to_model_input(images[0][:2], 32)
    img2img = dec.decode(hidden, steps=4, init_images=init, img2img_strength=0.5, seed=1)
    assert img2img.shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"\[B, T, 32\]"):
        dec.decode(torch.zeros(2, 17, 64))


def test_missing_vd_weights_name_what_was_expected(tmp_path):
    from mindeye.models.decoder import UnclipDecoder
    from mindeye.models.embedders import HFClipEmbedder
    with pytest.raises(DataError, match="image_unet"):
        UnclipDecoder.from_pretrained(tmp_path)
    with pytest.raises(DataError, match="CLIPVisionModelWithProjection"):
        HFClipEmbedder.from_pretrained(tmp_path / "nope")


def test_decoder_save_load_roundtrip_in_vd_layout(tmp_path):
    from mindeye.models import autoencoder as AE
    from mindeye.models.decoder import UnclipDecoder, build_unet, training_scheduler
    from diffusers import UniPCMultistepScheduler
    torch.manual_seed(0)
    vae = AE.build_vae((16, 16, 32))
    dec = UnclipDecoder(build_unet(16, 16, 4, (32, 32, 64)), vae,
                        UniPCMultistepScheduler.from_config(training_scheduler().config))
    dec.save_pretrained(tmp_path / "decoder", fp16=False)
    assert {p.name for p in (tmp_path / "decoder").iterdir()} == {"image_unet", "vae", "scheduler", "decoder_config.json"}
    again = UnclipDecoder.from_pretrained(tmp_path / "decoder")
    assert again.condition_scale == 1.0 and not again.uses_token_grid
    cond = torch.randn(1, 5, 16)
    assert torch.allclose(dec.decode(cond, steps=2), again.decode(cond, steps=2), atol=1e-5)


def test_vae_decoder_finetune_moves_the_decoder_and_keeps_the_latent_space():
    from mindeye.data.stream import SceneBank
    from mindeye.models import autoencoder as AE
    torch.manual_seed(0)
    vae = AE.build_vae((16, 16, 32)).eval()
    _, img, _, _ = render_batch(range(8))
    bank = SceneBank((to_model_input(img) * 255).round().byte().permute(0, 2, 3, 1).numpy(), first_id=0, seed=0)
    sha = AE.encoder_sha256(vae)
    dec_before = {k: v.clone() for k, v in vae.decoder.state_dict().items()}
    logs = []
    vae, meta = AE.finetune_decoder(vae, AE.VAEDecoderFinetuneConfig(steps=2, batch_size=4, log_every=1),
                                    log=logs.append, workers=0, bank=bank)
    assert AE.encoder_sha256(vae) == sha == meta["encoder_sha256"]
    assert any(not torch.equal(dec_before[k], v) for k, v in vae.decoder.state_dict().items())
    assert [json.loads(x)["step"] for x in logs] == [1, 2] and "chroma_l1" in json.loads(logs[-1])
    # the hash names the encoder: change one encoder weight, or the scaling factor, and it changes
    with torch.no_grad():
        vae.encoder.conv_in.bias[0] += 1e-3
    assert AE.encoder_sha256(vae) != sha


def test_chroma_l1_sees_hue_not_brightness():
    from mindeye.models.autoencoder import chroma_l1
    x = torch.full((1, 3, 4, 4), 0.5)
    assert chroma_l1(x + 0.1, x).item() == pytest.approx(0.0, abs=1e-6)  # grey stays grey: no chroma error
    purple, blue = torch.tensor([150, 50, 200.]) / 255, torch.tensor([40, 70, 220.]) / 255
    err = chroma_l1(purple.view(1, 3, 1, 1), blue.view(1, 3, 1, 1)).item()
    cb = abs(-0.168736 * (110 / 255) - 0.331264 * (-20 / 255) + 0.5 * (-20 / 255))
    cr = abs(0.5 * (110 / 255) - 0.418688 * (-20 / 255) - 0.081312 * (-20 / 255))
    assert err == pytest.approx((cb + cr) / 2, rel=1e-5)


def test_token_grid_puts_each_patch_token_at_its_image_position():
    from mindeye.models.decoder import token_grid
    g, d = 3, 5
    hidden = torch.zeros(2, 1 + g * g, d)
    hidden[:, 0] = -1.0  # CLS is not part of the grid
    for r in range(g):
        for c in range(g):
            hidden[:, 1 + r * g + c] = 10 * r + c  # raster order, as the ViT emits its patches
    grid = token_grid(hidden, g)
    assert grid.shape == (2, d, g, g)
    assert grid[0, 0, 2, 1] == 21 and grid[1, 4, 0, 2] == 2 and (grid >= 0).all()
    assert token_grid(hidden, 2 * g).shape == (2, d, 6, 6)
    with pytest.raises(ValueError, match="square patch grid; found 9 tokens"):
        token_grid(hidden[:, :9], g)


def test_token_grid_decoder_trains_saves_loads_and_decodes(tmp_path):
    """The demo UNet takes the latents + the patch-token grid (in_channels = 4 + D), trained on a bank whose
    cached batches pair each image's CLIP hidden states with its own VAE latent."""
    from mindeye.data.stream import SceneBank
    from mindeye.models import autoencoder as AE
    from mindeye.models.decoder import DecoderTrainConfig, UnclipDecoder, _bank_batches, train_decoder
    torch.manual_seed(0)
    clip, vae = tiny_clip(), AE.build_vae((16, 16, 32)).eval()
    with torch.no_grad():  # a near-deterministic posterior (std e^-10), so a sampled latent names its image
        vae.quant_conv.weight[4:] = 0
        vae.quant_conv.bias[4:] = -20.0
    _, img, _, _ = render_batch(range(8))
    bank = SceneBank((to_model_input(img) * 255).round().byte().permute(0, 2, 3, 1).numpy(), first_id=0, seed=0)
    # pairing: every cached condition belongs to the image whose latent comes with it
    cfg = DecoderTrainConfig(steps=3, batch_size=4, block_out_channels=(32, 32, 64), log_every=1)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        hid_all = clip.hidden(to_model_input(bank.images))
        mean_all = vae.encode(to_model_input(bank.images) * 2 - 1).latent_dist.mean * vae.config.scaling_factor
    for cond, z in _bank_batches(bank, clip, vae, cfg, gen):
        dist = ((z[:, None] - mean_all[None]) ** 2).mean((2, 3, 4))  # [batch, bank]
        rows = dist.argmin(1)
        assert (dist.min(1).values < 1e-6).all() and (dist.sort(1).values[:, 1] > 1e-4).all()
        assert torch.allclose(cond, hid_all[rows], atol=2e-3)  # the condition of that same image (fp16 cache)
    dec, _ = train_decoder(cfg, clip, vae, log=lambda s: None, bank=bank)
    assert dec.uses_token_grid and dec.unet.config.in_channels == 4 + clip.embed_dim
    assert dec.latent_shape == (4, 16, 16)
    dec.save_pretrained(tmp_path / "decoder", fp16=False)
    again = UnclipDecoder.from_pretrained(tmp_path / "decoder")
    assert again.condition_scale == pytest.approx(clip.embed_dim ** 0.5) == dec.condition_scale
    hidden = clip.hidden(to_model_input(img[:2]))
    out = again.decode(hidden, steps=2, seed=3)
    assert out.shape == (2, 3, 64, 64) and torch.allclose(out, dec.decode(hidden, steps=2, seed=3), atol=1e-5)
    img2img = again.decode(hidden, steps=2, init_images=to_model_input(img[:2]), img2img_strength=0.5)
    assert img2img.shape == (2, 3, 64, 64)
    from mindeye.models.decoder import unet_input
    with pytest.raises(ValueError, match="4 latent \\+ 128 token-grid channels, but the hidden states have 32"):
        unet_input(again.unet, torch.zeros(1, 4, 16, 16), torch.zeros(1, 65, 32))


def test_decoder_finetune_starts_from_init_trains_on_streamed_scenes_and_leaves_init_untouched():
    """``init`` fine-tunes a copy of a decoder's UNet; freshly rendered scenes (no bank) train it (the batch stream
    computes its encodings without grad but must not switch grad off for the step); ``cond_noise`` changes what
    the UNet sees, so the same seed trains different weights with and without it."""
    from mindeye.data.stream import SceneBank
    from mindeye.models import autoencoder as AE
    from mindeye.models.decoder import DecoderTrainConfig, train_decoder
    torch.manual_seed(0)
    clip, vae = tiny_clip(), AE.build_vae((16, 16, 32)).eval()
    _, img, _, _ = render_batch(range(4))
    bank = SceneBank((to_model_input(img) * 255).round().byte().permute(0, 2, 3, 1).numpy(), first_id=0, seed=0)
    base, _ = train_decoder(DecoderTrainConfig(steps=1, batch_size=2, block_out_channels=(32, 32, 64)), clip, vae,
                            log=lambda s: None, bank=bank)
    before = {k: v.clone() for k, v in base.unet.state_dict().items()}

    def finetune(noise):
        cfg = DecoderTrainConfig(steps=2, batch_size=2, lr=1e-3, cond_noise=noise, log_every=1)
        dec, meta = train_decoder(cfg, clip, vae, log=lambda s: None, workers=0, init=base)
        assert meta["train"]["cond_noise"] == noise
        return dec.unet.state_dict()

    clean, noised = finetune(0.0), finetune(0.5)
    assert all(torch.equal(before[k], v) for k, v in base.unet.state_dict().items()), "init was modified"
    assert any(not torch.equal(before[k], v) for k, v in clean.items()), "the fine-tune did not train"
    assert any(not torch.equal(clean[k], v) for k, v in noised.items()), "cond_noise had no effect"



def test_condition_levels_are_uniform_up_to_cond_noise_with_the_clean_share_exactly_zero():
    from mindeye.models.decoder import DecoderTrainConfig, condition_levels
    g = torch.Generator().manual_seed(0)
    lv = condition_levels(20_000, DecoderTrainConfig(cond_noise=0.1, cond_clean_frac=0.5), g)
    assert abs((lv == 0).float().mean().item() - 0.5) < 0.02
    noised = lv[lv > 0]
    assert noised.max() <= 0.1 and abs(noised.mean().item() - 0.05) < 0.002  # U(0, 0.1)
    assert (condition_levels(1000, DecoderTrainConfig(cond_noise=0.1), g) > 0).all()  # no clean share by default


def test_level_input_decoder_is_told_the_noise_level_and_keeps_it_across_save_load(tmp_path):
    """``level_input``: the UNet gets each sample's conditioning noise level through a class embedding, the
    level's mapping (1000 / cond_noise) is saved beside the weights, and at sampling time the level changes what
    is drawn; a UNet without the input draws the same picture whatever level it is told, and a level input
    without conditioning noise is refused."""
    from mindeye.data.stream import SceneBank
    from mindeye.models import autoencoder as AE
    from mindeye.models.decoder import DecoderTrainConfig, UnclipDecoder, train_decoder
    torch.manual_seed(0)
    clip, vae = tiny_clip(), AE.build_vae((16, 16, 32)).eval()
    _, img, _, _ = render_batch(range(4))
    bank = SceneBank((to_model_input(img) * 255).round().byte().permute(0, 2, 3, 1).numpy(), first_id=0, seed=0)
    small = dict(steps=2, batch_size=2, block_out_channels=(32, 32, 64), log_every=1)
    with pytest.raises(ValueError, match="level_input needs conditioning noise"):
        train_decoder(DecoderTrainConfig(level_input=True, **small), clip, vae, log=lambda s: None, bank=bank)
    dec, meta = train_decoder(DecoderTrainConfig(cond_noise=0.1, level_input=True, **small), clip, vae,
                              log=lambda s: None, bank=bank)
    assert dec.takes_noise_level and meta["train"]["level_input"]
    assert dec.noise_level_scale == pytest.approx(1000 / 0.1)
    with torch.no_grad():  # an untrained class embedding starts near zero: make the level's effect visible
        for p in dec.unet.class_embedding.parameters():
            p.normal_(0, 1)
    dec.save_pretrained(tmp_path / "decoder", fp16=False)
    again = UnclipDecoder.from_pretrained(tmp_path / "decoder")
    assert again.noise_level_scale == pytest.approx(1000 / 0.1)
    hidden = clip.hidden(to_model_input(img[:2]))
    exact, off = again.decode(hidden, steps=2, seed=1), again.decode(hidden, steps=2, seed=1, noise_level=0.06)
    assert not torch.allclose(exact, off, atol=1e-4), "the noise level did not reach the UNet"
    assert torch.allclose(off, dec.decode(hidden, steps=2, seed=1, noise_level=0.06), atol=1e-5)
    with pytest.raises(ValueError, match="RMS error >= 0"):
        again.decode(hidden, steps=2, noise_level=-1.0)
    from mindeye.data.errors import DataError
    with pytest.raises(DataError, match="takes a conditioning noise level .* no noise_level_scale"):
        UnclipDecoder(again.unet, again.vae, again.scheduler)  # e.g. a folder whose decoder_config.json lost it
    plain, _ = train_decoder(DecoderTrainConfig(cond_noise=0.1, **small), clip, vae, log=lambda s: None, bank=bank)
    assert not plain.takes_noise_level and plain.noise_level_scale is None
    assert torch.equal(plain.decode(hidden, steps=2, seed=1), plain.decode(hidden, steps=2, seed=1, noise_level=0.06))
    with pytest.raises(ValueError, match="without a noise-level input"):
        train_decoder(DecoderTrainConfig(cond_noise=0.1, level_input=True, **small), clip, vae,
                      log=lambda s: None, init=plain, bank=bank)

# ---------------------------------------------------------------- judge

def test_judge_predicts_labels_in_the_scene_format_and_scores_perfect_predictions(images, tmp_path):
    from mindeye.models.judge import SceneJudge, judge_loss, judge_scores
    judge = SceneJudge(width=8)
    pred = judge.predict(images[0])
    lab = images[2]
    assert set(pred) == set(lab) - {"size"}  # the judge names shape, colour, place; not size
    for k in pred:
        assert pred[k].shape == lab[k].shape, k
    assert all(v == 1.0 for v in judge_scores(lab, lab).values())
    x = to_model_input(images[0])
    loss = judge_loss(judge(x), {k: torch.as_tensor(v) for k, v in lab.items()})
    assert torch.isfinite(loss)
    judge.save(tmp_path / "judge", {"width": 8})
    assert SceneJudge.load(tmp_path / "judge").predict(images[0])["shape"].shape == lab["shape"].shape


# ---------------------------------------------------------------- metrics

def test_metrics_on_hand_built_cases():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 16, 16, generator=g)
    assert pixcorr(x, x) == pytest.approx(1.0)
    assert pixcorr(1 - x, x) == pytest.approx(-1.0)
    assert ssim(x, x) == pytest.approx(1.0)
    # 2-way: recon 0 correlates best with real 0; recon 1 is closer to real 0 than to real 1
    real = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
    recon = torch.tensor([[1.0, 0, 0, 0], [1.0, 0.5, 0, 0], [0, 0, 1.0, 0]])
    # recon 1: corr with real 1 = 0.3015... < corr with real 0 (0.8528), > corr with real 2 (-0.3015) -> 1/2
    assert two_way_identification(recon, real) == pytest.approx((1 + 0.5 + 1) / 3)
    assert top1_identification(recon, real) == pytest.approx(2 / 3)
    fwd, bwd = n_way_top1(real, real, n=3, draws=2)
    assert fwd == bwd == 1.0


# ---------------------------------------------------------------- build-demo orchestration

def test_build_demo_tiny_writes_a_loadable_bundle(tmp_path, capsys):
    from mindeye.cli import main
    from mindeye.models.decoder import UnclipDecoder
    from mindeye.models.judge import SceneJudge
    from mindeye.models import autoencoder as AE
    out, work = tmp_path / "demo", tmp_path / "work"
    build = ["build-demo", "--tiny", "--out", str(out), "--work", str(work), "--workers", "0", "--device", "cpu",
             "--stages"]
    assert main([*build, "clip,vae,vae_decoder,judge,decoder"]) == 0
    models = json.loads((out / "bundle.json").read_text())["models"]
    assert {"clip", "decoder", "judge", "vae"} <= set(models)
    clip = SceneCLIP.load(out / "clip")
    dec = UnclipDecoder.from_pretrained(out / "decoder")
    assert dec.unet.config.cross_attention_dim == clip.embed_dim
    SceneJudge.load(out / "judge")
    log = [json.loads(line) for line in (work / "build_log.jsonl").read_text().splitlines()]
    assert {r.get("model") for r in log} >= {"clip", "vae", "vae_decoder", "judge", "decoder"}
    assert [r["build"]["device"] for r in log if "build" in r] == ["cpu"]  # every stage on the asked device
    # the UNet was trained on the fine-tuned VAE's latent space, which is phase 1's, and ships with that VAE
    phase1 = AE.encoder_sha256(UnclipDecoder.from_pretrained(out / "decoder").vae)
    shipped_meta = json.loads((out / "decoder" / "vae" / "train_meta.json").read_text())
    assert "decoder_finetune" in shipped_meta and shipped_meta["encoder_sha256"] == phase1
    assert json.loads((out / "decoder" / "train_meta.json").read_text())["vae_encoder_sha256"] == phase1
    # phase 2 again starts from the kept phase-1 VAE and refreshes the bundle's VAE in place
    assert main([*build, "vae_decoder"]) == 0
    assert AE.encoder_sha256(UnclipDecoder.from_pretrained(out / "decoder").vae) == phase1
    # without the phase-1 copy, an already fine-tuned bundle VAE is not fine-tuned twice
    import shutil
    shutil.rmtree(work / "vae_phase1")
    capsys.readouterr()
    assert main([*build, "vae_decoder"]) == 2
    assert "already fine-tuned" in capsys.readouterr().err
    # nothing to start from at all: a clear error, not a traceback
    empty = ["build-demo", "--tiny", "--out", str(tmp_path / "none"), "--work", str(tmp_path / "w2"), "--workers",
             "0", "--stages", "vae_decoder"]
    assert main(empty) == 2
    err = capsys.readouterr().err
    assert "no VAE to fine-tune: expected" in err and "vae_phase1" in err
    with pytest.raises(SystemExit, match="unknown stage"):
        main(["build-demo", "--tiny", "--out", str(out), "--stages", "clip,bogus"])
    with pytest.raises(SystemExit, match="unknown MindEye part"):
        main(["build-demo", "--tiny", "--out", str(out), "--stages", "mindeye", "--mindeye_parts", "prior"])


def test_scene_bank_renders_the_stream_scenes_and_caches_them(tmp_path):
    from mindeye.data.stream import VISION_ID_BASE, SceneBank
    bank = SceneBank.build(6, seed=0, cache_dir=tmp_path, workers=1, chunk=4)
    assert bank.images.shape == (6, 64, 64, 3) and bank.images.dtype == np.uint8
    _, img, caps, lab = render_batch(VISION_ID_BASE + np.arange(6), 0)
    # the bank holds exactly what the live stream would feed a model (64 px, up to uint8 rounding)
    assert np.abs(bank.images.astype(int) - (to_model_input(img) * 255).round().permute(0, 2, 3, 1).numpy()).max() <= 1
    scenes, images, captions, labels = bank.batch(np.array([1, 4]))
    assert captions == [caps[1], caps[4]] and (labels["shape"] == lab["shape"][[1, 4]]).all()
    cached = list(tmp_path.glob("scene_bank_*.npy"))
    assert len(cached) == 1
    again = SceneBank.build(6, seed=0, cache_dir=tmp_path, workers=1)  # read back, not re-rendered
    assert np.array_equal(again.images, bank.images)


def test_stream_over_a_bank_visits_every_scene_once_per_epoch():
    from mindeye.data.stream import SceneBank, SceneStream
    bank = SceneBank(np.zeros((10, 64, 64, 3), np.uint8), first_id=0, seed=0)
    stream = SceneStream(5, 6, lambda scenes, images, captions, labels, step: [s.image_id for s in scenes], bank=bank)
    batches = list(stream)
    assert sorted(batches[0] + batches[1]) == list(range(10)) and sorted(batches[2] + batches[3]) == list(range(10))
    assert batches[:2] != batches[2:4]  # a fresh permutation each epoch
    assert list(SceneStream(5, 6, stream.collate, bank=bank, start_step=2)) == batches[2:]  # resumable by step
    with pytest.raises(ValueError, match="cannot fill batches"):
        list(SceneStream(20, 1, stream.collate, bank=bank))
