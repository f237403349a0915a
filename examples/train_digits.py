"""Train the README's MLP on scikit-learn's 8x8 digits with a validation split, early stopping and a best
checkpoint; save it, reload it in a fresh process, draw it and its training curves.

Run: python examples/train_digits.py [--epochs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

import graphdl as gd
from graphdl import layers, losses, optim


def build(x_train: np.ndarray) -> tuple[gd.Graph, gd.Tensor, gd.Tensor, gd.Tensor, gd.Tensor]:
    """The MLP of the README, with input standardisation as graph constants (saved with the model)."""
    mean, scale = x_train.mean(axis=0), x_train.std(axis=0) + 0.1
    with gd.Graph("mlp", seed=0) as g:
        x = gd.placeholder("x", shape=(None, 64))
        y = gd.placeholder("y", shape=(None,), dtype="int64")
        z = (x - gd.constant(mean, name="input_mean")) / gd.constant(scale, name="input_scale")
        h = layers.ReLU()(layers.Linear(64, 128, name="fc1")(z))
        logits = layers.Linear(128, 10, name="fc2")(h)
        loss = losses.SoftmaxCrossEntropy()(logits, y)
    return g, x, y, logits, loss


def holdout(x: np.ndarray, y: np.ndarray, fraction: float, seed: int = 0
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A fixed random validation split of the training data: (x_fit, y_fit, x_val, y_val)."""
    order = np.random.default_rng(seed).permutation(len(x))
    cut = round(len(x) * fraction)
    return x[order[cut:]], y[order[cut:]], x[order[:cut]], y[order[:cut]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--out", default="out")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    model_path = os.path.join(args.out, "mlp.gdl")

    data = gd.data.load_digits()
    x_fit, y_fit, x_val, y_val = holdout(data.x_train, data.y_train, fraction=0.15)
    g, x, y, logits, loss = build(x_fit)
    train = gd.compile([loss, logits], optimizer=optim.Adam(lr=1e-3))
    predict = gd.compile([logits])

    start = time.perf_counter()
    loader = gd.data.DataLoader(x_fit, y_fit, batch_size=32, shuffle=True, seed=0)
    best_path = os.path.join(args.out, "best.gdl")
    stop = gd.callbacks.EarlyStopping("val_loss", patience=8, min_delta=1e-4, restore_best_weights=True)
    history = gd.fit(train, loader, epochs=args.epochs, inputs=["x", "y"], metrics=["accuracy"],
                     validation=(x_val, y_val), progress=not args.no_progress,
                     callbacks=[stop, gd.callbacks.ModelCheckpoint(best_path, "val_loss")])
    seconds = time.perf_counter() - start
    acc = gd.evaluate(predict, data.x_test, data.y_test)["accuracy"]
    print(f"test accuracy {acc:.4f} after {len(history.epochs)} epochs in {seconds:.1f} s (best validation loss "
          f"{stop.best:.4f} at epoch {stop.best_epoch}, weights restored; best checkpoint {best_path})")

    predict.save(model_path)
    np.save(os.path.join(args.out, "x_test.npy"), data.x_test)
    expected = predict.run({"x": data.x_test})[0]
    # Reload in a fresh process that never sees this script's graph.
    check = ("import sys, numpy as np, graphdl as gd; m = gd.load(sys.argv[1]); "
             "np.save(sys.argv[3], m.run({'x': np.load(sys.argv[2])})[0])")
    reloaded_path = os.path.join(args.out, "reloaded_logits.npy")
    subprocess.run([sys.executable, "-c", check, model_path, os.path.join(args.out, "x_test.npy"), reloaded_path],
                   check=True)
    same = np.array_equal(np.load(reloaded_path), expected)
    print(f"saved {model_path} ({os.path.getsize(model_path):,} bytes); reloaded in a fresh process: "
          f"{'identical outputs' if same else 'OUTPUTS DIFFER'}")

    svg = os.path.join(args.out, "train.svg")
    gd.viz.to_svg(train, svg)
    gd.viz.to_svg(predict, os.path.join(args.out, "predict.svg"))
    history.save(os.path.join(args.out, "history.json"))
    curves = os.path.join(args.out, "curves.png")
    gd.plot.history(history, curves)
    print(f"drew {svg} and {curves}")
    report = predict.memory_report(batch_size=256)
    print("memory at batch 256: " + ", ".join(f"{k}={v:,}" for k, v in report.items()))
    if not same or acc < 0.96:
        print("FAILED: accuracy below 0.96 or reloaded outputs differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
