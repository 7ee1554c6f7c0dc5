"""Item vectors in an ``.npy`` file: catalogues larger than memory.

A two-tower student scores ``<u, v_i> + b`` against precomputed item vectors ``v`` (N, k).
When ``v`` does not fit in memory (50M items x 128 float32 is 25.6 GB), it lives in an
``.npy`` file: ``save_item_vectors`` writes one (atomically, block by block), and
``top_k_from_file`` reads it and scores it in blocks of about ``BLOCK_BYTES`` with the
fused top-k (the ``top_k_item_blocks`` kernel: one heap per user carried across the blocks;
through ``pfd_ref.backend``).
While a block is scored, a reader thread reads the next one from the file into the second
of two reused buffers (``aligned_buffer``; the scan's memory is these two blocks), so the
disk works while the CPU scores. It reads directly from the disk (``O_DIRECT``, where the
system and the file system allow it; plain reads through the page cache otherwise): large
aligned reads, no page faults, no copy through the page cache, and no pages of other
programs evicted for a file that would not fit anyway. One scan reads the file once, front
to back: its time is the file's sequential read time when scoring is faster than the disk
(docs/performance.md, "Catalogues larger than memory", measures both; a reader thread that
touched the pages of a memory map, the way before, reached 0.78 of the read bandwidth).

``ItemVectorFile.vectors`` is the whole file memory-mapped, for random access (the rows of
a request's candidates). The map is private (``MAP_PRIVATE``): the array is writeable, so
the kernels see the same array type as for an in-memory catalogue, but nothing written to
it reaches the file. It is also ``MAP_NORESERVE``: pfd_ref never writes to it, so no memory
is set aside for copies of its pages; without it Linux's default overcommit heuristic
refuses (``ENOMEM``) a private writeable map larger than memory + swap, the very files this
module is for.
Item ``i`` of a file is its row ``i``.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pfd_ref import backend
from pfd_ref.files import write_atomically
from pfd_ref.validation import FLOAT_DTYPES, float_dtype

BLOCK_BYTES = 64 << 20  # rows scored per block: 64 MiB of item vectors
# Direct reads (O_DIRECT) need file offsets, lengths and buffer addresses that are multiples
# of the device's block size: 4096 covers the common ones (512 and 4096).
DIRECT_ALIGN = 4096
# MAP_NORESERVE: Python's mmap module names it from 3.13; 0x4000 is its value on Linux.
MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform.startswith("linux") else 0)


def save_item_vectors(path, blocks, num_rows: int, dim: int, dtype) -> Path:
    """Write item vectors ``(num_rows, dim)`` of ``dtype`` (float32 or float64) to the ``.npy``
    file ``path``, from ``blocks``: one array or an iterable of ``(rows_b, dim)`` arrays in row
    order, ``sum(rows_b) = num_rows``. Written atomically (``pfd_ref.files.write_atomically``:
    a temporary file renamed), so ``path`` never holds a partial file. Returns the path."""
    dtype = float_dtype("dtype", dtype)
    if isinstance(blocks, np.ndarray):
        blocks = [blocks]
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (int(num_rows), int(dim))}

    def write(handle) -> None:
        np.lib.format.write_array_header_2_0(handle, header)
        written = 0
        for block in blocks:
            if not isinstance(block, np.ndarray) or block.dtype != dtype or block.ndim != 2 or block.shape[1] != dim:
                got = f"{block.dtype} {block.shape}" if isinstance(block, np.ndarray) else type(block).__name__
                raise ValueError(f"blocks: expected {dtype} arrays of shape (rows, {dim}), got {got}")
            if written + block.shape[0] > num_rows:
                raise ValueError(f"blocks: more than num_rows = {num_rows} rows")
            handle.write(np.ascontiguousarray(block).data)
            written += block.shape[0]
        if written != num_rows:
            raise ValueError(f"blocks: {written} rows, expected num_rows = {num_rows}")

    return write_atomically(path, write)


class ItemVectorFile:
    """An ``.npy`` file of item vectors, memory-mapped: ``.vectors`` is the ``(N, d)`` array.

    Opening checks that the file is an ``.npy`` array of two dimensions in C order, of
    float32 or float64 (``dtype`` when given), ``d = dim`` when given, and as long as its
    header says; every failure is a ``ValueError`` naming the file. Use as a context
    manager, or call ``close()``.
    """

    def __init__(self, path, dtype=None, dim: int | None = None):
        self.path = Path(path)
        try:
            handle = open(self.path, "rb")
        except OSError as err:
            raise _cannot_open(self.path, err) from None
        with handle:
            shape, dtype_in_file, offset = _read_npy_header(self.path, handle)
            size = os.fstat(handle.fileno()).st_size
            if len(shape) != 2:
                raise ValueError(f"{self.path}: expected item vectors of 2 dimensions (N, d), got shape {shape}")
            if dtype_in_file not in FLOAT_DTYPES:
                raise ValueError(f"{self.path}: expected float32 or float64 item vectors, got {dtype_in_file}")
            if dtype is not None and dtype_in_file != np.dtype(dtype):
                raise ValueError(f"{self.path}: item vectors of dtype {dtype_in_file}, expected {np.dtype(dtype)}")
            if dim is not None and shape[1] != dim:
                raise ValueError(f"{self.path}: item vectors of width {shape[1]}, expected width {dim}")
            nbytes = shape[0] * shape[1] * dtype_in_file.itemsize
            if size < offset + nbytes:
                raise ValueError(f"{self.path}: the file holds {size - offset} bytes of data, its header promises {nbytes}")
            self.offset = offset
            self._map = _private_map(handle.fileno()) if nbytes else None
        if self._map is None:
            self.vectors = np.empty(shape, dtype_in_file)
        else:
            self.vectors = np.ndarray(shape, dtype_in_file, buffer=self._map, offset=offset)

    def __enter__(self) -> "ItemVectorFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the map (the arrays taken from ``vectors`` must not be used after this)."""
        self.vectors = None
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # a view of the map is still alive; it is released with it
                pass
            self._map = None

    def blocks(self, block_rows: int):
        """Yield ``(first_row, rows)``: the rows ``[first_row, first_row + block_rows)`` of the
        file front to back, as a ``(rows, d)`` array that is valid until the next block is
        asked for (two buffers are reused). A reader thread reads the next block
        (``_BlockReader``) while the caller works on the current one."""
        n, d = self.vectors.shape
        if n == 0:
            return
        row_bytes = d * self.vectors.itemsize
        span = -(-(min(block_rows, n) * row_bytes + 2 * DIRECT_ALIGN) // DIRECT_ALIGN) * DIRECT_ALIGN
        buffers = [aligned_buffer(span) for _ in range(2)]

        def read(first_row: int, buffer: np.ndarray) -> np.ndarray:
            stop_row = min(first_row + block_rows, n)
            start = self.offset + first_row * row_bytes
            aligned = start // DIRECT_ALIGN * DIRECT_ALIGN
            reader.read_into(buffer, aligned, start + (stop_row - first_row) * row_bytes - aligned)
            data = buffer[start - aligned:start - aligned + (stop_row - first_row) * row_bytes]
            return data.view(self.vectors.dtype).reshape(stop_row - first_row, d)

        with _BlockReader(self.path) as reader, ThreadPoolExecutor(max_workers=1, thread_name_prefix="pfd-catalogue") as pool:
            pending = pool.submit(read, 0, buffers[0])
            for step, a in enumerate(range(0, n, block_rows)):
                block = pending.result()
                if a + block_rows < n:
                    pending = pool.submit(read, a + block_rows, buffers[(step + 1) % 2])
                yield a, block


def aligned_buffer(nbytes: int) -> np.ndarray:
    """A ``uint8`` array of ``nbytes`` whose first byte's address is a multiple of
    ``DIRECT_ALIGN``, as direct reads require. A NumPy allocation: Linux backs a large one
    with 2 MiB pages (NumPy asks for them), and a direct read into physically contiguous
    2 MiB pieces goes to the device in far fewer, larger requests than one into 4 KiB pages
    (64 MiB reads from this machine's disk: 2.6 GB/s against 1.7 GB/s into an anonymous
    ``mmap``)."""
    raw = np.empty(nbytes + DIRECT_ALIGN, np.uint8)
    skip = -raw.ctypes.data % DIRECT_ALIGN
    return raw[skip:skip + nbytes]


def _cannot_open(path, error: OSError) -> ValueError:
    """The error for an item-vector file that cannot be opened: its path and the system's reason."""
    return ValueError(f"{path}: cannot open the item vectors ({error.strerror})")


def open_direct(path):
    """``path`` opened for direct reads (``O_DIRECT``: a raw binary file object), or None
    where the system or the file system refuses them (``EINVAL``: tmpfs, some network file
    systems). Direct reads must start at multiples of ``DIRECT_ALIGN`` in the file, read
    multiples of it, and go to buffers whose address is a multiple of it
    (``aligned_buffer``). Other failures raise ``ValueError`` naming the file."""
    if not hasattr(os, "O_DIRECT"):
        return None
    try:
        return open(os.open(path, os.O_RDONLY | os.O_DIRECT), "rb", buffering=0)
    except OSError as err:
        if err.errno == errno.EINVAL:
            return None
        raise _cannot_open(path, err) from None


class _BlockReader:
    """Reads byte ranges of a file into aligned buffers: directly from the disk
    (``O_DIRECT``) where the system allows it, else through the page cache (with a hint that
    the file is read sequentially). Ranges start at multiples of ``DIRECT_ALIGN``; the
    reader reads a multiple of it, so up to ``DIRECT_ALIGN - 1`` bytes past the range (or
    less at the end of the file)."""

    def __init__(self, path: Path):
        self.path = path
        self.handle = open_direct(path)
        self.direct = self.handle is not None
        if self.handle is None:
            self._open_buffered()

    def _open_buffered(self) -> None:
        if self.handle is not None:
            self.handle.close()
        self.direct = False
        try:
            self.handle = open(self.path, "rb", buffering=0)
        except OSError as err:
            raise _cannot_open(self.path, err) from None
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self.handle.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)

    def __enter__(self) -> "_BlockReader":
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()

    def read_into(self, buffer: np.ndarray, start: int, nbytes: int) -> None:
        """``buffer[:nbytes] = file[start:start + nbytes]`` (``start`` aligned; ``buffer``
        aligned and at least ``nbytes`` rounded up to ``DIRECT_ALIGN`` long)."""
        view = memoryview(buffer)[:-(-nbytes // DIRECT_ALIGN) * DIRECT_ALIGN]
        done = 0
        while done < nbytes:
            try:
                self.handle.seek(start + done)
                got = self.handle.readinto(view[done:])
            except OSError as err:
                if err.errno != errno.EINVAL or not self.direct:
                    raise
                self._open_buffered()  # direct reads opened but refused: read through the cache
                continue
            if not got:
                raise ValueError(f"{self.path}: the file ended at byte {start + done}, before the rows its header promises")
            done += got


def _private_map(fileno: int) -> mmap.mmap:
    """The whole file mapped private and writeable, with no memory reserved for copies."""
    if not hasattr(mmap, "MAP_PRIVATE"):  # Windows: no flags; a copy-on-write map
        return mmap.mmap(fileno, 0, access=mmap.ACCESS_COPY)
    return mmap.mmap(fileno, 0, flags=mmap.MAP_PRIVATE | MAP_NORESERVE, prot=mmap.PROT_READ | mmap.PROT_WRITE)


def _read_npy_header(path: Path, handle) -> tuple[tuple, np.dtype, int]:
    """``(shape, dtype, data offset)`` of an ``.npy`` file; ``ValueError`` naming it otherwise."""
    try:
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(handle)
    except (ValueError, OSError, SyntaxError) as err:
        raise ValueError(f"{path}: not an .npy array file ({err})") from None
    if fortran_order:
        raise ValueError(f"{path}: item vectors in Fortran order; expected C order (rows contiguous)")
    return tuple(shape), np.dtype(dtype), handle.tell()


def top_k_from_file(path, users: np.ndarray, k: int, block_bytes: int = BLOCK_BYTES) -> tuple[np.ndarray, np.ndarray]:
    """``top_k_items(v, users, k)`` with the item vectors ``v`` read from the ``.npy``
    file ``path`` in blocks of about ``block_bytes`` (see the module docstring).

    users : float32/float64 ``(k_dim,)`` or ``(m, k_dim)`` of the file's dtype and width.
    Returns ``(top_scores, top_ids)`` as ``top_k_items`` does (ids are row numbers of the
    file, best first, ties to the lower row), bit for bit the same for one user.
    """
    users = np.asarray(users)
    if users.dtype not in FLOAT_DTYPES or users.ndim not in (1, 2):
        raise ValueError(f"users: expected a float32 or float64 array (d,) or (m, d), got {users.dtype} {users.shape}")
    with ItemVectorFile(path, dtype=users.dtype, dim=users.shape[-1]) as catalogue:
        block_rows = max(1, block_bytes // max(1, catalogue.vectors.shape[1] * catalogue.vectors.itemsize))
        with contextlib.closing(catalogue.blocks(block_rows)) as blocks:  # its reader ends with the scan, even on an error
            return backend.top_k_item_blocks(blocks, users, k)
