"""Large-pool retrieval (V1's LAION-5B step): pool folders built from scenes or an image folder, loaded back,
refused when built with other CLIP weights or corrupt; a clip-retrieval index folder and a clip-retrieval
server (a local fake on 127.0.0.1) as pools; the `retrieve` command's files and its second-order pick.

Everything is small: the shipped demo SceneCLIP (3 MB) and MindEye models trained for a few steps against it on
the tiny SimNSD subject; what is checked is the plumbing, against independent recomputation."""
from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mindeye.data.errors import DataError
from mindeye.pipelines import pool as P

from .conftest import cache_dir, free_port


def _make_clip(folder: Path, seed: int) -> Path:
    """A copy of the shipped demo SceneCLIP (an untrained one maps every scene to nearly the same point),
    its weights nudged by ``seed`` (0: unchanged), so that its sha256 differs."""
    from mindeye.bundle import DEMO_BUNDLE, Bundle
    from mindeye.models.scene_clip import SceneCLIP
    b = Bundle.load(DEMO_BUNDLE)
    clip = SceneCLIP.load(b.resolve(b.models["clip"]))
    if seed:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in clip.model.parameters():
                p.add_(1e-3 * torch.randn(p.shape, generator=g))
    clip.save(folder)
    return folder


def _load_clip(folder):
    from mindeye.models.scene_clip import SceneCLIP
    return SceneCLIP.load(folder)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """The demo SceneCLIP and a copy with other weights: ``(folder, other_folder)``."""
    root = tmp_path_factory.mktemp("clips")
    return _make_clip(root / "clip", 0), _make_clip(root / "other", 1)


@pytest.fixture(scope="module")
def clip(clips):
    return _load_clip(clips[0])


@pytest.fixture(scope="module")
def scene_pool(clip, tmp_path_factory):
    return P.build_scene_pool(clip, 40, tmp_path_factory.mktemp("pools") / "scenes", seed=0, batch=16)


@pytest.fixture(scope="module")
def bundle(tiny_sim, clips, tmp_path_factory):
    """A bundle over the tiny SimNSD subject: the demo SceneCLIP + MindEye hidden (with prior) and final models
    trained a few steps against it."""

    from mindeye.cli import main
    root = tmp_path_factory.mktemp("bundle")
    out = root / "demo"
    out.mkdir()
    (out / "bundle.json").write_text(json.dumps({
        "name": "pool test", "dataset": {"kind": "simnsd", "path": str(tiny_sim[0]), "subject": 1, "seed": 0},
        "models": {"clip": str(clips[0])}}))
    with cache_dir(root / "cache"):
        assert main(["build-demo", "--tiny", "--out", str(out), "--work", str(root / "work"), "--workers", "0",
                     "--stages", "mindeye", "--mindeye_parts", "hidden,final"]) == 0
    return out


# ----------------------------------------------------------------------------------------- pool folders

def test_scene_pool_roundtrip(clip, clips, scene_pool):
    meta = json.loads((scene_pool / "pool.json").read_text())
    assert meta["kind"] == "simnsd-scenes" and meta["n"] == 40 and meta["dim"] == clip.embed_dim
    assert meta["target"] == "final" and meta["embedder"] == P.embedder_identity(clip)
    from mindeye.train import file_sha256
    assert meta["embedder"]["sha256"] == file_sha256(clips[0] / "model.safetensors")
    emb = np.load(scene_pool / "embeddings.npy")
    assert emb.dtype == np.float16 and np.allclose(np.linalg.norm(emb.astype(np.float32), axis=1), 1, atol=2e-3)
    ids = np.load(scene_pool / "ids.npy")
    assert np.array_equal(ids, P.POOL_ID_BASE + np.arange(40))

    pool = P.load_pool(scene_pool, expect=P.embedder_identity(clip))
    assert isinstance(pool, P.LocalPool) and len(pool) == 40
    # the thumbnail is the scene rendered again from its id, and it is what was embedded
    key = int(ids[23])
    img = pool.image(key)
    assert img.shape == (96, 96, 3) and np.array_equal(img, P.render_scene(0, key, 96))
    with torch.no_grad():
        q = clip.final(img[None]).float()
    assert np.allclose(q[0].numpy(), emb[23].astype(np.float32), atol=2e-3)
    c = pool.candidates(q, 5)
    assert c.keys[0] == key and c.scores[0] > 0.999 and len(c.images) == 5 and np.all(np.diff(c.scores) <= 1e-6)
    assert c.captions[0].startswith("a ")
    with pytest.raises(DataError, match="not in this pool"):
        pool.image(P.POOL_ID_BASE + 40)


