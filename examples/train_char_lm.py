"""A small decoder-only transformer trained as a character language model on the Python standard library.

The corpus is the source of a fixed list of standard-library modules, which every Python installation
has; the first 90 % of the characters train, the last 10 % validate. The script reports validation
loss in bits per character next to unigram and bigram baselines counted on the same split, saves the
model, reloads it in a fresh process and samples text there with one compiled inference plan (a fixed
context window, so no recompilation per character).

Run: python examples/train_char_lm.py [--steps N] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import sysconfig
import time

import numpy as np

import graphdl as gd
from graphdl import layers, losses, optim

MODULES = ("argparse", "dataclasses", "functools", "textwrap", "string", "shlex", "fractions", "heapq", "bisect",
           "contextlib", "abc", "copy", "enum", "pprint", "random", "statistics", "tempfile", "glob", "fnmatch",
           "calendar", "difflib", "netrc", "queue", "sched", "shutil", "tokenize", "traceback", "weakref", "zipapp")
CONTEXT = 64


def corpus() -> str:
    """The modules' source, concatenated in a fixed order (about 1 MB), restricted to printable ASCII."""
    root = sysconfig.get_paths()["stdlib"]
    parts = []
    for m in MODULES:
        path = os.path.join(root, m + ".py")
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                parts.append(f.read())
    text = "\n".join(parts)
    return "".join(c if (32 <= ord(c) < 127 or c == "\n") else "?" for c in text)


def baselines(train: np.ndarray, val: np.ndarray, vocab: int) -> tuple[float, float]:
    """Bits per character of add-one-smoothed unigram and bigram models counted on ``train``."""
    uni = np.bincount(train, minlength=vocab) + 1.0
    uni_bpc = -np.mean(np.log2((uni / uni.sum())[val]))
    big = np.ones((vocab, vocab))
    np.add.at(big, (train[:-1], train[1:]), 1.0)
    big /= big.sum(axis=1, keepdims=True)
    big_bpc = -np.mean(np.log2(big[val[:-1], val[1:]]))
    return float(uni_bpc), float(big_bpc)


def build(vocab: int, d: int = 96, heads: int = 4, depth: int = 2) -> tuple[gd.Graph, dict]:
    """Token and position embeddings, ``depth`` pre-norm causal transformer blocks, a final norm, logits."""
    causal = ~np.tril(np.ones((CONTEXT, CONTEXT), dtype=bool))  # True = may not attend (PyTorch's MHA)
    with gd.Graph("char_lm", seed=0) as g:
        tokens = gd.placeholder("tokens", (None, CONTEXT), dtype="int64")
        targets = gd.placeholder("targets", (None, CONTEXT), dtype="int64")
        h = layers.PositionalEmbedding(CONTEXT, d, name="pos")(layers.Embedding(vocab, d, name="embed")(tokens) * 0.1)
        for i in range(depth):
            h = layers.TransformerEncoderLayer(d, heads, dim_feedforward=4 * d, dropout=0.0, activation="relu",
                                               batch_first=True, norm_first=True, name=f"block{i}")(h, src_mask=causal)
        logits = layers.Linear(d, vocab, name="head")(layers.LayerNorm(d, name="norm")(h))
        flat = gd.ops.reshape(logits, (-1, vocab))
        loss = losses.SoftmaxCrossEntropy(name="loss")(flat, gd.ops.reshape(targets, (-1,)))
    return g, {"tokens": tokens, "targets": targets, "logits": logits, "loss": loss}


