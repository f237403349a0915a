"""The ``graphdl`` command line: inspect and draw saved models."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

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
    from graphdl import threads

    lines.append("threads: " + (
        f"kernels split batches over graphdl's threads from {threads.SPLIT_MIN} elements, and steps of plans "
        "that have such kernels hold BLAS at one thread, graphdl's pool splitting GEMMs from "
        f"{threads.GEMM_SPLIT_MIN} multiply-adds (whatever the import order)" if threads.SPLIT_MIN is not None
        else "batch-split kernels off (GRAPHDL_SPLIT_MIN=off): BLAS threads inside each GEMM"))
    lines.append(f"erf: {'scipy.special' if erf_function().__module__ != 'graphdl.ops.special' else 'NumPy'}")
    env = [f"{v}={os.environ[v]}" for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                            "OMP_NUM_THREADS") if v in os.environ]
    lines.append("environment: " + (", ".join(env) or "no OpenBLAS/OpenMP variables set"))
    return "\n".join(lines)


# -- predict / plot (workflow) --------------------------------------------------------------
def read_inputs(path: str, inputs: Sequence[str]) -> dict[str, np.ndarray]:
    """Arrays for a model's inputs from ``.npy`` (one input), ``.npz`` (arrays named like the inputs, or one
    array for one input) or ``.csv`` (one sample per row; a non-numeric first row is a header)."""
    lower = path.lower()
    try:
        if lower.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            if len(inputs) == 1 and len(arrays) == 1:
                return {inputs[0]: next(iter(arrays.values()))}
            missing = [i for i in inputs if i not in arrays]
            if missing:
                raise GraphDLError(f"'{path}' has arrays {sorted(arrays)} but the model needs {missing}; name the "
                                   "arrays after the inputs")
            return {i: arrays[i] for i in inputs}
        if lower.endswith(".npy"):
            data = np.load(path, allow_pickle=False)
        elif lower.endswith(".csv"):
            with open(path, encoding="utf-8") as f:
                first = f.readline()
            try:
                [float(v) for v in first.split(",")]
                skip = 0
            except ValueError:
                skip = 1
            data = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2)
        else:
            raise GraphDLError(f"cannot read '{path}': use a .npy, .npz or .csv file")
    except (OSError, ValueError) as e:
        raise GraphDLError(f"cannot read '{path}': {e}") from None
    if len(inputs) != 1:
        raise GraphDLError(f"the model has inputs {list(inputs)}; pass a .npz with one array per input")
    return {inputs[0]: data}


def _fit_to_input(model: Any, name: str, data: np.ndarray) -> np.ndarray:
    """Reshape rows of features to the input's per-sample shape and convert to its dtype."""
    node = model.nodes[name]
    tail = tuple(node.shape[1:])
    if data.ndim >= 1 and None not in tail and data.shape[1:] != tail and data.size == len(data) * int(np.prod(tail)):
        data = data.reshape((len(data), *tail))
    if data.dtype != np.dtype(node.dtype):
        if np.issubdtype(np.dtype(node.dtype), np.integer) and not np.all(np.mod(data, 1) == 0):
            raise GraphDLError(f"input '{name}' is {node.dtype} but the file holds non-integer values")
        data = data.astype(node.dtype)
    return data