def test_an_interrupted_build_resumes_and_leaves_no_half_pool(clip, tmp_path):
    out = tmp_path / "pool"

    class SceneCLIP:  # the same embedder (same name and weights) that counts its batches and can "die"
        folder = clip.folder

        def __init__(self, die_at=None):
            self.calls, self.die_at = 0, die_at

        def final(self, images, normalize=True):
            self.calls += 1
            if self.calls == self.die_at:
                raise KeyboardInterrupt
            return clip.final(images, normalize)

    with pytest.raises(KeyboardInterrupt):
        P.build_scene_pool(SceneCLIP(die_at=3), 40, out, batch=10)  # two batches embedded, then the machine dies
    assert not out.exists(), "nothing at the target until the build is complete"
    again = SceneCLIP()
    P.build_scene_pool(again, 40, out, batch=10)
    assert again.calls == 2, "the two finished batches were not embedded again"
    clean = P.build_scene_pool(clip, 40, tmp_path / "clean", batch=10)
    assert np.array_equal(np.load(out / "embeddings.npy"), np.load(clean / "embeddings.npy"))
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_pool_built_with_other_clip_weights_is_refused(clips, scene_pool):
    other = P.embedder_identity(_load_clip(clips[1]))
    with pytest.raises(DataError, match=r"built with SceneCLIP weights sha256 [0-9a-f]{16}, but the model's CLIP is "
                                        rf"SceneCLIP sha256 {other['sha256']}"):
        P.load_pool(scene_pool, expect=other)


def _copy(src: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage, match", [
    ("missing", "no pool there"),
    ("empty", "not a pool"),
    ("json", "pool.json: not valid JSON"),
    ("truncated", r"embeddings.npy: not a readable .npy"),
    ("count", r"expected float16 \[41, 128\] as pool.json says, found float16 \[40, 128\]"),
    ("ids", r"ids.npy: missing"),
    ("kind", "kind should be one of"),
])
def test_corrupt_or_missing_pool_folder_is_named(scene_pool, tmp_path, damage, match):
    p = tmp_path / "p"
    if damage == "empty":
        p.mkdir()
    elif damage != "missing":
        _copy(scene_pool, p)
        meta = json.loads((p / "pool.json").read_text())
        if damage == "json":
            (p / "pool.json").write_text("{not json")
        elif damage == "truncated":
            raw = (p / "embeddings.npy").read_bytes()
            (p / "embeddings.npy").write_bytes(raw[:100])
        elif damage == "count":
            (p / "pool.json").write_text(json.dumps({**meta, "n": 41}))
        elif damage == "ids":
            (p / "ids.npy").unlink()
        elif damage == "kind":
            (p / "pool.json").write_text(json.dumps({**meta, "kind": "laion"}))
    with pytest.raises(DataError, match=match):
        P.load_pool(p)


