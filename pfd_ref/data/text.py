"""Streaming reader of delimited text logs (CSV, TSV): chosen columns as NumPy arrays.

``read_columns`` reads a file in chunks of whole lines (``CHUNK_BYTES``), splits each chunk
into fields and parses the chosen columns with the tokenizer kernels of ``kernels/text.py``
(``split_fields``, ``parse_int64``, ``match_tokens``, run through ``pfd_ref.backend``; dialect
stated there: one row per line, ``,`` or tab, ``"`` quoting, ``\\r\\n`` line ends;
a UTF-8 byte order mark at the start is skipped). On the Numba backend there is no Python
loop over rows or cells (the NumPy twins read the same arrays, a cell at a time). Memory: a first pass counts the lines, so every output array is allocated once at
its final size; besides them the reader holds one chunk and its field offsets
(``16 * n_fields`` bytes per row of the chunk).

Column kinds: ``integers`` (int64), ``tokens`` (a fixed vocabulary of byte strings, coded
int8 by position), ``strings`` (any text, coded int64 ``1..K`` in sorted order of the
distinct values, which are kept). Every other column is split (its field count is
checked) but not parsed.

Every problem is a ``ValueError`` that starts with the argument's name and names the file,
the line (1-based, the header included) and the column: a missing or empty file, a row
with the wrong number of fields, an empty line (blank lines at the end of the file are
accepted: they are no rows), bad quoting, a cell that is not an integer or not one of the
tokens.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field

import numpy as np

from pfd_ref import backend
from pfd_ref.kernels.checks import NEWLINE, SPLIT_FIELD_COUNT, SPLIT_OK, SPLIT_TEXT_AFTER_QUOTE, SPLIT_UNTERMINATED_QUOTE

CHUNK_BYTES = 1 << 23
OFFSET_BYTES = 1 << 22  # field offsets of the rows split per kernel call (16 bytes a field), reused
BYTE_ORDER_MARK = b"\xef\xbb\xbf"
_SPLIT_ERRORS = {SPLIT_UNTERMINATED_QUOTE: "a quoted field is not closed before the line ends",
                 SPLIT_TEXT_AFTER_QUOTE: "text follows a closing quote"}


@dataclass
class TextColumns:
    """What ``read_columns`` read: ``columns[name]`` (``n`` rows), ``string_values[name]``
    (the sorted distinct texts of a string column: code ``k`` is ``string_values[name][k - 1]``),
    the header (``names``), the delimiter and where the data starts."""

    path: str
    argument: str
    names: tuple
    delimiter: str
    first_line: int  # the file line of row 0
    n: int
    columns: dict = field(default_factory=dict)
    string_values: dict = field(default_factory=dict)
    truncated: bool = False  # max_rows stopped the reading before the end of the file

    def where(self, row: int, column: str) -> str:
        """``argument: 'path' line L, column 'name'`` for data row ``row`` (0-based)."""
        return f"{self.argument}: {self.path!r} line {self.first_line + row}, column {column!r}"

    def cell(self, row: int, column: str) -> str:
        """The text of one cell, read again from the file (for error messages only)."""
        return cell_text(self.path, self.first_line + row, self.names.index(column), self.delimiter)


def _open(path, argument: str):
    try:
        return open(path, "rb")
    except OSError as error:
        raise ValueError(f"{argument}: cannot read {os.fspath(path)!r} ({error.strerror})") from None


def _content_end(file) -> int:
    """The offset just after the file's last byte that is not ``\\r`` or ``\\n`` (0 for a
    file of line ends only): what follows it are blank lines at the end of the file."""
    end = file.seek(0, os.SEEK_END)
    while end > 0:
        start = max(0, end - CHUNK_BYTES)
        file.seek(start)
        content = file.read(end - start).rstrip(b"\r\n")
        if content:
            return start + len(content)
        end = start
    return 0


def _lines(path, argument: str, stop: int | None = None) -> int:
    """Number of lines of the file up to its last one that is not blank (a last line without
    ``\\n`` counts; blank lines at the end of the file do not, so a file may end in them), or
    ``stop`` once that many are found."""
    lines, last = 0, b"\n"
    with _open(path, argument) as file:
        left = _content_end(file)
        file.seek(0)
        while left > 0 and (block := file.read(min(CHUNK_BYTES, left))):
            left -= len(block)
            lines += block.count(b"\n")
            last = block[-1:]
            if stop is not None and lines >= stop:
                return stop
    return lines + (last != b"\n")


def _chunks(file, first: bytes):
    """Yield chunks of whole lines, each ending with ``\\n``, starting with ``first``: views of
    one reused buffer (each is valid until the next is asked for), so no chunk is copied.
    The buffer keeps one spare byte for the ``\\n`` a last line may lack."""
    buffer = bytearray(CHUNK_BYTES + len(first) + 1)
    buffer[:len(first)] = first
    filled, end_of_file = len(first), False
    del first
    while True:
        view = memoryview(buffer)
        while not end_of_file and filled < len(buffer) - 1:
            got = file.readinto(view[filled:len(buffer) - 1])
            end_of_file = not got
            filled += got or 0
        cut = buffer.rfind(b"\n", 0, filled) + 1
        if cut == 0 and not end_of_file:  # a line longer than the buffer: a larger one
            larger = bytearray(2 * len(buffer))
            larger[:filled] = buffer[:filled]
            buffer = larger
            continue
        if end_of_file and cut < filled:  # the last line lacks its newline
            buffer[filled] = NEWLINE
            filled += 1
            cut = filled
        if cut:
            yield view[:cut]
        if end_of_file and cut == filled:
            return
        buffer[:filled - cut] = buffer[cut:filled]
        filled -= cut


def cell_text(path, line: int, field_index: int, delimiter: str) -> str:
    """The text of field ``field_index`` (0-based) on line ``line`` (1-based) of a file."""
    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            if number == line:
                raw = raw.removeprefix(BYTE_ORDER_MARK) if number == 1 else raw
                fields = raw.rstrip(b"\r\n").split(delimiter.encode())
                cell = fields[field_index] if field_index < len(fields) else b""
                return cell.decode("utf-8", errors="replace")
    return ""


def read_columns(path, *, argument: str = "path", names=None, delimiter: str | None = None, integers=(),
                 tokens: dict | None = None, strings=(), max_rows: int | None = None) -> TextColumns:
    """Read the chosen columns of a delimited text file.

    names : the column names of a file without a header line (then ``delimiter`` is
    required); None: the first line is the header (names stripped of spaces) and the
    delimiter is a tab when the header holds one, else a comma.
    integers, strings : column names; tokens : ``{name: (b"token", ...)}``.
    max_rows : read at most this many data rows (``TextColumns.truncated`` says whether
    rows were left).
    Raises ``ValueError`` (see the module docstring) before returning anything.
    """
    tokens = tokens or {}
    where = f"{argument}: {os.fspath(path)!r}"
    with _open(path, argument) as file:
        first = file.read(CHUNK_BYTES).removeprefix(BYTE_ORDER_MARK)
        if not first.strip():
            raise ValueError(f"{where} is empty" + (" (no header line)" if names is None else ""))
        if names is None:
            header_end = first.find(b"\n")
            names, delimiter = _header(first if header_end < 0 else first[:header_end], where)
            first = b"" if header_end < 0 else first[header_end + 1:]
            first_line = 2
        else:
            names, first_line = tuple(names), 1
        wanted = tuple(integers) + tuple(tokens) + tuple(strings)
        missing = [name for name in wanted if name not in names]
        if missing:
            raise ValueError(f"{where} lacks column(s) {missing}; its header has {list(names)}")
        total = _lines(path, argument, None if max_rows is None else max_rows + first_line)
        rows = max(total - (first_line - 1), 0)
        if max_rows is not None:
            rows = min(rows, max_rows)
        if rows == 0:
            raise ValueError(f"{where} has a header line but no data rows")
        result = TextColumns(os.fspath(path), argument, names, delimiter, first_line, rows)
        result.columns = {name: np.empty(rows, dtype=np.int64) for name in integers}
        result.columns.update({name: np.empty(rows, dtype=np.int8) for name in tokens})
        string_parts = {name: [] for name in strings}
        rows_per_call = max(1, OFFSET_BYTES // (16 * len(names)))
        starts = np.empty((rows_per_call, len(names)), dtype=np.int64)
        ends = np.empty((rows_per_call, len(names)), dtype=np.int64)
        done = 0
        chunks = _chunks(file, first)
        del first
        for chunk in chunks:
            buf = np.frombuffer(chunk, dtype=np.uint8)
            pos = 0
            while pos < buf.size and done < rows:
                limit = min(rows_per_call, rows - done)
                split, status, fields, next_pos = backend.split_fields(buf, pos, ord(delimiter), starts[:limit], ends[:limit])
                if status != SPLIT_OK:
                    _raise_split_error(buf, pos, split, status, fields, where, first_line + done + split, names, first_line)
                _parse_columns(result, buf, starts[:split], ends[:split], done, integers, tokens)
                for name in strings:
                    j = names.index(name)
                    string_parts[name].append(_fixed_width(buf, starts[:split, j], ends[:split, j]))
                done += split
                pos = next_pos
            if done >= rows:
                result.truncated = any(  # blank lines after the rows are no rows left
                    bytes(rest).strip(b"\r\n") for rest in itertools.chain((buf[pos:],), chunks))
                break
        if done != rows:
            raise ValueError(f"{where} changed while it was read ({done} data rows instead of {rows})")
        for name, parts in string_parts.items():
            result.columns[name], result.string_values[name] = _factorize(parts, result, name)
    return result


def _header(line: bytes, where: str) -> tuple[tuple, str]:
    """``(names, delimiter)`` of a header line: a tab-separated header if it holds a tab,
    else comma-separated; names stripped of spaces and quotes."""
    try:
        text = line.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError as error:
        raise ValueError(f"{where} line 1 is not UTF-8 text ({error.reason})") from None
    delimiter = "\t" if "\t" in text else ","
    names = tuple(name.strip().strip('"') for name in text.split(delimiter))
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{where} line 1: duplicate column name(s) {duplicates}")
    return names, delimiter


def read_header(path, argument: str = "path") -> tuple[tuple, str]:
    """``(column names, delimiter)`` from the first line of a file with a header line."""
    with _open(path, argument) as file:
        line = file.readline().removeprefix(BYTE_ORDER_MARK)
    if not line.strip():
        raise ValueError(f"{argument}: {os.fspath(path)!r} is empty (no header line)")
    return _header(line.rstrip(b"\n"), f"{argument}: {os.fspath(path)!r}")


def _raise_split_error(buf, pos, row, status, fields, where, line, names, first_line) -> None:
    if status == SPLIT_FIELD_COUNT:
        line_start = pos if row == 0 else _nth_newline(buf[pos:], row) + pos + 1
        if fields == 1 and not bytes(buf[line_start:_nth_newline(buf[line_start:], 1) + line_start]).strip(b"\r"):
            raise ValueError(f"{where} line {line} is empty")
        raise ValueError(f"{where} line {line} has {fields} field(s); "
                         f"{'the header has' if first_line == 2 else 'expected'} {len(names)}")
    raise ValueError(f"{where} line {line}, column {names[fields]!r}: {_SPLIT_ERRORS[status]}")


def _parse_columns(result: TextColumns, buf, starts, ends, done: int, integers, tokens) -> None:
    """Parse the split rows' integer and token columns into ``result.columns[name][done:]``."""
    part = slice(done, done + starts.shape[0])
    for name in integers:
        j = result.names.index(name)
        _, bad = backend.parse_int64(buf, starts[:, j], ends[:, j], result.columns[name][part])
        if bad >= 0:
            raise ValueError(f"{result.where(done + bad, name)}: cannot parse "
                             f"{_cell(buf, starts[bad, j], ends[bad, j])!r} as a 64-bit integer")
    for name, vocabulary in tokens.items():
        j = result.names.index(name)
        _, bad = backend.match_tokens(buf, starts[:, j], ends[:, j], vocabulary, result.columns[name][part])
        if bad >= 0:
            expected = ", ".join(repr(t.decode()) for t in vocabulary)
            raise ValueError(f"{result.where(done + bad, name)}: expected one of {expected}, "
                             f"got {_cell(buf, starts[bad, j], ends[bad, j])!r}")


