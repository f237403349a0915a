"""Memory: peak RSS of 50 MLP training steps (one subprocess per framework) against the process floor,
the char-LM training step's peak RSS against PyTorch's (``python -m bench.memory``),
the planner's memory_report ratios, and rematerialisation on a 50-layer chain."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from bench.common import available, table

MIB = 2**20

_PRELUDE = """
import sys
import numpy as np
sys.path.insert(0, {root!r})
from bench.models import MLP_SIZES, mlp_data
x, y = mlp_data()
"""

_SCRIPTS = {
    # interpreter + NumPy + parameters + gradients + live activations, each touched: the floor
    "process floor (NumPy: params, grads, activations)": """
rng = np.random.default_rng(0)
shapes = list(zip(MLP_SIZES[:-1], MLP_SIZES[1:]))
params = [rng.standard_normal(s, dtype=np.float32) for s in shapes] + [np.zeros(s[1], np.float32) for s in shapes]
grads = [np.ones_like(p) for p in params]
acts = [np.ones((x.shape[0], b), np.float32) for _, b in shapes] * 2
for _ in range(50):
    for k, (a, b) in enumerate(shapes):
        np.matmul(x if k == 0 else acts[k - 1], params[k], out=acts[k])
""",
    "graphdl": """
from bench.models import graphdl_mlp
ex, xt, yt = graphdl_mlp()
for _ in range(50):
    ex.run({xt: x, yt: y}, copy=False)
""",
    "PyTorch eager": """
import torch
from bench.models import torch_mlp
_, _, step = torch_mlp()
tx, ty = torch.from_numpy(x), torch.from_numpy(y)
for _ in range(50):
    step(tx, ty)
""",
    "JAX jit": """
import jax
from bench.models import jax_mlp
params, step = jax_mlp()
jx, jy = jax.numpy.asarray(x), jax.numpy.asarray(y)
for _ in range(50):
    params, loss = step(params, jx, jy)
loss.block_until_ready()
""",
}
_NEEDS = {"PyTorch eager": "torch", "JAX jit": "jax"}


def peak_rss(root: str) -> tuple[str, dict[str, float]]:
    results: dict[str, float] = {}
    notes = []
    for name, body in _SCRIPTS.items():
        if name in _NEEDS and not available(_NEEDS[name]):
            notes.append(f"{name}: not installed, skipped")
            continue
        # VmHWM (peak resident set) resets at exec; ru_maxrss would carry over this parent's peak
        code = textwrap.dedent(_PRELUDE.format(root=root)) + textwrap.dedent(body) + (
            "\nprint(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        results[name] = int(out.stdout.split()[-1]) * 1024 / MIB  # VmHWM is in kB
    floor = results["process floor (NumPy: params, grads, activations)"]
    rows = [[name, f"{v:.1f} MiB", f"{v / floor:.2f}x"] for name, v in results.items()]
    text = table(["MLP, 50 training steps", "peak RSS", "vs floor"], rows)
    if notes:
        text += "\n\n" + "; ".join(notes)
    return text, results


def planner() -> tuple[str, dict[str, dict[str, int]]]:
    import graphdl as gd
    from bench.models import CNN_BATCH, MLP_BATCH, graphdl_cnn, graphdl_mlp

    reports = {}
    for opt_name, opt in (("SGD", gd.optim.SGD(0.01)), ("Adam", gd.optim.Adam())):
        ex, _, _ = graphdl_mlp(opt)
        reports[f"MLP train, {opt_name}, batch {MLP_BATCH}"] = ex.memory_report(MLP_BATCH)
    if hasattr(gd.layers, "Conv2D"):
        ex, _, _ = graphdl_cnn()
        reports[f"CNN train, SGD, batch {CNN_BATCH}"] = ex.memory_report(CNN_BATCH)
    rows = []
    for name, r in reports.items():
        rows.append([name, f"{r['arena_bytes'] / MIB:.2f} MiB", f"{r['lower_bound_bytes'] / MIB:.2f} MiB",
                     f"{r['naive_bytes'] / MIB:.2f} MiB", f"{r['arena_bytes'] / r['lower_bound_bytes']:.3f}",
                     f"{r['arena_bytes'] / r['naive_bytes']:.3f}"])
    text = table(["plan", "arena", "liveness lower bound", "no reuse", "arena / bound", "arena / no reuse"], rows)
    return text, reports


def remat() -> tuple[str, dict]:
    import graphdl as gd

    rows, data = [], {}
    for depth in (25, 50, 100):
        arena = {}
        for policy in (None, "sqrt"):
            with gd.Graph("deep", seed=0):
                x = gd.placeholder("x", (None, 256))
                y = gd.placeholder("y", (None,), dtype="int64")
                h = x
                for k in range(depth):
                    h = gd.layers.ReLU()(gd.layers.Linear(256, 256, name=f"fc{k}")(h))
                loss = gd.losses.SoftmaxCrossEntropy()(gd.layers.Linear(256, 10)(h), y)
            ex = gd.compile([loss], gd.optim.SGD(0.01), remat=policy)
            forward = sum(n.kind.value in ("op", "loss") for n in ex.ir.nodes)
            extra = sum(n.name.startswith("remat/") for n in ex.ir.nodes)
            arena[policy] = ex.memory_report(128)["arena_bytes"]
            data[depth, policy] = (arena[policy], forward, extra)
        rows.append([str(depth), f"{arena[None] / MIB:.2f} MiB", f"{arena['sqrt'] / MIB:.2f} MiB",
                     f"{arena['sqrt'] / arena[None]:.2f}",
                     f"{data[depth, 'sqrt'][2]} of {data[depth, 'sqrt'][1]} forward steps"])
    text = table(["MLP depth (256 wide, batch 128, SGD)", "arena, no remat", "arena, remat='sqrt'", "ratio",
                  "recomputed"], rows)
    return text, data


_FIRST_RUN = """
import gc, sys
sys.path.insert(0, {root!r})
from bench.models import cnn_data, graphdl_cnn

