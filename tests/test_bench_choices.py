"""The choices benches make on val and hand on: the img2img strength (bench/recon_strength.py) that the test
table then uses, and how the README renders them."""
from __future__ import annotations

import json

SCORES = {"judge shape_largest": 0.2, "judge colour_largest": 0.6, "judge count": 0.5,
          "judge position_largest_within_0.1": 0.3, "bundle CLIP 2-way": 0.9, "PixCorr (96 px)": 0.5,
          "judge background": 0.95}


def _private_copy(tiny_stack, dest):
    """A copy of the tiny bundle whose model paths point into the copy (build-demo writes absolute paths for a
    bundle outside the project, so a plain copy would still read and write the session's shared bundle)."""
    import shutil
    from pathlib import Path
    bundle = shutil.copytree(tiny_stack, dest)
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["models"] = {k: str(Path(v).relative_to(tiny_stack)) if Path(v).is_absolute() else v
                          for k, v in manifest["models"].items()}
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    return bundle


def _machine():
    return {"cores": 2, "cpu": "test"}


def test_the_engine_uses_v1s_strength_until_the_val_bench_records_one_then_the_recorded(tiny_stack, tmp_path):
    from bench.recon_strength import record_choice
    from mindeye.bundle import Bundle
    from mindeye.engine import Engine, Model
    bundle = _private_copy(tiny_stack, tmp_path / "demo")  # the session's bundle stays as it is
    e = Engine(Bundle.load(bundle), log=lambda *a: None)
    assert e.default_strength() == (0.85, "V1's default (no strength chosen on val for this model)")
    record_choice(e.model_path(Model.HIDDEN).with_suffix(".json"),
                  {"chosen_strength": 0.5, "n": 100, "criterion": ["a", "b"]})
    strength, why = e.default_strength()
    assert strength == 0.5 and why.startswith("val split, 100 images")
    meta = json.loads(e.model_path(Model.HIDDEN).with_suffix(".json").read_text())
    assert meta["config"] and "prior_average" not in meta  # the rest is kept; one k tried: nothing to record
    assert e.pipeline().source.average == 1


def test_a_prior_average_and_token_error_measured_on_val_are_what_the_engine_samples_with(tiny_stack, tmp_path):
    from bench.recon_strength import record_choice
    from mindeye.bundle import Bundle
    from mindeye.engine import Engine, Model, Source
    bundle = _private_copy(tiny_stack, tmp_path / "demo")
    e = Engine(Bundle.load(bundle), log=lambda *a: None)
    record_choice(e.model_path(Model.HIDDEN).with_suffix(".json"),
                  {"chosen_strength": 1.0, "chosen_average": 4, "averages": [1, 4], "n": 100, "criterion": ["a"],
                   "token_noise_level": {"mindeye": {"1": 0.07, "4": 0.05}, "ridge": 0.06}})
    fresh = Engine(Bundle.load(bundle), log=lambda *a: None)
    assert fresh.pipeline().source.average == 4 and fresh.default_strength()[0] == 1.0
    # the token error measured for the chosen k is what the decoder is told for MindEye's draws; ridge its own
    assert fresh.pipeline().source.noise_level == 0.05 and fresh.pipeline(Source.RIDGE).source.noise_level == 0.06
    shared = json.loads((tiny_stack / "mindeye" / "hidden.json").read_text())
    assert "token_noise_level" not in shared and "prior_average" not in shared, "the copy wrote into the shared bundle"


def test_the_strength_rule_is_the_mean_of_the_six_bar_scores_without_background():
    import bench.recon_strength as rs
    assert abs(rs.criterion(SCORES) - (0.2 + 0.6 + 0.5 + 0.3 + 0.9 + 0.5) / 6) < 1e-9
    assert abs(rs.criterion({**SCORES, "judge background": 0.0}) - rs.criterion(SCORES)) < 1e-12


def test_the_strength_table_marks_the_chosen_row_and_shows_the_low_level_reference():
    from bench.readme_tables import render_recon_strength
    res = {"criterion": ["judge shape_largest", "judge colour_largest", "judge count",
                         "judge position_largest_within_0.1", "bundle CLIP 2-way", "PixCorr (96 px)"],
           "chosen_strength": 0.5, "n": 10, "samples_per_image": 1, "steps": 20, "guidance": 3.5, "machine": _machine(),
           "rows": [{"source": "mindeye", "strength": 0.5, "scores": SCORES, "criterion": 0.5},
                    {"source": "mindeye", "strength": 1.0, "scores": SCORES, "criterion": 0.4},
                    {"source": "low-level model alone", "strength": None, "scores": SCORES, "criterion": 0.45}]}
    text = render_recon_strength(res)
    assert "| mindeye | 0.5 (chosen) |" in text and "| mindeye | 1 |" in text
    assert "| low-level model alone | - |" in text and "**0.500**" in text
    assert "| 20% | 60% | 50% | 30% | 0.900 | 0.500 | 95% |" in text
    assert "prior draws averaged" not in text  # one k: no column for it
    res = {**res, "averages": [1, 4], "chosen_average": 4,
           "rows": [{**res["rows"][0], "prior_average": 1}, {**res["rows"][0], "prior_average": 4}, res["rows"][2]]}
    text = render_recon_strength(res)
    assert "| mindeye | 1 | 0.5 |" in text and "| mindeye | 4 | 0.5 (chosen) |" in text
    assert "| low-level model alone | - | - |" in text


