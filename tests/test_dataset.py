import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfd_ref.data import Dataset, MultiIds
from pfd_ref.data.dataset import batch_indices, last_days, load_npz, pack_columns, unpack_columns
from pfd_ref.schema import FeatureSpec, Schema

SCHEMA = Schema((
    FeatureSpec("user_id", "categorical", "regular", "user", 6),
    FeatureSpec("history", "multi_categorical", "regular", "user", 4),
    FeatureSpec("item_id", "categorical", "regular", "item", 9),
    FeatureSpec("price", "dense", "regular", "item", width=2),
    FeatureSpec("clicks_24h", "dense", "privileged", None),
    FeatureSpec("viewed_tags", "multi_categorical", "privileged", None, 3, pooling="sum"),
))


def _multi_ids(rng, n, vocab, max_len=3):
    lengths = rng.integers(0, max_len + 1, n)
    return MultiIds(rng.integers(0, vocab, lengths.sum()), np.r_[0, np.cumsum(lengths)].astype(np.int64))


def _arrays(n=7, seed=0, day=True, weights=None):
    """Keyword arguments of a valid Dataset over SCHEMA with n rows."""
    rng = np.random.default_rng(seed)
    return dict(
        schema=SCHEMA,
        columns={
            "user_id": rng.integers(0, 6, n),
            "history": _multi_ids(rng, n, 4),
            "item_id": rng.integers(0, 9, n),
            "price": rng.standard_normal((n, 2)),
            "clicks_24h": rng.standard_normal((n, 1)),
            "viewed_tags": _multi_ids(rng, n, 3),
        },
        labels=rng.integers(0, 2, n),
        user_ids=rng.integers(0, 6, n),
        day=rng.integers(0, 4, n) if day else None,
        weights=None if weights is None else rng.random(n).astype(weights),
    )


def _rows(column, i):
    """Row i of a column as a comparable Python value."""
    if isinstance(column, MultiIds):
        return column.values[column.offsets[i]:column.offsets[i + 1]].tolist()
    return np.atleast_1d(column[i]).tolist()


def _assert_identical(a: Dataset, b: Dataset):
    """Bit-identical datasets: same schema, and every array equal in dtype, shape and bytes."""
    assert a.schema == b.schema
    pairs = [(a.labels, b.labels), (a.user_ids, b.user_ids)]
    for name in a.schema.names:
        x, y = a.columns[name], b.columns[name]
        pairs += list(zip(x, y)) if isinstance(x, MultiIds) else [(x, y)]
    for x, y in [(a.day, b.day), (a.weights, b.weights)]:
        assert (x is None) == (y is None)
        if x is not None:
            pairs.append((x, y))
    for x, y in pairs:
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def test_valid_dataset_is_stored_in_canonical_dtypes():
    kwargs = _arrays()
    kwargs["columns"]["user_id"] = kwargs["columns"]["user_id"].astype(np.int32)
    kwargs["labels"] = kwargs["labels"].astype(np.float32)
    data = Dataset(**kwargs)
    assert data.n == 7
    assert data.columns["user_id"].dtype == np.int64
    assert data.labels.dtype == np.int8 and data.user_ids.dtype == np.int64 and data.day.dtype == np.int64
    assert data.positive_rate == pytest.approx(kwargs["labels"].mean())
    assert "n=7" in repr(data)


def _replace_column(name, value):
    def edit(kwargs):
        kwargs["columns"][name] = value(kwargs["columns"][name]) if callable(value) else value
    return edit


def _drop_column(kwargs):
    del kwargs["columns"]["item_id"]


def _set(key, value):
    def edit(kwargs):
        kwargs[key] = value(kwargs[key]) if callable(value) else value
    return edit


