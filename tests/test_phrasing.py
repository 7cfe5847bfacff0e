"""Tests of analysis.phrasing: column-wise text equals ``str.format`` row by row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from analysis.phrasing import (
    Rows,
    cases,
    concat,
    day,
    fill,
    integers,
    join,
    lookup,
    plural,
    text,
    truthy,
)

FAST = settings(max_examples=60, deadline=None)
TZ = "Asia/Shanghai"


def rowwise(template: str, frame: pd.DataFrame, aliases=None) -> list[str]:
    """``template.format_map`` over a mapping per row, values as ``Series.tolist`` gives them."""
    lists = {c: frame[c].tolist() for c in frame.columns}
    for alias, name in (aliases or {}).items():
        lists[alias] = lists[name]
    return [template.format_map({c: v[i] for c, v in lists.items()}) for i in range(len(frame))]


def formatted(values: pd.Series, spec: str = "", conversion=None) -> list[str]:
    convert = {None: lambda v: v, "r": repr, "s": str, "a": ascii}[conversion]
    return [format(convert(v), spec) for v in values.tolist()]


# --- columns of every kind the features hold, with the specs a template may use ------------

_moments = st.one_of(
    st.none(),
    st.datetimes(min_value=pd.Timestamp("1900-01-01").to_pydatetime(),
                 max_value=pd.Timestamp("2200-01-01").to_pydatetime()),
)


def _series(draw_values, dtype) -> st.SearchStrategy[pd.Series]:
    return st.lists(draw_values, max_size=30).map(lambda v: pd.Series(v, dtype=dtype))


COLUMNS = {
    "int64": (
        _series(st.integers(-(10**6), 10**6), "int64"),
        ["", "d", ",", "03d", "g", ".0%", ">6"],
    ),
    "float64": (
        _series(st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0]),
                "float64"),
        ["", "g", ".0f", ".0%", ",.2f", ".3e"],
    ),
    "bool": (_series(st.booleans(), "bool"), ["", "d"]),
    "str": (
        _series(st.none() | st.sampled_from(["", "K1", "中国银行", "a b"]), "str"),
        ["", ">8"],
    ),
    "Int64": (_series(st.none() | st.integers(-5, 5), "Int64"), [""]),
    "datetime": (_series(_moments, "datetime64[us]"), ["", "%Y-%m-%d"]),
    "datetime tz": (
        st.lists(_moments, max_size=30).map(
            lambda v: pd.Series(pd.to_datetime(v)).dt.tz_localize(TZ)
        ),
        [""],
    ),
    "object": (
        _series(
            st.none() | st.integers(-3, 3) | st.floats(-2, 2) | st.booleans() | st.text(max_size=3),
            object,
        ),
        [""],
    ),
}


@pytest.mark.parametrize("kind", list(COLUMNS))
@FAST
@given(data=st.data())
def test_text_writes_each_value_as_format_does(kind, data):
    column, specs = COLUMNS[kind]
    values = data.draw(column)
    spec = data.draw(st.sampled_from(specs))
    conversion = data.draw(st.sampled_from([None, "r"])) if spec == "" else None
    try:
        expected = formatted(values, spec, conversion)
    except (TypeError, ValueError):
        assume(False)
    got = text(values, spec, conversion)
    assert got.dtype == object and got.tolist() == expected


def test_text_keeps_zero_signs_and_missing_values_apart():
    assert text(pd.Series([0.0, -0.0, 0.0]), "g").tolist() == ["0", "-0", "0"]
    assert text(pd.Series([3, 3]), "").tolist() == ["3", "3"]
    assert text(pd.Series([3.0, 3.0]), "").tolist() == ["3.0", "3.0"]
    assert text(pd.Series(["a", None], dtype="str")).tolist() == ["a", "nan"]
    assert text(pd.Series(["a", None], dtype="string")).tolist() == ["a", "<NA>"]
    assert text(pd.Series([1, None], dtype="Int64")).tolist() == ["1", "<NA>"]
    assert text(pd.Series(["a", None], dtype=object)).tolist() == ["a", "None"]
    assert text(pd.Series([1, 1.0, True], dtype=object)).tolist() == ["1", "1.0", "True"]


@FAST
@given(
    rows=st.lists(
        st.tuples(st.integers(-50, 50), st.floats(allow_nan=True), st.none() | st.text(max_size=4)),
        max_size=25,
    ),
    template=st.lists(
        st.sampled_from(["{n}", "{n:03d}", "{x:g}", "{x:.0%}", "{s}", "{s!r}", "{t}", "{{", "}}",
                         " of ", "±", "单边账", ""]),
        max_size=8,
    ).map("".join),
)
def test_fill_equals_format_map_row_by_row(rows, template):
    f = pd.DataFrame(rows, columns=["n", "x", "s"])
    f = f.astype({"n": "int64", "x": "float64", "s": "str"})
    aliases = {"t": "s"}
    assert fill(template, f, aliases).tolist() == rowwise(template, f, aliases)
    assert fill(template, Rows(f), aliases).tolist() == rowwise(template, f, aliases)


def test_fill_of_a_template_without_fields_repeats_it():
    f = pd.DataFrame({"a": [1, 2, 3]})
    assert fill("no {{fields}}", f).tolist() == ["no {fields}"] * 3
    assert fill("x", f.iloc[:0]).tolist() == []
    with pytest.raises(KeyError):
        fill("{missing}", f)


_texts = st.lists(st.sampled_from(["", "a", "b c", "单"]), min_size=3, max_size=3)


@FAST
@given(parts=st.lists(_texts, min_size=1, max_size=4), sep=st.sampled_from(["; ", ", ", ""]))
def test_join_skips_empty_parts(parts, sep):
    arrays = [np.array(p, dtype=object) for p in parts]
    expected = [sep.join(p for p in row if p) for row in zip(*parts, strict=True)]
    before = [a.copy() for a in arrays]
    assert join(arrays, sep).tolist() == expected
    assert all((a == b).all() for a, b in zip(arrays, before, strict=True))  # inputs untouched


@FAST
@given(
    n=st.lists(st.integers(0, 3), max_size=20),
    first=st.booleans(),
)
def test_cases_takes_the_first_branch_that_holds(n, first):
    f = pd.DataFrame({"n": pd.Series(n, dtype="int64")})
    calls = []

    def build(rows):
        calls.append(len(rows))
        return concat("n=", text(rows["n"]))

    got = cases(
        f,
        (f["n"].eq(0).to_numpy(), "zero"),
        (f["n"].le(1).to_numpy(), build),
        (np.full(len(f), first), concat("all ", text(f["n"]))),
    )
    expected = [
        "zero" if v == 0 else f"n={v}" if v <= 1 else f"all {v}" if first else "" for v in n
    ]
    assert got.tolist() == expected
    assert calls == ([n.count(1)] if 1 in n else [])  # built only for its own rows


def test_truthy_is_pythons_truth_with_missing_false():
    assert truthy(pd.Series([0, 3, -1])).tolist() == [False, True, True]
    assert truthy(pd.Series([0.0, float("nan"), 0.5])).tolist() == [False, True, True]
    assert truthy(pd.Series(["", "x", None], dtype=object)).tolist() == [False, True, False]
    assert truthy(pd.Series([1, None, 0], dtype="Int64")).tolist() == [True, False, False]


@FAST
@given(counts=st.lists(st.integers(-3, 3) | st.floats(-3, 3), max_size=20))
def test_plural_and_integers_use_int_of_the_value(counts):
    s = pd.Series(counts, dtype="float64")
    assert integers(s).tolist() == [str(int(v)) for v in counts]
    assert plural(s, "time").tolist() == [
        f"{int(v)} time{'' if int(v) == 1 else 's'}" for v in counts
    ]


@FAST
@given(moments=st.lists(_moments, max_size=20), tz=st.booleans())
def test_day_is_the_calendar_day_in_the_values_zone(moments, tz):
    s = pd.Series(pd.to_datetime(moments), dtype="datetime64[us]")
    if tz:
        s = s.dt.tz_localize(TZ)
    expected = ["" if pd.isna(v) else str(pd.Timestamp(v).date()) for v in s.tolist()]
    assert day(s).tolist() == expected
    assert expected == s.dt.strftime("%Y-%m-%d").fillna("").tolist()


def test_lookup_maps_each_distinct_value_once():
    seen = []

    def meaning(code):
        seen.append(code)
        return {"51": "funds"}.get(code, "unlisted")

    s = pd.Series(["51", None, "51", "05"], dtype="str")
    assert lookup(s, meaning).tolist() == ["funds", "unlisted", "funds", "unlisted"]
    assert len(seen) == 3


def test_rows_read_columns_and_derived_values_for_their_rows_only():
    f = pd.DataFrame(
        {"a": [1, 2, 3, 4], "s": pd.Series(["w", None, "y", "z"], dtype=object)}
    ).set_axis([10, 11, 12, 13])
    calls = []

    def doubled(rows):
        calls.append(len(rows))
        return rows["a"] * 2

    rows = Rows(f, np.array([3, 1, 0]), {"a2": doubled})
    assert len(rows) == 3 and rows["a"].tolist() == [4, 2, 1]
    assert rows["s"].tolist() == ["z", None, "w"]  # object columns keep None
    assert rows["a"].index.equals(pd.RangeIndex(3)) and rows["a2"].index.equals(pd.RangeIndex(3))
    assert (rows["a"] + rows["a2"]).tolist() == [12, 6, 3]
    sub = rows.take([2, 0])
    assert sub["a2"].tolist() == [2, 8] and sub["s"].tolist() == ["w", "z"]
    assert calls == [3]  # the subset took the value its parent had derived
    assert Rows(f)["a"].tolist() == [1, 2, 3, 4] and Rows(f)["a"].index.equals(pd.RangeIndex(4))
    assert Rows(f, np.array([1]), {"a2": doubled}).take([0])["a2"].tolist() == [4]
    assert calls == [3, 1]  # derived for the subset's own rows when its parent had not


def test_builders_give_the_same_text_on_a_frame_and_on_its_rows():
    f = pd.DataFrame({"n": [0, 1, 2, 5], "k": ["K1", "K2", "K1", "K9"]})

    def phrase(g):
        return cases(
            g,
            (
                truthy(g["n"]),
                lambda h: concat("terminal ", text(h["k"]), ": ", plural(h["n"], "error")),
            ),
        )

    expected = ["", "terminal K2: 1 error", "terminal K1: 2 errors", "terminal K9: 5 errors"]
    assert phrase(f).tolist() == expected
    assert phrase(Rows(f)).tolist() == expected
    assert phrase(Rows(f, np.array([3, 0]))).tolist() == [expected[3], expected[0]]