def windows(ids: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = starts[:, None] + np.arange(CONTEXT + 1)
    block = ids[idx]
    return block[:, :-1], block[:, 1:]


def sample(model_path: str, alphabet: str, prompt: str, n: int, seed: int = 0, output: str = "head") -> str:
    """Generate ``n`` characters after ``prompt`` with one inference plan of the reloaded training file
    (``output`` names the logits node)."""
    m = gd.load(model_path).inference([output])
    index = {c: i for i, c in enumerate(alphabet)}
    ids = [index.get(c, index["?"]) for c in prompt]
    rng = np.random.default_rng(seed)
    window = np.zeros((1, CONTEXT), dtype=np.int64)
    for _ in range(n):
        ctx = ids[-CONTEXT:]
        window[0, :] = 0
        window[0, :len(ctx)] = ctx
        logits = m.run({"tokens": window}, copy=False)[0][0, len(ctx) - 1]
        p = np.exp((logits - logits.max()) / 0.8)
        ids.append(int(rng.choice(len(p), p=p / p.sum())))
    return "".join(alphabet[i] for i in ids)


def dataset() -> tuple[str, np.ndarray, np.ndarray, tuple[float, float]]:
    """The corpus as character ids over its sorted alphabet, the fixed 90/10 train/validation split, and
    the unigram and bigram baselines' validation bits per character (both char examples use these)."""
    text = corpus()
    alphabet = "".join(sorted(set(text)))
    ids = np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.int64)
    ids = np.searchsorted(np.frombuffer(alphabet.encode("ascii"), dtype=np.uint8), ids)
    split = int(len(ids) * 0.9)
    train_ids, val_ids = ids[:split], ids[split:]
    print(f"corpus: {len(text):,} characters from {len(MODULES)} standard-library modules, vocabulary "
          f"{len(alphabet)}; train {len(train_ids):,}, validation {len(val_ids):,}")
    return alphabet, train_ids, val_ids, baselines(train_ids, val_ids, len(alphabet))


def report(train: gd.Executable, evaluate: gd.Executable, history: gd.train.History, val_ids: np.ndarray, alphabet: str,
           baseline_bpc: tuple[float, float], start: float, args: argparse.Namespace, filename: str) -> int:
    """Validation bits per character next to the baselines, save, sample in a fresh process from the
    reloaded file, and check that the model clearly beats the bigram (the end of both char examples)."""
    uni_bpc, big_bpc = baseline_bpc
    val_starts = np.arange(0, len(val_ids) - CONTEXT - 1, CONTEXT)
    vx, vy = windows(val_ids, val_starts)
    total = sum(evaluate.run({"tokens": vx[i:i + 256], "targets": vy[i:i + 256]})[0] * len(vx[i:i + 256])
                for i in range(0, len(vx), 256))
    val_bpc = float(total / len(vx)) / math.log(2)
    seconds = time.perf_counter() - start
    print(f"validation: {val_bpc:.3f} bits per character (unigram {uni_bpc:.3f}, bigram {big_bpc:.3f}); "
          f"final training loss {history['loss'][-1] / math.log(2):.3f} bits; {seconds:.0f} s")

    path = os.path.join(args.out, filename)
    train.save(path)
    code = ("import sys; sys.path.insert(0, sys.argv[3]); from train_char_lm import sample; "
            "print(sample(sys.argv[1], sys.argv[2], 'def ', 200))")
    out = subprocess.run([sys.executable, "-c", code, path, alphabet, os.path.dirname(os.path.abspath(__file__))],
                         capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stderr)
        return 1
    print("sampled in a fresh process from the reloaded model:\n" + out.stdout)
    if val_bpc >= big_bpc - 0.25 and not args.no_check:
        print(f"FAILED: {val_bpc:.3f} bits per character does not clearly beat the bigram's {big_bpc:.3f}")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--out", default="out")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-check", action="store_true", help="do not fail when the bigram is not beaten "
                        "(for short smoke runs)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()

    alphabet, train_ids, val_ids, baseline_bpc = dataset()

    g, t = build(len(alphabet))
    schedule = optim.CosineLR(total_steps=args.steps, warmup_steps=100, eta_min=1e-4)
    train = gd.compile([t["loss"]], optimizer=optim.AdamW(lr=3e-3, weight_decay=0.01, schedule=schedule,
                                                          clip_norm=1.0))
    evaluate = gd.compile([t["loss"]])
    rng = np.random.default_rng(0)
    starts = rng.integers(0, len(train_ids) - CONTEXT - 1, args.steps * args.batch)
    x, y = windows(train_ids, starts)
    loader = gd.data.DataLoader(x, y, batch_size=args.batch)
    history = gd.fit(train, loader, epochs=1, progress=not args.no_progress)

    return report(train, evaluate, history, val_ids, alphabet, baseline_bpc, start, args, "char_lm.gdl")


if __name__ == "__main__":
    sys.exit(main())
