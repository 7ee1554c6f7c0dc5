"""Argument checks of the kernels, and the checks of every option in pfd_ref.

``kernels/`` depends on nothing in ``pfd_ref``, so the checks it needs live here, at the
bottom of the import graph; ``pfd_ref.validation`` imports them from here instead of
defining them a second time. So do the row checks of the text tokenizer
(``kernels/text.py``): the codes ``split_fields`` reports a malformed row with, which its
twin returns too and ``pfd_ref.data.text`` turns into messages. Every check raises ``ValueError`` whose message starts with
the argument's name. None of them converts a floating dtype; ids and offsets are returned
as int64, scalars as Python ``int`` or ``float``.
"""

from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
POOLINGS = ("sum", "mean")  # how a multi-id row is pooled: the sum or the mean of its embeddings


def check_scalar(name: str, value, kind: type, low=None, high=None, low_open: bool = False,
                 high_open: bool = False):
    """Return ``value`` as ``kind`` (``int`` or ``float``) after checking its type and bounds,
    in the manner of scikit-learn's ``check_scalar``.

    kind=int: an integer (Python or NumPy); ``1.5``, ``2.0`` and booleans are rejected.
    kind=float: a finite real number (integers allowed); booleans, NaN and infinity rejected.
    low, high : inclusive bounds when given (``low_open`` / ``high_open`` make them strict).
    The message states both, e.g. ``epochs: expected an integer >= 1, got 1.5``.
    """
    if kind is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    elif kind is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and bool(np.isfinite(value))
    else:
        raise TypeError(f"kind: expected int or float, got {kind!r}")
    if ok:
        number = kind(value)
        below = low is not None and (number <= low if low_open else number < low)
        above = high is not None and (number >= high if high_open else number > high)
        if not (below or above):
            return number
    if low is not None and high is not None:
        bounds = f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low is not None:
        bounds = f" {'>' if low_open else '>='} {low}"
    elif high is not None:
        bounds = f" {'<' if high_open else '<='} {high}"
    else:
        bounds = ""
    expected = "an integer" if kind is int else "a finite number"
    raise ValueError(f"{name}: expected {expected}{bounds}, got {value!r}")


def check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    """Return ``value``; raise unless it is one of the strings ``choices``."""
    if isinstance(value, str) and value in choices:
        return value
    raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}; got {value!r}")


def check_pooling(pooling) -> str:
    """Return ``pooling``; raise unless it is one of ``POOLINGS``."""
    return check_choice("pooling", pooling, POOLINGS)


def float_dtype(name: str, dtype) -> np.dtype:
    """``np.dtype(dtype)`` when it is float32 or float64 (given as a type, a name or a dtype);
    else ValueError naming ``name``, ``None`` included (``np.dtype(None)`` is float64, and
    ``None == np.dtype(float64)`` holds in NumPy, so a membership test alone lets it through)."""
    try:
        found = None if dtype is None else np.dtype(dtype)
    except TypeError:
        found = None
    if found is None or found not in FLOAT_DTYPES:
        raise ValueError(f"{name}: expected float32 or float64, got {dtype!r}")
    return found


def check_float_dtype(name: str, x, dtype=None) -> np.ndarray:
    """Raise unless ``x`` is an ndarray of float32 or float64 (of ``dtype`` when given)."""
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name}: expected float32 or float64, got {x.dtype}")
    if dtype is not None and x.dtype != dtype:  # (NumPy compares a dtype with a type or a name)
        raise ValueError(f"{name}: expected dtype {np.dtype(dtype)}, got {x.dtype} (no silent casts)")
    return x


def check_float_array(name: str, x, ndim: int | None = None, dtype=None) -> np.ndarray:
    """Return ``x`` as an ndarray of float32 or float64, unchanged in dtype.

    Raises ``ValueError`` naming ``name`` if ``x`` is not a float32/float64 array, has
    the wrong number of dimensions, a dtype other than ``dtype`` (when given), or holds
    NaN or infinity.
    """
    check_float_dtype(name, x, dtype)
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimension(s), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or infinity")
    return x


