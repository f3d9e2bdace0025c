"""The UMAP and Evaluate tabs on the tiny bundle of test_pipelines: the joint UMAP and its on-disk cache, the
metric table with its per-trial scores, retrieval and CSV files, and both endpoints over HTTP."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mindeye.data.errors import DataError


@pytest.fixture(scope="module")
def engine(tiny_stack, tmp_path_factory):
    """An engine on the tiny bundle whose caches (UMAP, ridge, CSV files) live in a fresh folder."""
    from mindeye.bundle import Bundle
    from mindeye.engine import Engine
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINDEYE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield Engine(Bundle.load(tiny_stack), log=lambda *a: None)


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _cell(v):
    """A CSV cell as the engine's value: numbers back to numbers, text as is."""
    try:
        return float(v)
    except ValueError:
        return v


def _values(v) -> list:
    """A plotly JSON array: a list, or plotly's typed array ``{"dtype", "bdata"}`` (base64)."""
    import base64
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v or [])


def test_umap_lays_out_every_pair_once_and_reads_its_cache(engine, monkeypatch):
    from mindeye import embedding_map
    from mindeye.bundle import cache_root
    calls = []
    real = embedding_map.fit_umap
    monkeypatch.setattr(embedding_map, "fit_umap", lambda pts: calls.append(pts.shape) or real(pts))
    img, brain, cached = engine.umap("final")
    n = engine.n_test
    assert img.shape == (n, 2) and brain.shape == (n, 2) and not cached and np.isfinite(img).all()
    assert calls == [(2 * n, engine.test_image_embeddings("final").shape[1])], "one fit on both sets jointly"
    assert len(list((cache_root() / "umap").glob("*.npz"))) == 1
    img2, brain2, cached2 = engine.umap("final")
    assert cached2 and len(calls) == 1, "the second call must not fit again"
    assert np.array_equal(img, img2) and np.array_equal(brain, brain2)

    fig = engine.umap_figure("final", "colour of the largest object", highlight=3)
    assert len(calls) == 1 and fig.layout.uirevision == "umap-final"
    points = [tr for tr in fig.data if tr.mode == "markers" and tr.x is not None and tr.x[0] is not None]
    assert sum(len(tr.x) for tr in points) == 2 * n, "every image and every brain prediction, once"
    lines = next(tr for tr in fig.data if tr.name == "pairs")
    assert np.isfinite(np.asarray(lines.x, float)).sum() == 2 * n, "one line per pair"
    caption = engine.test_trial(3).caption
    assert any(caption in t for tr in points for t in tr.text), "hover shows the caption"
    colour = engine.test_trial(3).labels["colour"][0]
    from mindeye.data import scenes
    assert any(tr.name == "trial 3" for tr in fig.data) and scenes.COLOUR_NAMES[colour] in {tr.name for tr in points}
    with pytest.raises(DataError, match="cannot colour by"):
        engine.umap_figure("final", "mood")
    with pytest.raises(DataError, match="UMAP target"):
        engine.umap("middle")

    # another model's predictions (say a run from the Train tab) get their own map, not the cached one
    other = engine.brain_embeddings("final") + 0.5
    monkeypatch.setattr(engine, "brain_embeddings", lambda target="final": other)
    _, brain3, cached3 = engine.umap("final")
    assert not cached3 and len(calls) == 2 and not np.array_equal(brain3, brain)