def test_pool_scenes_never_coincide_with_the_dataset(tiny_sim, scene_pool):
    from mindeye.data.canonical import load_subject
    from mindeye.data.simnsd import CALIBRATION_IDS, SimConfig, global_image_ids
    store = load_subject(tiny_sim[0], 1).image_store
    ds_ids = store.image_ids
    pool_ids = np.load(scene_pool / "ids.npy")
    assert not np.intersect1d(ds_ids, pool_ids).size
    # and at full size, for every subject: the dataset's ids and the calibration scenes lie below the pool's
    for subj in (1, 2, 5, 7):
        train, test = global_image_ids(SimConfig(subj=subj))
        assert max(train.max(), test.max(), CALIBRATION_IDS.max()) < P.POOL_ID_BASE
    # same seed as the dataset, yet no pool picture equals a dataset picture
    pool = P.load_pool(scene_pool)
    ds_hashes = {hash(im.tobytes()) for im in store.read_all()}
    assert not {hash(pool.image(int(i)).tobytes()) for i in pool_ids} & ds_hashes
    assert "disjoint" in json.loads((scene_pool / "pool.json").read_text())
    with pytest.raises(DataError, match="must start at 200000000"):
        P.build_scene_pool(None, 4, scene_pool.parent / "bad", first_id=5)


def test_folder_pool_skips_unreadable_files(clip, tmp_path):
    from PIL import Image
    imgs = tmp_path / "imgs"
    (imgs / "sub").mkdir(parents=True)
    rendered = {}
    for k, name in enumerate(["a.png", "b.jpg", "sub/c.png", "sub/d.PNG"]):
        im = P.render_scene(0, P.POOL_ID_BASE + 1000 + k, 80 + 10 * k)  # sizes differ: squared on the way in
        Image.fromarray(im).save(imgs / name, format="PNG" if name.lower().endswith("png") else "JPEG", quality=95)
        rendered[name] = im
    (imgs / "sub" / "broken.jpg").write_bytes(b"not a jpeg")
    (imgs / "notes.txt").write_text("ignored")
    out = P.build_folder_pool(clip, imgs, tmp_path / "pool", size=64, log=lambda *a: None)
    meta = json.loads((out / "pool.json").read_text())
    assert meta["kind"] == "image-folder" and meta["n"] == 4 and meta["skipped"] == ["sub/broken.jpg"]
    assert (out / "paths.txt").read_text().split() == ["a.png", "b.jpg", "sub/c.png", "sub/d.PNG"]
    pool = P.load_pool(out, expect=P.embedder_identity(clip))
    img = pool.image("sub/c.png")
    assert img.shape == (64, 64, 3) and np.array_equal(img, P.square(rendered["sub/c.png"], 64))
    with torch.no_grad():
        q = clip.final(img[None]).float()
    assert pool.search(q, 2)[0].keys[0] == "sub/c.png"
    with pytest.raises(DataError, match="no images"):
        P.build_folder_pool(clip, tmp_path / "pool", tmp_path / "pool2")


def test_large_pools_get_an_approximate_index_that_finds_each_vector_itself(clip, tmp_path):
    from mindeye.pipelines.retrieval import Retriever
    g = torch.Generator().manual_seed(0)
    emb = F.normalize(torch.randn(3000, 16, generator=g), dim=-1)
    r = Retriever(emb, np.arange(3000), use_faiss=True, approximate=True, nprobe=4)
    assert r.kind.startswith("approximate (FAISS IVF, 64 cells, nprobe 4")
    s, i = r.topk(emb[:200], 10)
    assert (i[:, 0] == np.arange(200)).all() and np.allclose(s[:, 0], 1, atol=1e-5)
    # a pool folder stores its index, and loading uses it instead of training another
    out = P.build_scene_pool(clip, 40, tmp_path / "pool", batch=20, build_index=True)
    meta = json.loads((out / "pool.json").read_text())
    assert meta["index"]["file"] == "index.faiss" and (out / "index.faiss").exists()
    pool = P.load_pool(out)
    assert "approximate" in pool.describe()
    emb = np.load(out / "embeddings.npy").astype(np.float32)
    assert pool.search(emb[7:8], 3)[0].keys[0] == P.POOL_ID_BASE + 7
    assert "exact" in P.load_pool(out, approximate=False).describe()


# ----------------------------------------------------------------------------------------- clip-retrieval formats

