"""Atomic writes: the file appears whole or not at all; hashes of files."""

from __future__ import annotations

import hashlib

import pytest

from pfd_ref.files import sha256_of, write_atomically


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


def test_write_atomically_gives_the_permissions_of_open(tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    written = write_atomically(tmp_path / "atomic", lambda handle: handle.write(b"x"))
    assert written.stat().st_mode == plain.stat().st_mode


def test_write_atomically_needs_an_existing_directory(tmp_path):
    with pytest.raises(ValueError, match="^path: the directory of .* does not exist"):
        write_atomically(tmp_path / "missing" / "out.npz", lambda handle: None)


def test_sha256_of(tmp_path):
    data = bytes(range(256)) * 5000
    (tmp_path / "f").write_bytes(data)
    assert sha256_of(tmp_path / "f", chunk_bytes=1000) == hashlib.sha256(data).hexdigest()
