"""Writing a model file: ``save`` writes the zip atomically (a temporary file next to the target, then
a rename), removes its temporary on any error or SIGTERM, and sweeps the temporaries of killed saves.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import secrets
import signal
import stat
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from graphdl.errors import file_path
from graphdl.serialize.format import FORMAT_NAME, FORMAT_VERSION, sha256
from graphdl.serialize.graph_json import graph_to_json


def _file_mode(path: str) -> int:
    """Keep an existing file's permissions; otherwise what open() would give (0o666 less the umask)."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


#: A temporary older than this is swept even if its pid is alive (the pid may have been reused).
STALE_SECONDS = 15 * 60


def temp_name(target: str) -> str:
    """``.<target>.tmp-<pid>-<random>`` next to ``target``: recognisable, and its writer identifiable."""
    directory, base = os.path.split(os.path.abspath(target))
    return os.path.join(directory, f".{base}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists but not ours, or not a pid we can ask about: leave it to the age rule
    return True


def sweep_temporaries(target: str, now: float | None = None) -> list[str]:
    """Remove temporaries of earlier saves of ``target`` whose process is gone (or that are older than
    STALE_SECONDS), and mkstemp-style ``.tmp-*.gdl`` files of older graphdl versions older than that.
    Returns the removed paths."""
    directory, base = os.path.split(os.path.abspath(target))
    ours = re.compile(rf"\.{re.escape(base)}\.tmp-(\d+)-[0-9a-f]{{8}}")
    legacy = re.compile(r"\.tmp-[a-z0-9_]{8}\.gdl")
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        m = ours.fullmatch(entry.name)
        if m is None and not legacy.fullmatch(entry.name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode):
                continue
            old = now - info.st_mtime > STALE_SECONDS
            if m is not None:
                pid = int(m.group(1))
                if pid == os.getpid() or (_pid_alive(pid) and not old):
                    continue
            elif not old:
                continue
            os.unlink(entry.path)
            removed.append(entry.path)
        except OSError:
            continue  # another save swept it first, or we may not remove it: not this save's problem
    return removed


class _Terminated(BaseException):
    """Raised inside save() by SIGTERM, so the temporary file is removed before the process ends."""


@contextmanager
def _cleanup_on_sigterm() -> Iterator[None]:
    """While saving (main thread only), turn SIGTERM into an exception, then deliver it as before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, previous)
        signal.raise_signal(signal.SIGTERM)  # the previous handler (by default: terminate)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def save(model: Any, path: str | os.PathLike[str]) -> None:
    """Write ``model`` (an Executable) to ``path`` atomically: a failed or interrupted save leaves the
    old file intact and no temporary file behind; temporaries of killed earlier saves are swept."""
    from graphdl import __version__

    path = file_path(path, "save")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, f"cannot save the model to {path}: the folder {directory} does not "
                                "exist; create it first", path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, f"cannot save the model to {path}: it is a folder", path)
    data = graph_to_json(model.ir)
    if model.objective is not None:
        data["objective"] = model.objective
    graph_bytes = json.dumps(data, indent=1, allow_nan=True).encode()
    buf = io.BytesIO()
    np.savez(buf, **model.values)
    weights_bytes = buf.getvalue()
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "graphdl_version": __version__,
        "members": {"graph.json": sha256(graph_bytes), "weights.npz": sha256(weights_bytes)},
    }
    sweep_temporaries(path)
    tmp = temp_name(path)
    with _cleanup_on_sigterm():
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
                    z.writestr("manifest.json", json.dumps(manifest, indent=1))
                    z.writestr("graph.json", graph_bytes)
                    z.writestr("weights.npz", weights_bytes)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, _file_mode(path))
            os.replace(tmp, path)
        except BaseException as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(e, OSError):
                e.add_note(f"while saving the model to {path}")
            raise
