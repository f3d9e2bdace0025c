"""Brain -> image end to end on a tiny bundle built by `build-demo --tiny` over the tiny SimNSD subject:
the engine's lazy models, reconstruction from MindEye / ridge / true tokens with img2img and the second-order
pick, the reconstruct and evaluate commands with the seed's file names, and top-k retrieval."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mindeye.data.errors import DataError


@pytest.fixture(scope="module")
def engine(tiny_stack):
    from mindeye.bundle import Bundle
    from mindeye.engine import Engine
    return Engine(Bundle.load(tiny_stack), log=lambda *a: None)


def test_bundle_paths_resolve_against_the_bundle_folder(tiny_stack, tmp_path):
    import shutil
    from mindeye.bundle import Bundle
    moved = tmp_path / "moved"
    shutil.copytree(tiny_stack, moved)
    m = json.loads((moved / "bundle.json").read_text())
    m["models"] = {k: "mindeye/hidden" if k == "mindeye_hidden" else v for k, v in m["models"].items()}
    (moved / "bundle.json").write_text(json.dumps(m))
    b = Bundle.load(moved)
    assert b.resolve("mindeye/hidden") == moved / "mindeye" / "hidden"


def test_mindeye_reconstruction_with_img2img_and_second_order_pick(engine):
    from mindeye.engine import Model, Source
    r = engine.reconstruct([0, 1], Source.MINDEYE, strength=0.5, n=3, steps=3, seed=7)
    dec = engine.model(Model.DECODER)
    side = dec.unet.config.sample_size * dec.vae_scale
    assert r.samples.shape == (2, 3, 3, side, side) and 0 <= r.samples.min() and r.samples.max() <= 1
    assert r.lowlevel is not None and r.lowlevel.shape[0] == 2
    assert r.best.shape == (2,) and all(r.selection_scores[i, r.best[i]] == r.selection_scores[i].max() for i in range(2))
    assert torch.equal(r.picked[1], r.samples[1, r.best[1]])
    again = engine.reconstruct([0, 1], Source.MINDEYE, strength=0.5, n=3, steps=3, seed=7)
    assert torch.equal(r.samples, again.samples), "seeded"
    other = engine.reconstruct([0, 1], Source.MINDEYE, strength=0.5, n=3, steps=3, seed=8)
    assert not torch.equal(r.samples, other.samples)
    # strength 1 means no img2img: the low-level picture is not used
    assert engine.reconstruct([0], Source.MINDEYE, strength=1.0, n=1, steps=2).lowlevel is None
    assert engine.model(Model.HIDDEN) is engine.model(Model.HIDDEN), "models stay resident"


def test_ridge_and_true_tokens_take_the_same_drawing_path(engine):
    from mindeye.engine import Source
    ridge = engine.reconstruct([2], Source.RIDGE, strength=1.0, n=2, steps=2)
    true = engine.reconstruct([2], Source.TRUE, strength=1.0, n=2, steps=2)
    assert ridge.samples.shape == true.samples.shape and ridge.source == "ridge" and true.source == "true"
    assert torch.allclose(ridge.hidden[:, 0], ridge.hidden[:, 1]), "ridge is deterministic: one prediction per trial"


def test_averaged_prior_draws_are_the_normalised_mean_of_k_single_draws(engine):
    from mindeye.engine import Model
    from mindeye.models.embedders import normalize_hidden
    from mindeye.pipelines.reconstruction import PriorHidden
    prior, v = engine.model(Model.HIDDEN), torch.from_numpy(engine.test_betas[:2])
    single = PriorHidden(prior, steps=3, guidance_scale=2.0).hidden(v, 6, torch.Generator().manual_seed(3))
    avg = PriorHidden(prior, steps=3, guidance_scale=2.0, average=3).hidden(v, 2, torch.Generator().manual_seed(3))
    # the same generator draws the same 6 chains per trial; each averaged sample is the mean of 3 consecutive ones
    want = normalize_hidden(single.view(2, 2, 3, *single.shape[2:]).mean(2).flatten(0, 1)).view(avg.shape)
    assert avg.shape == (2, 2, *single.shape[2:]) and torch.allclose(avg, want, atol=1e-6)
    assert torch.allclose(avg[:, :, 0].norm(dim=-1), torch.ones(2, 2), atol=1e-5), "CLS-norm normalised"
    with pytest.raises(DataError, match="prior draws averaged"):
        PriorHidden(prior, average=0)


def test_draw_decodes_given_tokens_as_a_call_does(engine):
    from mindeye.engine import Source
    pipe, v = engine.pipeline(Source.MINDEYE), engine.test_betas[:2]
    r = pipe(v, strength=0.5, n=2, steps=2, seed=4)
    again = pipe.draw(v, r.hidden, strength=0.5, steps=2, seed=4)
    assert torch.equal(r.samples, again.samples) and np.array_equal(r.best, again.best)


def test_each_source_tells_the_decoder_how_far_off_its_tokens_are(tiny_stack, monkeypatch):
    """The brain sources' token errors measured on val (the hidden model's .json) reach the decoder's
    ``noise_level``; true tokens are exact (0); ``draw`` can override the level for tokens from elsewhere."""
    from mindeye.bundle import Bundle
    from mindeye.engine import Engine, Model, Source
    eng = Engine(Bundle.load(tiny_stack), log=lambda *a: None)
    hidden = eng.model(Model.HIDDEN)  # (loaded models are shared across engines: set its meta, never assume it)
    meta = {k: v for k, v in getattr(hidden, "meta", {}).items() if k != "token_noise_level"}
    monkeypatch.setattr(hidden, "meta", meta, raising=False)
    assert eng.token_noise_level(Source.MINDEYE) == 0.0, "not measured: drawn as exact tokens"
    monkeypatch.setattr(hidden, "meta", {**meta, "token_noise_level": {"mindeye": 0.06, "ridge": 0.04}})
    dec, seen = eng.model(Model.DECODER), []
    decode = dec.decode
    monkeypatch.setattr(dec, "decode", lambda *a, **k: (seen.append(k["noise_level"]), decode(*a, **k))[1])
    for source in (Source.MINDEYE, Source.RIDGE, Source.TRUE):
        eng.reconstruct([0], source, strength=1.0, n=1, steps=2)
    r = eng.reconstruct([0], Source.MINDEYE, strength=1.0, n=1, steps=2)
    eng.pipeline(Source.MINDEYE).draw(eng.test_betas[:1], r.hidden, strength=1.0, steps=2, noise_level=0.0)
    assert seen == [0.06, 0.04, 0.0, 0.06, 0.0]


@pytest.mark.parametrize("kw, match", [(dict(strength=7), "strength"), (dict(n=10**6), "samples"),
                                       (dict(steps=0), "steps"), (dict(guidance=0.1), "guidance")])
def test_bad_settings_are_named(engine, kw, match):
    with pytest.raises(DataError, match=match):
        engine.reconstruct([0], **{"n": 1, "steps": 2, **kw})


def test_bad_trials_are_named(engine):
    with pytest.raises(DataError, match="test trials must be integers"):
        engine.reconstruct([-5])
    with pytest.raises(DataError, match="test trials must be integers"):
        engine.reconstruct([engine.n_test])


def test_reconstruct_and_evaluate_commands_write_the_seeds_files(tiny_stack, tmp_path, capsys):
    from mindeye.cli import main
    args = ["reconstruct", "--bundle", str(tiny_stack), "--trials", "4", "--recons_per_sample", "2", "--steps", "2",
            "--img2img_strength", "0.5", "--out", str(tmp_path)]
    assert main([*args, "--model_name", "tiny"]) == 2  # no run or model of that name: a clear error
    assert main(args) == 0
    recon = tmp_path / "SimNSD_demo_recons_img2img0.5_2samples.pt"
    assert recon.exists() and (tmp_path / "all_images.pt").exists()
    assert torch.load(recon, weights_only=True).shape[0] == 4
    # --model_name given as a shipped stem is loaded (and checked against the data); an unknown one is an error
    assert main([*args, "--model_name", str(tiny_stack / "mindeye" / "hidden"), "--ridge"]) == 0
    assert (tmp_path / "hidden_ridge_recons_img2img0.5_2samples.pt").exists()
    assert main([*args, "--img2img_strength", "7"]) == 2
    capsys.readouterr()
    ridge = next(tmp_path.glob("*ridge*samples.pt"))
    assert main(["evaluate", "--recon_path", str(recon), str(ridge), "--all_images_path", str(tmp_path / "all_images.pt"),
                 "--bundle", str(tiny_stack), "--json"]) == 0
    cols = json.loads(capsys.readouterr().out)
    first = cols[recon.stem]
    assert -1 <= first["PixCorr (96 px)"] <= 1 and 0 <= first["bundle CLIP 2-way"] <= 1
    assert first["AlexNet(2)"] == "not available" and "judge shape_largest" in first
    assert recon.with_suffix(".csv").exists()
    (tmp_path / "bad.pt").write_bytes(b"junk")
    assert main(["evaluate", "--recon_path", str(tmp_path / "bad.pt"), "--all_images_path",
                 str(tmp_path / "all_images.pt"), "--bundle", str(tiny_stack)]) == 2


def test_retriever_topk_exact_and_faiss_agree():
    from mindeye.pipelines import Retriever
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(500, 16, generator=g)
    ids = np.arange(1000, 1500)
    exact, fa = Retriever(emb, ids, use_faiss=False), Retriever(emb, ids, use_faiss=True)
    q = emb[:5] + 0.01 * torch.randn(5, 16, generator=g)
    s1, i1 = exact.topk(q, 10)
    s2, i2 = fa.topk(q, 10)
    assert (i1[:, 0] == ids[:5]).all() and np.array_equal(i1, i2) and np.allclose(s1, s2, atol=1e-5)
    assert exact.rank_of(q[0], 1000) == 1
    with pytest.raises(DataError, match="k must be"):
        exact.topk(q, 10**9)
    with pytest.raises(DataError, match="dims"):
        exact.topk(torch.randn(1, 8), 3)


def test_engine_retrieval_over_the_test_set(engine):
    ids, scores, rank = engine.retrieve(3, k=5)
    assert len(ids) == 5 and np.all(np.diff(scores) <= 1e-6) and 1 <= rank <= engine.n_test
    trials, s2, rank2 = engine.brain_retrieve(3, k=4, target="hidden")
    assert len(trials) == 4 and 1 <= rank2 <= engine.n_test
    with pytest.raises(DataError, match="out of range"):
        engine.retrieve(-1)
    with pytest.raises(DataError, match="k must be"):
        engine.retrieve(0, k=10**9)


def test_app_reconstruct_and_retrieve_endpoints(engine):
    from .conftest import served_app
    with served_app(engine) as client:
        seen, low, pick, ridge, gallery, scores = client.predict(2, 0.5, 2, 5, 3.5, 0, True, api_name="/reconstruct")
        assert pick and ridge and low and len(gallery) == 2 and "PixCorr" in scores
        assert sum("★" in (g.get("caption") or "") for g in gallery) == 1
        seen, items, text = client.predict(2, 4, "final", "image retrieval", api_name="/retrieve")
        assert len(items) == 4 and "ranks" in text
        with pytest.raises(Exception, match="greater than maximum value 1"):  # a clear message, no traceback
            client.predict(2, 7, 2, 5, 3.5, 0, False, api_name="/reconstruct")


def test_reconstruct_cancel_stops_the_run_and_frees_the_queue(engine):
    """Cancel stops a running reconstruction at its next denoising step (the work stops, not only the wait),
    and the next reconstruction runs at once."""
    import time

    from gradio_client.utils import Status

    from .conftest import served_app
    with served_app(engine) as client:
        t0 = time.time()
        client.predict(2, 1.0, 16, 50, 3.5, 0, False, api_name="/reconstruct")
        full = time.time() - t0
        job = client.submit(2, 1.0, 16, 50, 3.5, 0, False, api_name="/reconstruct")
        while job.status().code != Status.PROCESSING and not job.done():
            time.sleep(0.02)
        t0 = time.time()
        client.predict(api_name="/reconstruct_cancel")
        job.result(timeout=60)  # no error: a cancel is not a failure (the page shows "reconstruction cancelled")
        stopped = time.time() - t0
        assert stopped < 0.6 * full, (stopped, full)  # it did not run to the end
        seen, low, pick, ridge, gallery, scores = client.predict(2, 0.5, 2, 5, 3.5, 0, False, api_name="/reconstruct")
        assert pick and len(gallery) == 2
