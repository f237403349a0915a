"""An LSTM character language model on the same standard-library corpus and split as train_char_lm.py.

Embedding -> one LSTM layer (one scan node) -> Linear over the characters, trained on 64-character windows
from a zero state. It reports validation bits per character next to the unigram and bigram baselines of
the same split, saves the model, reloads it in a fresh process and samples there with one compiled
inference plan (a sliding 64-character window read from a zero state, as in training; the same shapes
every character, so nothing is recompiled).

Run: python examples/train_char_lstm.py [--steps N] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from train_char_lm import CONTEXT, dataset, report, windows

import graphdl as gd
from graphdl import layers, losses, optim


def build(vocab: int, embed: int = 32, hidden: int = 192) -> tuple[gd.Graph, dict]:
    """Character embedding, a batch-first LSTM over the window, logits per position (node ``head``)."""
    with gd.Graph("char_lstm", seed=0) as g:
        tokens = gd.placeholder("tokens", (None, CONTEXT), dtype="int64")
        targets = gd.placeholder("targets", (None, CONTEXT), dtype="int64")
        e = layers.Embedding(vocab, embed, name="embed")(tokens)
        h, _ = layers.LSTM(embed, hidden, batch_first=True, name="lstm")(e)
        logits = layers.Linear(hidden, vocab, name="head")(h)
        flat = gd.ops.reshape(logits, (-1, vocab))
        loss = losses.SoftmaxCrossEntropy(name="loss")(flat, gd.ops.reshape(targets, (-1,)))
    return g, {"tokens": tokens, "targets": targets, "logits": logits, "loss": loss}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--out", default="out")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1: the per-step GEMMs, "
                        "(batch, hidden) x (hidden, 4 hidden), are too small to gain from more)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-check", action="store_true", help="do not fail when the bigram is not beaten "
                        "(for short smoke runs)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    gd.set_num_threads(args.threads)
    start = time.perf_counter()

    alphabet, train_ids, val_ids, baseline_bpc = dataset()

    g, t = build(len(alphabet))
    schedule = optim.CosineLR(total_steps=args.steps, warmup_steps=50, eta_min=1e-4)
    train = gd.compile([t["loss"]], optimizer=optim.Adam(lr=1e-2, schedule=schedule, clip_norm=1.0))
    evaluate = gd.compile([t["loss"]])
    rng = np.random.default_rng(0)
    starts = rng.integers(0, len(train_ids) - CONTEXT - 1, args.steps * args.batch)
    x, y = windows(train_ids, starts)
    history = gd.fit(train, gd.data.DataLoader(x, y, batch_size=args.batch), epochs=1,
                     progress=not args.no_progress)

    return report(train, evaluate, history, val_ids, alphabet, baseline_bpc, start, args, "char_lstm.gdl")


if __name__ == "__main__":
    sys.exit(main())
