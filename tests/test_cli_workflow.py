"""`graphdl predict`, `graphdl plot` and `graphdl viz --group`: files in, files out, one-line errors."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import graphdl as gd
from graphdl.cli import main


@pytest.fixture
def saved(mlp, tmp_path):
    predict = gd.compile([mlp.logits])
    path = tmp_path / "m.gdl"
    predict.save(path)
    x = np.random.default_rng(0).standard_normal((37, 64)).astype("float32")
    return path, x, predict.run({"x": x})[0]


def test_predict_npy_npz_and_csv(saved, tmp_path, capsys) -> None:
    path, x, expected = saved
    np.save(tmp_path / "x.npy", x)
    assert main(["predict", str(path), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"),
                 "--batch-size", "8"]) == 0
    # Batches of 8 against one call on 37 rows: BLAS may sum a row in another order for another M
    # (OpenBLAS's Haswell kernels do), so equal to float32 rounding, not to the bit.
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5, atol=1e-6)
    assert "wrote" in capsys.readouterr().out
    np.savez(tmp_path / "x.npz", x=x)
    assert main(["predict", str(path), "-i", str(tmp_path / "x.npz"), "-o", str(tmp_path / "y.npz")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npz")["fc2"], expected)
    with open(tmp_path / "x.csv", "w") as f:
        f.write(",".join(f"f{i}" for i in range(64)) + "\n")
        np.savetxt(f, x.astype(np.float64), delimiter=",", fmt="%.9g")
    assert main(["predict", str(path), "-i", str(tmp_path / "x.csv"), "-o", str(tmp_path / "y.csv")]) == 0
    np.testing.assert_allclose(np.loadtxt(tmp_path / "y.csv", delimiter=","), expected, rtol=1e-6, atol=1e-6)
    capsys.readouterr()
    assert main(["predict", str(path), "-i", str(tmp_path / "x.npy")]) == 0  # no --output: CSV on stdout
    printed = np.loadtxt(capsys.readouterr().out.splitlines(), delimiter=",")
    np.testing.assert_allclose(printed, expected, rtol=1e-5, atol=1e-5)


def test_predict_runs_the_inference_plan_of_a_training_file(mlp, tmp_path) -> None:
    train = gd.compile([mlp.loss, mlp.logits], optimizer=gd.optim.SGD(lr=0.1))
    train.save(tmp_path / "t.gdl")
    x = np.random.default_rng(1).standard_normal((5, 64)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    before = {k: v.copy() for k, v in gd.load(tmp_path / "t.gdl").values.items()}
    assert main(["predict", str(tmp_path / "t.gdl"), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), gd.compile([mlp.logits]).run({"x": x})[0])
    after = gd.load(tmp_path / "t.gdl").values
    assert all(np.array_equal(after[k], v) for k, v in before.items())  # nothing trained


def test_predict_shows_progress_on_large_inputs(saved, tmp_path, capsys) -> None:
    path, _, _ = saved
    x = np.zeros((2000, 64), "float32")
    np.save(tmp_path / "big.npy", x)
    assert main(["predict", str(path), "-i", str(tmp_path / "big.npy"), "-o", str(tmp_path / "y.npy"),
                 "--batch-size", "100"]) == 0
    err = capsys.readouterr().err
    assert "predict" in err and "2000/2000" in err
    np.save(tmp_path / "small.npy", x[:10])
    assert main(["predict", str(path), "-i", str(tmp_path / "small.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    assert "predict" not in capsys.readouterr().err


@pytest.mark.parametrize(("make", "args", "pattern"), [
    (lambda d: np.save(d / "x.npy", np.zeros((3, 5), "float32")), ["-i", "{d}/x.npy"], "feed 'x' has shape"),
    (lambda d: (d / "x.txt").write_text("1"), ["-i", "{d}/x.txt"], "use a .npy, .npz or .csv"),
    (lambda d: np.savez(d / "x.npz", a=np.zeros(1), b=np.zeros(1)), ["-i", "{d}/x.npz"], "name the arrays"),
    (lambda d: None, ["-i", "{d}/missing.npy"], "cannot read"),
    (lambda d: np.save(d / "x.npy", np.zeros((3, 64), "float32")), ["-i", "{d}/x.npy", "-o", "{d}/y.bin"],
     "cannot write"),
    (lambda d: np.save(d / "x.npy", np.zeros((3, 64), "float32")), ["-i", "{d}/x.npy", "--batch-size", "0"],
     "batch-size"),
])
def test_predict_errors_are_one_line(saved, tmp_path, capsys, make, args, pattern) -> None:
    path, _, _ = saved
    make(tmp_path)
    assert main(["predict", str(path), *[a.format(d=tmp_path) for a in args]]) == 1
    err = capsys.readouterr().err
    assert err.startswith("graphdl: error:") and err.count("\n") == 1 and pattern in err, err


@pytest.mark.slow
def test_plot_command_and_exit_code(mlp, tmp_path) -> None:
    x = np.random.default_rng(0).standard_normal((32, 64)).astype("float32")
    y = np.arange(32) % 10
    h = gd.fit(gd.compile([mlp.loss], optimizer=gd.optim.SGD(lr=0.1)), gd.data.DataLoader(x, y, batch_size=8),
               epochs=2, progress=False)
    h.save(tmp_path / "history.json")
    proc = subprocess.run([sys.executable, "-m", "graphdl.cli", "plot", str(tmp_path / "history.json"), "-o",
                           str(tmp_path / "curves.svg")], capture_output=True, text=True)
    assert proc.returncode == 0 and "wrote" in proc.stdout, proc.stderr
    ET.parse(tmp_path / "curves.svg")
    proc = subprocess.run([sys.executable, "-m", "graphdl.cli", "plot", str(tmp_path / "nope.json")],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "cannot read history file" in proc.stderr


def test_viz_group_option(mlp, tmp_path) -> None:
    path = tmp_path / "t.gdl"
    gd.compile([mlp.loss], optimizer=gd.optim.Adam()).save(path)
    for group, present in (("layer", False), ("none", True)):
        out = tmp_path / f"{group}.svg"
        assert main(["viz", str(path), "--group", group, "-o", str(out)]) == 0
        texts = [t.text for t in ET.parse(out).getroot().iter("{http://www.w3.org/2000/svg}text")]
        assert ("update/fc1.W" in texts) is present and "fc1" in texts
