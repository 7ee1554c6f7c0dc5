"""Atomic writes: the file appears whole or not at all, under any name two processes share,
after a kill, on a full device; output paths checked before any work; hashes of files."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pfd_ref import files
from pfd_ref.data.dataset import load_npz, save_npz
from pfd_ref.files import check_output_directory, check_output_file, sha256_of, write_atomically

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


def _dev_full(path):
    """Stand-in for ``files._create``: a descriptor on /dev/full, where every write fails (ENOSPC)."""
    return os.open("/dev/full", os.O_WRONLY), Path(path).with_name(".never-created")


needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")


def test_write_atomically_replaces_the_file_only_when_the_write_finished(tmp_path):
    path = tmp_path / "out.json"
    write_atomically(path, lambda handle: handle.write("old"), mode="w")
    def failing(handle):
        handle.write("half")
        raise RuntimeError("crash in the middle")
    with pytest.raises(RuntimeError):
        write_atomically(path, failing, mode="w")
    assert path.read_text() == "old"  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left
    write_atomically(path, lambda handle: handle.write(b"new"))
    assert path.read_bytes() == b"new"


def test_write_atomically_needs_an_existing_directory_and_a_file_name(tmp_path):
    with pytest.raises(ValueError, match="^path: the directory of .* does not exist"):
        write_atomically(tmp_path / "missing" / "out.npz", lambda handle: None)
    with pytest.raises(ValueError, match="^path: .* is a directory"):
        write_atomically(tmp_path, lambda handle: None)


def test_temporary_names_are_unique_and_hidden_beside_the_file(tmp_path):
    names = {files._temporary_name(tmp_path / "x.npz").name for _ in range(100)}
    assert len(names) == 100
    assert all(name.startswith(f".x.npz.{os.getpid()}.") and name.endswith(".tmp") for name in names)


def test_a_written_file_has_the_permissions_of_a_plain_open(tmp_path):
    """mkstemp would make it 0o600; a file pfd-ref writes is as readable as any other."""
    umask = os.umask(0o022)
    os.umask(umask)
    write_atomically(tmp_path / "f.csv", lambda handle: handle.write(b"x"))
    assert stat.S_IMODE((tmp_path / "f.csv").stat().st_mode) == 0o666 & ~umask


@needs_dev_full
def test_a_full_device_is_an_os_error_naming_the_file_and_leaves_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "records.json"
    path.write_text("[1]")
    monkeypatch.setattr(files, "_create", _dev_full)
    with pytest.raises(OSError) as error:
        write_atomically(path, lambda handle: handle.write(b"x" * 10000))
    assert error.value.filename == str(path) and error.value.strerror
    assert path.read_text() == "[1]"


def test_check_output_file(tmp_path):
    (tmp_path / "a_file").write_text("x")
    check_output_file("--json", tmp_path / "out.json")
    check_output_file("--json", None)
    check_output_file("--json", "-")
    for path, message in ((tmp_path / "missing" / "out.json", "the directory of .* does not exist"),
                          (tmp_path / "a_file" / "out.json", "the directory of .* is not a directory"),
                          (tmp_path, "is a directory; give a file name")):
        with pytest.raises(ValueError, match=f"^--json: .*{message}" if "directory of" not in message else f"^--json: {message}"):
            check_output_file("--json", path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # the probe left nothing


def test_check_output_directory(tmp_path):
    (tmp_path / "a_file").write_text("x")
    check_output_directory("--save", tmp_path)
    check_output_directory("--save", tmp_path / "new" / "deeper")  # created later, not here
    assert not (tmp_path / "new").exists()
    with pytest.raises(ValueError, match=r"^--save: .*a_file is not a directory$"):
        check_output_directory("--save", tmp_path / "a_file")
    with pytest.raises(ValueError, match=r"^--save: .*a_file/students is not a directory \(.*a_file is a file\)"):
        check_output_directory("--save", tmp_path / "a_file" / "students")


@needs_dev_full
def test_output_checks_find_a_full_device_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_create", _dev_full)
    with pytest.raises(ValueError, match=r"^--out: cannot write in .* \(No space left on device\)"):
        check_output_file("--out", tmp_path / "case.npz")
    with pytest.raises(ValueError, match=r"^--save: cannot write in .* \(No space left on device\)"):
        check_output_directory("--save", tmp_path / "students")


@pytest.mark.skipif(ROOT, reason="root writes into a read-only directory")
def test_output_checks_find_a_directory_without_write_permission(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ValueError, match=r"^--json: cannot write in .*locked \(Permission denied\)"):
            check_output_file("--json", locked / "out.json")
    finally:
        locked.chmod(0o700)


WRITER = """
import sys, numpy as np
from pfd_ref.data.dataset import save_npz
path, tag, times = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
arrays = {f"a{k}": np.full(100_000, tag + k, dtype=np.float64) for k in range(4)}
for _ in range(times):
    save_npz(path, arrays)
"""


def _whole(path: Path) -> bool:
    """The archive loads and all its members come from one writer (``a{k}`` holds ``tag + k``)."""
    arrays = load_npz(path)
    return len(arrays) == 4 and len({float(a[0]) - k for k, a in enumerate(arrays.values())}) == 1


def test_concurrent_writers_of_one_path_never_leave_a_torn_file(tmp_path):
    """Two processes save 3.2 MB archives to one path 8 times each while this one reads it:
    every read finds one writer's whole file (os.replace of unique temporary files)."""
    path = tmp_path / "shared.npz"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(100 * k), "8"]) for k in range(2)]
    reads = 0
    while any(w.poll() is None for w in writers):
        if path.exists():
            assert _whole(path)
            reads += 1
    assert all(w.returncode == 0 for w in writers) and reads > 0 and _whole(path)
    assert [p.name for p in tmp_path.iterdir()] == ["shared.npz"]


def test_a_kill_in_the_middle_of_a_save_leaves_the_last_whole_file(tmp_path):
    path = tmp_path / "saved.npz"
    save_npz(path, {f"a{k}": np.full(100_000, 7.0 + k) for k in range(4)})
    for delay in (0.5, 0.8):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "7", "1000"])
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        assert _whole(path)
        for temporary in tmp_path.glob(".saved.npz.*.tmp"):  # SIGKILL allows no clean-up: a hidden leftover
            temporary.unlink()


def test_sha256_of(tmp_path):
    data = bytes(range(256)) * 5000
    (tmp_path / "f").write_bytes(data)
    assert sha256_of(tmp_path / "f", chunk_bytes=1000) == hashlib.sha256(data).hexdigest()
