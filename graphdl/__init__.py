"""graphdl: a define-then-run deep-learning framework on NumPy.

Define a symbolic graph inside ``with gd.Graph():``, compile it once with ``gd.compile``, run the
compiled plan many times; save it to one file and ``gd.load`` it without the script that built it.
"""

from __future__ import annotations

from graphdl import (
    callbacks,
    data,
    distributed,
    layers,
    losses,
    metrics,
    onnx,
    ops,  # registers the op table
    optim,
    plot,
    serialize,
    viz,
)
from graphdl.compiler import compile, grad
from graphdl.errors import (
    CompileError,
    DTypeError,
    ExecutionError,
    FeedError,
    GradientError,
    GraphDLError,
    GraphError,
    ModelFileError,
    NonFiniteError,
    ResourceError,
    ShapeError,
    VizError,
)
from graphdl.executable import Executable
from graphdl.graph import Graph, Tensor, constant, placeholder
from graphdl.ir import IR, Node, NodeKind
from graphdl.saving import load
from graphdl.threads import get_num_threads, num_threads, set_num_threads
from graphdl.train import History, evaluate, fit

__version__ = "0.1.0"

# ``graphdl.serialize.load`` stays importable for existing callers; the format module itself only reads
# and writes records and never imports the executable (see graphdl/saving.py).
serialize.load = load

__all__ = [
    "IR",
    "CompileError",
    "DTypeError",
    "Executable",
    "ExecutionError",
    "FeedError",
    "GradientError",
    "Graph",
    "GraphDLError",
    "GraphError",
    "History",
    "ModelFileError",
    "Node",
    "NodeKind",
    "NonFiniteError",
    "ResourceError",
    "ShapeError",
    "Tensor",
    "VizError",
    "callbacks",
    "compile",
    "constant",
    "data",
    "distributed",
    "evaluate",
    "fit",
    "get_num_threads",
    "grad",
    "layers",
    "load",
    "losses",
    "metrics",
    "num_threads",
    "onnx",
    "ops",
    "optim",
    "placeholder",
    "plot",
    "set_num_threads",
    "viz",
]
