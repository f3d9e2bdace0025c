"""Top-k retrieval by cosine similarity over a fixed set of embeddings: exact (torch) for small pools, FAISS
(inner product on L2-normalised vectors) when it is installed and the pool is large: the exact ``IndexFlatIP``
from ``FAISS_FROM`` vectors, an approximate inverted-file index (``IndexIVFFlat``) from ``APPROX_FROM``.

The approximate index splits the pool into ``nlist`` k-means cells (about sqrt(n), a power of two) and scans
the ``nprobe`` cells nearest the query (``IVF_NPROBE`` = 64 by default: about 6% of a 1M pool). Its recall
depends on how clustered the embeddings are: CLIP embeddings of real or procedural images are strongly
clustered; uniformly random unit vectors, the worst case, lose most of it (bench/retrieval_latency.py
measures both speed and recall@10 against exact search)."""
from __future__ import annotations

import math
import threading

import numpy as np
import torch
import torch.nn.functional as F

from ..data.errors import DataError

FAISS_FROM = 50_000  # pool size from which FAISS is used when available
APPROX_FROM = 200_000  # pool size from which the FAISS index is approximate (IVF) instead of exact
IVF_NPROBE = 64  # cells scanned per query by the IVF index (of ivf_nlist(n) cells)


def ivf_nlist(n: int) -> int:
    """Number of IVF cells for ``n`` vectors: sqrt(n) rounded to a power of two, between 16 and 65536."""
    return int(min(65536, max(16, 2 ** round(math.log2(max(math.sqrt(max(n, 1)), 1))))))


def build_ivf(embeddings: np.ndarray, nlist: int | None = None, nprobe: int = IVF_NPROBE, seed: int = 0,
              train_per_cell: int = 64):
    """An ``IndexIVFFlat`` (inner product) over L2-normalised float32 ``embeddings [n, d]``, trained by k-means
    on ``train_per_cell * nlist`` random vectors (FAISS's own default sample is 256 per cell)."""
    import faiss
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    nlist = int(nlist or ivf_nlist(len(x)))
    if len(x) < nlist:
        raise DataError(f"an IVF index with {nlist} cells needs at least {nlist} vectors, got {len(x)}")
    quantizer = faiss.IndexFlatIP(x.shape[1])
    index = faiss.IndexIVFFlat(quantizer, x.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = int(seed)
    rng = np.random.default_rng(seed)
    sample = x if len(x) <= train_per_cell * nlist else x[np.sort(rng.choice(len(x), train_per_cell * nlist, replace=False))]
    index.train(sample)
    index.add(x)
    index.nprobe = int(min(nprobe, nlist))
    return index


def describe_index(index) -> str:
    if index is None:
        return "exact (torch)"
    if hasattr(index, "nprobe") and hasattr(index, "nlist"):
        return f"approximate (FAISS IVF, {index.nlist} cells, nprobe {index.nprobe})"
    return f"exact (FAISS {type(index).__name__})"


class Retriever:
    """``Retriever(embeddings [N, ...], ids [N])``; ``topk(query, k)`` -> ``(scores, ids)``.

    ``use_faiss`` None: FAISS from ``FAISS_FROM`` vectors when installed; ``approximate`` None: an IVF index
    from ``APPROX_FROM`` vectors (with FAISS). ``index``: a ready FAISS index over exactly these embeddings,
    in this order (e.g. read from a pool folder), used as is."""

    def __init__(self, embeddings, ids, use_faiss: bool | None = None, approximate: bool | None = None,
                 index=None, nprobe: int = IVF_NPROBE):
        e = F.normalize(torch.as_tensor(np.asarray(embeddings) if not isinstance(embeddings, torch.Tensor) else embeddings)
                        .float().flatten(1), dim=-1)
        ids = np.asarray(ids)
        if len(ids) != len(e):
            raise DataError(f"retrieval pool: {len(e)} embeddings but {len(ids)} ids")
        self.embeddings, self.ids = e, ids
        self._lock = threading.Lock()
        self._index = None
        if index is not None:
            if index.ntotal != len(e) or index.d != e.shape[1]:
                raise DataError(f"retrieval pool: the FAISS index holds {index.ntotal} vectors of {index.d} dims, "
                                f"the pool {len(e)} of {e.shape[1]}")
            self._index = index
            return
        if use_faiss is None:
            use_faiss = len(e) >= FAISS_FROM
        if use_faiss:
            try:
                import faiss
            except ImportError:
                faiss = None
            if faiss is not None:
                if approximate is None:
                    approximate = len(e) >= APPROX_FROM
                if approximate:
                    self._index = build_ivf(e.numpy(), nprobe=nprobe)
                else:
                    self._index = faiss.IndexFlatIP(e.shape[1])
                    self._index.add(e.numpy())

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    @property
    def kind(self) -> str:
        """How ``topk`` searches: 'exact (torch)', 'exact (FAISS IndexFlatIP)' or 'approximate (FAISS IVF ...)'."""
        return describe_index(self._index)

    def topk(self, query, k: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """``query [Q, ...]`` -> ``(scores [Q, k], ids [Q, k])``, best first (cosine similarity)."""
        q = F.normalize(torch.as_tensor(query).float().flatten(1), dim=-1)
        if q.shape[1] != self.dim:
            raise DataError(f"retrieval query has {q.shape[1]} dims, this pool has {self.dim}")
        k = int(k)
        if not 1 <= k <= len(self):
            raise DataError(f"k must be between 1 and the pool size {len(self)}, got {k}")
        if self._index is not None:
            with self._lock:  # faiss indexes are not documented as thread-safe for concurrent search
                s, i = self._index.search(np.ascontiguousarray(q.numpy()), k)
            short = (i < 0).any(1)  # an approximate index found fewer than k in the cells it scanned
            if short.any():
                es, ei = (q[short] @ self.embeddings.T).topk(k, dim=1)
                s[short], i[short] = es.numpy(), ei.numpy()
            return s, self.ids[i]
        s, i = (q @ self.embeddings.T).topk(k, dim=1)
        return s.numpy(), self.ids[i.numpy()]

    def rank_of(self, query, true_id) -> int:
        """1-based rank of ``true_id`` for a single query (1 = retrieved first)."""
        q = F.normalize(torch.as_tensor(query).float().flatten()[None], dim=-1)
        sims = (q @ self.embeddings.T)[0]
        pos = np.flatnonzero(self.ids == true_id)
        if not len(pos):
            raise DataError(f"image {true_id} is not in this retrieval pool")
        return int((sims > sims[pos[0]]).sum()) + 1