@pytest.mark.parametrize("edit, message", [
    (_drop_column, r"^columns: missing.*'item_id'"),
    (_replace_column("extra", np.zeros(7, np.int64)), r"^columns: .*'extra'.*not in the schema"),
    (_replace_column("user_id", lambda c: c[:-1]), r"^columns\['user_id'\]: expected shape \(7,\)"),
    (_replace_column("user_id", lambda c: c.astype(np.float64)), r"^columns\['user_id'\]: expected integer"),
    (_replace_column("user_id", lambda c: np.r_[c[:-1], 6]), r"^columns\['user_id'\]: id 6 is outside"),
    (_replace_column("item_id", lambda c: np.r_[c[:-1], -1]), r"^columns\['item_id'\]: id -1 is outside"),
    (_replace_column("user_id", lambda c: c.tolist()), r"^columns\['user_id'\]: expected a numpy array"),
    (_replace_column("history", lambda c: (c.values, c.offsets)), r"^columns\['history'\]: expected MultiIds"),
    (_replace_column("history", lambda c: MultiIds(np.r_[c.values, 4], c.offsets + np.r_[0, np.ones(7, np.int64)])),
     r"^columns\['history'\]\.values: id 4 is outside"),
    (_replace_column("history", lambda c: MultiIds(c.values, c.offsets[:-1])), r"^columns\['history'\]\.offsets"),
    (_replace_column("history", lambda c: MultiIds(c.values, c.offsets + 1)),
     r"^columns\['history'\]\.offsets: must start at 0"),
    (_replace_column("history", lambda c: MultiIds(np.r_[c.values, 0, 0], np.r_[0, 2, 1, c.offsets[3:] + 2])),
     r"^columns\['history'\]\.offsets: must .*never decrease"),
    (_replace_column("history", lambda c: MultiIds(np.r_[c.values, 0], np.r_[c.offsets, c.offsets[-1] + 1])),
     r"^columns\['history'\]\.offsets: expected length n \+ 1 = 8"),
    (_replace_column("price", lambda c: c.astype(np.float32)), r"^columns\['price'\]: dense columns are float64"),
    (_replace_column("price", lambda c: c[:, :1]), r"^columns\['price'\]: expected shape \(7, 2\)"),
    (_replace_column("clicks_24h", lambda c: c[:, 0]), r"^columns\['clicks_24h'\]: expected shape \(7, 1\)"),
    (_replace_column("clicks_24h", lambda c: np.r_[c[:-1], [[np.nan]]]), r"^columns\['clicks_24h'\]: contains NaN"),
    (_set("labels", lambda y: np.r_[y[:-1], 2]), r"^labels: labels must be 0 or 1"),
    (_set("labels", lambda y: y[:, None]), r"^labels: expected shape"),
    (_set("user_ids", lambda u: u[:-1]), r"^user_ids: expected shape \(7,\)"),
    (_set("user_ids", lambda u: u.astype(np.float64)), r"^user_ids: expected integers"),
    (_set("day", lambda d: d[:-1]), r"^day: expected shape \(7,\)"),
    (_set("weights", -np.ones(7)), r"^weights: must be non-negative"),
    (_set("weights", np.ones(6)), r"^weights: expected shape \(7,\)"),
    (_set("schema", SCHEMA.features), r"^schema: expected a Schema"),
    (_set("columns", [1, 2]), r"^columns: expected a dict"),
])
def test_invalid_dataset_is_rejected_naming_the_column(edit, message):
    kwargs = _arrays()
    edit(kwargs)
    with pytest.raises(ValueError, match=message):
        Dataset(**kwargs)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 12), st.lists(st.integers(0, 11), max_size=20), st.integers(0, 2**31))
def test_multi_ids_take_matches_a_row_by_row_gather(n, raw_indices, seed):
    ids = _multi_ids(np.random.default_rng(seed), n, 5)
    indices = np.array([i % n for i in raw_indices] if n else [], dtype=np.int64)
    taken = ids.take(indices)
    assert taken.values.dtype == np.int64 and taken.offsets.dtype == np.int64
    assert taken.n == len(indices)
    assert [_rows(taken, j) for j in range(len(indices))] == [_rows(ids, i) for i in indices]


def test_take_keeps_the_order_of_indices_for_every_array():
    data = Dataset(**_arrays(weights=np.float32))
    indices = np.array([5, 0, 5, 2])
    part = data.take(indices)
    assert part.n == 4
    for name in SCHEMA.names:
        assert [_rows(part.columns[name], j) for j in range(4)] == [_rows(data.columns[name], i) for i in indices]
    for key in ("labels", "user_ids", "day", "weights"):
        np.testing.assert_array_equal(getattr(part, key), getattr(data, key)[indices])
    with pytest.raises(ValueError, match="^indices:"):
        data.take(np.array([7]))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 30), st.integers(1, 12), st.integers(1, 3), st.one_of(st.none(), st.integers(0, 2**31)))