def status(key):
    return int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith(key))) * 1024

x, y = cnn_data()
ex, xt, yt = graphdl_cnn()
report = ex.memory_report(x.shape[0])
gc.collect()
try:  # reset the peak (VmHWM) to the current RSS, so compilation's own peak does not count
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
except OSError:
    pass
before = status('VmRSS')
ex.run({{xt: x, yt: y}}, copy=False)
print(before, status('VmHWM'), report['arena_bytes'], report.get('workspace_bytes', 0))
"""


def first_run_rss(root: str) -> tuple[str, dict[str, int]]:
    """RSS a first CNN training run adds (arena, kernels' buffers, page faults) against the reported arena."""
    out = subprocess.run([sys.executable, "-c", _FIRST_RUN.format(root=root)], capture_output=True, text=True,
                         check=True)
    before, peak, arena, workspace = map(int, out.stdout.split())
    added = peak - before
    data = {"before": before, "peak": peak, "arena": arena, "workspace": workspace, "added": added}
    rows = [["CNN train, SGD, batch 64", f"{before / MIB:.1f} MiB", f"{peak / MIB:.1f} MiB", f"{added / MIB:.1f} MiB",
             f"{arena / MIB:.2f} MiB", f"{workspace / MIB:.2f} MiB", f"{added / arena:.2f}x"]]
    return table(["plan", "RSS before", "peak after first run", "added", "reported arena",
                  "of which workspace", "added / arena"], rows), data


_CHAR_LM_PRELUDE = """
import sys
import numpy as np
sys.path.insert(0, {root!r})
sys.path.insert(0, {root!r} + '/examples')
import train_char_lm as lm
STEPS, BATCH = {steps}, {batch}
text = lm.corpus()
alphabet = ''.join(sorted(set(text)))
ids = np.searchsorted(np.frombuffer(alphabet.encode('ascii'), dtype=np.uint8),
                      np.frombuffer(text.encode('ascii'), dtype=np.uint8)).astype(np.int64)
starts = np.random.default_rng(0).integers(0, len(ids) - lm.CONTEXT - 1, (STEPS, BATCH))

def _rss(key):
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(key))
"""

#: examples/train_char_lm.py's training step (model, AdamW with clipping, batch) in each framework
_CHAR_LM = {
    "graphdl": """
import graphdl as gd
imported = _rss('VmRSS')
g, t = lm.build(len(alphabet))
step = gd.compile([t['loss']], optimizer=gd.optim.AdamW(lr=3e-3, weight_decay=0.01, clip_norm=1.0))
for s in starts:
    x, y = lm.windows(ids, s)
    step.run({t['tokens']: x, t['targets']: y}, copy=False)
""",
    "PyTorch eager": """
import torch
from torch import nn
imported = _rss('VmRSS')
V, D, T = len(alphabet), 96, lm.CONTEXT

class LM(nn.Module):  # lm.build: embeddings, 2 pre-norm causal blocks, final norm, head
    def __init__(self):
        super().__init__()
        self.embed, self.pos = nn.Embedding(V, D), nn.Parameter(torch.randn(T, D))
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(D, 4, 4 * D, dropout=0.0, batch_first=True,
                                                               norm_first=True) for _ in range(2))
        self.norm, self.head = nn.LayerNorm(D), nn.Linear(D, V)
        self.register_buffer('mask', torch.triu(torch.ones(T, T, dtype=torch.bool), 1))

    def forward(self, x):
        h = self.embed(x) * 0.1 + self.pos
        for b in self.blocks:
            h = b(h, src_mask=self.mask)
        return self.head(self.norm(h))

model = LM()
opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
for s in starts:
    x, y = (torch.from_numpy(a) for a in lm.windows(ids, s))
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
""",
}


def char_lm_rss(root: str, steps: int = 30, batch: int = 32) -> tuple[str, dict[str, tuple[float, float]]]:
    """Peak RSS (VmHWM) of ``steps`` char-LM training steps (examples/train_char_lm.py's model, optimizer
    and batch), each framework in its own fresh process, with the RSS right after importing it, and
    graphdl's ratio to PyTorch's: ``{name: (peak MiB, after-import MiB)}``."""
    results: dict[str, tuple[float, float]] = {}
    for name, body in _CHAR_LM.items():
        if name == "PyTorch eager" and not available("torch"):
            continue
        code = (textwrap.dedent(_CHAR_LM_PRELUDE.format(root=root, steps=steps, batch=batch)) + textwrap.dedent(body)
                + "\nprint(_rss('VmHWM'), imported)\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        peak, imported = map(int, out.stdout.split()[-2:])  # kB
        results[name] = (peak * 1024 / MIB, imported * 1024 / MIB)
    ours = results["graphdl"][0]
    rows = [[name, f"{peak:.1f} MiB", f"{imported:.1f} MiB", f"{peak - imported:.1f} MiB", f"{ours / peak:.2f}x"]
            for name, (peak, imported) in results.items()]
    text = table([f"char-LM training, {steps} steps, batch {batch}", "peak RSS", "RSS after import",
                  "peak - import", "graphdl / this (peak)"], rows)
    if "PyTorch eager" not in results:
        text += "\n\nPyTorch eager: not installed, skipped"
    return text, results


if __name__ == "__main__":  # python -m bench.memory: the char-LM peak RSS against PyTorch
    import os

    print(char_lm_rss(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))[0])
