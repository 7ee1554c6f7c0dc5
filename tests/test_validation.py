"""pfd_ref.validation: each check accepts what it should, returns it without a dtype change,
and raises ValueError starting with the argument's name otherwise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pfd_ref import validation as v
from pfd_ref.validation import float_dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_check_float_array_returns_the_same_array_without_casting(dtype):
    x = np.ones((2, 3), dtype)
    assert v.check_float_array("x", x) is x
    assert v.check_float_array("x", x, ndim=2, dtype=dtype) is x


@pytest.mark.parametrize("bad, pattern", [
    ([1.0, 2.0], "not_array.*numpy array"),
    (np.array([1, 2]), "not_array.*float32 or float64"),
    (np.array([1.0], np.float16), "not_array.*float32 or float64"),
    (np.array([np.nan]), "not_array.*NaN"),
    (np.array([1.0, -np.inf]), "not_array.*infinity"),
])
def test_check_float_array_rejects(bad, pattern):
    with pytest.raises(ValueError, match="^" + pattern):
        v.check_float_array("not_array", bad)


def test_check_float_array_dtype_and_ndim():
    with pytest.raises(ValueError, match="^x: expected dtype float64, got float32"):
        v.check_float_array("x", np.ones(2, np.float32), dtype=np.float64)
    with pytest.raises(ValueError, match=r"^x: expected 2 dimension\(s\)"):
        v.check_float_array("x", np.ones(2), ndim=2)


def test_check_same_dtype():
    assert v.check_same_dtype(a=np.ones(1), b=np.ones(2), c=None) == np.float64
    with pytest.raises(ValueError, match="a=float32, b=float64"):
        v.check_same_dtype(a=np.ones(1, np.float32), b=np.ones(1))


def test_check_shape_with_wildcards():
    x = np.ones((3, 4))
    v.check_shape("x", x, (3, 4))
    v.check_shape("x", x, (None, 4))
    v.check_shape("x", x, (None, None))
    for bad in [(3,), (3, 5), (None, 3), (3, 4, 1)]:
        with pytest.raises(ValueError, match="^x: expected shape"):
            v.check_shape("x", x, bad)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint16, np.uint64])
def test_check_ids_returns_int64(dtype):
    ids = v.check_ids("ids", np.array([0, 4, 2], dtype), num_rows=5)
    assert ids.dtype == np.int64
    np.testing.assert_array_equal(ids, [0, 4, 2])


def test_check_ids_accepts_lists_and_empty_arrays():
    np.testing.assert_array_equal(v.check_ids("ids", [1, 0], 2), [1, 0])
    assert v.check_ids("ids", np.zeros(0, np.int64), 1).shape == (0,)
    assert v.check_ids("ids", np.zeros((2, 3), np.int64), 1, ndim=2).shape == (2, 3)


@pytest.mark.parametrize("ids, pattern", [
    (np.array([0.0, 1.0]), "expected integer ids"),
    (np.array([[0, 1]]), r"expected 1 dimension\(s\)"),
    (np.array([0, 5]), r"id 5 is outside the table \[0, 5\)"),
    (np.array([-1, 0]), r"id -1 is outside"),
])
def test_check_ids_rejects(ids, pattern):
    with pytest.raises(ValueError, match="^ids: " + pattern):
        v.check_ids("ids", ids, 5)


def test_check_offsets():
    offsets = v.check_offsets("offsets", np.array([0, 0, 2, 2, 5], np.int32), 5)
    assert offsets.dtype == np.int64
    np.testing.assert_array_equal(v.check_offsets("offsets", [0], 0), [0])
    for bad, num_values in [([1, 2], 2), ([0, 2], 3), ([0, 3, 2], 2), ([0.0, 1.0], 1), ([[0, 1]], 1), ([], 0)]:
        with pytest.raises(ValueError, match="^offsets: "):
            v.check_offsets("offsets", np.array(bad), num_values)


@pytest.mark.parametrize("labels", [
    np.array([0, 1, 1], np.int8), np.array([0.0, 1.0, 0.0], np.float32), np.array([True, False, True]),
    np.array([1, 1, 0], np.uint64),
])
def test_check_labels_accepts_numeric_zero_one_and_keeps_the_dtype(labels):
    assert v.check_labels("labels", labels, 3) is labels


@pytest.mark.parametrize("labels, pattern", [
    (np.array([0, 1]), r"expected shape \(3,\)"),
    (np.array(["0", "1", "1"]), "expected numeric labels"),
    (np.array([0, 2, 1]), "labels must be 0 or 1, found .*2"),
    (np.array([0.0, 0.5, 1.0]), r"labels must be 0 or 1, found .*0\.5"),
    (np.array([0.0, np.nan, 1.0]), "labels must be 0 or 1"),
])
def test_check_labels_rejects(labels, pattern):
    with pytest.raises(ValueError, match="^labels: " + pattern):
        v.check_labels("labels", labels, 3)


def test_check_weights():
    assert v.check_weights("weights", None, 3, np.float64) is None
    w = np.array([0.0, 1.0, 2.5], np.float32)
    assert v.check_weights("weights", w, 3, np.float32) is w
    for bad, pattern in [
        (np.ones(2, np.float32), "expected shape"),
        (np.ones(3), "expected dtype float32"),
        (np.array([1.0, -1.0, 0.0], np.float32), ".*non-negative"),
        (np.array([1.0, np.nan, 0.0], np.float32), "contains NaN"),
    ]:
        with pytest.raises(ValueError, match="^weights: " + pattern):
            v.check_weights("weights", bad, 3, np.float32)


def test_check_scalar_returns_python_numbers():
    assert v.check_scalar("lr", 3, float, low=0, low_open=True) == 3.0
    assert type(v.check_scalar("lr", np.float32(0.5), float)) is float
    assert type(v.check_scalar("epochs", np.int64(2), int, low=1)) is int
    assert v.check_scalar("l2", 0, float, low=0) == 0.0
    assert v.check_scalar("beta", 0.0, float, low=0, high=1, high_open=True) == 0.0


@pytest.mark.parametrize("value, kind, bounds, message", [
    (1.5, int, dict(low=1), r"^epochs: expected an integer >= 1, got 1\.5$"),
    (2.0, int, dict(low=1), r"^epochs: expected an integer >= 1, got 2\.0$"),
    (True, int, dict(low=1), r"^epochs: expected an integer >= 1, got True$"),
    (np.True_, int, {}, r"^epochs: expected an integer, got "),
    ("3", int, {}, r"^epochs: expected an integer, got '3'$"),
    (0, int, dict(low=1), r"^epochs: expected an integer >= 1, got 0$"),
    (True, float, {}, r"^epochs: expected a finite number, got True$"),
    (np.nan, float, {}, r"^epochs: expected a finite number, got nan$"),
    (np.inf, float, dict(low=0), r"^epochs: expected a finite number >= 0, got inf$"),
    (0, float, dict(low=0, low_open=True), r"^epochs: expected a finite number > 0, got 0$"),
    (1.0, float, dict(low=0, high=1, high_open=True), r"^epochs: expected a finite number in \[0, 1\), got 1\.0$"),
    (2, int, dict(high=1), r"^epochs: expected an integer <= 1, got 2$"),
])
def test_check_scalar_rejects_wrong_types_and_out_of_bounds(value, kind, bounds, message):
    with pytest.raises(ValueError, match=message):
        v.check_scalar("epochs", value, kind, **bounds)


def test_check_choice():
    assert v.check_choice("mode", "sync", ("sync", "two-stage")) == "sync"
    for bad in ("async", None, 1):
        with pytest.raises(ValueError, match=r"^mode: expected one of 'sync', 'two-stage'; got "):
            v.check_choice("mode", bad, ("sync", "two-stage"))


@settings(max_examples=30, deadline=None)
@given(ids=hnp.arrays(np.int64, st.integers(0, 10), elements=st.integers(-3, 12)), num_rows=st.integers(1, 10))
def test_check_ids_accepts_exactly_the_in_range_arrays(ids, num_rows):
    in_range = bool(np.all((ids >= 0) & (ids < num_rows)))
    if in_range:
        np.testing.assert_array_equal(v.check_ids("ids", ids, num_rows), ids)
    else:
        with pytest.raises(ValueError, match="^ids: id -?[0-9]+ is outside"):
            v.check_ids("ids", ids, num_rows)


@pytest.mark.parametrize("spec, expected", [("float32", np.float32), (np.float64, np.float64),
                                            (np.dtype("float32"), np.float32)])
def test_float_dtype_takes_float32_and_float64_given_any_way(spec, expected):
    assert float_dtype("dtype", spec) == np.dtype(expected)


@pytest.mark.parametrize("where", ["kernels.compile_all", "model init_params", "catalogue.save_item_vectors"])
@pytest.mark.parametrize("spec", [None, "int64", "no such dtype", np.float16])
def test_every_dtype_argument_refuses_none_and_non_floats_naming_itself(tmp_path, where, spec):
    """One rule (float_dtype) at every entry that takes a dtype: None was float64 at two of
    them (np.dtype(None) is float64), refused at the third."""
    from pfd_ref import catalogue, kernels
    from pfd_ref.schema import FeatureSpec
    from pfd_ref.models import MLPRanker
    model = MLPRanker("m", (FeatureSpec("x", "dense", "regular", "user", width=2),), embed_dim=3, hidden=(3,))
    calls = {
        "kernels.compile_all": (lambda: kernels.compile_all((spec,)), "dtypes"),
        "model init_params": (lambda: model.init_params(np.random.default_rng(0), spec), "dtype"),
        "catalogue.save_item_vectors": (lambda: catalogue.save_item_vectors(tmp_path / "v.npy", np.ones((2, 2)), 2, 2,
                                                                           spec), "dtype"),
    }
    call, name = calls[where]
    with pytest.raises(ValueError, match=f"^{name}: expected float32 or float64, got"):
        call()