def check_same_dtype(**arrays: np.ndarray) -> np.dtype:
    """Return the common dtype of the named float arrays; raise if they differ."""
    dtypes = {name: a.dtype for name, a in arrays.items() if a is not None}
    if len(set(dtypes.values())) > 1:
        listing = ", ".join(f"{n}={d}" for n, d in dtypes.items())
        raise ValueError(f"dtype mismatch: {listing}; pass arrays of one dtype (no silent casts)")
    return next(iter(dtypes.values()))


def check_id_array(name: str, ids, ndim: int = 1) -> np.ndarray:
    """Return integer ids as a C-contiguous int64 array of ``ndim`` dimensions; their range
    is left to the caller (``check_ids``, or a kernel that checks them as it reads them and
    then calls ``raise_id_outside``)."""
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected integer ids, got dtype {ids.dtype}")
    if ids.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimension(s), got shape {ids.shape}")
    return np.ascontiguousarray(ids, dtype=np.int64)


def raise_id_outside(name: str, bad_id, num_rows: int) -> None:
    """The error of an id outside its table: ``{name}: id {bad_id} is outside the table [0, num_rows)``."""
    raise ValueError(f"{name}: id {int(bad_id)} is outside the table [0, {num_rows})")


def check_ids(name: str, ids, num_rows: int, ndim: int = 1) -> np.ndarray:
    """Return integer ids as int64; raise if any id is outside ``[0, num_rows)``."""
    ids = check_id_array(name, ids, ndim)
    if ids.size and (ids.min() < 0 or ids.max() >= num_rows):
        raise_id_outside(name, ids[(ids < 0) | (ids >= num_rows)][0], num_rows)
    return ids


def check_out_block(out, n: int, start, width: int, dtype) -> int:
    """``start`` as an int after checking that ``out`` (where a lookup writes a field's rows)
    is a C-contiguous ``(n, D)`` array of ``dtype`` with room for ``width`` columns from
    ``start``."""
    check_float_dtype("out", out, dtype)
    if out.ndim != 2 or out.shape[0] != n or not out.flags.c_contiguous:
        raise ValueError(f"out: expected a C-contiguous 2-d array of {n} rows (one per example), got shape "
                         f"{out.shape}{'' if out.flags.c_contiguous else ', not C-contiguous'}")
    return check_columns("out", out, start, width)[0]


def check_columns(name: str, x: np.ndarray, start, width) -> tuple[int, int]:
    """``(start, width)`` of the column block ``x[:, start:start + width]`` of the 2-d array
    ``x`` (``width`` None: to the last column); raise unless the block lies inside ``x``."""
    if type(start) is int and type(width) is int and 0 <= start and 0 <= width and start + width <= x.shape[1]:
        return start, width  # the common case, without check_scalar's general tests (called per field and step)
    start = check_scalar("start", start, int, low=0)
    width = x.shape[1] - start if width is None else check_scalar("width", width, int, low=0)
    if start + width > x.shape[1]:
        raise ValueError(f"{name}: columns [{start}, {start + width}) lie outside its {x.shape[1]} columns")
    return start, width


def check_offsets(name: str, offsets, num_values: int) -> np.ndarray:
    """Return CSR-style offsets as int64: ``offsets[0] == 0``, non-decreasing,
    ``offsets[-1] == num_values``; raise otherwise."""
    offsets = np.asarray(offsets)
    if offsets.dtype.kind not in "iu" or offsets.ndim != 1 or offsets.size < 1:
        raise ValueError(f"{name}: expected a 1-d integer array of length n + 1, got {offsets.dtype} {offsets.shape}")
    offsets = offsets.astype(np.int64, copy=False)
    if offsets[0] != 0 or offsets[-1] != num_values or np.any(np.diff(offsets) < 0):
        raise ValueError(
            f"{name}: must start at 0, never decrease and end at the number of ids ({num_values}); "
            f"got start {offsets[0]}, end {offsets[-1]}"
        )
    return offsets


# --------------------------------------------------------------------------- text (kernels/text.py)

NEWLINE, CARRIAGE_RETURN, QUOTE = 10, 13, 34  # the bytes of the dialect
# What split_fields (kernel and twin) reports for the first malformed row of a chunk.
SPLIT_OK, SPLIT_FIELD_COUNT, SPLIT_UNTERMINATED_QUOTE, SPLIT_TEXT_AFTER_QUOTE = 0, 1, 2, 3
MAX_TOKENS = 127  # codes are int8


