"""Large image pools for top-k retrieval: MindEye's LAION-5B step at the scale this project can hold.

V1 sent the final-layer model's brain embedding to clip-retrieval's LAION-5B server (``knn.laion.ai``), took
the top 16 images and kept the one whose CLIP hidden tokens were nearest the hidden model's brain prediction
(second-order selection). That server has been offline since early 2024, and V1 then silently returned white
images. Here a pool is one of:

- a **pool folder** this module builds (``build_scene_pool``: procedural SimNSD-style scenes, the default
  "LAION-scale" stand-in; ``build_folder_pool``: any folder of jpg/png)::

      pool.json        format, kind ("simnsd-scenes" | "image-folder"), n, dim, target ("final": the CLIP
                       image embedding, which the ``mindeye_final`` model's projector predicts), the embedder
                       (variant + ``train.file_sha256`` of its weights), and for scenes the scene seed and id
                       range (disjoint from SimNSD's own images, see ``POOL_ID_BASE``); for folders the root
      embeddings.npy   [n, dim] float16, rows L2-normalised
      ids.npy          [n] int64 scene ids (scenes)  |  paths.txt  one path per line, relative to the root
      index.faiss      (pools of ``APPROX_FROM`` or more, with faiss) the approximate IVF index, so loading
                       does not train it again

  Only ids and embeddings are stored: a scene's picture is rendered again from ``(seed, id)`` on demand.
- a local **clip-retrieval index folder** (``image.index`` FAISS file + ``metadata/*.parquet`` whose rows
  follow the index's ids, with ``image_path``, ``url`` and ``caption`` columns, as ``clip-retrieval index``
  writes them);
- a **clip-retrieval server** URL (``clip-retrieval back``; the request is the JSON ``ClipClient`` posts to
  ``{url}/knn-service``).

Whatever goes wrong (a missing or corrupt folder, a pool built with other CLIP weights than the bundle's, an
unreachable server, a bad answer, images that cannot be fetched) is a ``DataError`` naming what was expected
and what was found. No blank image ever stands in for a missing one.
"""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.errors import DataError
from .pool_folders import find_pools  # noqa: F401  (re-exported)
from .retrieval import APPROX_FROM, Retriever, build_ivf, describe_index

POOL_FORMAT = 1
KINDS = ("simnsd-scenes", "image-folder")
# Pool scenes take ids from here up. SimNSD's own images have ids below 10^6 (test ids 0..n_test-1, then each
# subject's train block), the vision stack trains on streams from 10^7 (CLIP, VAE, judge, decoder: offsets up
# to ~7 x 10^7) and the simulator's calibration scenes are 10^8 .. 10^8 + 255. A scene is a pure function of
# (seed, id), so ids from 2 x 10^8 never repeat any of those pictures, whatever the seed. Training's synthetic
# trials take theirs from 3 x 10^8 (training/synthetic.py), so no pool scene was ever a training image.
POOL_ID_BASE = 200_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DEFAULT_POOL = Path("data") / "pool"  # where `index build` is told to put the default pool (relative to the project)
BUILD_HINT = "python -m mindeye index build --scenes 100000 --out data/pool"
DEAD_LAION = ("The public LAION-5B server V1 used (knn.laion.ai) has been offline since early 2024; point the pool "
              f"at your own clip-retrieval server, a clip-retrieval index folder, or a local pool ({BUILD_HINT})")


# ----------------------------------------------------------------------------------------- embedder identity

_SHA_CACHE: dict = {}


def weights_file(path: Path | str) -> Path:
    """The weights file behind an embedder: the file itself, or in a folder ``model.safetensors`` (SceneCLIP,
    transformers), else its first ``*.safetensors`` / ``*.bin`` / ``*.pt``."""
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        if (p / "model.safetensors").exists():
            return p / "model.safetensors"
        for pattern in ("*.safetensors", "*.bin", "*.pt"):
            found = sorted(p.glob(pattern))
            if found:
                return found[0]
    raise DataError(f"{p}: no CLIP weights there (expected a weights file or a folder with model.safetensors)")


