"""State-dict layout of our models vs the released MindEye V1 checkpoints (tests/data/v1_checkpoint_manifest.json),
plus small CPU smoke tests. V1-size models are only ever built on the meta device (no memory)."""
import json
from pathlib import Path

import pytest
import torch

from mindeye.models import (
    BrainNetwork, DiffusionPrior, LowLevelConfig, PriorConfig, Voxel2ClipConfig, Voxel2VAE,
    convert_v1_lowlevel_state_dict, to_v1_lowlevel_state_dict,
)

MANIFEST = json.loads((Path(__file__).parent / "data" / "v1_checkpoint_manifest.json").read_text())["checkpoints"]


def _layout(module):
    return [(k, list(v.shape)) for k, v in module.state_dict().items()]


def _manifest(entry, prefix=""):
    return [(k[len(prefix):], list(s)) for k, s in MANIFEST[entry]["state_dict"].items() if k.startswith(prefix)]


def test_prior_257_matches_manifest_exactly():
    entry = "prior_257_final_subj01_bimixco_softclip_byol"
    with torch.device("meta"):
        model = DiffusionPrior(PriorConfig(), voxel2clip=BrainNetwork(Voxel2ClipConfig()))
    assert _layout(model) == _manifest(entry)  # key order and shapes
    counts = MANIFEST[entry]["param_count"]
    assert sum(p.numel() for p in model.net.parameters()) == counts["net"]  # shared rotary freqs counted once
    assert sum(p.numel() for p in model.parameters()) == counts["total"]


def test_final_layer_voxel2clip_matches_manifest():
    # The 1x768 checkpoint's `net` is dalle2's own DiffusionPriorNetwork (different architecture, not
    # re-implemented here), so only its voxel2clip part is compared.
    entry = "prior_1x768_final_subj01_bimixco_softclip_byol"
    with torch.device("meta"):
        model = BrainNetwork(Voxel2ClipConfig(clip_tokens=1))
    assert _layout(model) == _manifest(entry, "voxel2clip.")


def test_brain_network_param_counts():
    with torch.device("meta"):
        hidden = BrainNetwork(Voxel2ClipConfig())
        final = BrainNetwork(Voxel2ClipConfig(clip_tokens=1))
    assert sum(p.numel() for p in hidden.parameters()) == 947_579_904
    assert sum(p.numel() for p in final.parameters()) == 142_076_928


def test_lowlevel_matches_manifest_after_name_mapping():
    entry = "autoencoder_subj01_4x_locont_no_reconst"
    with torch.device("meta"):
        model = Voxel2VAE(LowLevelConfig())
    ours = dict(_layout(model))
    expected = {k: s for k, s in _manifest(entry)}
    assert ours == {k: s for k, s in convert_v1_lowlevel_state_dict(expected).items()}
    assert to_v1_lowlevel_state_dict(ours) == expected
    counts = MANIFEST[entry]["param_count"]
    assert sum(p.numel() for p in model.parameters()) == counts["total"]
    assert sum(p.numel() for p in model.maps_projector.parameters()) == counts["maps_projector"]


# ------------------------------------------------------------------------------------------------ tiny CPU tests
TINY_CLIP = Voxel2ClipConfig(n_voxels=50, hidden=32, clip_tokens=4, clip_dim=16, proj_hidden=24)
TINY_PRIOR = PriorConfig(dim=16, depth=2, heads=2, dim_head=8, num_tokens=4, timesteps=10)


@pytest.fixture
def tiny_prior():
    torch.manual_seed(0)
    return DiffusionPrior(TINY_PRIOR, voxel2clip=BrainNetwork(TINY_CLIP))


def test_brain_network_forward_shapes():
    torch.manual_seed(0)
    backbone, projected = BrainNetwork(TINY_CLIP)(torch.randn(3, 50))
    assert backbone.shape == projected.shape == (3, 4, 16)
    backbone, projected = BrainNetwork(TINY_CLIP, clip_tokens=1, use_projector=False)(torch.randn(3, 50))
    assert backbone.shape == (3, 1, 16) and projected is backbone


def test_prior_loss_and_backward(tiny_prior):
    brain, _ = tiny_prior.voxel2clip(torch.randn(3, 50))
    loss = tiny_prior.loss(brain, torch.randn(3, 4, 16), generator=torch.Generator().manual_seed(1))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in tiny_prior.net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert tiny_prior.voxel2clip.lin0[0].weight.grad is not None


def test_prior_net_forward_shape(tiny_prior):
    out = tiny_prior.net(torch.randn(2, 4, 16), torch.tensor([0, 9]), torch.randn(2, 4, 16))
    assert out.shape == (2, 4, 16)


@pytest.mark.parametrize("steps,scale", [(None, 1.0), (3, 2.5)])
def test_prior_sample_shape_and_determinism(tiny_prior, steps, scale):
    tiny_prior.eval()
    brain = torch.randn(2, 4, 16)
    a = tiny_prior.sample(brain, steps=steps, guidance_scale=scale, generator=torch.Generator().manual_seed(7))
    b = tiny_prior.sample(brain, steps=steps, guidance_scale=scale, generator=torch.Generator().manual_seed(7))
    assert a.shape == (2, 4, 16) and torch.isfinite(a).all()
    assert torch.equal(a, b)