def test_batch_indices_cover_every_row_once_per_epoch(n, batch_size, epochs, seed):
    rng = None if seed is None else np.random.default_rng(seed)
    batches = list(batch_indices(n, batch_size, rng, epochs))
    per_epoch = [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    assert [len(b) for b in batches] == per_epoch * epochs
    expected_rng = None if seed is None else np.random.default_rng(seed)
    expected = [np.arange(n) if seed is None else expected_rng.permutation(n) for _ in range(epochs)]
    np.testing.assert_array_equal(np.concatenate(batches) if batches else np.zeros(0, np.int64),
                                  np.concatenate(expected))


def test_batch_indices_shuffle_with_the_rng():
    orders = [np.concatenate(list(batch_indices(50, 8, np.random.default_rng(s), 2))) for s in (1, 1, 2)]
    np.testing.assert_array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[0], orders[2])
    assert not np.array_equal(orders[0][:50], orders[0][50:])  # a fresh permutation each epoch


@st.composite
def datasets(draw):
    n = draw(st.integers(0, 15))
    kwargs = _arrays(n=n, seed=draw(st.integers(0, 2**31)), day=draw(st.booleans()),
                     weights=draw(st.sampled_from([None, np.float32, np.float64])))
    return Dataset(**kwargs)


@settings(max_examples=40, deadline=None)
@given(datasets())
def test_save_load_round_trip_is_bit_exact(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.npz"
        data.save(path)
        _assert_identical(Dataset.load(path), data)


def test_save_writes_exactly_the_given_path(tmp_path):
    path = tmp_path / "no_suffix"
    Dataset(**_arrays()).save(path)
    assert path.exists() and not (tmp_path / "no_suffix.npz").exists()
    _assert_identical(Dataset.load(path), Dataset(**_arrays()))


def test_load_rejects_files_that_are_not_pfd_ref_datasets(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    npy = tmp_path / "array.npy"
    np.save(npy, np.zeros(3))
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    for path in (text, npy, foreign, tmp_path / "missing.npz"):
        with pytest.raises(ValueError, match=f"^path: '{path}'"):
            Dataset.load(path)


def _spoilt(source: Path, path: Path, how: str) -> Path:
    """A copy of ``source`` cut in half, with bytes flipped inside its largest member (a CRC
    error), or replaced by text, random bytes, nothing, a .npy or a pickled object array."""
    data = bytearray(source.read_bytes())
    if how == "truncated":
        data = data[:len(data) // 2]
    elif how == "corrupt":
        with zipfile.ZipFile(source) as archive:
            member = max(archive.infolist(), key=lambda info: info.compress_size)
        start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra) + member.compress_size // 2
        data[start:start + 8] = bytes(b ^ 0xFF for b in data[start:start + 8])
    elif how == "text":
        data = b"user_id,label\n1,0\n"
    elif how == "random bytes":
        data = np.random.default_rng(0).bytes(3000)
    elif how == "empty":
        data = b""
    elif how == "pickled":
        np.savez(path, a=np.array([{"x": 1}], dtype=object))
        return path
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("how, message", [
    ("truncated", r"is truncated or damaged \(BadZipFile: File is not a zip file\)"),
    ("corrupt", r"is truncated or damaged \(BadZipFile: Bad CRC-32 for file 'column\."),
    ("text", r"is text, not a NumPy zip archive \(an .npz starts with the bytes PK\\x03\\x04; this file starts "
             r"with b'user_i'\)"),
    ("random bytes", r"is not a NumPy zip archive"),
    ("empty", r"is empty"),
    ("pickled", r"holds an array that needs pickling"),
])
def test_a_spoilt_npz_is_a_clear_error_naming_the_file(tmp_path, how, message):
    """Not zipfile.BadZipFile, zlib.error or numpy's "allow_pickle" for a text file: one
    ValueError naming the argument, the file and what is wrong."""
    source = tmp_path / "data.npz"
    Dataset(**_arrays(n=500)).save(source)
    path = _spoilt(source, tmp_path / "spoilt.npz", how)
    with pytest.raises(ValueError, match=f"^path: '{path}' {message}"):
        Dataset.load(path)
    with pytest.raises(ValueError, match=f"^theirs: '{path}' {message}"):
        load_npz(path, "theirs")


def test_a_directory_given_as_a_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=f"^path: '{tmp_path}' cannot be read \\(Is a directory\\)"):
        Dataset.load(tmp_path)


def test_load_rejects_extra_arrays(tmp_path):
    """docs/data.md: every array of a dataset file is read; one its schema does not name is an error."""
    path = tmp_path / "data.npz"
    Dataset(**_arrays()).save(path)
    arrays = load_npz(path)
    np.savez(path, **arrays, **{"column.extra": np.zeros(3)})
    with pytest.raises(ValueError, match=r"^path: .* is not a valid pfd_ref dataset \(array\(s\) \['column.extra'\] are "
                                         "not in its schema"):
        Dataset.load(path)


def test_save_is_atomic(tmp_path, monkeypatch):
    """A save that fails half-way (here: numpy raises while writing) leaves the previous file."""
    path = tmp_path / "data.npz"
    data = Dataset(**_arrays())
    data.save(path)
    before = path.read_bytes()

    def failing_savez(handle, **arrays):
        handle.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError):
        data.save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["data.npz"]


