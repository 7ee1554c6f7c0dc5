"""Writing files atomically, checking output paths before the work that feeds them, and
hashing files.

``write_atomically(path, write)`` is the one way pfd_ref writes a file (records, students,
datasets, oracle cases, score tables): it calls ``write(handle)`` on a temporary file in the
destination's directory, flushes it to disk and renames it over ``path`` (``os.replace``)
only when ``write`` returned. A crash, a kill or an exception leaves the old file (or none),
never a half-written one, and never a temporary file after an exception. Each write has its
own temporary name (process id and random bytes), so two processes writing the same path at
once each replace it with a whole file: the last one wins, and no file is ever a mix.

``check_output_file`` and ``check_output_directory`` are the checks a command makes on its
output paths before any data is loaded or any model trained, so that a wrong path costs
nothing: they raise ``ValueError`` naming the option when the directory does not exist, the
path is a directory (or, for a directory, a file), or a probe file cannot be written there
(no permission, a read-only or full device). A device that fills up later still fails at the
write itself, with an ``OSError`` that ``pfd-ref`` reports as an error.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

PROBE_BYTES = 4096  # what the output checks write (and remove) to prove the directory is writable


def _temporary_name(path: Path) -> Path:
    """A fresh hidden name beside ``path``: ``.<name>.<pid>.<16 hex digits>.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")


def _create(path: Path) -> tuple[int, Path]:
    """Create a new temporary file beside ``path`` (mode 0o666 less the umask, as ``open``
    would); returns ``(descriptor, its path)``."""
    while True:
        temporary = _temporary_name(path)
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temporary
        except FileExistsError:  # pragma: no cover (64 random bits)
            continue


def write_atomically(path, write, mode: str = "wb") -> Path:
    """Write ``path`` through ``write(handle)`` (a binary handle, or text with ``mode="w"``),
    via a temporary file in the same directory, ``fsync`` and ``os.replace``. Returns the path.
    Raises ValueError naming ``path`` when its directory does not exist or it is a directory,
    and an ``OSError`` whose ``filename`` is ``path`` when the system refuses the write (a full
    device, no permission)."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise ValueError(f"path: the directory of {path} does not exist")
    if path.is_dir():
        raise ValueError(f"path: {path} is a directory")
    try:
        descriptor, temporary = _create(path)
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(path)) from error
    try:
        with os.fdopen(descriptor, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:  # named after the file it was writing (a full device names no file)
        temporary.unlink(missing_ok=True)
        raise OSError(error.errno, error.strerror, str(path)) from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _probe(option: str, directory: Path) -> None:
    """ValueError naming ``option`` unless ``PROBE_BYTES`` can be written to a new file (of
    its own name) in ``directory``; the file is removed again."""
    temporary = None
    try:
        descriptor, temporary = _create(directory / "probe")
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(bytes(PROBE_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise ValueError(f"{option}: cannot write in {directory} ({error.strerror or error})") from None
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)


def check_output_file(option: str, path) -> Path | None:
    """Check, before any work, that the file ``path`` given to ``option`` can be written:
    its directory exists and takes a new file, and ``path`` is not a directory. ``None`` and
    ``-`` (standard output) pass. Returns the path. Nothing is left behind."""
    if path is None or str(path) == "-":
        return path
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise ValueError(f"{option}: the directory of {path} {what}")
    if path.is_dir():
        raise ValueError(f"{option}: {path} is a directory; give a file name")
    _probe(option, directory)
    return path


def check_output_directory(option: str, path) -> Path | None:
    """Check, before any work, that ``path`` given to ``option`` can hold output files: an
    existing writable directory, or a name that can be created under the nearest existing
    directory above it (which is not created here). ``None`` passes. Returns the path."""
    if path is None:
        return None
    path = Path(path)
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == path else f" ({existing} is a file)"
        raise ValueError(f"{option}: {path} is not a directory{where}")
    _probe(option, existing)
    return path


def sha256_of(path, chunk_bytes: int = 1 << 20) -> str:
    """The hex SHA-256 of the file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()
