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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="graphdl", description="Inspect and draw graphdl model files.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="inputs, outputs, parameters and bytes of a model file")
    p_info.add_argument("file")
    p_viz = sub.add_parser("viz", help="draw a model file as SVG")
    p_viz.add_argument("file")
    p_viz.add_argument("-o", "--output", help="SVG path (default: FILE with .svg)")
    onnx_cli.add_commands(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            print(info(args.file))
        elif args.command in ("export", "import"):
            print(onnx_cli.run(args))
        else:
            from graphdl.serialize import load
            from graphdl.viz import to_svg

            out = args.output or (args.file.rsplit(".", 1)[0] + ".svg")
            to_svg(onnx_cli.load_executable(args.file)[0] if onnx_cli.is_onnx(args.file) else load(args.file), out)
            print(f"wrote {out}")
    except (GraphDLError, OSError) as e:  # a bad, missing or unreadable file: one line, no traceback
        print(f"graphdl: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("graphdl: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        print(f"graphdl: error: {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return 2
    return 0


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


if __name__ == "__main__":
    sys.exit(main())
