"""Memory-mapped item vectors: the scan in blocks equals the in-memory top-k, bad files are named."""

from __future__ import annotations

import errno

import numpy as np
import pytest

from pfd_ref import catalogue, kernels
from pfd_ref.backend import using


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    return rng.standard_normal((5003, 12)).astype(np.float32)


@pytest.fixture(scope="module")
def vector_file(vectors, tmp_path_factory):
    path = tmp_path_factory.mktemp("catalogue") / "vectors.npy"
    blocks = (vectors[a:a + 700] for a in range(0, vectors.shape[0], 700))
    return catalogue.save_item_vectors(path, blocks, vectors.shape[0], vectors.shape[1], np.float32)


def test_saved_file_is_an_npy_of_the_vectors(vector_file, vectors):
    np.testing.assert_array_equal(np.load(vector_file), vectors)


@pytest.mark.parametrize("block_bytes", [12 * 4 * 333, catalogue.BLOCK_BYTES])
def test_scan_in_blocks_equals_the_in_memory_top_k(vector_file, vectors, block_bytes, tmp_path):
    """On the Numba backend (the kernels' scores; the twins' are pfd_ref.twins's business)."""
    with using("numba"):
        _scan_in_blocks_equals_the_in_memory_top_k(vector_file, vectors, block_bytes, tmp_path)


def _scan_in_blocks_equals_the_in_memory_top_k(vector_file, vectors, block_bytes, tmp_path):
    rng = np.random.default_rng(1)
    user = rng.standard_normal(12).astype(np.float32)
    got = catalogue.top_k_from_file(vector_file, user, 40, block_bytes=block_bytes)
    for a, b in zip(got, kernels.top_k_items(vectors, user, 40)):  # one user: bit for bit
        np.testing.assert_array_equal(a, b)
    # a batch scores by BLAS GEMM on blocks that differ from the in-memory run's: integer
    # values (exact sums, many ties) make the two comparable exactly
    integers = np.round(3 * vectors)
    path = catalogue.save_item_vectors(tmp_path / "integers.npy", integers, *integers.shape, np.float32)
    users = rng.integers(-2, 3, (3, 12)).astype(np.float32)
    got = catalogue.top_k_from_file(path, users, 40, block_bytes=block_bytes)
    for a, b in zip(got, kernels.top_k_items(integers, users, 40)):
        np.testing.assert_array_equal(a, b)


def test_the_map_is_private_and_blocks_cover_every_row_once(vector_file, vectors):
    with catalogue.ItemVectorFile(vector_file, dtype=np.float32, dim=12) as opened:
        starts = []
        for a, block in opened.blocks(1000):  # rows of 48 bytes after a 128-byte header: unaligned to the reads
            starts.append((a, block.shape[0]))
            np.testing.assert_array_equal(block, vectors[a:a + 1000])
        opened.vectors[0, 0] = 123.0  # private map: never reaches the file
    assert starts == [(a, min(1000, 5003 - a)) for a in range(0, 5003, 1000)]
    np.testing.assert_array_equal(np.load(vector_file), vectors)