def predict(model_path: str, input_path: str, output: str | None = None, batch_size: int = 256,
            progress: bool | None = None) -> dict[str, np.ndarray]:
    """Run a saved model (a training file runs its inference plan) over the samples of ``input_path`` in
    batches; write ``.npy`` (one output), ``.npz`` (every output by name) or ``.csv``. Returns the outputs."""
    from graphdl.serialize import load
    from graphdl.train import ProgressBar

    if batch_size < 1:
        raise GraphDLError(f"--batch-size must be >= 1, got {batch_size}")
    model = load(model_path)
    if model.training:
        model = model.inference()
    feeds = {k: _fit_to_input(model, k, v) for k, v in read_inputs(input_path, model.inputs).items()}
    n = len(next(iter(feeds.values())))
    if any(len(v) != n for v in feeds.values()):
        raise GraphDLError(f"the inputs have different numbers of samples: { {k: len(v) for k, v in feeds.items()} }")
    batches = max(1, -(-n // batch_size))
    show = batches >= 8 if progress is None else progress
    parts: list[list[np.ndarray]] = []
    with ProgressBar(total=n, unit="sample", disable=not show, desc="predict", file=sys.stderr) as bar:
        for b in range(batches):
            chunk = {k: v[b * batch_size:(b + 1) * batch_size] for k, v in feeds.items()}
            parts.append(model.run(chunk))
            bar.update(len(next(iter(chunk.values()))))
    outs = {o: np.concatenate([p[i] for p in parts]) if model.nodes[o].shape[:1] == (None,) else parts[-1][i]
            for i, o in enumerate(model.outputs)}
    if output is not None:
        _write_outputs(output, outs)
    return outs


def _write_outputs(path: str, outs: dict[str, np.ndarray]) -> None:
    try:
        _write(path, outs)
    except OSError as e:
        raise GraphDLError(f"cannot write '{path}': {e.strerror or e}") from None


def _write(path: str, outs: dict[str, np.ndarray]) -> None:
    lower = path.lower()
    if lower.endswith(".npz"):
        np.savez(path, **{k.replace("/", "_"): v for k, v in outs.items()})
        return
    if len(outs) != 1:
        raise GraphDLError(f"the model has outputs {list(outs)}; write them to a .npz file")
    (value,) = outs.values()
    if lower.endswith(".npy"):
        np.save(path, value)
    elif lower.endswith(".csv"):
        np.savetxt(path, value.reshape(len(value), -1) if value.ndim else value.reshape(1, 1), delimiter=",",
                   fmt="%.9g")
    else:
        raise GraphDLError(f"cannot write '{path}': use a .npy, .npz or .csv file")


def _predict_command(args: argparse.Namespace) -> None:
    outs = predict(args.file, args.input, args.output, args.batch_size)
    if args.output:
        print(f"wrote {args.output}: " + ", ".join(f"{k} {v.shape}" for k, v in outs.items()))
    else:  # no file: print the predictions as CSV
        if len(outs) != 1:
            raise GraphDLError(f"the model has outputs {list(outs)}; pass --output FILE.npz")
        (value,) = outs.values()
        np.savetxt(sys.stdout, value.reshape(len(value), -1) if value.ndim else value.reshape(1, 1), delimiter=",",
                   fmt="%.6g")


def _plot_command(args: argparse.Namespace) -> None:
    from graphdl.plot import history

    out = args.output or (args.file.rsplit(".", 1)[0] + ".png")
    names = history(args.file, out)
    print(f"wrote {out} ({', '.join(names)})")


def _add_workflow_commands(sub: Any) -> None:
    p = sub.add_parser("predict", help="run a model file on inputs from .npy, .npz or .csv")
    p.add_argument("file")
    p.add_argument("--input", "-i", required=True, help=".npy, .npz (arrays named like the inputs) or .csv")
    p.add_argument("--output", "-o", help=".npy, .npz or .csv (default: print CSV)")
    p.add_argument("--batch-size", type=int, default=256)
    p.set_defaults(run=_predict_command)
    p = sub.add_parser("plot", help="draw training curves from a History file (.json or .csv)")
    p.add_argument("file")
    p.add_argument("-o", "--output", help="PNG or SVG path (default: FILE with .png)")
    p.set_defaults(run=_plot_command)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="graphdl", description="Inspect and draw graphdl model files.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="inputs, outputs, parameters and bytes of a model file")
    p_info.add_argument("file", nargs="?")
    p_info.add_argument("--system", action="store_true", help="also show NumPy's BLAS, threads and fast paths")
    p_viz = sub.add_parser("viz", help="draw a model file as SVG")
    p_viz.add_argument("file")
    p_viz.add_argument("-o", "--output", help="SVG path (default: FILE with .svg)")
    p_viz.add_argument("--group", choices=("auto", "layer", "none"), default="auto",
                       help="one box per layer (default for large training plans) or every node")
    _add_workflow_commands(sub)
    onnx_cli.add_commands(sub)
    args = parser.parse_args(argv)
    try:
        if hasattr(args, "run"):
            args.run(args)
        elif args.command == "info":
            if args.file is None and not args.system:
                parser.error("info needs a model FILE, or --system")
            print("\n\n".join(([system_info()] if args.system else []) + ([info(args.file)] if args.file else [])))
        elif args.command in ("export", "import"):
            print(onnx_cli.run(args))
        else:
            from graphdl.serialize import load
            from graphdl.viz import to_svg

            out = args.output or (args.file.rsplit(".", 1)[0] + ".svg")
            model = onnx_cli.load_executable(args.file)[0] if onnx_cli.is_onnx(args.file) else load(args.file)
            to_svg(model, out, group=args.group)
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