def weights_sha256(path: Path | str) -> str:
    """``mindeye.train.file_sha256`` of the weights (16 hex digits), cached per file, size and mtime."""
    from ..train import file_sha256
    f = weights_file(path)
    st = f.stat()
    key = (str(f.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = file_sha256(f)
    return _SHA_CACHE[key]


def embedder_identity(embedder, weights: Path | str | None = None) -> dict:
    """``{"variant", "sha256"}`` naming an embedder's exact weights (a loaded SceneCLIP knows its folder)."""
    src = weights if weights is not None else getattr(embedder, "folder", None)
    if src is None:
        raise DataError(f"cannot tell which weights this {type(embedder).__name__} holds: pass its weights path")
    return {"variant": type(embedder).__name__, "sha256": weights_sha256(src)}


# ----------------------------------------------------------------------------------------- images

def square(image, size: int) -> np.ndarray:
    """Centre-crop to a square and resize: uint8 ``[size, size, 3]`` (accepts arrays and PIL images)."""
    from PIL import Image
    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
    im = im.convert("RGB")
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    if s != size:
        im = im.resize((size, size), Image.BICUBIC if s < size else Image.LANCZOS)
    return np.array(im, dtype=np.uint8)


def _decode_image(data: bytes, what: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{what}: not a readable image ({type(e).__name__}: {str(e)[:120]})") from e


def _read_image_file(path: Path) -> np.ndarray:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the image ({e.strerror or e})") from e
    return _decode_image(data, str(path))


def render_scene(seed: int, image_id: int, size: int) -> np.ndarray:
    from ..data import scenes as S
    return np.array(S.render(S.sample_scene(int(seed), int(image_id)), int(size), int(seed)))  # a writable copy


def _render_scene_chunk(args) -> np.ndarray:
    ids, seed, size = args
    torch.set_num_threads(1)
    return np.stack([render_scene(seed, i, size) for i in ids])


# ----------------------------------------------------------------------------------------- results

@dataclass
class Candidates:
    """One query's top-k from a pool, best first."""
    keys: list  # scene ids (int), relative paths (str) or clip-retrieval ids (int)
    scores: np.ndarray  # [k] cosine similarity to the query
    images: list  # uint8 [H, W, 3] each
    captions: list  # str or None each
    skipped: list = field(default_factory=list)  # remote results whose image could not be had: "url: cause"


@dataclass
class PoolRetrieval:
    """Top-k per trial from a pool with the final-layer brain embedding, then V1's second-order pick."""
    keys: list  # [Q][k]
    scores: list  # [Q] arrays [k]: cosine(final-layer brain embedding, pool embedding), first stage
    second_order: list  # [Q] arrays [k]: cosine(candidate's CLIP hidden tokens, hidden model's brain prediction)
    best: np.ndarray  # [Q] index of the pick among each trial's candidates
    images: list  # [Q][k] uint8 [size, size, 3]
    captions: list  # [Q][k]
    source: str  # the pool, in words

    @property
    def picked_keys(self) -> list:
        return [k[b] for k, b in zip(self.keys, self.best)]

    def picked_images(self) -> torch.Tensor:
        """``[Q, 3, size, size]`` float in [0, 1]: each trial's second-order pick (V1's saved retrievals)."""
        x = np.stack([ims[b] for ims, b in zip(self.images, self.best)])
        return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0


def jsonable(key):
    return int(key) if isinstance(key, (int, np.integer)) else str(key)


# ----------------------------------------------------------------------------------------- pools

class Pool:
    """What retrieval needs of a pool: ``search`` and the images of the results."""
    source = "pool"
    dim: int | None = None
    image_size = 96

    def search(self, query, k: int) -> list[Candidates]:
        """``query [Q, D]`` -> per query the top ``k`` keys and scores (images not loaded)."""
        raise NotImplementedError

    def image(self, key) -> np.ndarray:
        raise NotImplementedError

    def candidates(self, query, k: int) -> Candidates:
        """The top ``k`` of one query with their images."""
        c = self.search(query, k)[0]
        c.images = [self.image(key) for key in c.keys]
        return c

    def describe(self) -> str:
        return self.source

    def _check_query(self, query) -> torch.Tensor:
        q = F.normalize(torch.as_tensor(query).float().reshape(len(query), -1), dim=-1)
        if self.dim is not None and q.shape[1] != self.dim:
            raise DataError(f"{self.source}: the query has {q.shape[1]} dims but this pool's embeddings have "
                            f"{self.dim} (was it built with another CLIP than the model's?)")
        return q


class LocalPool(Pool):
    """A pool folder written by ``build_scene_pool`` / ``build_folder_pool``; see ``load_pool``."""

    def __init__(self, path: Path, meta: dict, embeddings: np.ndarray, keys: np.ndarray, index=None,
                 approximate: bool | None = None):
        self.path, self.meta, self.keys = Path(path), meta, keys
        self.kind, self.dim, self.n = meta["kind"], int(meta["dim"]), int(meta["n"])
        self.image_size = int(meta.get("image_size", 96))
        self.source = f"{self.path} ({self.n:,} {'scenes' if self.kind == 'simnsd-scenes' else 'images'})"
        self.retriever = Retriever(embeddings, keys, approximate=approximate, index=index)

    def __len__(self) -> int:
        return self.n

    def describe(self) -> str:
        return f"{self.source}, {self.retriever.kind} search"

    def search(self, query, k: int) -> list[Candidates]:
        q = self._check_query(query)
        k = min(int(k), self.n)
        scores, keys = self.retriever.topk(q, k)
        out = []
        for s, ks in zip(scores, keys):
            ks = [int(x) if self.kind == "simnsd-scenes" else str(x) for x in ks]
            out.append(Candidates(ks, np.asarray(s, np.float32), [], [self.caption(x) for x in ks]))
        return out

    def caption(self, key):
        if self.kind == "simnsd-scenes":
            from ..data import scenes as S
            return S.caption(S.sample_scene(int(self.meta["scene_seed"]), int(key)))
        return str(key)

    def image(self, key) -> np.ndarray:
        """The pool image ``key`` at the pool's size: a scene rendered from its id, or the folder's file."""
        if self.kind == "simnsd-scenes":
            first, last = int(self.meta["first_id"]), int(self.meta["last_id"])
            try:
                i = int(key)
            except (TypeError, ValueError):
                raise DataError(f"{self.path}: scene ids are integers in {first}-{last}, got {key!r}") from None
            if not first <= i <= last:
                raise DataError(f"{self.path}: scene id {i} is not in this pool (ids {first}-{last})")
            return render_scene(self.meta["scene_seed"], i, self.image_size)
        root = Path(self.meta["root"])
        if not root.is_dir():
            raise DataError(f"{self.path}: the images' folder {root} named in pool.json is gone "
                            "(the pool stores embeddings and paths, not the pictures)")
        return square(_read_image_file(root / str(key)), self.image_size)


META_COLUMNS = ("image_path", "url", "caption")  # what clip-retrieval's metadata holds that a result needs


class ClipRetrievalFolder(Pool):
    """A local clip-retrieval index folder: ``image.index`` (FAISS) + ``metadata/*.parquet`` (rows follow the
    index's ids; files in name order, as clip-retrieval's ``ParquetMetadataProvider`` concatenates them)."""

    def __init__(self, path: Path | str, fetch_timeout: float = 10.0):
        self.path = Path(path)
        self.fetch_timeout = fetch_timeout
        index_file = self.path / "image.index"
        try:
            import faiss
        except ImportError:
            raise DataError(f"{self.path}: reading a clip-retrieval index needs faiss (pip install faiss-cpu)") from None
        try:
            self.index = faiss.read_index(str(index_file))
        except Exception as e:  # faiss raises RuntimeError with its C++ message
            raise DataError(f"{index_file}: not a readable FAISS index ({str(e).strip().splitlines()[-1][:160]})") from e
        self.dim = int(self.index.d)
        files = sorted((self.path / "metadata").glob("*.parquet"))
        if not files:
            raise DataError(f"{self.path}: no metadata/*.parquet (a clip-retrieval index folder holds image.index "
                            "and metadata/*.parquet with image_path, url and caption columns)")
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError("reading clip-retrieval metadata needs pyarrow (pip install -r requirements.txt)") from None
        self._tables, self._starts, have, n_meta = [], [], set(), 0
        for f in files:  # kept as Arrow tables (columnar, no Python object per row): read a row when shown
            try:
                names = pq.read_schema(f).names
                t = pq.read_table(f, columns=[c for c in META_COLUMNS if c in names])
            except Exception as e:
                raise DataError(f"{f}: not a readable parquet file ({type(e).__name__}: {str(e)[:120]})") from e
            have |= set(t.column_names)
            self._tables.append(t)
            self._starts.append(n_meta)
            n_meta += t.num_rows
        if n_meta != self.index.ntotal:
            raise DataError(f"{self.path}: image.index holds {self.index.ntotal} vectors but metadata/*.parquet has "
                            f"{n_meta} rows (they must match one to one)")
        if not have & {"image_path", "url"}:
            raise DataError(f"{self.path}: the metadata has no image_path or url column, so no result could be shown "
                            f"(found columns: {sorted(have) or 'none of image_path, url, caption'})")
        self.n = n_meta
        self.source = f"clip-retrieval index {self.path} ({self.n:,} images)"

    def describe(self) -> str:
        return f"{self.source}, {describe_index(self.index)} search"

    def row(self, i: int) -> dict:
        """Metadata row ``i`` (= FAISS id ``i``): ``{"image_path", "url", "caption"}``, None where absent."""
        import bisect
        if not 0 <= int(i) < self.n:
            raise DataError(f"{self.path}: no result {i} (ids 0-{self.n - 1})")
        f = bisect.bisect_right(self._starts, int(i)) - 1
        t, r = self._tables[f], int(i) - self._starts[f]
        return {c: (t.column(c)[r].as_py() if c in t.column_names else None) for c in META_COLUMNS}

    def search(self, query, k: int) -> list[Candidates]:
        q = self._check_query(query)
        scores, ids = self.index.search(np.ascontiguousarray(q.numpy()), min(int(k), self.n))
        out = []
        for s, i in zip(scores, ids):
            keep = i >= 0
            keys = [int(x) for x in i[keep]]
            out.append(Candidates(keys, s[keep].astype(np.float32), [], [self.row(x)["caption"] for x in keys]))
        return out

    def image(self, key) -> np.ndarray:
        i = int(key)
        meta = self.row(i)
        p, url = meta["image_path"], meta["url"]
        if p:
            path = Path(p) if Path(p).is_absolute() else self.path / p
            if path.exists():
                return _read_image_file(path)
        if url:
            return fetch_image(url, self.fetch_timeout)
        raise DataError(f"{self.path}: result {i} has no image (image_path {p!r} not found, no url)")

    def candidates(self, query, k: int) -> Candidates:
        return _load_candidates(self, self.search(query, k)[0], k, self.source)


def _load_candidates(pool: Pool, c: Candidates, k: int, where: str, image=None) -> Candidates:
    """Load the images of ``c`` in order, skipping results whose image cannot be had, until ``k`` are loaded.
    None loaded at all is an error naming the first cause (never a blank stand-in)."""
    image = image or pool.image
    keys, scores, images, captions, skipped = [], [], [], [], []
    for key, s, cap in zip(c.keys, c.scores, c.captions):
        if len(keys) >= k:
            break
        try:
            img = image(key)
        except DataError as e:
            skipped.append(str(e))
            continue
        keys.append(key)
        scores.append(s)
        images.append(img)
        captions.append(cap)
    if not keys:
        why = skipped[0] if skipped else "it returned no results"
        raise DataError(f"{where}: none of the {len(c.keys)} results' images could be loaded; first cause: {why}")
    return Candidates(keys, np.asarray(scores, np.float32), images, captions, skipped)


# ----------------------------------------------------------------------------------------- http

def _opener(url: str):
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in ("localhost", "::1") or host.startswith("127."):
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback never goes via a proxy
    return urllib.request.build_opener()


def _http(url: str, payload: dict | None = None, timeout: float = 30.0, what: str = "", hint: str = "") -> bytes:
    """GET (or POST ``payload`` as JSON) and return the body; failures are ``DataError``s naming the URL and
    the cause (``hint`` is added when nothing answered)."""
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers={"User-Agent": "mindeye-explorer",
                                          **({"Content-Type": "application/json"} if data is not None else {})})
    try:
        with _opener(url).open(req, timeout=timeout) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        body = ""
        try:
            body = e.read().decode(errors="replace").strip()[:200]
        except Exception:
            pass
        raise DataError(f"{what or url}: {url} answered HTTP {e.code} {e.reason}" + (f" ({body})" if body else "")) from e
    except urllib.error.URLError as e:
        reason = e.reason if not isinstance(e.reason, OSError) else (e.reason.strerror or e.reason)
        raise DataError(f"{what or url}: {url} is unreachable ({reason})" + (f". {hint}" if hint else "")) from e
    except (TimeoutError, OSError) as e:
        raise DataError(f"{what or url}: {url} is unreachable ({type(e).__name__}: {e})"
                        + (f". {hint}" if hint else "")) from e


def fetch_image(url: str, timeout: float = 10.0) -> np.ndarray:
    """An image from an http(s) URL as uint8 ``[H, W, 3]``; any failure is a ``DataError`` naming the URL."""
    if urllib.parse.urlsplit(str(url)).scheme not in ("http", "https"):
        raise DataError(f"image url {url!r}: only http and https URLs are fetched")
    return _decode_image(_http(str(url), timeout=timeout, what="image"), f"image {url}")


class ClipRetrievalServer(Pool):
    """A clip-retrieval server (``clip-retrieval back``): POST ``{url}/knn-service`` with the JSON fields
    clip-retrieval's ``ClipClient`` sends, an ``embedding_input`` and ``modality`` "image". Results are
    ``{"id", "similarity", "url" | "image" (base64), "caption"}``; images come from ``image`` when the server
    inlines them, else from ``url``. Like V1 (which asked for 300 to keep 16) it asks for ``overfetch`` times
    ``k`` results, because web URLs die: results whose image cannot be fetched are skipped."""

    def __init__(self, url: str, indice_name: str | None = None, timeout: float = 30.0, fetch_timeout: float = 10.0,
                 overfetch: int = 4, deduplicate: bool = True):
        base = str(url).rstrip("/")
        if base.endswith("/knn-service"):
            base = base[: -len("/knn-service")]
        if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
            raise DataError(f"clip-retrieval server {url!r}: expected an http:// or https:// URL")
        self.base, self.timeout, self.fetch_timeout = base, timeout, fetch_timeout
        self.overfetch, self.deduplicate = max(1, int(overfetch)), deduplicate
        self._indice = indice_name
        self.source = f"clip-retrieval server {self.base}"

    @property
    def knn_url(self) -> str:
        return f"{self.base}/knn-service"

    @property
    def indice_name(self) -> str:
        """The index queried: the one given, else the server's first (``GET {url}/indices-list``)."""
        if self._indice is None:
            raw = _http(f"{self.base}/indices-list", timeout=self.timeout, what=f"clip-retrieval server {self.base}",
                        hint=DEAD_LAION)
            try:
                names = json.loads(raw)
            except ValueError:
                names = None
            if not isinstance(names, list) or not names or not all(isinstance(x, str) for x in names):
                raise DataError(f"clip-retrieval server {self.base}: /indices-list should answer a JSON list of index "
                                f"names, found {raw[:120]!r}; name the index explicitly (indice_name)")
            self._indice = names[0]
        return self._indice

    def describe(self) -> str:
        return f"{self.source}, index {self._indice or '(server default)'}"

    def request(self, embedding: np.ndarray, num_images: int) -> dict:
        """The JSON body ``ClipClient`` posts (same fields; no aesthetic tilt and no safety filtering: a brain
        embedding is the whole query)."""
        return {"text": None, "image": None, "image_url": None,
                "embedding_input": [float(x) for x in np.asarray(embedding, np.float32).ravel()],
                "deduplicate": self.deduplicate, "use_safety_model": False, "use_violence_detector": False,
                "indice_name": self.indice_name, "use_mclip": False, "aesthetic_score": "", "aesthetic_weight": "",
                "modality": "image", "num_images": int(num_images), "num_result_ids": int(num_images)}

    def query(self, embedding, num_images: int) -> list[dict]:
        where = f"clip-retrieval server {self.knn_url}"
        raw = _http(self.knn_url, self.request(embedding, num_images), timeout=self.timeout, what=where,
                    hint=DEAD_LAION)
        try:
            res = json.loads(raw)
        except ValueError:
            raise DataError(f"{where}: the answer is not JSON (starts {raw[:80]!r})") from None
        if isinstance(res, dict):
            msg = res.get("error") or res.get("message") or res
            raise DataError(f"{where}: expected a JSON list of results, the server answered {str(msg)[:200]}")
        if not isinstance(res, list):
            raise DataError(f"{where}: expected a JSON list of results, found {type(res).__name__}")
        bad = [r for r in res if not (isinstance(r, dict) and "id" in r and "similarity" in r)]
        if bad:
            raise DataError(f"{where}: results should be objects with id and similarity (and url or image), "
                            f"found {str(bad[0])[:120]}")
        if not res:
            raise DataError(f"{where}: the server returned no results for index {self.indice_name!r}")
        return res

    def search(self, query, k: int) -> list[Candidates]:
        q = self._check_query(query)
        out = []
        for row in q.numpy():
            res = self.query(row, int(k) * self.overfetch)
            c = Candidates([r["id"] for r in res], np.array([float(r["similarity"]) for r in res], np.float32), [],
                           [r.get("caption") for r in res])
            c.results = {r["id"]: r for r in res}
            out.append(c)
        return out

    def result_image(self, r: dict) -> np.ndarray:
        if r.get("image"):
            try:
                data = base64.b64decode(r["image"], validate=False)
            except (ValueError, TypeError) as e:
                raise DataError(f"result {r.get('id')}: the inline image is not base64 ({e})") from e
            return _decode_image(data, f"result {r.get('id')} (inline image)")
        if r.get("url"):
            return fetch_image(r["url"], self.fetch_timeout)
        raise DataError(f"result {r.get('id')}: neither an inline image nor a url")

    def candidates(self, query, k: int) -> Candidates:
        c = self.search(query, k)[0]
        return _load_candidates(self, c, k, f"clip-retrieval server {self.knn_url}",
                                image=lambda key: self.result_image(c.results[key]))


# ----------------------------------------------------------------------------------------- loading

def _load_local(path: Path, expect: dict | None, approximate: bool | None) -> LocalPool:
    meta_file = path / "pool.json"
    try:
        meta = json.loads(meta_file.read_text())
    except ValueError as e:
        raise DataError(f"{meta_file}: not valid JSON ({e})") from e
    need = ("format", "kind", "n", "dim", "embedder", "target")
    missing = [k for k in need if k not in meta]
    if missing:
        raise DataError(f"{meta_file}: missing {missing}; expected the keys {list(need)}")
    if meta["format"] != POOL_FORMAT:
        raise DataError(f"{meta_file}: pool format {meta['format']!r}, this version reads format {POOL_FORMAT}")
    if meta["kind"] not in KINDS:
        raise DataError(f"{meta_file}: kind should be one of {KINDS}, found {meta['kind']!r}")
    if meta["target"] != "final":
        raise DataError(f"{meta_file}: target should be 'final' (the CLIP image embedding), found {meta['target']!r}")
    n, dim = int(meta["n"]), int(meta["dim"])
    if expect is not None:
        have = meta["embedder"] or {}
        if have.get("sha256") != expect.get("sha256"):
            raise DataError(f"{path}: built with {have.get('variant', '?')} weights sha256 {have.get('sha256')}, but "
                            f"the model's CLIP is {expect.get('variant', '?')} sha256 {expect.get('sha256')}: its "
                            "embeddings live in another space. Rebuild the pool with this bundle "
                            f"(python -m mindeye index build ... --bundle BUNDLE --out {path})")
    emb_file = path / "embeddings.npy"
    try:
        emb = np.load(emb_file, mmap_mode="r")
    except FileNotFoundError:
        raise DataError(f"{emb_file}: missing (a pool folder holds pool.json, embeddings.npy and ids.npy or "
                        "paths.txt)") from None
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{emb_file}: not a readable .npy file ({str(e)[:160]})") from e
    if emb.shape != (n, dim) or emb.dtype != np.float16:
        raise DataError(f"{emb_file}: expected float16 [{n}, {dim}] as pool.json says, found {emb.dtype} "
                        f"{list(emb.shape)}")
    if meta["kind"] == "simnsd-scenes":
        ids_file = path / "ids.npy"
        try:
            keys = np.load(ids_file)
        except FileNotFoundError:
            raise DataError(f"{ids_file}: missing (a scene pool stores its scene ids there)") from None
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"{ids_file}: not a readable .npy file ({str(e)[:160]})") from e
        if keys.shape != (n,) or keys.dtype.kind not in "iu":
            raise DataError(f"{ids_file}: expected int64 [{n}], found {keys.dtype} {list(keys.shape)}")
        if n and (keys.min() < POOL_ID_BASE or keys.min() != meta.get("first_id") or keys.max() != meta.get("last_id")):
            raise DataError(f"{ids_file}: ids {int(keys.min())}-{int(keys.max())} do not match pool.json's "
                            f"{meta.get('first_id')}-{meta.get('last_id')} (or fall below {POOL_ID_BASE})")
    else:
        paths_file = path / "paths.txt"
        try:
            keys = np.array(paths_file.read_text().splitlines(), dtype=object)
        except FileNotFoundError:
            raise DataError(f"{paths_file}: missing (an image-folder pool stores its paths there)") from None
        if len(keys) != n:
            raise DataError(f"{paths_file}: expected {n} paths as pool.json says, found {len(keys)}")
    index = None
    spec = meta.get("index")
    if spec and approximate is not False:
        try:
            import faiss
            index = faiss.read_index(str(path / spec["file"]))
        except ImportError:
            index = None  # exact torch search instead
        except Exception as e:
            raise DataError(f"{path / spec['file']}: not a readable FAISS index ({str(e).strip()[-160:]})") from e
        if index is not None and (index.ntotal != n or index.d != dim):
            raise DataError(f"{path / spec['file']}: expected {n} vectors of {dim} dims, found {index.ntotal} of {index.d}")
        if index is not None and spec.get("nprobe"):
            index.nprobe = int(spec["nprobe"])
    return LocalPool(path, meta, np.asarray(emb, np.float32), keys, index=index, approximate=approximate)


def load_pool(spec: str | Path, expect: dict | None = None, indice_name: str | None = None,
              approximate: bool | None = None) -> Pool:
    """A pool from a folder or URL: a pool folder (``pool.json``), a clip-retrieval index folder
    (``image.index`` + ``metadata/``) or a clip-retrieval server (``http(s)://...``).

    ``expect``: the querying model's embedder identity (``embedder_identity``); a pool folder built with other
    weights is refused. ``approximate``: None = the stored IVF index (or one built for pools of ``APPROX_FROM``
    or more), False = exact search."""
    s = str(spec)
    if s.startswith(("http://", "https://")):
        return ClipRetrievalServer(s, indice_name=indice_name)
    path = Path(s)
    if not path.exists():
        raise DataError(f"{path}: no pool there. Expected a pool folder (pool.json, embeddings.npy, ids.npy or "
                        f"paths.txt; build one with: {BUILD_HINT}), a clip-retrieval index folder (image.index + "
                        "metadata/*.parquet) or a clip-retrieval server URL (http://HOST:PORT)")
    if path.is_dir() and (path / "pool.json").exists():
        return _load_local(path, expect, approximate)
    if path.is_dir() and (path / "image.index").exists():
        return ClipRetrievalFolder(path)
    found = sorted(p.name for p in path.iterdir())[:8] if path.is_dir() else [path.name + " (a file)"]
    raise DataError(f"{path}: not a pool. Expected pool.json (a pool folder) or image.index + metadata/ (a "
                    f"clip-retrieval index folder); found {found or 'an empty folder'}")


def default_pool(bundle) -> Path:
    """The bundle's pool: its manifest's ``pool`` entry, else ``data/pool`` under the project if built there."""
    from ..bundle import PROJECT_ROOT
    named = getattr(bundle, "pool", None)
    if named:
        return bundle.resolve(named)
    p = PROJECT_ROOT / DEFAULT_POOL
    if p.exists():
        return p
    raise DataError(f"bundle {bundle.name!r} names no retrieval pool and {p} does not exist: build one with "
                    f"`{BUILD_HINT}` (scenes rendered and embedded with the bundle's CLIP; about 3 minutes per "
                    "10,000 on one CPU core, --workers N for more) or pass --pool PATH_OR_URL")


# ----------------------------------------------------------------------------------------- building

def _embed_final(embedder, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        e = embedder.final(images, normalize=True).float().cpu()
    return F.normalize(e.flatten(1), dim=-1).numpy().astype(np.float16)


def _save_npy(arr, path):
    with open(path, "wb") as f:
        np.save(f, arr)


def _chunked(out: Path, params: dict, jobs: list, make, embedder, desc: str, workers: int, total: int):
    """Embed ``jobs`` chunk by chunk into ``.{out}.partial/`` (resumable: a rerun with the same parameters
    skips the chunks already there). ``make(job)`` -> ``(images, kept positions)``, run in ``workers``
    processes when > 1. Returns ``(embeddings, kept)`` concatenated over the chunks."""
    from tqdm.auto import tqdm

    from ..atomic import atomic_save
    partial = out.parent / f".{out.name}.partial"
    if partial.exists():
        try:
            same = json.loads((partial / "build.json").read_text()) == json.loads(json.dumps(params))
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "build.json").write_text(json.dumps(params))
    chunk_file = lambda k: partial / f"chunk_{k:06d}.npz"  # noqa: E731
    done = set()
    for k in range(len(jobs)):
        if chunk_file(k).exists():
            try:
                with np.load(chunk_file(k)) as z:
                    z["emb"], z["kept"]
                done.add(k)
            except Exception:
                chunk_file(k).unlink(missing_ok=True)
    todo = [k for k in range(len(jobs)) if k not in done]
    bar = tqdm(total=total, desc=desc, unit="img", initial=sum(len(jobs[k][0]) for k in done))

    def save(k, images, kept):
        emb = _embed_final(embedder, images) if len(images) else np.zeros((0, 1), np.float16)

        def saver(obj, tmp):
            with open(tmp, "wb") as f:
                np.savez(f, emb=obj[0], kept=obj[1])
        atomic_save((emb, np.asarray(kept, np.int64)), chunk_file(k), saver)
        bar.update(len(jobs[k][0]))

    if workers > 1 and len(todo) > 1:
        import multiprocessing as mp
        with mp.get_context("spawn").Pool(workers) as procs:
            for k, (images, kept) in zip(todo, procs.imap(make, [jobs[k] for k in todo])):
                save(k, images, kept)
    else:
        for k in todo:
            save(k, *make(jobs[k]))
    bar.close()
    embs, kept = [], []
    for k in range(len(jobs)):
        with np.load(chunk_file(k)) as z:
            if len(z["kept"]):
                embs.append(z["emb"])
            kept.append(z["kept"])
    return (np.concatenate(embs) if embs else np.zeros((0, 0), np.float16)), kept, partial


def _write_pool(out: Path, meta: dict, emb: np.ndarray, ids=None, paths=None, build_index: bool | None = None) -> Path:
    from ..atomic import atomic_dir
    emb = np.ascontiguousarray(emb, np.float16)
    meta = {**meta, "n": int(len(emb)), "dim": int(emb.shape[1]), "dtype": "float16", "normalized": True}
    if build_index is None:
        build_index = len(emb) >= APPROX_FROM
    index = faiss = None
    if build_index:
        try:
            import faiss
        except ImportError:
            faiss = None  # exact torch search when the pool is loaded
        if faiss is not None:
            index = build_ivf(emb.astype(np.float32))
    with atomic_dir(out) as tmp:
        os.chmod(tmp, 0o755)  # a temp folder is private; a pool is not
        _save_npy(emb, tmp / "embeddings.npy")
        if ids is not None:
            _save_npy(np.asarray(ids, np.int64), tmp / "ids.npy")
        else:
            (tmp / "paths.txt").write_text("".join(f"{p}\n" for p in paths))
        if index is not None:
            faiss.write_index(index, str(tmp / "index.faiss"))
            meta["index"] = {"kind": "faiss-ivf-flat", "file": "index.faiss", "nlist": int(index.nlist),
                             "nprobe": int(index.nprobe)}
        (tmp / "pool.json").write_text(json.dumps(meta, indent=1))
    return out


def _make_scenes(job):
    ids, seed, size = job
    return _render_scene_chunk((ids, seed, size)), np.arange(len(ids))


def build_scene_pool(embedder, n: int, out: Path | str, seed: int = 0, first_id: int = POOL_ID_BASE,
                     size: int = 96, batch: int = 256, workers: int = 1, identity: dict | None = None,
                     build_index: bool | None = None) -> Path:
    """Render ``n`` procedural scenes (ids ``first_id`` ..., scene seed ``seed``), embed them with ``embedder``'s
    final CLIP embedding and write a pool folder at ``out`` (atomically; an interrupted build resumes from
    its last finished batch). Scene ids below ``POOL_ID_BASE`` are refused: they could be SimNSD's own images."""
    out, n, first_id = Path(out), int(n), int(first_id)
    if n < 1:
        raise DataError(f"a pool needs at least one scene, got n={n}")
    if first_id < POOL_ID_BASE:
        raise DataError(f"pool scene ids must start at {POOL_ID_BASE} or above (below that they can coincide with "
                        f"SimNSD's own images or the vision stack's training scenes), got first_id={first_id}")
    identity = identity or embedder_identity(embedder)
    params = {"kind": "simnsd-scenes", "n": n, "scene_seed": int(seed), "first_id": first_id, "image_size": int(size),
              "batch": int(batch), "embedder": identity}
    ids = first_id + np.arange(n, dtype=np.int64)
    jobs = [(ids[i:i + batch].tolist(), int(seed), int(size)) for i in range(0, n, batch)]
    emb, _, partial = _chunked(out, params, jobs, _make_scenes, embedder, f"pool: {n:,} scenes", workers, n)
    meta = {"format": POOL_FORMAT, "kind": "simnsd-scenes", "target": "final", "embedder": identity,
            "scene_seed": int(seed), "first_id": first_id, "last_id": int(ids[-1]), "image_size": int(size),
            "disjoint": (f"scene ids {first_id}-{int(ids[-1])} (pool ids start at {POOL_ID_BASE}): never SimNSD's "
                         "own images (ids < 10^6), the vision stack's training streams (10^7 - 10^8) or the "
                         "simulator's calibration scenes (10^8 + 0..255); scenes are a pure function of (seed, id)")}
    _write_pool(out, meta, emb, ids=ids, build_index=build_index)
    shutil.rmtree(partial, ignore_errors=True)
    return out


def _make_folder(job):
    paths, root, size = job
    images, kept = [], []
    for j, p in enumerate(paths):
        try:
            images.append(square(_read_image_file(Path(root) / p), size))
            kept.append(j)
        except DataError:
            continue
    arr = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return arr, np.asarray(kept, np.int64)


def build_folder_pool(embedder, folder: Path | str, out: Path | str, size: int = 224, batch: int = 64,
                      workers: int = 1, identity: dict | None = None, build_index: bool | None = None,
                      log=print) -> Path:
    """Embed every jpg/png under ``folder`` (recursively; centre-cropped square at ``size``) and write a pool
    folder at ``out``. Unreadable files are skipped and listed in pool.json."""
    folder, out = Path(folder).resolve(), Path(out)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of images")
    paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it or its subfolders")
    identity = identity or embedder_identity(embedder)
    params = {"kind": "image-folder", "root": str(folder), "paths": len(paths), "first": paths[0], "last": paths[-1],
              "image_size": int(size), "batch": int(batch), "embedder": identity}
    jobs = [(paths[i:i + batch], str(folder), int(size)) for i in range(0, len(paths), batch)]
    emb, kept, partial = _chunked(out, params, jobs, _make_folder, embedder, f"pool: {len(paths):,} images", workers,
                                  len(paths))
    keep = [jobs[c][0][j] for c in range(len(jobs)) for j in kept[c]]
    skipped = sorted(set(paths) - set(keep))
    if not keep:
        raise DataError(f"{folder}: none of its {len(paths)} image files could be read (first: {paths[0]})")
    if skipped:
        log(f"pool: skipped {len(skipped)} unreadable file(s), e.g. {skipped[:3]}")
    meta = {"format": POOL_FORMAT, "kind": "image-folder", "target": "final", "embedder": identity,
            "root": str(folder), "image_size": int(size), "skipped": skipped[:100], "n_skipped": len(skipped)}
    _write_pool(out, meta, emb, paths=keep, build_index=build_index)
    shutil.rmtree(partial, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------------------- retrieval

def retrieve_from_pool(pool: Pool, final_queries, hidden_queries, embedder, k: int = 16, size: int | None = None,
                       progress=None) -> PoolRetrieval:
    """V1's large-pool retrieval: per trial, the top ``k`` of ``pool`` by the final-layer brain embedding
    (``final_queries [Q, D]``, the final model's projector output), then the second-order pick: CLIP-embed
    the candidates' hidden tokens with ``embedder`` and keep the one most similar to ``hidden_queries [Q, T, D]``
    (the hidden model's projector output). ``hidden_queries`` None keeps the first-stage top-1.
    Candidate images are centre-cropped to ``size`` (default: the pool's size)."""
    k = int(k)
    if k < 1:
        raise DataError(f"k must be at least 1, got {k}")
    fq = torch.as_tensor(final_queries).float()
    fq = fq.reshape(len(fq), -1)
    hq = None if hidden_queries is None else torch.as_tensor(hidden_queries).float().reshape(len(fq), -1)
    size = int(size or pool.image_size)
    keys, scores, second, best, images, captions = [], [], [], [], [], []
    it = range(len(fq)) if progress is None else progress(range(len(fq)))
    for q in it:
        c = pool.candidates(fq[q:q + 1], k)
        ims = [square(im, size) for im in c.images]
        if hq is not None:
            with torch.no_grad():
                h = embedder.hidden(np.stack(ims), normalize=True).float().cpu().flatten(1)
            if h.shape[1] != hq.shape[1]:
                raise DataError(f"second-order selection: the hidden model predicts {hq.shape[1]} values per trial but "
                                f"the CLIP's hidden tokens have {h.shape[1]} (models of different CLIPs?)")
            sims = F.cosine_similarity(h, hq[q][None], dim=1).numpy()
        else:
            sims = np.full(len(ims), np.nan, np.float32)
        keys.append(c.keys)
        scores.append(c.scores)
        second.append(sims)
        best.append(int(np.nanargmax(sims)) if hq is not None else 0)
        images.append(ims)
        captions.append(c.captions)
    return PoolRetrieval(keys, scores, second, np.asarray(best, np.int64), images, captions, pool.describe())
