"""The ``graphdl`` command line: inspect and draw saved models."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from graphdl.errors import GraphDLError
from graphdl.ir import NodeKind, format_shape
from graphdl.onnx import cli as onnx_cli


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def info(path: str) -> str:
    """A text summary of a saved model: inputs, outputs, parameters, state, byte counts."""
    from graphdl.onnx.cli import is_onnx, load_executable
    from graphdl.serialize import load, read

    if is_onnx(path):
        model, header = load_executable(path)
    else:
        _, _, manifest = read(path)
        model = load(path)
        header = (f"model '{model.name}' ({'training' if model.training else 'inference'}), format "
                  f"{manifest['format']} v{manifest['format_version']}, written by graphdl "
                  f"{manifest['graphdl_version']}")
    nodes = model.nodes
    lines = [header]
    lines.append("inputs:")
    lines += [f"  {i:<24} {format_shape(nodes[i].shape):<16} {nodes[i].dtype}" for i in model.inputs]
    lines.append("outputs:")
    lines += [f"  {o:<24} {format_shape(nodes[o].shape):<16} {nodes[o].dtype}  ({nodes[o].op})" for o in model.outputs]
    for title, values in (("parameters", model.parameters()), ("state", model.state())):
        if values:
            lines.append(f"{title}:")
            lines += [f"  {k:<24} {format_shape(v.shape):<16} {v.dtype}  {_bytes(v.nbytes)}" for k, v in values.items()]
    counts: dict[str, int] = {}
    for n in model.ir.nodes:
        counts[n.kind.value] = counts.get(n.kind.value, 0) + 1
    p = sum(v.size for v in model.parameters().values())
    lines.append(f"parameters: {p:,} values, {_bytes(sum(v.nbytes for v in model.parameters().values()))}; "
                 f"state: {_bytes(sum(v.nbytes for v in model.state().values()))}")
    lines.append("nodes: " + ", ".join(f"{counts[k.value]} {k.value}" for k in NodeKind if k.value in counts))
    mem = model.memory_report(batch_size=1)
    lines.append(f"activation arena at batch 1: {_bytes(mem['arena_bytes'])} "
                 f"(no reuse: {_bytes(mem['naive_bytes'])})")
    return "\n".join(lines)


def system_info() -> str:
    """NumPy, its BLAS (kernel, threads), the GEMM fast path and the erf implementation in use."""
    import os

    import numpy as np

    from graphdl.ops.elementwise import erf_function
    from graphdl.ops.gemm import blas_status
    from graphdl.threads import get_num_threads

    gemm = blas_status()
    lines = [f"numpy {np.__version__}; BLAS threads: {get_num_threads()}"]
    try:
        from threadpoolctl import threadpool_info

        lines += [f"BLAS: {p.get('internal_api')} {p.get('version')}, kernel {p.get('architecture')}, "
                  f"{p.get('num_threads')} threads, {p.get('filepath')}"
                  for p in threadpool_info() if p.get("user_api") == "blas"]
    except ImportError:
        lines.append("BLAS: threadpoolctl not installed")
    lines.append(f"GEMM fast path (NumPy's OpenBLAS CBLAS): {gemm['library']}" if gemm["found"] else
                 f"GEMM fast path: NOT found (searched {gemm['searched']}); accumulating GEMMs use NumPy")
    lines.append(f"erf: {'scipy.special' if erf_function().__module__ != 'graphdl.ops.special' else 'NumPy'}")
    env = [f"{v}={os.environ[v]}" for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                            "OMP_NUM_THREADS") if v in os.environ]
    lines.append("environment: " + (", ".join(env) or "no OpenBLAS/OpenMP variables set"))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="graphdl", description="Inspect and draw graphdl model files.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="inputs, outputs, parameters and bytes of a model file")
    p_info.add_argument("file", nargs="?")
    p_info.add_argument("--system", action="store_true", help="also show NumPy's BLAS, threads and fast paths")
    p_viz = sub.add_parser("viz", help="draw a model file as SVG")
    p_viz.add_argument("file")
    p_viz.add_argument("-o", "--output", help="SVG path (default: FILE with .svg)")
    onnx_cli.add_commands(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            if args.file is None and not args.system:
                parser.error("info needs a model FILE, or --system")
            print("\n\n".join(([system_info()] if args.system else []) + ([info(args.file)] if args.file else [])))
        elif args.command in ("export", "import"):
            print(onnx_cli.run(args))
        else:
            from graphdl.serialize import load
            from graphdl.viz import to_svg

            out = args.output or (args.file.rsplit(".", 1)[0] + ".svg")
            to_svg(onnx_cli.load_executable(args.file)[0] if onnx_cli.is_onnx(args.file) else load(args.file), out)
            print(f"wrote {out}")
    except (GraphDLError, FileNotFoundError) as e:
        print(f"graphdl: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