def _scene_set(clip, n=6, first=P.POOL_ID_BASE + 5000, size=72):
    images = [P.render_scene(0, first + i, size) for i in range(n)]
    with torch.no_grad():
        emb = clip.final(np.stack(images)).float().numpy()
    return images, emb / np.linalg.norm(emb, axis=1, keepdims=True)


def test_clip_retrieval_index_folder(clip, tmp_path):
    import faiss
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image
    images, emb = _scene_set(clip)
    folder = tmp_path / "index"
    (folder / "metadata").mkdir(parents=True)
    (folder / "imgs").mkdir()
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / "imgs" / f"{i}.png")
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb.astype(np.float32))
    faiss.write_index(index, str(folder / "image.index"))
    rows = [{"image_path": f"imgs/{i}.png", "url": None, "caption": f"scene {i}"} for i in range(6)]
    for part, sl in (("metadata_0.parquet", slice(0, 4)), ("metadata_1.parquet", slice(4, 6))):  # ids follow file order
        pq.write_table(pa.Table.from_pylist(rows[sl]), folder / "metadata" / part)
    pool = P.load_pool(folder)
    assert isinstance(pool, P.ClipRetrievalFolder) and pool.n == 6 and pool.dim == emb.shape[1]
    c = pool.candidates(emb[4:5], 3)
    assert c.keys[0] == 4 and c.captions[0] == "scene 4" and c.scores[0] > 0.999
    assert np.array_equal(c.images[0], images[4])
    with pytest.raises(DataError, match="has 8 dims but this pool's embeddings have"):
        pool.search(np.ones((1, 8)), 2)
    # metadata rows must match the index one to one
    pq.write_table(pa.Table.from_pylist(rows[4:5]), folder / "metadata" / "metadata_1.parquet")
    with pytest.raises(DataError, match="holds 6 vectors but metadata/\\*.parquet has 5 rows"):
        P.load_pool(folder)
    (folder / "image.index").write_bytes(b"junk")
    with pytest.raises(DataError, match="image.index: not a readable FAISS index"):
        P.load_pool(folder)