def check_split_arguments(buf, pos, delimiter, starts, ends) -> tuple[int, int]:
    """``(pos, delimiter)`` as ints after checking the arguments of ``split_fields``: ``buf``
    a uint8 ``(n,)`` array of whole lines (empty, or ending with ``\\n``), ``0 <= pos <= n``,
    ``delimiter`` a byte other than ``\\n``, ``\\r`` and ``"``, ``starts`` and ``ends``
    writeable int64 arrays of one 2-d shape ``(max_rows, n_fields)``."""
    if not isinstance(buf, np.ndarray) or buf.dtype != np.uint8 or buf.ndim != 1:
        raise ValueError(f"buf: expected a 1-d uint8 array, got {getattr(buf, 'dtype', type(buf).__name__)} "
                         f"{getattr(buf, 'shape', '')}")
    if buf.size and buf[-1] != NEWLINE:
        raise ValueError("buf: expected whole lines (the last byte a newline)")
    pos = check_scalar("pos", pos, int, low=0, high=buf.size)
    delimiter = check_scalar("delimiter", delimiter, int, low=0, high=255)
    if delimiter in (NEWLINE, CARRIAGE_RETURN, QUOTE):
        raise ValueError(f"delimiter: a line end or the quote cannot separate fields, got {delimiter}")
    for name, array in (("starts", starts), ("ends", ends)):
        if not isinstance(array, np.ndarray) or array.dtype != np.int64 or array.ndim != 2 or not array.flags.writeable:
            raise ValueError(f"{name}: expected a writeable 2-d int64 array, got "
                             f"{getattr(array, 'dtype', type(array).__name__)} {getattr(array, 'shape', '')}")
    if ends.shape != starts.shape:
        raise ValueError(f"ends: expected shape {starts.shape} (the shape of starts), got {ends.shape}")
    return pos, delimiter


def check_cells(buf, starts, ends, out, dtype) -> np.ndarray:
    """``out``, or a new ``dtype`` array of the cells' count, after checking the arguments of
    ``parse_int64`` / ``match_tokens``: ``buf`` a 1-d uint8 array, ``starts`` and ``ends``
    int64 ``(m,)``, ``out`` None or a writeable ``dtype`` array ``(m,)``. Whether each cell
    lies inside ``buf`` is checked cell by cell (``check_cell_inside``)."""
    if not isinstance(buf, np.ndarray) or buf.dtype != np.uint8 or buf.ndim != 1:
        raise ValueError(f"buf: expected a 1-d uint8 array, got {getattr(buf, 'dtype', type(buf).__name__)} "
                         f"{getattr(buf, 'shape', '')}")
    for name, array in (("starts", starts), ("ends", ends)):
        if not isinstance(array, np.ndarray) or array.dtype != np.int64 or array.ndim != 1:
            raise ValueError(f"{name}: expected a 1-d int64 array, got "
                             f"{getattr(array, 'dtype', type(array).__name__)} {getattr(array, 'shape', '')}")
    if ends.shape != starts.shape:
        raise ValueError(f"ends: expected shape {starts.shape} (the shape of starts), got {ends.shape}")
    if out is None:
        return np.empty(starts.shape[0], dtype=dtype)
    if not isinstance(out, np.ndarray) or out.dtype != dtype or out.shape != starts.shape or not out.flags.writeable:
        raise ValueError(f"out: expected a writeable {np.dtype(dtype)} array of shape {starts.shape}, got "
                         f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}")
    return out


def check_cell_inside(row: int, start: int, end: int, size: int) -> None:
    """Raise unless cell ``row`` spans ``0 <= start <= end <= size`` (the bytes of ``buf``)."""
    if not 0 <= start <= end <= size:
        raise ValueError(f"starts, ends: cell {row} spans bytes {start}..{end}, outside buf (0..{size})")


def check_tokens(tokens) -> tuple:
    """Return ``tokens``, a tuple of 1 to ``MAX_TOKENS`` distinct byte strings; raise otherwise."""
    if (not isinstance(tokens, tuple) or not 1 <= len(tokens) <= MAX_TOKENS
            or not all(isinstance(t, bytes) for t in tokens) or len(set(tokens)) != len(tokens)):
        raise ValueError(f"tokens: expected a tuple of 1 to {MAX_TOKENS} distinct byte strings, got {tokens!r}")
    return tokens