def _nth_newline(buf: np.ndarray, count: int) -> int:
    """Offset of the ``count``-th ``\\n`` (1-based) of a chunk."""
    return int(np.flatnonzero(buf == NEWLINE)[count - 1])


def _cell(buf: np.ndarray, start: int, end: int) -> str:
    return bytes(buf[start:end]).decode("utf-8", errors="replace")


def _fixed_width(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The cells as a NumPy bytes array (dtype ``S{width}``), gathered without a loop:
    a ``(rows, width)`` matrix of the cells' bytes, zero-padded on the right."""
    lengths = ends - starts
    width = max(int(lengths.max(initial=0)), 1)
    offsets = np.arange(width)
    inside = offsets < lengths[:, None]
    matrix = np.where(inside, buf[np.minimum(starts[:, None] + offsets, len(buf) - 1)], 0).astype(np.uint8)
    return matrix.view(f"S{width}").ravel()


def _factorize(parts: list, result: TextColumns, name: str) -> tuple[np.ndarray, tuple]:
    """Codes ``1..K`` (sorted order of the distinct texts, ``""`` doubled quotes undone) and
    the texts; ``ValueError`` naming the line of a cell that is not UTF-8."""
    width = max((part.dtype.itemsize for part in parts), default=1)
    cells = np.concatenate([part.astype(f"S{width}") for part in parts]) if parts else np.zeros(0, f"S{width}")
    values, codes = np.unique(cells, return_inverse=True)
    texts = []
    for k, value in enumerate(values):
        try:
            texts.append(value.decode("utf-8").replace('""', '"'))
        except UnicodeDecodeError as error:
            row = int(np.argmax(codes == k))
            raise ValueError(f"{result.where(row, name)}: not UTF-8 text ({error.reason})") from None
    return codes.astype(np.int64) + 1, tuple(texts)
