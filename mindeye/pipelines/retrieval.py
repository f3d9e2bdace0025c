"""Top-k retrieval by cosine similarity over a fixed set of embeddings: exact (torch) for small pools, FAISS
(inner product on L2-normalised vectors, exact ``IndexFlatIP``) when it is installed and the pool is large."""
from __future__ import annotations

import threading

import numpy as np
import torch
import torch.nn.functional as F

from ..data.errors import DataError

FAISS_FROM = 50_000  # pool size from which FAISS is used when available


class Retriever:
    def __init__(self, embeddings, ids, use_faiss: bool | None = None):
        e = F.normalize(torch.as_tensor(np.asarray(embeddings) if not isinstance(embeddings, torch.Tensor) else embeddings)
                        .float().flatten(1), dim=-1)
        ids = np.asarray(ids)
        if len(ids) != len(e):
            raise DataError(f"retrieval pool: {len(e)} embeddings but {len(ids)} ids")
        self.embeddings, self.ids = e, ids
        self._lock = threading.Lock()
        self._index = None
        if use_faiss is None:
            use_faiss = len(e) >= FAISS_FROM
        if use_faiss:
            try:
                import faiss
            except ImportError:
                faiss = None
            if faiss is not None:
                self._index = faiss.IndexFlatIP(e.shape[1])
                self._index.add(e.numpy())

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

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
                s, i = self._index.search(q.numpy(), k)
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
