"""ONNX interchange: ``export`` a model's inference plan, ``load`` an ONNX model as a graphdl graph.

The ``onnx`` package is imported only when these functions run (``pip install graphdl[onnx]``), so
graphdl itself works without it. Exporters and importers are tables keyed by op name
(``graphdl.onnx.exporters.EXPORTERS`` / ``TRAINING_ONLY``, ``graphdl.onnx.importers.IMPORTERS``).
"""

from __future__ import annotations

from graphdl.onnx.export import DEFAULT_OPSET, export, to_model
from graphdl.onnx.load import ImportedModel, UnsupportedOpError, load, load_model

__all__ = ["DEFAULT_OPSET", "ImportedModel", "UnsupportedOpError", "export", "load", "load_model", "to_model"]