def test_prior_posterior_mean_is_its_x0_prediction_from_pure_noise_at_the_last_timestep(tiny_prior):
    """The same as a one-step chain from the same noise (whose only step returns the x0 prediction at T-1)."""
    tiny_prior.eval()
    brain = torch.randn(2, 4, 16)
    for scale in (1.0, 2.0):
        m = tiny_prior.posterior_mean(brain, scale, generator=torch.Generator().manual_seed(3))
        one_step = tiny_prior.sample(brain, steps=1, guidance_scale=scale, generator=torch.Generator().manual_seed(3))
        assert m.shape == (2, 4, 16) and torch.allclose(m, one_step)
    assert not torch.allclose(tiny_prior.posterior_mean(brain, 2.0, generator=torch.Generator().manual_seed(3)),
                              tiny_prior.posterior_mean(brain, 1.0, generator=torch.Generator().manual_seed(3)))


def test_noise_schedule_values():
    s = DiffusionPrior(TINY_PRIOR).noise_scheduler
    assert torch.all((s.betas > 0) & (s.betas <= 0.999))
    assert torch.allclose(s.alphas_cumprod, torch.cumprod(1 - s.betas, 0))
    assert torch.equal(s.p2_loss_weight, torch.ones(10))
    assert s.alphas_cumprod_prev[0] == 1.0


def test_lowlevel_tiny_forward_and_v1_loading():
    torch.manual_seed(0)
    cfg = LowLevelConfig(n_voxels=50, hidden=32, map_channels=8, map_size=4, block_out_channels=(8, 16, 16),
                         norm_num_groups=4, proj_dim=12)
    model = Voxel2VAE(cfg).eval()
    latents, maps = model(torch.randn(2, 50))
    assert latents.shape == (2, 4, 16, 16) and maps.shape == (2, 16, 12)
    # round trip through the diffusers-0.13 names
    old = to_v1_lowlevel_state_dict(model.state_dict())
    assert any(".attentions.0.query." in k for k in old) and not any(".to_q." in k for k in old)
    fresh = Voxel2VAE(cfg)
    fresh.load_v1_state_dict(old)
    no_cont = Voxel2VAE(cfg, use_cont=False).eval()
    no_cont.load_v1_state_dict(old)  # maps_projector keys dropped
    with torch.no_grad():
        assert torch.allclose(no_cont(torch.ones(1, 50)), model(torch.ones(1, 50))[0], atol=1e-6)


# ------------------------------------------------------------------------------------------------ load_v1
def _meta_state_dict(entry):
    return {k: torch.empty(s, device="meta") for k, s in MANIFEST[entry]["state_dict"].items()}


@pytest.mark.parametrize("entry,kind", [("prior_257_final_subj01_bimixco_softclip_byol", "prior_257"),
                                        ("prior_1x768_final_subj01_bimixco_softclip_byol", "prior_1x768"),
                                        ("autoencoder_subj01_4x_locont_no_reconst", "autoencoder")])
def test_load_v1_builds_each_released_module_from_its_exact_keys(entry, kind):
    """Every released subject-1 file, as its key list and shapes: the kind and every size are read off the keys,
    the model is built on the meta device and the state dict loads strictly (legacy VAE attention names mapped)."""
    from mindeye.v1_checkpoints import load_v1_state_dict
    v1 = load_v1_state_dict(_meta_state_dict(entry), device="meta")
    assert v1.kind == kind and v1.data["n_voxels"] == 15724
    counts = MANIFEST[entry]["param_count"]
    n = sum(p.numel() for p in v1.model.parameters())
    assert n == counts["total"]
    if kind != "autoencoder":
        assert v1.data["target_shape"] == ([257, 768] if kind == "prior_257" else [1, 768])


def test_prior_1x768_matches_manifest_exactly():
    """The final-layer prior's dalle2 DiffusionPriorNetwork: same keys, order and shapes as the released file."""
    entry = "prior_1x768_final_subj01_bimixco_softclip_byol"
    with torch.device("meta"):
        model = DiffusionPrior(PriorConfig.v1_final(), voxel2clip=BrainNetwork(Voxel2ClipConfig(clip_tokens=1)))
    assert _layout(model) == _manifest(entry)
    assert sum(p.numel() for p in model.net.parameters()) == MANIFEST[entry]["param_count"]["net"]


def test_load_v1_names_missing_unexpected_and_misshapen_keys():
    from mindeye.data.errors import DataError
    from mindeye.v1_checkpoints import load_v1_state_dict
    sd = _meta_state_dict("prior_1x768_final_subj01_bimixco_softclip_byol")
    sd.pop("net.null_text_embeds")
    sd["net.extra.weight"] = torch.empty(3, device="meta")
    sd["net.learned_query"] = torch.empty(1, 768, device="meta")
    with pytest.raises(DataError, match=r"1 missing \['net.null_text_embeds'\]; 1 unexpected \['net.extra.weight'\]; "
                                        r"1 of another shape \['net.learned_query \(1, 768\) \(expected \(768,\)\)'\]"):
        load_v1_state_dict(sd, device="meta")
    with pytest.raises(DataError, match="not a MindEye V1 checkpoint this code knows"):
        load_v1_state_dict({"foo.weight": torch.zeros(2)})


