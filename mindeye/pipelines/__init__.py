"""Inference pipelines over loaded models: brain -> image (``ReconstructionPipeline``) and brain -> nearest
images (``Retriever``). They know nothing of bundles or files; ``mindeye.engine`` builds them."""
from .embedder import Embedder
from .reconstruction import Reconstruction, ReconstructionPipeline
from .retrieval import Retriever

__all__ = ["Embedder", "Reconstruction", "ReconstructionPipeline", "Retriever"]
