"""Train a small CNN (Conv2D, BatchNorm2D, ReLU, MaxPool2D, Dropout, Linear) on the 8x8 digits with a validation
split, early stopping and a best checkpoint; save it, reload it in a fresh process and check that it predicts the
same; draw it and its training curves.

Run: python examples/train_digits_cnn.py [--epochs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

# The GEMMs here are small (8x8 images): one BLAS thread is faster than threads contending for 2 cores.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402  (after the thread settings, which numpy reads when it loads)

import graphdl as gd  # noqa: E402
from graphdl import layers, losses, optim  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(seed: int = 0) -> tuple[gd.Tensor, gd.Tensor]:
    """Two conv blocks, one pooling, dropout and a linear classifier on 1x8x8 images: (logits, loss)."""
    with gd.Graph("digits_cnn", seed=seed):
        x = gd.placeholder("x", shape=(None, 1, 8, 8))
        y = gd.placeholder("y", shape=(None,), dtype="int64")
        h = layers.ReLU()(layers.BatchNorm2D(32, name="bn1")(layers.Conv2D(1, 32, 3, padding=1, name="conv1")(x)))
        h = layers.ReLU()(layers.BatchNorm2D(64, name="bn2")(layers.Conv2D(32, 64, 3, padding=1, name="conv2")(h)))
        h = layers.MaxPool2D(2, name="pool")(h)
        h = layers.Flatten(name="flatten")(layers.Dropout(0.25, name="dropout")(h))
        logits = layers.Linear(64 * 4 * 4, 10, name="fc")(h)
        loss = losses.SoftmaxCrossEntropy()(logits, y)
    return logits, loss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default="out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    model_path = os.path.join(args.out, "digits_cnn.gdl")

    data = gd.data.load_digits(images=True)
    order = np.random.default_rng(args.seed).permutation(len(data.x_train))
    cut = round(0.15 * len(order))  # a fixed validation split of the training data
    x_fit, y_fit = data.x_train[order[cut:]], data.y_train[order[cut:]]
    x_val, y_val = data.x_train[order[:cut]], data.y_train[order[:cut]]
    logits, loss = build(args.seed)
    loader = gd.data.DataLoader(x_fit, y_fit, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    steps = args.epochs * len(loader)
    train = gd.compile([loss, logits], optimizer=optim.AdamW(lr=3e-3, weight_decay=1e-4,
                                                             schedule=optim.CosineLR(steps, warmup_steps=20)))
    predict = gd.compile([logits])  # inference plan: running statistics, no dropout

    start = time.perf_counter()
    best_path = os.path.join(args.out, "best.gdl")
    stop = gd.callbacks.EarlyStopping("val_loss", patience=5, restore_best_weights=True)
    history = gd.fit(train, loader, epochs=args.epochs, inputs=["x", "y"], metrics=["accuracy"],
                     validation=(x_val, y_val), progress=not args.no_progress,
                     callbacks=[stop, gd.callbacks.ModelCheckpoint(best_path, "val_loss")])
    seconds = time.perf_counter() - start
    acc = gd.evaluate(predict, data.x_test, data.y_test)["accuracy"]
    print(f"test accuracy {acc:.4f} after {len(history.epochs)} epochs in {seconds:.1f} s (best validation loss "
          f"{stop.best:.4f} at epoch {stop.best_epoch}, weights restored; best checkpoint {best_path})")

    predict.save(model_path)
    x_path = os.path.join(args.out, "x_test.npy")
    np.save(x_path, data.x_test)
    expected = predict.run({"x": data.x_test})[0]
    # Reload in a fresh process that never sees this script's graph (and imports this checkout's graphdl).
    check = ("import sys, numpy as np, graphdl as gd; m = gd.load(sys.argv[1]); "
             "np.save(sys.argv[3], m.run({'x': np.load(sys.argv[2])})[0])")
    reloaded_path = os.path.join(args.out, "reloaded_logits.npy")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, "-c", check, model_path, x_path, reloaded_path], check=True, env=env)
    reloaded = np.load(reloaded_path)
    same = np.array_equal(reloaded, expected)  # bit for bit, so the predictions match too
    print(f"saved {model_path} ({os.path.getsize(model_path):,} bytes); reloaded in a fresh process: "
          f"{'identical predictions' if same else 'PREDICTIONS DIFFER'}")
    gd.viz.to_svg(predict, os.path.join(args.out, "digits_cnn.svg"))
    gd.viz.to_svg(train, os.path.join(args.out, "digits_cnn_train.svg"))  # one box per layer
    history.save(os.path.join(args.out, "history.json"))
    gd.plot.history(history, os.path.join(args.out, "curves.png"))
    if not same or acc < 0.98:
        print("FAILED: accuracy below 0.98 or reloaded predictions differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