TINY_FINAL = PriorConfig(dim=16, depth=2, heads=2, dim_head=8, num_tokens=1, timesteps=20, network="dalle2",
                         max_text_len=5)


def test_dalle2_prior_is_causal_and_trains():
    torch.manual_seed(0)
    prior = DiffusionPrior(TINY_FINAL, voxel2clip=BrainNetwork(TINY_CLIP, clip_tokens=1))
    t = prior.net.causal_transformer
    x = torch.randn(1, 6, 16)
    y = x.clone()
    y[0, 4] += 1.0
    a, b = t(x), t(y)
    assert torch.allclose(a[0, :4], b[0, :4]) and not torch.allclose(a[0, 4:], b[0, 4:])  # no look-ahead
    brain, _ = prior.voxel2clip(torch.randn(3, 50))
    loss = prior.loss(brain, torch.randn(3, 1, 16), generator=torch.Generator().manual_seed(1))
    loss.backward()
    assert torch.isfinite(loss) and prior.net.learned_query.grad is not None
    prior.eval()
    out = prior.sample(brain.detach(), steps=4, guidance_scale=2.0, generator=torch.Generator().manual_seed(2))
    assert out.shape == (3, 1, 16) and torch.isfinite(out).all()


def test_load_v1_file_round_trip_and_pickle_safety(tmp_path):
    """Small files in the released container layout (``model_state_dict`` beside optimizer state and losses)
    load through ``load_v1`` into models that compute what the saved ones did; the CLI path exports them."""
    import pickle

    from mindeye.checkpoints import load_any, load_model
    from mindeye.data.errors import DataError
    from mindeye.v1_checkpoints import load_v1
    torch.manual_seed(0)
    prior = DiffusionPrior(TINY_FINAL, voxel2clip=BrainNetwork(TINY_CLIP, clip_tokens=1)).eval()
    # GroupNorm's group count leaves no trace in a state dict: V1's is 32, min(32, narrowest block) here
    low_cfg = LowLevelConfig(n_voxels=50, hidden=32, map_channels=8, map_size=4, block_out_channels=(8, 16, 16),
                             norm_num_groups=8, proj_dim=12)
    low = Voxel2VAE(low_cfg).eval()
    files = {}
    for name, model, sd in (("prior", prior, prior.state_dict()),
                            ("autoencoder", low, to_v1_lowlevel_state_dict(low.state_dict()))):
        files[name] = tmp_path / f"{name}.pth"
        torch.save({"epoch": 3, "model_state_dict": sd, "optimizer_state_dict": {}, "train_losses": [0.5, 0.4],
                    "val_losses": [0.6], "lrs": [1e-4]}, files[name])
    v = torch.randn(2, 50)
    v1 = load_v1(files["prior"])
    assert v1.kind == "prior_1x768" and v1.data["target_shape"] == [1, 16]
    with torch.no_grad():
        assert torch.allclose(v1.model.voxel2clip(v)[0], prior.voxel2clip(v)[0])
        t = torch.tensor([3, 7])
        assert torch.allclose(v1.model.net(v[:, :16], t, v[:, 16:32]), prior.net(v[:, :16], t, v[:, 16:32]))
    v1 = load_v1(files["autoencoder"])
    assert v1.kind == "autoencoder" and v1.data["target_shape"] == [4, 16, 16]
    with torch.no_grad():
        assert torch.allclose(v1.model(v)[0], low(v)[0], atol=1e-6)
    # the engine's loader takes a released .pth, and export writes the bundle pair the engine loads
    model, meta = load_any(files["prior"], expect={"subject": 1, "n_voxels": 50})
    assert meta["v1_kind"] == "prior_1x768"
    with pytest.raises(DataError, match="for n_voxels=50, but the loaded data has n_voxels=3145"):
        load_any(files["prior"], expect={"n_voxels": 3145})
    from mindeye.cli import main
    assert main(["import-v1", "--ckpt", str(files["prior"]), "--out", str(tmp_path / "ship" / "final")]) == 0
    shipped, _ = load_model(tmp_path / "ship" / "final")
    with torch.no_grad():
        assert torch.allclose(shipped.voxel2clip(v)[0], prior.voxel2clip(v)[0], atol=1e-2)
    # a pickle holding more than tensors and containers is not loaded without trust_pickle
    evil = tmp_path / "evil.pth"
    torch.save({"model_state_dict": prior.state_dict(), "obj": _Opaque()}, evil)
    with pytest.raises(DataError, match=r"holds Python objects beyond tensors.*trust_pickle=True \(CLI: --trust_pickle\)"):
        load_v1(evil)
    assert load_v1(evil, trust_pickle=True).kind == "prior_1x768"


class _Opaque:
    pass
