"""The ONNX subcommands of the ``graphdl`` command line: export, import, and .onnx files for info/viz."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: Any) -> None:
    """Register ``export`` and ``import`` on the CLI's subparsers."""
    p = sub.add_parser("export", help="write a model file's inference plan as ONNX")
    p.add_argument("file", help="a .gdl model file")
    p.add_argument("-o", "--output", help="ONNX path (default: FILE with .onnx)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset to write (default: graphdl's default)")
    p.add_argument("--outputs", nargs="+", help="node names to export (default: the model's outputs other than "
                                                 "its training objective)")
    p = sub.add_parser("import", help="convert an ONNX model into a graphdl model file")
    p.add_argument("file", help="an .onnx model file")
    p.add_argument("-o", "--output", help="model path (default: FILE with .gdl)")


def run(args: argparse.Namespace) -> str:
    """Run ``export`` or ``import``; returns the line to print."""
    from graphdl.onnx import DEFAULT_OPSET, export, load
    from graphdl.serialize import load as load_gdl

    stem = args.file.rsplit(".", 1)[0]
    if args.command == "export":
        out = args.output or stem + ".onnx"
        model = export(load_gdl(args.file), out, outputs=args.outputs, opset=args.opset or DEFAULT_OPSET)
        return (f"wrote {out} (ONNX opset {model.opset_import[0].version}, {len(model.graph.node)} nodes, "
                f"{len(model.graph.initializer)} initializers)")
    out = args.output or stem + ".gdl"
    exe = load(args.file).compile()
    exe.save(out)
    return f"wrote {out} ({len(exe.parameters())} parameters, {len(exe.ir.nodes)} nodes)"


def is_onnx(path: str) -> bool:
    return path.lower().endswith(".onnx")


def load_executable(path: str) -> tuple[Any, str]:
    """An ONNX file as an inference executable, and a header line describing the file."""
    from graphdl.onnx.load import load_model, read_model

    model = read_model(path)
    imported = load_model(model, path)
    header = (f"ONNX model '{model.graph.name}' (opset {imported.opset}, IR version {model.ir_version}, producer "
              f"{model.producer_name or '?'} {model.producer_version}), imported as an inference plan")
    return imported.compile(), header
