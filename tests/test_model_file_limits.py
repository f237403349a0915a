"""Loading is bounded: only regular files, member sizes checked before and while inflating, array headers
checked against the graph before allocating, undeclared arrays refused, limits configurable."""

from __future__ import annotations

import io
import os
import resource
import threading
import time
import zipfile

import numpy as np
import pytest

import graphdl as gd
from graphdl import serialize
from tests.modelfiles import bomb_file, model_bytes


def _load_in_thread(path, timeout: float = 10.0):
    """gd.load in a thread: (finished, exception) — a load that blocks does not finish."""
    box: list[BaseException | None] = []

    def target():
        try:
            gd.load(path)
            box.append(None)
        except BaseException as e:
            box.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    return bool(box), (box[0] if box else None)


def test_a_fifo_is_refused_without_blocking(tmp_path) -> None:
    fifo = tmp_path / "pipe.gdl"
    os.mkfifo(fifo)
    finished, err = _load_in_thread(fifo)
    assert finished, "gd.load blocked on a FIFO"
    assert isinstance(err, gd.ModelFileError) and "not a regular file" in str(err)


@pytest.mark.parametrize("target", ["dir", "/dev/null", "missing"])
def test_folders_devices_and_missing_files_are_model_file_errors(tmp_path, target) -> None:
    path = {"dir": str(tmp_path), "missing": str(tmp_path / "nope.gdl")}.get(target, target)
    with pytest.raises(gd.ModelFileError, match=r"folder|not a regular file|no such file"):
        gd.load(path)


def _peak_rss_of(fn) -> tuple[float, int]:
    """Seconds and the growth of this process's peak RSS (bytes) while running fn."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before


@pytest.mark.parametrize("member", ["graph.json", "weights.npz", "manifest.json"])
@pytest.mark.parametrize("lie", [False, True])
def test_a_4_gib_zip_bomb_costs_milliseconds_and_megabytes(tmp_path, member, lie) -> None:
    """A ~4 MB file whose member inflates to 4 GiB - 1 MiB, its directory truthful or claiming 1000 bytes."""
    path = tmp_path / "bomb.gdl"
    path.write_bytes(bomb_file(member, 4095 << 20, claim=1000 if lie else None, crc=False))
    assert path.stat().st_size < 5_000_000

    def attempt():
        with pytest.raises(gd.ModelFileError, match=r"inflate|CRC|checksum|not valid JSON|malformed"):
            gd.load(path)

    seconds, grown = _peak_rss_of(attempt)
    assert seconds < 2.0 and grown < 64 << 20, (seconds, grown)


def test_members_are_bounded_while_inflating_not_only_by_the_directory(tmp_path) -> None:
    """A directory entry that under-states the size never makes the loader read past the limit."""
    path = tmp_path / "lie.gdl"
    path.write_bytes(bomb_file("graph.json", 64 << 20, claim=(64 << 20) - 1, crc=False))
    limits = serialize.Limits(graph_bytes=64 << 20)
    with pytest.raises(gd.ModelFileError, match=r"CRC|inflates to more"):
        gd.load(path, limits=limits)


def _mlp_file(mlp) -> tuple[dict, dict]:
    model = gd.compile([mlp.logits])
    return serialize.graph_to_json(model.ir), dict(model.values)


def test_an_undeclared_array_is_refused_before_it_is_read(tmp_path, mlp) -> None:
    graph, weights = _mlp_file(mlp)
    weights["extra"] = np.zeros((1 << 20,), np.float64)  # 8 MiB the graph knows nothing of
    (tmp_path / "x.gdl").write_bytes(model_bytes(graph, weights))
    with pytest.raises(gd.ModelFileError, match=r"weights.npz would inflate to .* arrays the graph declares"):
        gd.load(tmp_path / "x.gdl")
    small = dict(_mlp_file(mlp)[1], extra=np.zeros(3, np.float32))
    (tmp_path / "y.gdl").write_bytes(model_bytes(graph, small))
    with pytest.raises(gd.ModelFileError, match=r"holds 'extra.npy', which the graph does not declare"):
        gd.load(tmp_path / "y.gdl")


@pytest.mark.parametrize(("header", "pattern"), [
    ({"descr": "<f4", "fortran_order": False, "shape": (1 << 40,)}, r"is \(1099511627776,\).*graph says \(64, 128\)"),
    ({"descr": "<f8", "fortran_order": False, "shape": (64, 128)}, r"is <f8, the graph says float32"),
    ({"descr": "|O", "fortran_order": False, "shape": (64, 128)}, r"is \|O, the graph says float32"),
    ({"descr": ">f4", "fortran_order": False, "shape": (64, 128)}, r"is >f4"),
    ({"descr": "<f4", "fortran_order": True, "shape": (64, 128)}, r"Fortran order"),
    ({"descr": "<f4", "fortran_order": False, "shape": (64, 128)}, r"holds 8 bytes of data, 32,768 expected"),
])
def test_array_headers_are_checked_against_the_graph_before_allocating(tmp_path, mlp, header, pattern) -> None:
    graph, weights = _mlp_file(mlp)
    npz = io.BytesIO()
    with zipfile.ZipFile(npz, "w") as z:
        for k, v in weights.items():
            if k == "fc1.W":
                hb = io.BytesIO()
                np.lib.format.write_array_header_1_0(hb, header)
                z.writestr("fc1.W.npy", hb.getvalue() + b"\0" * 8)
            else:
                b = io.BytesIO()
                np.save(b, v)
                z.writestr(f"{k}.npy", b.getvalue())
    (tmp_path / "h.gdl").write_bytes(model_bytes(graph, npz.getvalue()))
    with pytest.raises(gd.ModelFileError, match=rf"array 'fc1.W'.*{pattern}|{pattern}"):
        gd.load(tmp_path / "h.gdl")


def test_limits_are_configurable(tmp_path, mlp, batch) -> None:
    graph, weights = _mlp_file(mlp)
    (tmp_path / "m.gdl").write_bytes(model_bytes(graph, weights))
    with pytest.raises(gd.ModelFileError, match=r"graph.json would inflate to .* the limit is 100"):
        gd.load(tmp_path / "m.gdl", limits=serialize.Limits(graph_bytes=100))
    with pytest.raises(gd.ModelFileError, match=r"weights.npz would inflate .*Limits.weights_bytes"):
        gd.load(tmp_path / "m.gdl", limits=serialize.Limits(weights_bytes=1000))
    with pytest.raises(gd.ModelFileError, match=r"at most 3 nodes"):
        gd.load(tmp_path / "m.gdl", limits=serialize.Limits(nodes=3))
    with pytest.raises(gd.ModelFileError, match=r"regular file of at most 10 bytes"):
        gd.load(tmp_path / "m.gdl", limits=serialize.Limits(file_bytes=10))
    assert gd.load(tmp_path / "m.gdl").run({"x": batch[0]})[0].shape == (32, 10)


def test_extra_and_duplicate_zip_members_are_refused(tmp_path, mlp) -> None:
    graph, weights = _mlp_file(mlp)
    good = model_bytes(graph, weights)
    with zipfile.ZipFile(io.BytesIO(good)) as z:
        members = [(n, z.read(n)) for n in z.namelist()]
    for extra, pattern in (([("evil.py", b"import os")], r"unexpected members \['evil.py'\]"),
                           ([members[1]], r"two members with the same name")):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
                for n, b in members + extra:
                    z.writestr(n, b)
        (tmp_path / "e.gdl").write_bytes(buf.getvalue())
        with pytest.raises(gd.ModelFileError, match=pattern):
            gd.load(tmp_path / "e.gdl")
