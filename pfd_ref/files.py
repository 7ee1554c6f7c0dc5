"""Writing files atomically, and their content hashes.

``write_atomically(path, write)`` calls ``write(handle)`` on a temporary file in the
destination's directory and renames it over ``path`` only when ``write`` returned: a crash
or an exception leaves the old file (or none), never a half-written one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def write_atomically(path, write, mode: str = "wb") -> Path:
    """Write ``path`` through ``write(handle)`` (a binary handle, or text with ``mode="w"``),
    via a temporary file in the same directory and ``os.replace``. The file gets the
    permissions ``open`` would give it (0666 less the umask; ``mkstemp`` makes it 0600).
    Returns the path. Raises ValueError naming ``path`` when its directory does not exist."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise ValueError(f"path: the directory of {path} does not exist")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(descriptor, mode) as handle:
            write(handle)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path


def sha256_of(path, chunk_bytes: int = 1 << 20) -> str:
    """The hex SHA-256 of the file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()
