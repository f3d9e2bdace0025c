"""Inference pipelines over loaded models: brain -> image (``ReconstructionPipeline``) and brain -> nearest
images (``Retriever``). They know nothing of bundles or files; ``mindeye.engine`` builds them.

The classes load on first use (``from mindeye.pipelines import Retriever``), so importing the torch-free
``mindeye.pipelines.settings`` does not load torch."""
from importlib import import_module

_WHERE = {"Embedder": "embedder", "Reconstruction": "reconstruction", "ReconstructionPipeline": "reconstruction",
          "Retriever": "retrieval"}
__all__ = list(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