class FakeClipBack:
    """A stand-in for `clip-retrieval back` on 127.0.0.1: /indices-list, /knn-service over a few scene
    embeddings, and the images at /img/N.png. Result 1's url is dead (404); result 2 comes inline as base64."""

    def __init__(self, images, emb, broken: str | None = None):
        self.images, self.emb, self.broken, self.requests = images, emb, broken, []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, body: bytes, ctype="application/json"):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/indices-list":
                    return self._send(200, json.dumps(["tiny-index"]).encode())
                if self.path.startswith("/img/") and self.path != "/img/1.png":
                    return self._send(200, fake.png(int(self.path[5:-4])), "image/png")
                self._send(404, b"not found", "text/plain")

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append((self.path, body))
                if fake.broken == "html":
                    return self._send(200, b"<html>maintenance</html>", "text/html")
                if fake.broken == "500":
                    return self._send(500, b"faiss assertion failed", "text/plain")
                q = np.asarray(body["embedding_input"], np.float32)
                order = np.argsort(-(fake.emb @ q))[: body["num_images"]]
                out = []
                for i in order:
                    r = {"id": int(i), "similarity": float(fake.emb[i] @ q), "caption": f"scene {i}",
                         "url": f"http://127.0.0.1:{fake.port}/img/{i}.png"}
                    if i == 2:
                        r["image"] = base64.b64encode(fake.png(2)).decode()
                        r.pop("url")
                    out.append(r)
                self._send(200, json.dumps(out).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def png(self, i: int) -> bytes:
        from PIL import Image
        buf = io.BytesIO()
        Image.fromarray(self.images[i]).save(buf, format="PNG")
        return buf.getvalue()

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_clip_retrieval_server_client(clip):
    images, emb = _scene_set(clip)
    with FakeClipBack(images, emb) as fake:
        pool = P.load_pool(fake.url + "/knn-service/")
        assert isinstance(pool, P.ClipRetrievalServer) and pool.knn_url == f"{fake.url}/knn-service"
        q = torch.from_numpy(emb[1:2] + emb[2:3])
        c = pool.candidates(q, 3)
        path, body = fake.requests[-1]
        assert path == "/knn-service" and body["modality"] == "image" and body["indice_name"] == "tiny-index"
        assert body["num_images"] == 3 * pool.overfetch and len(body["embedding_input"]) == emb.shape[1]
        assert {"text", "image", "image_url", "deduplicate", "use_safety_model", "use_violence_detector", "use_mclip",
                "aesthetic_score", "aesthetic_weight", "num_result_ids"} <= set(body)
        expect = [int(i) for i in np.argsort(-(emb @ (q[0].numpy() / np.linalg.norm(q[0].numpy()))))]
        assert c.keys == [i for i in expect if i != 1][:3], "best first, the dead url skipped"
        assert any("/img/1.png" in s and "404" in s for s in c.skipped)
        for key, im in zip(c.keys, c.images):  # real pictures (fetched or inline), never blank stand-ins
            assert np.array_equal(im, images[key])
    for broken, match in (("html", "the answer is not JSON"), ("500", "HTTP 500")):
        with FakeClipBack(images, emb, broken) as fake:
            with pytest.raises(DataError, match=rf"clip-retrieval server {fake.url}/knn-service: .*{match}"):
                P.load_pool(fake.url, indice_name="x").candidates(emb[:1], 2)


def test_clip_retrieval_server_unreachable_is_a_clear_error(clip):
    port = free_port()  # nothing listens there
    pool = P.load_pool(f"http://127.0.0.1:{port}", indice_name="laion5B-L-14")
    with pytest.raises(DataError, match=rf"http://127.0.0.1:{port}/knn-service is unreachable \(.*refused"):
        pool.candidates(np.ones((1, 128), np.float32), 16)


# ----------------------------------------------------------------------------------------- the retrieve command

def test_retrieve_command_writes_the_seeds_files(bundle, tmp_path, capsys, monkeypatch):
    from mindeye.bundle import Bundle
    from mindeye.cli import main
    from mindeye.engine import Engine
    clip = _load_clip(Bundle.load(bundle).resolve(Bundle.load(bundle).models["clip"]))
    pool_dir = P.build_scene_pool(clip, 48, tmp_path / "pool", batch=24)
    args = ["retrieve", "--bundle", str(bundle), "--trials", "3", "--out", str(tmp_path / "out")]
    capsys.readouterr()
    assert main([*args, "--pool", str(pool_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    all_images = torch.load(tmp_path / "out" / "all_images.pt", weights_only=True)
    picked = torch.load(tmp_path / "out" / "pool_test_laion_retrievals_top16.pt", weights_only=True)
    assert all_images.shape == (3, 3, 96, 96) and picked.shape == (3, 3, 96, 96)
    assert summary["n"] == 3 and len(summary["rows"]) == 3 and summary["second_order"] == "hidden"

    # recompute both stages independently: exact top-16 by the final model, then the hidden-token pick
    e = Engine(Bundle.load(bundle), log=lambda *a: None)
    emb = torch.from_numpy(np.load(pool_dir / "embeddings.npy").astype(np.float32))
    ids = np.load(pool_dir / "ids.npy")
    final = F.normalize(e.brain_embeddings("final")[:3].flatten(1), dim=-1)
    hidden = e.brain_embeddings("hidden")[:3].flatten(1)
    for t, row in enumerate(summary["rows"]):
        top = ids[(final[t] @ emb.T).topk(16).indices.numpy()]
        assert row["ids"] == top.tolist() and len(row["scores"]) == 16
        ims = np.stack([P.render_scene(0, i, 96) for i in top])
        with torch.no_grad():
            h = clip.hidden(ims).float().flatten(1)
        best = int(F.cosine_similarity(h, hidden[t][None], dim=1).argmax())
        assert row["picked"] == int(top[best]) and row["picked_rank"] == best + 1
        assert torch.equal((picked[t] * 255).round().to(torch.uint8).permute(1, 2, 0),
                           torch.from_numpy(P.render_scene(0, row["picked"], 96)))
    side = json.loads((tmp_path / "out" / "pool_test_laion_retrievals_top16.json").read_text())
    assert side["image_ids"] == [int(i) for i in e.test_ids[:3]]

    # no pool named and none built: a clear error that says how to build one
    monkeypatch.setattr(P, "DEFAULT_POOL", Path("no") / "such" / "pool")
    capsys.readouterr()
    assert main(args) == 2
    assert "python -m mindeye index build" in capsys.readouterr().err
    # a pool embedded by another CLIP is refused with both weights named
    other = tmp_path / "other_clip"
    other_pool = P.build_scene_pool(_load_clip(_make_clip(other, 5)), 8, tmp_path / "other_pool", batch=8)
    assert main([*args, "--pool", str(other_pool)]) == 2
    assert "built with SceneCLIP weights sha256" in capsys.readouterr().err


def test_retrieve_command_against_a_server(bundle, tmp_path, capsys):
    from mindeye.bundle import Bundle
    from mindeye.cli import main
    clip = _load_clip(Bundle.load(bundle).resolve(Bundle.load(bundle).models["clip"]))
    images, emb = _scene_set(clip, n=8, size=96)
    out = tmp_path / "out"
    args = ["retrieve", "--bundle", str(bundle), "--trials", "2", "--out", str(out), "--num_retrieved", "4"]
    with FakeClipBack(images, emb) as fake:
        assert main([*args, "--pool", fake.url, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    picked = torch.load(out / "pool_test_laion_retrievals_top4.pt", weights_only=True)
    assert picked.shape == (2, 3, 96, 96) and all(1 not in r["ids"] and len(r["ids"]) == 4 for r in summary["rows"])
    for t, row in enumerate(summary["rows"]):
        assert torch.equal((picked[t] * 255).round().to(torch.uint8).permute(1, 2, 0),
                           torch.from_numpy(images[row["picked"]]))
    # a dead server: exit 2, the URL and the cause named, and no files written (no blank images)
    port = free_port()
    dead = tmp_path / "dead"
    assert main([*args[:-4], "--out", str(dead), "--pool", f"http://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and "unreachable" in err and not dead.exists()


def test_retrieve_tab_searches_a_pool_and_names_a_dead_server(bundle, tmp_path):
    import gradio as gr

    from components import retrieve
    from mindeye.bundle import Bundle
    from mindeye.engine import Engine, Model
    e = Engine(Bundle.load(bundle), log=lambda *a: None)
    pool_dir = P.build_scene_pool(e.model(Model.CLIP), 24, tmp_path / "pool", batch=24)
    with gr.Blocks() as demo:
        retrieve.build(e)
    fn = next(f for f in demo.fns.values() if f.api_name == "retrieve")
    seen, items, text = fn.fn(1, 4, "final", "image retrieval")  # the four-argument call: the test set, as before
    assert "ranks" in text and len(items) == 4
    seen, items, text = fn.fn(1, 4, "final", "image retrieval", str(pool_dir))
    assert len(items) == 4 and sum(cap.startswith("★") for _, cap in items) == 1 and "second-order pick" in text
    assert all(im.shape == (96, 96, 3) and im.std() > 0 for im, _ in items)
    port = free_port()
    with pytest.raises(gr.Error, match=rf"127.0.0.1:{port}.*unreachable"):
        fn.fn(1, 4, "final", "image retrieval", f"http://127.0.0.1:{port}")
    with pytest.raises(gr.Error, match="test set"):
        fn.fn(1, 4, "final", "brain retrieval", str(pool_dir))
    # the endpoint keeps its four required inputs: the pool is optional for API clients (default: the test set)
    params = demo.get_api_info()["named_endpoints"]["/retrieve"]["parameters"]
    assert len(params) == 5 and params[-1]["parameter_has_default"] and params[-1]["parameter_default"] == "test set"
