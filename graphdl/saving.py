"""From a model file to a runnable Executable: the one place a file becomes an executable.

graphdl/serialize/ only reads and writes records (graph, weights, manifest); this module checks the
stored graph as the compiler would and builds the Executable, so the file-format module never imports
the executable (imports go one way: ir <- registry/ops <- builder <- passes <- compiler <- executable).
"""

from __future__ import annotations

import os

from graphdl.errors import ModelFileError, file_path
from graphdl.executable import Executable
from graphdl.ir import NodeKind, value_info
from graphdl.serialize import DEFAULT_LIMITS, Limits, read


def load(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS) -> Executable:
    """Load a model file into a runnable Executable, without the script that built it.

    Fails only with ModelFileError; ``limits`` bounds what is read and allocated (see Limits).
    """
    from passes import CompileSpec, compile_graph  # here: importing passes first imports graphdl

    path = file_path(path, "gd.load", ModelFileError)
    ir, weights, manifest = read(path, limits=limits)
    try:  # the compiler's own checks, as for a graph built in Python
        ir = compile_graph(ir, CompileSpec(ir.outputs))
    except Exception as e:
        raise ModelFileError(f"{path}: the stored graph does not compile: {type(e).__name__}: "
                             f"{str(e)[:300]}") from None
    objective = manifest["objective"]
    if objective is None and any(n.kind is NodeKind.UPDATE for n in ir.nodes):
        # Files written before the objective was recorded: the only scalar output, if there is one.
        scalars = [o for o in ir.outputs if value_info(ir.node_map(), o)[0] == ()]
        objective = scalars[0] if len(scalars) == 1 else None
    return Executable(ir, weights, objective=objective)
