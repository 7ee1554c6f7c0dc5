"""Tokenizer kernels for delimited text logs (CSV, TSV): split rows into fields, parse
integer fields, match fields against a small vocabulary.

A chunk is a ``uint8`` array of whole lines: it ends with ``\\n`` (the caller appends one to
a file's last line when it lacks it). Dialect, the same in the kernels and their NumPy
twins (``pfd_ref.twins.split_fields``, ``parse_int64``, ``match_tokens``, which go one line
and one cell at a time with Python's ``bytes`` and ``re`` and give the same result):

* a line is one row; rows end with ``\\n`` and a ``\\r`` just before it is dropped
  (Windows line ends); an empty line is a row with one empty field;
* fields are separated by one ``delimiter`` byte (``,`` or ``\\t``);
* a field that starts with ``"`` is quoted: it runs to the next ``"`` not doubled, its text
  is what lies between the quotes (a doubled ``""`` inside stands for one ``"``, which the
  caller undoes where it reads text), and the closing quote must be followed by the
  delimiter or the line end; a line end inside quotes is an error (no multi-line fields);
* an integer is an optional ``+`` or ``-`` and 1 to 19 decimal digits, nothing else (no
  spaces, no ``_``), with a value in ``[-2**63 + 1, 2**63 - 1]``.

The kernels stop at the first malformed row or cell and return its index, so the caller can
name the file, line and column; ``split_fields`` says what is wrong with a row by one of the
codes ``SPLIT_*`` of ``kernels/checks.py``. The public functions check their arguments
(``kernels/checks.py``; a cell outside ``buf`` is an error, found by the loop that reads
it) and call the ``@njit`` loops, which take plain arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .checks import (CARRIAGE_RETURN, NEWLINE, QUOTE, SPLIT_FIELD_COUNT, SPLIT_OK, SPLIT_TEXT_AFTER_QUOTE,
                     SPLIT_UNTERMINATED_QUOTE, check_cell_inside, check_cells, check_split_arguments, check_tokens)

PLUS, MINUS, ZERO = 43, 45, 48
INT64_MAX = np.iinfo(np.int64).max


@njit(cache=True, nogil=True)
def _split_fields(buf, pos, delimiter, starts, ends):
    """Split the rows of ``buf`` from byte ``pos`` on: fill ``starts[r, f]`` / ``ends[r, f]``
    (byte offsets, end exclusive, quotes and a final ``\\r`` left out) for row ``r`` and
    field ``f < starts.shape[1]``, until ``starts.shape[0]`` rows are split or ``buf`` ends.

    Returns ``(rows, status, fields, next_pos)``: with status SPLIT_OK, ``rows`` rows were
    split and the next row starts at ``next_pos``; otherwise ``rows`` is the index of the bad
    row and ``fields`` the number of fields it has (SPLIT_FIELD_COUNT) or the 0-based field
    where the quoting went wrong.
    """
    n = buf.shape[0]
    n_fields = starts.shape[1]
    row = 0
    while pos < n and row < starts.shape[0]:
        field = 0
        while True:
            if pos < n and buf[pos] == QUOTE:
                start = pos + 1
                p = start
                while True:
                    if p >= n or buf[p] == NEWLINE:
                        return row, SPLIT_UNTERMINATED_QUOTE, field, pos
                    if buf[p] == QUOTE:
                        if p + 1 < n and buf[p + 1] == QUOTE:
                            p += 2
                            continue
                        break
                    p += 1
                end = p
                p += 1
                if p + 1 < n and buf[p] == CARRIAGE_RETURN and buf[p + 1] == NEWLINE:
                    p += 1
                if p < n and buf[p] != delimiter and buf[p] != NEWLINE:
                    return row, SPLIT_TEXT_AFTER_QUOTE, field, pos
            else:
                start = pos
                p = pos
                while p < n and buf[p] != delimiter and buf[p] != NEWLINE:
                    p += 1
                end = p
                if end > start and buf[end - 1] == CARRIAGE_RETURN and (p >= n or buf[p] == NEWLINE):
                    end -= 1
            if field < n_fields:
                starts[row, field] = start
                ends[row, field] = end
            field += 1
            pos = p + 1
            if p >= n or buf[p] == NEWLINE:
                break
        if field != n_fields:
            return row, SPLIT_FIELD_COUNT, field, pos
        row += 1
    return row, SPLIT_OK, 0, pos


@njit(cache=True, nogil=True)
def _parse_int64(buf, starts, ends, out):
    """``out[r] = int(buf[starts[r]:ends[r]])`` for every ``r``; returns -1, or the first
    ``r`` whose cell is not an integer of the module's dialect or not inside ``buf``
    (``out[r:]`` then unset)."""
    for r in range(starts.shape[0]):
        s = starts[r]
        e = ends[r]
        if s < 0 or s > e or e > buf.shape[0]:
            return r
        negative = False
        if s < e and (buf[s] == MINUS or buf[s] == PLUS):
            negative = buf[s] == MINUS
            s += 1
        if s == e or e - s > 19:
            return r
        value = 0
        for p in range(s, e):
            digit = np.int64(buf[p]) - ZERO
            if digit < 0 or digit > 9:
                return r
            if e - s == 19 and value > (INT64_MAX - digit) // 10:  # up to 18 digits cannot overflow
                return r
            value = value * 10 + digit
        out[r] = -value if negative else value
    return -1


@njit(cache=True, nogil=True)
def _match_tokens(buf, starts, ends, vocabulary, lengths, out):
    """``out[r] = k`` where cell ``r`` equals ``vocabulary[k, :lengths[k]]``; returns -1, or
    the first ``r`` whose cell matches no entry or is not inside ``buf``."""
    for r in range(starts.shape[0]):
        s = starts[r]
        if s < 0 or s > ends[r] or ends[r] > buf.shape[0]:
            return r
        size = ends[r] - s
        found = -1
        for k in range(vocabulary.shape[0]):
            if lengths[k] != size:
                continue
            same = True
            for j in range(size):
                if buf[s + j] != vocabulary[k, j]:
                    same = False
                    break
            if same:
                found = k
                break
        if found < 0:
            return r
        out[r] = found
    return -1


def split_fields(buf: np.ndarray, pos: int, delimiter: int, starts: np.ndarray, ends: np.ndarray):
    """Split rows of a chunk into fields, from byte ``pos`` on.

    buf : uint8 ``(n,)``, whole lines (ends with ``\\n``); pos : ``0 <= pos <= n``;
    delimiter : the separator byte; starts, ends : int64 ``(max_rows, n_fields)``, written in
    place (every row must have ``n_fields`` fields). Returns ``(rows, status, fields,
    next_pos)`` as ``_split_fields``: at most ``max_rows`` rows are split per call.
    """
    pos, delimiter = check_split_arguments(buf, pos, delimiter, starts, ends)
    rows, status, fields, next_pos = _split_fields(buf, np.int64(pos), np.uint8(delimiter), starts, ends)
    return int(rows), int(status), int(fields), int(next_pos)


def _first_bad_cell(bad: int, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> int:
    """``bad`` (-1 or a cell the loop stopped at), after raising if that cell lies outside ``buf``."""
    if bad >= 0:
        check_cell_inside(bad, int(starts[bad]), int(ends[bad]), buf.shape[0])
    return bad


def parse_int64(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Parse integer cells. buf : uint8 ``(n,)``; starts, ends : int64 ``(m,)`` offsets into
    ``buf`` (cell ``r`` is ``buf[starts[r]:ends[r]]``); out : None or an int64 ``(m,)`` array to
    write into. Returns ``(values, bad)``: ``bad`` is -1 or the first unparsable cell
    (``values[bad:]`` then unset). A cell outside ``buf`` is a ``ValueError``."""
    out = check_cells(buf, starts, ends, out, np.int64)
    return out, _first_bad_cell(int(_parse_int64(buf, starts, ends, out)), buf, starts, ends)