def test_load_rejects_a_dataset_file_whose_arrays_do_not_match_its_schema(tmp_path):
    path = tmp_path / "data.npz"
    Dataset(**_arrays()).save(path)
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["column.user_id"] = arrays["column.user_id"] + 100  # user ids beyond the vocabulary
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"^path: .*columns\['user_id'\]: id"):
        Dataset.load(path)
    del arrays["column.history.offsets"]
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"^path: .*not a valid pfd_ref dataset \(no array 'column.history.offsets'\)"):
        Dataset.load(path)


def test_pack_columns_uses_dotted_keys_and_unpacks_by_field():
    data = Dataset(**_arrays(n=5))
    arrays = pack_columns("input", data.columns)
    assert list(arrays) == ["input.user_id", "input.history.values", "input.history.offsets", "input.item_id",
                            "input.price", "input.clicks_24h", "input.viewed_tags.values", "input.viewed_tags.offsets"]
    back = unpack_columns("input", {**arrays, "other.x": np.zeros(1)}, SCHEMA)
    assert list(back) == list(data.columns)
    for name, column in back.items():
        pairs = zip(column, data.columns[name]) if isinstance(column, MultiIds) else [(column, data.columns[name])]
        assert all(x.dtype == y.dtype and x.tobytes() == y.tobytes() for x, y in pairs)
    params = {"student.embed.user_id": np.ones((2, 3)), "student.bias": np.zeros(1)}
    assert list(unpack_columns("param", pack_columns("param", params))) == list(params)


def test_a_dataset_file_of_format_1_is_rejected_naming_the_versions(tmp_path):
    path = tmp_path / "old.npz"
    Dataset(**_arrays()).save(path)
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["pfd_ref_dataset_format"] = np.array(1)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="^path: .* has dataset format 1; this version reads 2"):
        Dataset.load(path)


def test_split_last_days():
    data = Dataset(**_arrays(n=40))
    assert (data.day.min(), data.day.max()) == (0, 3)
    train, test = data.split_last_days(2)
    assert train.n + test.n == 40
    assert train.day.max() <= 1 < test.day.min()
    np.testing.assert_array_equal(train.labels, data.labels[data.day <= 1])
    np.testing.assert_array_equal(test.columns["item_id"], data.columns["item_id"][data.day > 1])
    np.testing.assert_array_equal(last_days(data.day, 1), data.day == 3)
    with pytest.raises(ValueError, match=r"^test_days: 4 test day\(s\) leave no training day \(days 0..3\)"):
        data.split_last_days(4)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="^test_days: expected an integer >= 1"):
            data.split_last_days(bad)
    with pytest.raises(ValueError, match="^day: .*no day column"):
        Dataset(**_arrays(day=False)).split_last_days(1)


def test_with_permuted_privileged_changes_only_privileged_columns():
    data = Dataset(**_arrays(n=30, weights=np.float64))
    permuted = data.with_permuted_privileged(np.random.default_rng(5))
    for spec in SCHEMA.regular():
        assert permuted.columns[spec.name] is data.columns[spec.name]
    for key in ("labels", "user_ids", "day", "weights"):
        assert getattr(permuted, key) is getattr(data, key)
    # one permutation moves the privileged columns jointly: rows are the original rows, reordered
    original = sorted(zip(*[[tuple(_rows(data.columns[s.name], i)) for i in range(30)] for s in SCHEMA.privileged()]))
    moved = [[tuple(_rows(permuted.columns[s.name], i)) for i in range(30)] for s in SCHEMA.privileged()]
    assert sorted(zip(*moved)) == original
    assert not np.array_equal(permuted.columns["clicks_24h"], data.columns["clicks_24h"])
    with pytest.raises(ValueError, match="^rng:"):
        data.with_permuted_privileged(5)
