"""Data-parallel training of the digits MLP over MPI: the same plan on every rank, gradients averaged in it.

Run: mpiexec -n 2 python examples/train_digits_mpi.py [--epochs N] [--out DIR] [--resume]
(alone, `python examples/train_digits_mpi.py` trains on one process). Each rank feeds its shard of every
global batch; rank 0 draws the progress bar and writes the checkpoint; the reported loss and accuracy
are averaged over the ranks. --resume continues from the checkpoint, on any number of ranks.
"""

from __future__ import annotations

import argparse
import os
import time

import graphdl as gd
from graphdl import layers, losses, optim
from graphdl.distributed import rank_and_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16, help="samples per rank per step")
    parser.add_argument("--out", default="out")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    rank, size = rank_and_size()
    if size > 1:  # ranks share the cores: one BLAS thread each
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    ckpt = os.path.join(args.out, "mpi_ckpt.gdl")
    if rank == 0:
        os.makedirs(args.out, exist_ok=True)

    data = gd.data.load_digits()
    history_path = os.path.join(args.out, "mpi_history.json")
    if args.resume:  # the checkpoint's plan already averages gradients, on however many ranks run it now
        train = gd.load(ckpt)
        history = gd.History.load(history_path)
        initial = len(history.epochs)
    else:
        with gd.Graph("mlp", seed=0):
            x = gd.placeholder("x", (None, 64))
            y = gd.placeholder("y", (None,), dtype="int64")
            h = layers.ReLU()(layers.Linear(64, 128, name="fc1")(x))
            logits = layers.Linear(128, 10, name="fc2")(h)
            loss = losses.SoftmaxCrossEntropy()(logits, y)
        train = gd.compile([loss, logits], loss=loss, optimizer=optim.Adam(lr=1e-3),
                           distributed=gd.distributed.MPI())
        history, initial = None, 0
    loader = gd.data.DataLoader(data.x_train, data.y_train, batch_size=args.batch, shuffle=True, seed=initial)
    start = time.perf_counter()
    history = gd.fit(train, loader, epochs=initial + args.epochs, initial_epoch=initial, history=history,
                     metrics=["accuracy"], validation=(data.x_test, data.y_test), checkpoint=ckpt,
                     progress=not args.no_progress)
    if rank == 0:
        history.save(history_path)
        print(f"{size} rank(s): epochs {initial + 1}-{initial + args.epochs} in {time.perf_counter() - start:.1f} s; "
              f"val_accuracy {history['val_accuracy'][-1]:.4f}, loss {history['loss'][-1]:.4f}; checkpoint {ckpt}")


if __name__ == "__main__":
    main()