def _refuse_direct_open(monkeypatch):
    real_open = catalogue.os.open

    def open_without_direct(path, flags, *args):
        if flags & getattr(catalogue.os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(catalogue.os, "open", open_without_direct)


def test_a_file_system_without_direct_reads_is_read_through_the_cache(vector_file, vectors, monkeypatch):
    """Where O_DIRECT is refused at open (tmpfs, some network file systems) or at the first
    read, the scan reads through the page cache and gives the same result."""
    _refuse_direct_open(monkeypatch)
    with catalogue._BlockReader(vector_file) as reader:
        assert not reader.direct
    user = np.random.default_rng(3).standard_normal(12).astype(np.float32)
    with using("numba"):
        got = catalogue.top_k_from_file(vector_file, user, 40, block_bytes=12 * 4 * 333)
        for a, b in zip(got, kernels.top_k_items(vectors, user, 40)):
            np.testing.assert_array_equal(a, b)


def test_direct_reads_refused_at_the_first_read_fall_back_to_cached_reads(vector_file, vectors):
    class RefusingHandle:
        closed = False

        def seek(self, offset):
            pass

        def readinto(self, view):
            raise OSError(errno.EINVAL, "Invalid argument")

        def close(self):
            self.closed = True

    with catalogue._BlockReader(vector_file) as reader:
        refusing = reader.handle = RefusingHandle()
        reader.direct = True
        buffer = catalogue.aligned_buffer(2 * catalogue.DIRECT_ALIGN)
        reader.read_into(buffer, catalogue.DIRECT_ALIGN, 100)
        assert refusing.closed and not reader.direct
    raw = vector_file.read_bytes()
    assert bytes(buffer[:100]) == raw[catalogue.DIRECT_ALIGN:catalogue.DIRECT_ALIGN + 100]


def _write(path, array, fortran=False):
    np.save(path, np.asfortranarray(array) if fortran else array)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: _write(p, np.zeros((4, 12), np.float64)), r"item vectors of dtype float64, expected float32"),
        (lambda p: _write(p, np.zeros((4, 5), np.float32)), r"item vectors of width 5, expected width 12"),
        (lambda p: _write(p, np.zeros(12, np.float32)), r"expected item vectors of 2 dimensions"),
        (lambda p: _write(p, np.zeros((4, 12), np.int32)), r"expected float32 or float64 item vectors"),
        (lambda p: _write(p, np.zeros((4, 12), np.float32), fortran=True), r"Fortran order"),
        (lambda p: p.write_bytes(b"not an array") and p, r"not an \.npy array file"),
    ],
)
def test_bad_files_are_rejected_naming_them(tmp_path, make, message):
    path = make(tmp_path / "bad.npy")
    with pytest.raises(ValueError, match=rf"bad\.npy: .*{message}"):
        catalogue.top_k_from_file(path, np.ones(12, np.float32), 3)


def test_a_truncated_file_is_rejected(tmp_path):
    path = _write(tmp_path / "short.npy", np.zeros((100, 12), np.float32))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ValueError, match=r"short\.npy: the file holds \d+ bytes of data, its header promises 4800"):
        catalogue.top_k_from_file(path, np.ones(12, np.float32), 3)


def test_a_missing_file_and_bad_users_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"missing\.npy: cannot open"):
        catalogue.top_k_from_file(tmp_path / "missing.npy", np.ones(12, np.float32), 3)
    with pytest.raises(ValueError, match=r"^users: expected a float32 or float64 array"):
        catalogue.top_k_from_file(tmp_path / "missing.npy", np.ones(12, np.int64), 3)


def test_a_failed_save_leaves_no_file(tmp_path):
    path = tmp_path / "vectors.npy"
    with pytest.raises(ValueError, match=r"^blocks: 3 rows, expected num_rows = 5"):
        catalogue.save_item_vectors(path, [np.zeros((3, 2), np.float32)], 5, 2, np.float32)
    with pytest.raises(ValueError, match=r"^blocks: expected float32 arrays of shape \(rows, 2\)"):
        catalogue.save_item_vectors(path, [np.zeros((3, 2), np.float64)], 3, 2, np.float32)
    assert list(tmp_path.iterdir()) == []


def test_a_file_larger_than_memory_and_swap_opens(tmp_path):
    # A sparse 1 TiB file (no disk used): a private writeable map that reserved memory for
    # copies of its pages would be refused (ENOMEM) under Linux's default overcommit heuristic.
    path = tmp_path / "huge.npy"
    header = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(1 << 31, 128))
    del header
    with catalogue.ItemVectorFile(path, dtype=np.float32, dim=128) as opened:
        assert opened.vectors.shape == (1 << 31, 128)
        np.testing.assert_array_equal(opened.vectors[-1], np.zeros(128, np.float32))


def test_a_scan_that_fails_ends_its_reader_at_once(vector_file, vectors, monkeypatch):
    """A scoring error mid-scan closes the block reader (its thread and its file) before the
    error reaches the caller, not when the held traceback is released."""
    import threading

    def fail_after_one_block(blocks, users, k):
        next(iter(blocks))
        raise ArithmeticError("scoring failed")
    monkeypatch.setattr(catalogue.backend, "top_k_item_blocks", fail_after_one_block)
    before = threading.active_count()
    with pytest.raises(ArithmeticError) as held:
        catalogue.top_k_from_file(vector_file, vectors[0], 3, block_bytes=vectors.shape[1] * vectors.itemsize)
    assert held.value is not None and threading.active_count() == before