def test_the_prior_identity_table_puts_ridge_in_its_caption_not_in_a_column():
    from bench.readme_tables import render_prior_identity
    cell = {"token_cosine": 0.6, "top1": 0.3}
    res = {"n": 100, "steps": 20, "guidance_scale": 2.0, "pick_of": 16, "machine": _machine(),
           "rows": [{"model": "ridge baseline", "ridge": {"token_cosine": 0.69, "top1": 0.23}},
                    {"model": "shipped", "projected": cell, "one_sample": cell}]}
    text = render_prior_identity(res)
    header = text.splitlines()[0]
    assert "shipped" in header and "ridge" not in header
    assert "cosine 0.690, top-1 23%" in text


def test_exactly_one_low_level_variant_is_the_shipped_recipe_and_the_table_marks_it():
    from bench.lowlevel_recipe import VARIANTS
    from bench.machine import is_shipped
    from bench.readme_tables import render_lowlevel_recipe
    from mindeye.build_demo import DEMO_LOWLEVEL
    from mindeye.train_config import LowLevelTrainConfig
    shipped = [name for name, (_, changes) in VARIANTS.items() if is_shipped(changes, DEMO_LOWLEVEL, LowLevelTrainConfig)]
    assert len(shipped) == 1  # the recipe build-demo trains is one of the rows, and only one
    assert not is_shipped({"num_epochs": -1}, DEMO_LOWLEVEL, LowLevelTrainConfig)
    val = {"epoch": 3, "epochs": 4, "pixcorr": 0.7, "ssim": 0.6, "train_seconds": 600.0, "seconds_per_epoch": 9.0}
    res = {"subject": 1, "protocol": "val", "machine": {"cores": 2, "cpu": "x", "torch_threads": 2, "commit": "abc"},
           "rows": [{"variant": "a", "what": "plain", "val": val, "shipped": False},
                    {"variant": "b", "what": "synthetic", "val": {**val, "pixcorr": 0.75}, "shipped": True,
                     "synthetic_build_seconds": 300.0}]}
    table = render_lowlevel_recipe(res)
    assert "| synthetic (shipped) | **0.750** |" in table and "| plain | 0.700 |" in table
    assert "10 min (+ 5 min for the synthetic set)" in table and "3 of 4" in table


def test_a_partial_recipe_bench_run_keeps_the_other_variants_rows_in_order_with_who_measured_them(tmp_path,
                                                                                                   monkeypatch):
    import json

    import bench.machine as machine
    old = tmp_path / "x.json"
    old.write_text(json.dumps({"machine": "then", "rows": [{"variant": "a", "v": 1}, {"variant": "b", "v": 1},
                                                           {"variant": "gone", "v": 1}]}))
    monkeypatch.setattr(machine, "result_path", lambda name: old)
    monkeypatch.setattr(machine, "machine_info", lambda: "now")
    rows = machine.merge_variant_rows("x", [{"variant": "b", "v": 2}, {"variant": "c", "v": 2}], ["c", "a", "b"])
    assert rows == [{"variant": "c", "v": 2, "machine": "now"}, {"variant": "a", "v": 1, "machine": "then"},
                    {"variant": "b", "v": 2, "machine": "now"}]
    monkeypatch.setattr(machine, "result_path", lambda name: tmp_path / "none.json")
    assert machine.merge_variant_rows("x", [{"variant": "a"}], ["a", "b"]) == [{"variant": "a", "machine": "now"}]


def test_exactly_one_final_variant_is_the_shipped_recipe_and_the_table_marks_it():
    from bench.final_recipe import VARIANTS
    from bench.machine import is_shipped
    from bench.readme_tables import render_final_recipe
    from mindeye.build_demo import DEMO_MINDEYE
    from mindeye.train_config import TrainConfig
    recipe = DEMO_MINDEYE["final"][-1]
    shipped = [name for name, (_, changes) in VARIANTS.items() if is_shipped(changes, recipe, TrainConfig)]
    assert len(shipped) == 1  # the recipe build-demo trains is one of the rows, and only one
    keys = {k for _, changes in VARIANTS.values() for k in changes}
    assert all(set(changes) == keys for _, changes in VARIANTS.values())  # each names every setting varied
    val = {"epoch": 30, "image": 0.8, "brain": 0.82, "train_seconds": 300.0, "seconds_per_epoch": 10.0}
    res = {"subject": 1, "protocol": "val", "machine": {"cores": 2, "cpu": "x", "torch_threads": 2, "commit": "abc"},
           "rows": [{"variant": "a", "what": "plain", "val": val, "shipped": False},
                    {"variant": "b", "what": "longer", "val": {**val, "image": 0.83}, "shipped": True}]}
    table = render_final_recipe(res)
    assert "| longer (shipped) | **83.0 / 82.0** |" in table and "| plain | 80.0 / 82.0 |" in table
