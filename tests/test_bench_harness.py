"""The benchmark harness: fresh processes per competitor, thread and OpenBLAS environments, tables."""

from __future__ import annotations

from bench import harness
from bench.competitors import COMPETITORS, WORKLOADS


def test_environments_set_one_thread_and_unset_openblas_variables(monkeypatch) -> None:
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "1048576")
    one = harness.environment(1, unset_openblas=True)
    assert "OPENBLAS_CORETYPE" not in one and "OPENBLAS_L2_SIZE" not in one
    assert one["OMP_NUM_THREADS"] == one["OPENBLAS_NUM_THREADS"] == one["MKL_NUM_THREADS"] == "1"
    assert "intra_op_parallelism_threads=1" in one["XLA_FLAGS"]
    default = harness.environment(0, unset_openblas=False)
    assert default["OPENBLAS_CORETYPE"] == "Haswell"


def test_every_competitor_is_one_registered_function() -> None:
    assert {"graphdl", "NumPy GEMM floor", "PyTorch eager", "JAX jit", "onnxruntime"} <= set(COMPETITORS)
    assert "cnn_train" in WORKLOADS and "cnn_infer_256" in WORKLOADS


def test_measure_runs_each_competitor_in_its_own_process_and_renders() -> None:
    res = harness.measure(["chain"], ["graphdl", "NumPy GEMM floor"], repeats=2, threads=1, unset_openblas=True,
                          quick=True)
    for name in ("graphdl", "NumPy GEMM floor"):
        r = res["chain"][name]
        assert len(r.medians) == len(r.cpu_medians) == len(r.loads) == 2 and r.minimum > 0
        assert r.blas.get("num_threads") in (1, None)  # OPENBLAS_NUM_THREADS=1 reached the worker
    text = harness.render(res, cpu=True)
    assert "| graphdl |" in text and "| NumPy ufuncs, out= |" in text and "CPU median" in text
    assert set(harness.ratios(res)["chain"]) == {"NumPy GEMM floor"}


def test_split_ab_times_every_variant_in_fresh_processes() -> None:
    from bench.split_ab import compare

    text = compare(["cnn_infer_1"], steps=2, repeats=1, orders=("numpy",))
    assert "| this tree, numpy first |" in text and "| this tree, split off, numpy first |" in text
    assert text.count(" ms") == 8
