"""Data-parallel training over MPI: real multi-process jobs (mpiexec -n 2 and -n 3) on this machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import graphdl as gd
from graphdl import layers, losses, optim
from passes.distribute import collective_nodes

HERE = Path(__file__).parent / "mpi"
pytest.importorskip("mpi4py")


def _mpiexec() -> str:
    local = Path(sys.executable).parent / "mpiexec"
    found = str(local) if local.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec (pip install mpich)")
    return found


def _launch(n: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([_mpiexec(), "-n", str(n), sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _reference(tmp: Path, opt: str, clip: str, dtype: str, batch: int) -> dict[str, np.ndarray]:
    out = tmp / "ref.npz"
    subprocess.run([sys.executable, str(HERE / "train_steps.py"), str(out), opt, clip, dtype, str(batch)],
                   check=True, timeout=120)
    return dict(np.load(out))


@pytest.mark.slow
@pytest.mark.parametrize(("n", "opt", "clip", "dtype"), [
    (2, "sgd", "none", "float64"), (2, "adam", "clip", "float64"), (3, "sgd", "clip", "float64"),
    (3, "adam", "none", "float64"), (2, "adam", "clip", "float32")])
def test_n_ranks_equal_one_process_on_the_same_global_batches(tmp_path, n, opt, clip, dtype) -> None:
    out = tmp_path / "par.npz"
    r = _launch(n, str(HERE / "train_steps.py"), str(out), opt, clip, dtype, "8")
    assert r.returncode == 0, r.stderr[-2000:]
    par, ref = dict(np.load(out)), _reference(tmp_path, opt, clip, dtype, 8 * n)
    tol = 1e-12 if dtype == "float64" else 1e-5
    for k in ref:
        np.testing.assert_allclose(par[k], ref[k], rtol=tol, atol=tol, err_msg=k)
    assert int(par["t"]) == 20


@pytest.mark.slow
def test_a_cnn_with_a_fused_first_layer_trains_as_one_process(tmp_path) -> None:
    """Two ranks of 8 samples each train the CNN (conv1 fused with its pooling) as one process does on 16."""
    out, ref = tmp_path / "par.npz", tmp_path / "ref.npz"
    r = _launch(2, str(HERE / "cnn_steps.py"), str(out), "8")
    assert r.returncode == 0, r.stderr[-2000:]
    subprocess.run([sys.executable, str(HERE / "cnn_steps.py"), str(ref), "16"], check=True, timeout=120)
    par, one = dict(np.load(out)), dict(np.load(ref))
    for k in one:
        np.testing.assert_allclose(par[k], one[k], rtol=1e-12, atol=1e-12, err_msg=k)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["raise", "kill", "stall"])
def test_a_failing_rank_ends_the_job(how: str) -> None:
    start = time.monotonic()
    r = _launch(2, str(HERE / "fail.py"), how, timeout=90)
    elapsed = time.monotonic() - start
    assert r.returncode != 0
    assert elapsed < 45, f"the job took {elapsed:.0f} s to end"
    if how == "raise":
        assert "boom on rank 1 at step 3" in r.stderr  # the original error is shown
    if how == "stall":
        assert "did not complete within 5 s" in r.stderr and "allreduce/0/wait" in r.stderr


def test_pass_puts_starts_inside_the_backward_and_waits_before_updates() -> None:
    with gd.Graph("m") as g:
        x = gd.placeholder("x", (None, 12))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = layers.Tanh()(layers.Linear(12, 16, name="fc1")(x))
        h = layers.Tanh()(layers.Linear(16, 16, name="fc2")(h))
        loss = losses.SoftmaxCrossEntropy()(layers.Linear(16, 4, name="fc3")(h), y)
    train = gd.compile([loss], optimizer=optim.SGD(lr=0.1), distributed=gd.distributed.MPI(bucket_bytes=300))
    order = [n.name for n in train.ir.nodes]
    starts = [n.name for n in collective_nodes(train.ir) if n.op == "allreduce_start"]
    assert len(starts) >= 3  # 300-byte buckets: several
    last_grad = max(i for i, n in enumerate(train.ir.nodes) if n.name.startswith("grad/fc1/"))
    assert order.index(starts[0]) < last_grad  # the first bucket starts while fc1's gradient is pending
    for n in train.ir.nodes:
        if n.op == "allreduce_wait":  # each wait sits right before its first reader
            assert n.name in train.ir.nodes[order.index(n.name) + 1].inputs
    # one process: the plan still runs (copies) and equals the plain step
    rng = np.random.default_rng(0)
    xb, yb = rng.standard_normal((5, 12)).astype("float32"), rng.integers(0, 4, 5)
    before = {k: v.copy() for k, v in g.parameters().items()}
    train.run({x: xb, y: yb})
    after = {k: v.copy() for k, v in g.parameters().items()}
    g.load_parameters(before)
    gd.compile([loss], optimizer=optim.SGD(lr=0.1)).run({x: xb, y: yb})
    for k in after:
        np.testing.assert_allclose(after[k], g.parameters()[k], rtol=1e-6, err_msg=k)


def test_sharded_loader_gives_disjoint_equal_shards() -> None:
    data = np.arange(103)
    shards = [list(gd.data.DataLoader(data, batch_size=4, shuffle=True, seed=3, shard=(r, 3))) for r in range(3)]
    assert len({len(s) for s in shards}) == 1  # equal step counts
    whole = list(gd.data.DataLoader(data, batch_size=12, shuffle=True, seed=3))
    for step, glob in enumerate(whole[:len(shards[0])]):
        parts = [shards[r][step][0] for r in range(3)]
        assert len({len(p) for p in parts}) == 1
        np.testing.assert_array_equal(np.concatenate(parts), glob[0][:sum(len(p) for p in parts)])
    seen = np.concatenate([b[0] for s in shards for b in s])
    assert len(seen) == len(set(seen.tolist())) >= 103 - 2
    with pytest.raises(gd.GraphDLError, match="shard must be"):
        gd.data.DataLoader(data, shard=(3, 3))


@pytest.mark.slow
def test_fit_under_mpiexec_then_resume_on_another_number_of_ranks(tmp_path) -> None:
    example = str(Path(__file__).parent.parent / "examples" / "train_digits_mpi.py")
    first = _launch(2, example, "--epochs", "2", "--out", str(tmp_path), "--no-progress")
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.count("rank(s):") == 1  # only rank 0 reports
    second = _launch(3, example, "--epochs", "1", "--out", str(tmp_path), "--resume", "--no-progress")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "3 rank(s): epochs 3-3" in second.stdout
    history = gd.History.load(tmp_path / "mpi_history.json")
    assert [e["epoch"] for e in history.epochs] == [1, 2, 3]
    assert history["loss"][2] < history["loss"][0]
    assert int(gd.load(tmp_path / "mpi_ckpt.gdl").state()["optimizer.t"]) > 0


def test_fit_refuses_a_plan_without_all_reduce_on_several_ranks(monkeypatch) -> None:
    with gd.Graph("m"):
        x = gd.placeholder("x", (None, 3))
        y = gd.placeholder("y", (None,), dtype="int64")
        loss = losses.SoftmaxCrossEntropy()(layers.Linear(3, 2, name="fc")(x), y)
    train = gd.compile([loss], optimizer=optim.SGD())
    monkeypatch.setattr(gd.distributed, "rank_and_size", lambda: (0, 2))
    loader = gd.data.DataLoader(np.zeros((8, 3), "float32"), np.zeros(8, "int64"), batch_size=4)
    with pytest.raises(gd.GraphDLError, match="no gradient all-reduce"):
        gd.fit(train, loader, progress=False)
