"""The streaming reader of delimited files (pfd_ref.data.text): chunk boundaries change
nothing, every error names the file, the line and the column, the two backends (the
tokenizer kernels or their twins) read the same."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfd_ref import backend
from pfd_ref.data import text
from pfd_ref.data.text import read_columns


def _write(tmp_path, content: bytes, name="log.csv"):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _error(call) -> str:
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value)


ROWS = st.lists(st.tuples(st.integers(-10 ** 12, 10 ** 12), st.sampled_from(["pv", "buy"]),
                          st.text(alphabet="xyz,\"é", max_size=4)), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(rows=ROWS, chunk=st.integers(8, 64), per_call=st.integers(1, 5), crlf=st.booleans(), final_newline=st.booleans())
def test_small_chunks_and_calls_read_the_same_columns(tmp_path_factory, rows, chunk, per_call, crlf, final_newline):
    end = "\r\n" if crlf else "\n"
    lines = ["n,b,s"] + [f'{n},{b},"{s.replace(chr(34), chr(34) * 2)}"' for n, b, s in rows]
    content = end.join(lines).encode() + (end.encode() if final_newline else b"")
    path = _write(tmp_path_factory.mktemp("t"), content)
    expected = read_columns(path, integers=["n"], tokens={"b": (b"pv", b"buy")}, strings=["s"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(text, "CHUNK_BYTES", chunk)
        patch.setattr(text, "OFFSET_BYTES", per_call * 16 * 3)  # per_call rows of 3 fields per kernel call
        got = read_columns(path, integers=["n"], tokens={"b": (b"pv", b"buy")}, strings=["s"])
    assert got.n == expected.n == len(rows) and not got.truncated
    np.testing.assert_array_equal(got.columns["n"], [n for n, _, _ in rows])
    np.testing.assert_array_equal(got.columns["b"], [("pv", "buy").index(b) for _, b, _ in rows])
    assert [got.string_values["s"][k - 1] for k in got.columns["s"]] == [s for _, _, s in rows]
    assert got.string_values == expected.string_values


def test_header_delimiter_byte_order_mark_and_max_rows(tmp_path):
    path = _write(tmp_path, b"\xef\xbb\xbf a \tb\r\n1\t2\r\n3\t4\r\n5\t6\r\n")
    got = read_columns(path, integers=["a", "b"], max_rows=2)
    assert got.names == ("a", "b") and got.delimiter == "\t" and got.truncated
    np.testing.assert_array_equal(got.columns["b"], [2, 4])
    assert not read_columns(path, integers=["a"], max_rows=3).truncated
    headerless = read_columns(_write(tmp_path, b"7,8", "h.csv"), names=("a", "b"), delimiter=",", integers=["b"])
    assert headerless.n == 1 and headerless.columns["b"][0] == 8


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_blank_lines_at_the_end_of_the_file_are_accepted(tmp_path, ending):
    """Issue 14: a file may end in blank lines; they are no rows, and no rows left after a head."""
    rows = ending.join([b"a,b", b"1,2", b"3,4"]) + ending
    for blanks in (1, 3):
        path = _write(tmp_path, rows + ending * blanks)
        got = read_columns(path, integers=["a", "b"])
        assert got.n == 2 and not got.truncated
        np.testing.assert_array_equal(got.columns["b"], [2, 4])
        assert not read_columns(path, integers=["a"], max_rows=2).truncated
        assert read_columns(path, integers=["a"], max_rows=1).truncated
    assert "has a header line but no data rows" in _error(lambda: read_columns(_write(tmp_path, b"a,b\n\n\n"),
                                                                               integers=["a"]))


@pytest.fixture(params=backend.BACKENDS)
def each_backend(request):
    with backend.using(request.param):
        yield request.param


@pytest.mark.parametrize("content, expected", [
    (b"", "is empty (no header line)"),
    (b"a,b\n", "has a header line but no data rows"),
    (b"a,a\n1,2\n", "line 1: duplicate column name(s) ['a']"),
    (b"a,b\n1,2\n3\n", "line 3 has 1 field(s); the header has 2"),
    (b"a,b\n1,2\n\n5,6\n", "line 3 is empty"),
    (b"a,b\n1,2\n3,4,5\n", "line 3 has 3 field(s)"),
    (b'a,b\n1,"2\n', "line 2, column 'b': a quoted field is not closed before the line ends"),
    (b'a,b\n"1"x,2\n', "line 2, column 'a': text follows a closing quote"),
    (b"a,b\n1,2\n3,x4\n", "line 3, column 'b': cannot parse 'x4' as a 64-bit integer"),
    (b"a,b\n1,99999999999999999999\n", "line 2, column 'b': cannot parse '99999999999999999999'"),
])
def test_errors_name_file_line_and_column(tmp_path, content, expected, each_backend):
    path = _write(tmp_path, content)
    message = _error(lambda: read_columns(path, integers=["a", "b"]))
    assert message.startswith(f"path: {str(path)!r}") and expected in message


def test_errors_far_into_the_file_name_the_right_line(tmp_path, monkeypatch):
    monkeypatch.setattr(text, "CHUNK_BYTES", 64)
    monkeypatch.setattr(text, "OFFSET_BYTES", 7 * 16 * 2)  # 7 rows of 2 fields per kernel call
    lines = ["a,b"] + [f"{i},{i}" for i in range(200)]
    lines[151] = "150,b150"
    assert "line 152, column 'b': cannot parse 'b150'" in _error(
        lambda: read_columns(_write(tmp_path, "\n".join(lines).encode()), integers=["a", "b"]))
    lines[151] = "150"
    assert "line 152 has 1 field(s)" in _error(lambda: read_columns(_write(tmp_path, "\n".join(lines).encode()),
                                                                    integers=["a"]))


def test_token_error_lists_the_tokens(tmp_path):
    path = _write(tmp_path, b"1,pv\n2,click\n")
    message = _error(lambda: read_columns(path, names=("n", "b"), delimiter=",", tokens={"b": (b"pv", b"buy")}))
    assert "line 2, column 'b': expected one of 'pv', 'buy', got 'click'" in message


def test_missing_columns_and_files(tmp_path):
    path = _write(tmp_path, b"a,b\n1,2\n")
    assert "lacks column(s) ['c']; its header has ['a', 'b']" in _error(lambda: read_columns(path, integers=["c"]))
    assert _error(lambda: read_columns(tmp_path / "none.csv", argument="log")).startswith("log: cannot read")
    bad_text = _write(tmp_path, b"a,s\n1,\xff\n", "latin.csv")
    assert "line 2, column 's': not UTF-8 text" in _error(lambda: read_columns(bad_text, strings=["s"]))


def test_both_backends_read_the_same_columns(tmp_path, monkeypatch):
    monkeypatch.setattr(text, "CHUNK_BYTES", 32)
    content = b'n\tb\ts\r\n-7\tpv\t"a""b"\r\n+12\tbuy\t\r\n0\tpv\tz\r\n3\tbuy\t"x\ty"'
    path = _write(tmp_path, content, "log.tsv")
    read = {}
    for name in backend.BACKENDS:
        with backend.using(name):
            read[name] = read_columns(path, integers=["n"], tokens={"b": (b"pv", b"buy")}, strings=["s"])
    numba, numpy = read["numba"], read["numpy"]
    assert numba.columns.keys() == numpy.columns.keys() and numba.string_values == numpy.string_values
    for name in numba.columns:
        np.testing.assert_array_equal(numba.columns[name], numpy.columns[name])
    assert numba.columns["n"].tolist() == [-7, 12, 0, 3] and numba.string_values["s"] == ("", 'a"b', "x\ty", "z")