def test_evaluate_scores_every_method_and_writes_the_same_numbers(engine):
    from mindeye.engine import EVAL_LOWLEVEL, Source
    from mindeye.evaluation import NOT_AVAILABLE, PAPER_FEATURE_METRICS
    from mindeye.bundle import cache_root
    seen = []
    with pytest.raises(DataError, match="number of trials should be 1-60"):
        engine.evaluate(0)
    ev = engine.evaluate(3, [Source.MINDEYE, Source.RIDGE, Source.TRUE], samples=1, steps=2,
                         progress=lambda f, m: seen.append((f, m)))
    assert list(ev.columns) == ["MindEye", "ridge", "true tokens (ceiling)", EVAL_LOWLEVEL]
    for name, col in ev.columns.items():
        assert col["n"] == 3, name
        assert -1 <= col["PixCorr (96 px)"] <= 1 and 0 <= col["bundle CLIP 2-way"] <= 1, name
        assert all(col[m] == NOT_AVAILABLE for m in PAPER_FEATURE_METRICS), "no weights, no number"
        assert "judge shape_largest" in col
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and seen[-1][0] == 1.0
    assert any("ridge" in m for _, m in seen) and any("retrieval" in m for _, m in seen)
    assert set(ev.retrieval) == {"MindEye (final)", "MindEye (hidden)", "ridge (hidden)"}
    assert ev.n_way == 60 and all(0 <= r[d]["mean"] <= 1 for r in ev.retrieval.values() for d in ("image", "brain"))

    # per-trial scores average to the table's numbers; ranks agree with the Retrieve tab's
    header, rows = ev.per_trial_rows()
    assert [r[0] for r in rows] == [0, 1, 2] and len(header) == len(rows[0])
    for name, col in ev.columns.items():
        per = ev.per_trial[name]
        assert np.isclose(per["PixCorr"].mean(), col["PixCorr (96 px)"], atol=1e-9), name
        assert np.isclose(per["SSIM"].mean(), col["SSIM (96 px)"], atol=1e-9), name
        assert np.isclose(per["CLIP 2-way"].mean(), col["bundle CLIP 2-way"], atol=1e-9), name
    assert [int(ev.image_rank[i]) for i in range(3)] == [engine.retrieve(i, k=1)[2] for i in range(3)]

    # the CSV files hold the same numbers, under the project's cache
    assert ev.csv.parent == cache_root() / "evaluate" and ev.per_trial_csv.parent == ev.csv.parent
    table = _read_csv(ev.csv)
    methods = table[0][1:]
    assert table[0][0] == "metric" and methods == [*ev.columns, *[k for k in ev.retrieval if k not in ev.columns]]
    body = {r[0]: r[1:] for r in table[1:]}
    for name in ev.columns:
        for metric, value in ev.columns[name].items():
            assert _cell(body[metric][methods.index(name)]) == value, (name, metric)
    image_row = next(v for k, v in body.items() if k.startswith("image retrieval top-1 (60-way"))
    assert _cell(image_row[methods.index("MindEye (final)")]) == ev.retrieval["MindEye (final)"]["image"]["mean"]
    assert _cell(body["retrieval chance (1/60)"][methods.index("ridge (hidden)")]) == 1 / 60
    per_csv = _read_csv(ev.per_trial_csv)
    assert per_csv[0] == header and [[_cell(c) for c in r] for r in per_csv[1:]] == \
        [[float(c) if isinstance(c, (int, float)) else c for c in r] for r in rows]


def test_app_serves_umap_and_evaluate(engine):
    from .conftest import served_app
    with served_app(engine) as client:
        plot, image, caption, note = client.predict("final", "shape of the largest object", 5, api_name="/umap")
        fig = json.loads(plot["plot"]) if isinstance(plot, dict) and "plot" in plot else plot
        n = engine.n_test
        xs = [_values(tr.get("x")) for tr in fig["data"] if tr.get("mode") == "markers"]
        assert sum(len(x) for x in xs if x and x[0] is not None) == 2 * n
        assert engine.test_trial(5).caption in caption and f"{2 * n} points" in note

        out = client.predict(2, ["MindEye", "true tokens (ceiling)"], 0.85, 1, 2, 0, "MindEye · PixCorr", True,
                             api_name="/evaluate")
        coverage, summary, retrieval, files, sort_by, table = out
        assert "**2 of 60**" in coverage and "not available" in summary and "1/60" in retrieval
        assert "| MindEye | true tokens (ceiling) |" in summary
        summary_csv = next(f for f in files if not str(f).endswith("_per_trial.csv"))
        rows = {r[0]: r[1:] for r in _read_csv(summary_csv)[1:]}
        line = next(x for x in summary.splitlines() if x.startswith("| PixCorr (96 px) |"))
        shown = [float(c) for c in line.strip("|").split("|")[1:3]]
        assert shown == [round(float(c), 3) for c in rows["PixCorr (96 px)"][:2]]
        assert len(table["data"]) == 2
        pix = [r[table["headers"].index("MindEye · PixCorr")] for r in table["data"]]
        assert pix == sorted(pix), "sorted worst first"
        with pytest.raises(Exception, match="choose at least one method"):
            client.predict(3, [], 0.85, 1, 2, 0, "trial", False, api_name="/evaluate")
