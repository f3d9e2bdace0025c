"""Finding retrieval pools on disk, torch-free (the app lists them while building its page)."""
from __future__ import annotations

from pathlib import Path


def find_pools(root: Path | str, depth: int = 2) -> list[Path]:
    """Pool folders (``pool.json``) and clip-retrieval index folders (``image.index``) under ``root``, at most
    ``depth`` levels down, sorted."""
    root = Path(root)
    found, level = [], [root] if root.is_dir() else []
    for _ in range(depth + 1):
        nxt = []
        for d in level:
            if (d / "pool.json").exists() or (d / "image.index").exists():
                found.append(d)
                continue
            try:
                nxt += [c for c in d.iterdir() if c.is_dir() and not c.name.startswith(".")]
            except OSError:
                continue
        level = nxt
    return sorted(found)