def match_tokens(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, tokens: tuple[bytes, ...],
                 out: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Code each cell by its position in ``tokens`` (a tuple of distinct byte strings, at most
    ``MAX_TOKENS``); buf, starts, ends as for ``parse_int64``; out : None or an int8 ``(m,)``
    array to write into. Returns ``(codes, bad)``: ``bad`` is -1 or the first cell that is
    no token. A cell outside ``buf`` is a ``ValueError``."""
    out = check_cells(buf, starts, ends, out, np.int8)
    check_tokens(tokens)
    width = max(len(t) for t in tokens)
    vocabulary = np.zeros((len(tokens), width), dtype=np.uint8)
    for k, token in enumerate(tokens):
        vocabulary[k, :len(token)] = np.frombuffer(token, dtype=np.uint8)
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    return out, _first_bad_cell(int(_match_tokens(buf, starts, ends, vocabulary, lengths, out)), buf, starts, ends)


def warm_up() -> None:
    """Run the kernels of this module once on a tiny chunk (compiles them)."""
    buf = np.frombuffer(b'1,"a"\n', dtype=np.uint8)
    starts, ends = np.empty((1, 2), dtype=np.int64), np.empty((1, 2), dtype=np.int64)
    split_fields(buf, 0, ord(","), starts, ends)
    parse_int64(buf, starts[:, 0], ends[:, 0])
    match_tokens(buf, starts[:, 1], ends[:, 1], (b"a",))
