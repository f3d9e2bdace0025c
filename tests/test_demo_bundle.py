"""The shipped demo bundle (assets/demo): loadable, within budget, and still matched to the simulator.

Shipped weights decode one simulated subject; if the simulator changes that subject (voxel layout, trial
schedule, images), these tests fail instead of the demo silently decoding noise. Rebuild with
``python -m mindeye build-demo`` after changing the simulator (and bump SIMULATOR_VERSION).
"""
from __future__ import annotations

import json

import pytest

from mindeye.bundle import DEMO_BUNDLE, PROJECT_ROOT, Bundle

BUDGET_MB = 60
bundle = Bundle.load(DEMO_BUNDLE)
shipped = sorted((DEMO_BUNDLE / "mindeye").glob("*.json")) if (DEMO_BUNDLE / "mindeye").exists() else []


def test_bundle_fits_the_size_budget():
    total = sum(p.stat().st_size for p in DEMO_BUNDLE.rglob("*") if p.is_file())
    assert total <= BUDGET_MB * 2 ** 20, f"assets/demo is {total / 2**20:.1f} MB, budget {BUDGET_MB} MB"


def test_bundle_paths_exist():
    for key, rel in bundle.models.items():
        assert (PROJECT_ROOT / rel).exists() or (PROJECT_ROOT / rel).with_suffix(".json").exists(), key


@pytest.mark.skipif("clip" not in bundle.models or "decoder" not in bundle.models, reason="vision stack not shipped")
def test_shipped_vision_stack_shapes_fit_together():
    from mindeye.models.decoder import UnclipDecoder
    from mindeye.models.scene_clip import SceneCLIP
    clip = SceneCLIP.load(PROJECT_ROOT / bundle.models["clip"])
    dec = UnclipDecoder.from_pretrained(PROJECT_ROOT / bundle.models["decoder"])
    assert dec.unet.config.cross_attention_dim == clip.embed_dim
    from mindeye.train import file_sha256
    sha = file_sha256(PROJECT_ROOT / bundle.models["clip"] / "model.safetensors")
    for js in shipped:
        meta = json.loads(js.read_text())
        if meta["data"].get("clip_variant") == "SceneCLIP":
            assert meta["data"]["clip_sha256"] == sha, f"{js.name} was trained on another SceneCLIP: retrain it"
            if meta["config"]["hidden"]:
                assert meta["data"]["target_shape"] == list(clip.hidden_shape)


@pytest.mark.skipif("lowlevel" not in bundle.models or "vae" not in bundle.models, reason="low-level model not shipped")
def test_shipped_lowlevel_model_and_unet_live_in_the_shipped_vae_latent_space():
    from mindeye.models.decoder import UnclipDecoder
    from mindeye.models.autoencoder import encoder_sha256
    meta = json.loads((PROJECT_ROOT / (bundle.models["lowlevel"] + ".json")).read_text())
    sha = encoder_sha256(UnclipDecoder.from_pretrained(PROJECT_ROOT / bundle.models["decoder"]).vae)
    assert meta["data"]["vae"].get("encoder_sha256") == sha, "the low-level model was trained on another VAE: retrain it"
    unet_meta = json.loads((PROJECT_ROOT / bundle.models["decoder"] / "train_meta.json").read_text())
    assert unet_meta.get("vae_encoder_sha256") == sha, "the UNet was trained on another VAE's latents: retrain it"


@pytest.mark.parametrize("js", shipped, ids=[p.stem for p in shipped])
def test_shipped_mindeye_models_match_the_simulator(js):
    from mindeye.data.simnsd import SIMULATOR_VERSION, SimConfig, expected_fingerprint
    data = json.loads(js.read_text())["data"]
    assert data["dataset"] == "SimNSD"
    assert data["simulator"]["simulator_version"] == SIMULATOR_VERSION, (
        f"{js.name} was trained on simulator {data['simulator']['simulator_version']}, this is {SIMULATOR_VERSION}")
    assert data["subject"] == bundle.subject
    fp = expected_fingerprint(SimConfig(subj=data["subject"], seed=data["simulator"]["seed"]))
    assert fp == data["fingerprint"], f"{js.name}: the simulator no longer reproduces the subject it was trained on"


@pytest.mark.parametrize("js", shipped, ids=[p.stem for p in shipped])
def test_shipped_mindeye_models_load(js):
    from mindeye.checkpoints import load_model
    model, meta = load_model(js.with_suffix(""), expect={"subject": bundle.subject})
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("js", shipped, ids=[p.stem for p in shipped])
def test_shipped_mindeye_models_were_trained_by_the_recipe_build_demo_names(js):
    """``build-demo --stages mindeye`` must rebuild what ships: every setting of the part's recipe (its last run)
    is the one the shipped model's run was trained with."""
    from mindeye.build_demo import _RUN_PLACE, DEMO_LOWLEVEL, DEMO_MINDEYE
    recipe = DEMO_LOWLEVEL if js.stem == "lowlevel" else DEMO_MINDEYE[js.stem][-1]
    config = json.loads(js.read_text())["config"]
    as_json = json.loads(json.dumps(recipe))  # tuples as lists, as the run's config.json holds them
    differ = {k: (v, config.get(k, "missing")) for k, v in as_json.items()
              if k not in _RUN_PLACE and config.get(k, "missing") != v}
    assert not differ, f"{js.name}: recipe (build_demo.py) vs shipped run: {differ}"


@pytest.mark.skipif("decoder" not in bundle.models, reason="decoder not shipped")
def test_shipped_decoder_was_trained_by_the_recipe_build_demo_names():
    """``build-demo --stages decoder`` must rebuild what ships: the shipped UNet's training settings (its
    train_meta.json; a setting added since then reads as its default) are the decoder stage's recipe."""
    import dataclasses
    from mindeye.build_demo import _configs
    from mindeye.models.decoder import DecoderTrainConfig
    recipe = json.loads(json.dumps(dataclasses.asdict(_configs(tiny=False, seed=0)["decoder"])))
    trained = json.loads((PROJECT_ROOT / bundle.models["decoder"] / "train_meta.json").read_text())["train"]
    trained = {**json.loads(json.dumps(dataclasses.asdict(DecoderTrainConfig()))), **trained}
    differ = {k: (v, trained[k]) for k, v in recipe.items() if trained[k] != v and k != "log_every"}
    assert not differ, f"decoder recipe (build_demo.py) vs shipped UNet (recipe, shipped): {differ}"


def test_shipped_metadata_names_no_path_of_the_machine_that_built_it():
    """Bundles are relocatable: every path in the shipped JSON files is relative to the project."""
    from pathlib import PurePosixPath

    def paths(obj):
        if isinstance(obj, dict):
            for v in obj.values():
                yield from paths(v)
        elif isinstance(obj, list):
            for v in obj:
                yield from paths(v)
        elif isinstance(obj, str) and "/" in obj:
            yield obj
    found = [(js.name, p) for js in DEMO_BUNDLE.rglob("*.json") for p in paths(json.loads(js.read_text()))
             if PurePosixPath(p).is_absolute() or p.startswith("~")]
    assert not found, found
