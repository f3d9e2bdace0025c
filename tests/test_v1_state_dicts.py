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
