"""The event contract: dtype, validation, Recording."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventssm.events import (
    EVENT_DTYPE,
    EventFileError,
    Recording,
    concat_events,
    copy_events,
    first_outside,
    make_events,
    validate_events,
)


def test_dtype_is_tonics():
    assert EVENT_DTYPE.names == ("x", "y", "t", "p")
    assert [EVENT_DTYPE[n] for n in EVENT_DTYPE.names] == [np.int16, np.int16, np.int64, np.bool_]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 12), st.integers(-3, 9)), max_size=40), st.integers(1, 10),
       st.integers(1, 7))
def test_first_outside_equals_reference_and_numpy(coords, w, h):
    x = np.array([c[0] for c in coords], np.int16)
    y = np.array([c[1] for c in coords], np.int16)
    bad = (x < 0) | (x >= w) | (y < 0) | (y >= h)
    expected = int(np.argmax(bad)) if bad.any() else -1
    assert first_outside(x, y, w, h) == expected == first_outside.py_func(x, y, w, h)


@pytest.mark.parametrize("n", [1023, 1024, 1025, 5000])
def test_first_outside_across_groups(n):
    # the kernel checks groups of 1024 events without a branch: offenders at group edges,
    # negative values, and limits beyond the int16 range
    rng = np.random.default_rng(n)
    x = rng.integers(0, 300, n).astype(np.int16)
    y = rng.integers(0, 200, n).astype(np.int16)
    assert first_outside(x, y, 300, 200) == first_outside.py_func(x, y, 300, 200) == -1
    assert first_outside(x, y, 40000, 40000) == -1
    for i, value, field in [(n - 1, 300, "x"), (1023 % n, -1, "y"), (n // 2, -32768, "x")]:
        xx, yy = x.copy(), y.copy()
        (xx if field == "x" else yy)[i] = value
        (xx if field == "x" else yy)[n - 1 if i != n - 1 else 0] = -5  # a later/earlier one
        bad = (xx < 0) | (xx >= 300) | (yy < 0) | (yy >= 200)
        expected = int(np.argmax(bad))
        assert first_outside(xx, yy, 300, 200) == expected == first_outside.py_func(xx, yy, 300, 200)
        assert first_outside(xx, yy, 40000, 40000) == int(np.argmax((xx < 0) | (yy < 0)))


def test_validate_can_skip_the_bounds_pass():
    ev = make_events([1, 50], [0, 0], [1, 2], [True, False])
    with pytest.raises(EventFileError, match="outside"):
        validate_events(ev, (6, 10, 2))
    assert validate_events(ev, (6, 10, 2), check_bounds=False) is ev
    # the O(1) checks still run
    with pytest.raises(EventFileError, match="no events"):
        validate_events(ev[:0], (6, 10, 2), check_bounds=False)
    with pytest.raises(EventFileError, match="invalid sensor size"):
        validate_events(ev, (6, 0, 2), check_bounds=False)
    with pytest.raises(EventFileError, match="dtype"):
        validate_events(np.zeros(3, [("x", "i4")]), (5, 5, 2), check_bounds=False)


def test_validate_names_file_and_event():
    ev = make_events([1, 5, 2], [0, 0, 9], [1, 2, 3], [True, False, True])
    validate_events(ev, (6, 10, 2))
    with pytest.raises(EventFileError, match=r"^f\.raw: event 1 at \(x=5, y=0\) lies outside the 5x10 sensor$"):
        validate_events(ev, (5, 10, 2), path="f.raw")
    with pytest.raises(EventFileError, match="no events"):
        validate_events(ev[:0], (5, 10, 2), path="f.raw")
    assert len(validate_events(ev[:0], (5, 10, 2), allow_empty=True)) == 0
    with pytest.raises(EventFileError, match="dtype"):
        validate_events(np.zeros(3, [("x", "i4")]), (5, 5, 2))


def test_error_message_and_recording():
    e = EventFileError("a.bin", "truncated record", 40)
    assert str(e) == "a.bin: truncated record (at byte 40)" and isinstance(e, ValueError)
    rec = Recording(make_events([0, 1], [0, 0], [10, 35], [1, 0]), (2, 1, 2))
    assert len(rec) == 2 and rec.duration_us == 25


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 50), max_size=5), st.integers(1, 3))
def test_concat_and_copy_events_equal_numpy(lengths, step):
    rng = np.random.default_rng(sum(lengths) + step)
    parts = [make_events(rng.integers(-9, 999, n), rng.integers(-9, 999, n),
                         rng.integers(-(2**40), 2**40, n), rng.random(n) < 0.5)[::step] for n in lengths]
    out = concat_events(parts)
    assert out.dtype == EVENT_DTYPE
    expected = np.concatenate(parts) if parts else np.empty(0, EVENT_DTYPE)
    assert np.array_equal(out, expected)
    for part in parts:
        dup = copy_events(part)
        assert dup.dtype == EVENT_DTYPE and np.array_equal(dup, part)
        if len(part):
            dup["t"][0] += 1  # a new array: the input is untouched
            assert dup["t"][0] != part["t"][0]
            assert not np.shares_memory(out, part)
