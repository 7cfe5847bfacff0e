"""Multi-dimensional root-cause localization of an excess incident rate (RiskLoc).

Given leaves -- one row per combination of attribute values (network segment,
terminal model, firmware, connection, cluster, MCC, district...) with the
incidents observed, the incidents expected and the transaction volume -- find the
few attribute combinations (*root causes*) such as ``{network_segment:
CT-PD-0231}`` or ``{model: P10, firmware: 2.1}`` that best explain the excess.

Method
------
RiskLoc: M. Kalander, "RiskLoc: Localization of Multi-dimensional Root Causes
by Weighted Risk", arXiv:2205.10004 (2022). Notation: per leaf ``v`` actual and
``f`` expected incidents; an *element* is an attribute combination (``{model:
P10}``), a *cuboid* the set of attributes it fixes, its *layer* their number.

1. **Deviation score** (Squeeze's relative deviation, Li et al. 2019)
   ``d = 2 (f - v) / (f + v)``, 0 when ``f = v = 0``. Under the *generalized
   ripple effect* every leaf under one root cause changes by the same ratio and
   so has the same ``d``.
2. **Two-way partition.** Oriented so the anomaly side is positive (``s = -d``
   for an excess of incidents), normal leaves are assumed symmetric around 0, so
   the most extreme value on the *other* side estimates the noise amplitude:
   the cutoff is ``t = -min(s)``, made robust by skipping the ``n_remove`` most
   extreme distinct values (never past the last ``s <= 0``). Leaves with
   ``s > t`` form the abnormal partition.
3. **Weights** grow linearly with the distance from the partitioning point:
   ``w = min(|s|, 1)`` for abnormal leaves, ``w = min(|t - s|, 1)`` for normal
   ones (0 for an empty leaf, ``v = f = 0``).
4. **Risk** of an element ``E``: ``r1 = W_abn / (W_abn + W_norm + 1)``, the
   weighted share of its leaves in the abnormal partition (the ``+1`` keeps a
   lone leaf from being certain), minus ``r2``, the ripple-effect check: with
   ``k = sum(v) / sum(f)`` over ``E``'s leaves (``v, f > 0``), each leaf's value
   expected if the whole element had changed by the same ratio is ``a = k f``;
   ``r2 = mean|2 (a - v) / (a + v)| / mean|d|``, near 0 for a true root cause
   and large when ``E`` mixes changed and unchanged leaves. ``score = r1 - r2``.
5. **Search.** Layer by layer (1 attribute, then pairs, ... up to
   ``max_set_size``): among elements with at least one abnormal leaf, explanatory
   power above ``pep_threshold`` of the abnormal excess and ``score >=
   risk_threshold``, take the one with the largest explanatory power in the
   lowest layer that has any. Remove its leaves and repeat while the remaining
   abnormal excess is at least ``pep_threshold`` of the original.

Rates (derived measures)
------------------------
The incident *rate* ``incidents / transactions`` is a derived measure. RiskLoc
(like Squeeze) handles a derived measure ``a / b`` through its fundamental
measures: deviations are taken on the derived values and the explanatory power
with the derived-measure formula of Adtributor (Bhagwan et al., NSDI 2014).
Here, with ``a`` = incidents and ``b`` = transactions:

* the deviation is that of the rate, ``d = 2 (f_a/f_b - v_a/v_b) / (f_a/f_b +
  v_a/v_b)``, which equals the deviation of the incident count ``v_a`` from the
  *volume-adjusted expectation* ``g = f_a v_b / f_b`` (``f_b`` = expected volume);
* the explanatory power is the derived-measure formula
  ``ep = [(v_a - f_a) F_b - (v_b - f_b) F_a] / [F_b (F_b + v_b - f_b)]``
  (``F`` = totals), here scaled by ``F_b`` so it reads in incidents;
* the ripple check compares each leaf's ``v_a`` with ``k g`` where ``k = sum(v_a)
  / sum(g)`` is the element's relative risk (same as comparing rates).

When the expected incidents are already given at the observed volume
(``expected_volume=None``, e.g. from :func:`expected_from_baseline`, ``expected =
transactions x baseline rate``) then ``f_b = v_b``, ``g = f_a`` and ``ep = v_a -
f_a``: a leaf with twice the transactions is expected to have twice the
incidents, so volume alone never makes a root cause; only the count of incidents
relative to what the volume predicts does.

Statistical guard (addition to the paper)
-----------------------------------------
RiskLoc assumes an anomaly has already been detected in the total, and with
sparse counts a lone leaf with 3 incidents where 0.5 were expected can reach
``score = 0.5``. A root cause must therefore also have a one-sided Poisson
p-value, ``P(X >= v | X ~ Poisson(g))`` over its leaves, below ``alpha`` after a
Bonferroni correction over every element that the search could consider.
``alpha=None`` gives the paper's method alone.

Limitations
-----------
* Sparse leaves (a few expected incidents each) make relative deviations noisy
  (0 incidents gives ``d = 2``); a real fault may then come out as several
  sub-combinations. The result carries a note when the median expected count
  per leaf is below 5: aggregate (fewer dims, longer period).
* An excess on every leaf (a city-wide cause) is reported through a note, not as
  a root cause; the search starts at one attribute.
* Root causes are found greedily; a later one is scored on the leaves not
  explained by earlier ones (its reported incidents cover all its leaves).

Examples
--------
>>> import pandas as pd
>>> leaves = pd.DataFrame({
...     "segment": ["X", "X", "Y", "Y", "Z", "Z"],
...     "model":   ["A", "B", "A", "B", "A", "B"],
...     "incidents":    [60, 58, 10, 11, 9, 10],
...     "expected":     [10, 10, 10, 10, 10, 10],
...     "transactions": [1000] * 6,
... })
>>> loc = localize(leaves, ["segment", "model"], n_remove=0)
>>> loc.root_causes.loc[0, "root_cause"]
'segment=X'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.special import gammainc, gammaincc

__all__ = ["Localization", "expected_from_baseline", "localize"]

CITATION = (
    "Kalander, M. (2022). RiskLoc: Localization of Multi-dimensional Root Causes by "
    "Weighted Risk. arXiv:2205.10004"
)

#: internal column names (measures are renamed to these while computing)
_V, _F, _G, _VOL, _FVOL = "_v", "_f", "_g", "_vol", "_fvol"
_MISSING = "(missing)"
#: below this median expected count per leaf the result carries a sparsity note
SPARSE_EXPECTED = 5.0

ROOT_CAUSE_COLUMNS = (
    "rank",
    "root_cause",
    "attributes",
    "layer",
    "score",
    "r1",
    "r2",
    "incidents",
    "expected",
    "excess",
    "transactions",
    "rate",
    "baseline_rate",
    "relative_risk",
    "explained_share",
    "p_value",
    "n_leaves",
    "n_abnormal_leaves",
)


# =========================================================================== helpers


def _deviation(v: np.ndarray | pd.Series, g: np.ndarray | pd.Series) -> np.ndarray:
    """Squeeze/RiskLoc relative deviation ``2 (g - v) / (g + v)``, 0 where both are 0."""
    v, g = np.asarray(v, dtype=float), np.asarray(g, dtype=float)
    den = g + v
    return np.divide(2 * (g - v), den, out=np.zeros_like(den), where=den > 0)


def _poisson_tail(v: np.ndarray, g: np.ndarray, up: bool) -> np.ndarray:
    """One-sided Poisson p-value: ``P(X >= v)`` (up) or ``P(X <= v)`` (down), X ~ Poisson(g).

    Uses the regularized incomplete gamma function, so non-integer counts are accepted.
    """
    v, g = np.asarray(v, dtype=float), np.asarray(g, dtype=float)
    if up:
        return np.where(v <= 0, 1.0, gammainc(np.maximum(v, 1e-300), g))
    return np.where(g <= 0, 1.0, gammaincc(v + 1.0, g))


def _label(attributes: Mapping[str, str]) -> str:
    """``"network_segment=CT-PD-0231 & model=P10"``."""
    return " & ".join(f"{k}={v}" for k, v in attributes.items())


def _check_measures(df: pd.DataFrame, columns: Sequence[str]) -> None:
    for c in columns:
        x = pd.to_numeric(df[c], errors="coerce")
        bad = int((x.isna() | (x < 0)).sum())
        if bad:
            raise ValueError(
                f"column {c!r} must hold non-negative numbers, found {bad} missing, "
                f"non-numeric or negative values; fill or drop those leaves"
            )


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what} needs columns {list(columns)}; missing {missing} "
            f"(found {list(df.columns)})"
        )


def _canonical_leaves(
    leaves: pd.DataFrame, dims: Sequence[str], measures: Mapping[str, str]
) -> pd.DataFrame:
    """Attribute values as strings, measures as floats, duplicate leaves summed, sorted.

    Summing and sorting make every later step independent of the input row order.
    """
    _require(leaves, [*dims, *measures], "localize")
    _check_measures(leaves, list(measures))
    df = pd.DataFrame({d: leaves[d].astype("string").fillna(_MISSING).astype(str) for d in dims})
    for src, dst in measures.items():
        df[dst] = pd.to_numeric(leaves[src]).astype(float).to_numpy()
    return df.groupby(list(dims), sort=True, as_index=False)[list(measures.values())].sum()


# =========================================================================== leaf scores


def _oriented(d: np.ndarray, direction: str, n_remove: int) -> tuple[np.ndarray, float, str]:
    """Orient deviations so the anomaly side is positive; return (s, cutoff t, direction)."""
    if direction == "auto":
        t_up, t_down = _cutoff(-d, n_remove), _cutoff(d, n_remove)
        direction = "up" if abs(t_up) <= abs(t_down) else "down"
    s = -d if direction == "up" else d
    return s, _cutoff(s, n_remove), direction


def _cutoff(s: np.ndarray, n_remove: int) -> float:
    """``t = -(the (k+1)-th smallest distinct s)``, k = min(n_remove, #distinct(s <= 0) - 1)."""
    distinct = np.unique(s)
    if distinct.size == 0:
        return 0.0
    k = int(np.clip(min(n_remove, (distinct <= 0).sum() - 1), 0, distinct.size - 1))
    return float(-distinct[k])


def _explanatory_power(df: pd.DataFrame) -> np.ndarray:
    """Derived-measure explanatory power, in incidents (``v - f`` when f_b = v_b)."""
    excess = (df[_V] - df[_F]).to_numpy()
    F_a, F_b = df[_F].sum(), df[_FVOL].sum()
    if F_b <= 0:
        return excess
    dv_b = (df[_VOL] - df[_FVOL]).to_numpy()
    return (excess - dv_b * F_a / F_b) / (1.0 + dv_b / F_b)


def _score_leaves(
    df: pd.DataFrame, direction: str, n_remove: int
) -> tuple[pd.DataFrame, float, str]:
    """Add deviation, abnormal flag, weight and explanatory power per leaf (steps 1-3)."""
    d = _deviation(df[_V], df[_G])
    s, t, direction = _oriented(d, direction, n_remove)
    abnormal = s > t
    empty = (df[_V].to_numpy() == 0) & (df[_G].to_numpy() == 0)
    weight = np.where(abnormal, np.abs(s), np.where(empty, 0.0, np.abs(t - s)))
    sign = 1.0 if direction == "up" else -1.0
    out = df.assign(
        deviation=d,
        abnormal=abnormal,
        weight=np.minimum(weight, 1.0),
        ep=sign * _explanatory_power(df),
    )
    return out, t, direction


# =========================================================================== element scores


def _element_table(df: pd.DataFrame, cuboid: list[str], up: bool) -> pd.DataFrame:
    """Every element of one cuboid over the leaves in ``df``: sums, r1, r2, score, p (step 4)."""
    valid = (df[_V] > 0) & (df[_G] > 0)
    w = df["weight"]
    parts = df[cuboid].assign(
        **{c: df[c] for c in (_V, _G, _VOL, "ep")},
        w_abn=w.where(df["abnormal"], 0.0),
        w_norm=w.where(~df["abnormal"], 0.0),
        n_abn=df["abnormal"].astype(int),
        n=1,
        _vv=df[_V].where(valid, 0.0),
        _gv=df[_G].where(valid, 0.0),
        _absd=np.abs(df["deviation"]).where(valid, 0.0),
    )
    grouped = parts.groupby(cuboid, sort=True)
    k = grouped["_vv"].transform("sum") / grouped["_gv"].transform("sum")
    ripple = np.abs(_deviation(parts[_V], k.fillna(0.0) * parts[_G]))
    parts["_absa"] = np.where(valid, ripple, 0.0)
    e = parts.groupby(cuboid, sort=True).sum(numeric_only=True).reset_index()
    e["r1"] = e["w_abn"] / (e["w_abn"] + e["w_norm"] + 1.0)
    e["r2"] = np.divide(e["_absa"], e["_absd"], out=np.zeros(len(e)), where=e["_absd"] > 0)
    e["score"] = e["r1"] - e["r2"]
    e["p_value"] = _poisson_tail(e[_V].to_numpy(), e[_G].to_numpy(), up)
    e["attributes"] = [dict(zip(cuboid, vals)) for vals in e[cuboid].itertuples(index=False)]
    return e.drop(columns=cuboid + ["_vv", "_gv", "_absd", "_absa"])


def _cuboids(dims: Sequence[str], layer: int) -> list[list[str]]:
    return [list(c) for c in combinations(dims, layer)]


# =========================================================================== search


@dataclass(frozen=True)
class _Search:
    """Search settings shared by every iteration."""

    dims: tuple[str, ...]
    max_set_size: int
    risk_threshold: float
    ep_threshold: float
    alpha: float | None
    n_tests: int
    up: bool


def _passing(e: pd.DataFrame, cfg: _Search) -> pd.DataFrame:
    keep = (e["n_abn"] > 0) & (e["ep"] > cfg.ep_threshold) & (e["score"] >= cfg.risk_threshold)
    if cfg.alpha is not None:
        keep &= np.minimum(e["p_value"] * cfg.n_tests, 1.0) < cfg.alpha
    return e[keep]


def _best_element(df: pd.DataFrame, cfg: _Search) -> pd.Series | None:
    """The next root cause: highest explanatory power in the lowest layer with a passing element."""
    for layer in range(1, cfg.max_set_size + 1):
        tables = [_passing(_element_table(df, c, cfg.up), cfg) for c in _cuboids(cfg.dims, layer)]
        tables = [t for t in tables if len(t)]
        if tables:
            found = pd.concat(tables, ignore_index=True)
            found = found.assign(layer=layer, root_cause=found["attributes"].map(_label))
            return found.sort_values(["ep", "root_cause"], ascending=[False, True]).iloc[0]
    return None


def _mask(df: pd.DataFrame, attributes: Mapping[str, str]) -> np.ndarray:
    return np.logical_and.reduce([df[k].to_numpy() == v for k, v in attributes.items()])


def _search(df: pd.DataFrame, cfg: _Search, max_root_causes: int) -> list[pd.Series]:
    """Step 5: repeat the layer-wise search, removing each root cause's leaves."""
    found: list[pd.Series] = []
    remaining = df
    while len(found) < max_root_causes:
        if remaining.loc[remaining["abnormal"], "ep"].sum() < max(cfg.ep_threshold, 1e-12):
            break
        best = _best_element(remaining, cfg)
        if best is None:
            break
        found.append(best)
        remaining = remaining[~_mask(remaining, best["attributes"])]
    return found


def _root_cause_table(found: list[pd.Series], leaves: pd.DataFrame, excess: float) -> pd.DataFrame:
    """Ranked root causes; incident figures over *all* their leaves, shares as found."""
    rows = []
    for rank, b in enumerate(found, 1):
        sel = leaves[_mask(leaves, b["attributes"])]
        v, g, vol = sel[_V].sum(), sel[_G].sum(), sel[_VOL].sum()
        rows.append(
            {
                "rank": rank,
                "root_cause": b["root_cause"],
                "attributes": dict(b["attributes"]),
                "layer": int(b["layer"]),
                "score": float(b["score"]),
                "r1": float(b["r1"]),
                "r2": float(b["r2"]),
                "incidents": float(v),
                "expected": float(g),
                "excess": float(v - g),
                "transactions": float(vol),
                "rate": v / vol if vol > 0 else np.nan,
                "baseline_rate": g / vol if vol > 0 else np.nan,
                "relative_risk": v / g if g > 0 else np.inf,
                "explained_share": float(b["ep"]) / excess if excess > 0 else np.nan,
                "p_value": float(b["p_value"]),
                "n_leaves": int(len(sel)),
                "n_abnormal_leaves": int(sel["abnormal"].sum()),
            }
        )
    return pd.DataFrame(rows, columns=list(ROOT_CAUSE_COLUMNS))


def _n_tests(df: pd.DataFrame, dims: Sequence[str], max_set_size: int) -> int:
    """Number of elements the search could test (the Bonferroni factor)."""
    return int(
        sum(
            len(df[c].drop_duplicates())
            for layer in range(1, max_set_size + 1)
            for c in _cuboids(dims, layer)
        )
    )


# =========================================================================== public API


def localize(
    leaves: pd.DataFrame,
    dims: Sequence[str],
    *,
    actual: str = "incidents",
    expected: str = "expected",
    volume: str = "transactions",
    expected_volume: str | None = None,
    max_set_size: int = 3,
    risk_threshold: float = 0.5,
    pep_threshold: float = 0.02,
    n_remove: int = 5,
    alpha: float | None = 0.01,
    direction: Literal["up", "down", "auto"] = "up",
    max_root_causes: int = 10,
) -> "Localization":
    """Find the attribute combinations that explain an excess incident rate (RiskLoc).

    Parameters
    ----------
    leaves : pandas.DataFrame
        One row per leaf (duplicates of the same attribute combination are summed):
        the ``dims`` columns plus the measures below. Missing attribute values
        become ``"(missing)"``.
    dims : list of str
        Attribute columns to search, e.g. ``["network_segment", "model", "firmware",
        "connection", "cluster_id"]``.
    actual : str, default "incidents"
        Observed incidents per leaf (additive, >= 0).
    expected : str, default "expected"
        Expected incidents per leaf -- a forecast, or transactions x baseline rate
        (:func:`expected_from_baseline`).
    volume : str, default "transactions"
        Observed transactions per leaf (the rate's denominator).
    expected_volume : str, optional
        Transactions the ``expected`` incidents refer to, when that is not the
        observed volume (a forecast of both); ``None`` means ``expected`` is already
        at the observed volume.
    max_set_size : int, default 3
        Most attributes in one root cause (the deepest layer searched).
    risk_threshold : float, default 0.5
        Smallest ``score = r1 - r2`` of a root cause (the paper's default).
    pep_threshold : float, default 0.02
        Smallest share of the abnormal excess a root cause must explain; the
        search stops when less than this share remains unexplained.
    n_remove : int, default 5
        Extreme distinct deviations skipped when setting the cutoff.
    alpha : float or None, default 0.01
        Family-wise level of the Poisson guard (see module docstring); ``None``
        turns it off.
    direction : {"up", "down", "auto"}, default "up"
        ``"up"`` localizes an excess of incidents, ``"down"`` a deficit,
        ``"auto"`` lets the cutoff rule decide.
    max_root_causes : int, default 10
        Stop after this many.

    Returns
    -------
    Localization

    Raises
    ------
    ValueError
        Missing columns, negative or non-numeric measures, bad parameters.

    Examples
    --------
    >>> import pandas as pd
    >>> leaves = pd.DataFrame({"seg": ["X", "Y", "Z", "W"], "incidents": [40, 10, 9, 11],
    ...                        "expected": [10.0] * 4, "transactions": [2000] * 4})
    >>> localize(leaves, ["seg"], n_remove=0).root_causes[["root_cause", "excess"]].values.tolist()
    [['seg=X', 30.0]]
    """
    dims = tuple(dims)
    if not dims or len(set(dims)) != len(dims):
        raise ValueError(f"dims must be a non-empty list of distinct columns, got {list(dims)}")
    if direction not in ("up", "down", "auto"):
        raise ValueError(f"direction must be 'up', 'down' or 'auto', got {direction!r}")
    if max_set_size < 1:
        raise ValueError(f"max_set_size must be >= 1, got {max_set_size}")
    measures = {actual: _V, expected: _F, volume: _VOL}
    if expected_volume is not None:
        measures[expected_volume] = _FVOL
    df = _canonical_leaves(leaves, dims, measures)
    if expected_volume is None:
        df[_FVOL] = df[_VOL]
    ratio = np.divide(df[_VOL], df[_FVOL], out=np.ones(len(df)), where=df[_FVOL] > 0)
    df[_G] = df[_F] * ratio  # expected incidents at the observed volume

    scored, cutoff, direction = _score_leaves(df, direction, n_remove)
    total_ep = float(scored.loc[scored["abnormal"], "ep"].sum())
    cfg = _Search(
        dims=dims,
        max_set_size=min(max_set_size, len(dims)),
        risk_threshold=risk_threshold,
        ep_threshold=pep_threshold * max(total_ep, 0.0),
        alpha=alpha,
        n_tests=_n_tests(scored, dims, min(max_set_size, len(dims))),
        up=direction == "up",
    )
    found = _search(scored, cfg, max_root_causes) if total_ep > 0 else []
    net = float(scored["ep"].sum())
    # a net excess that is float noise (expected summing exactly to observed) is no excess
    excess = net if net > 1e-9 * max(total_ep, 0.0) and net > 0 else total_ep
    notes = _notes(scored, total_ep, found, max_root_causes)
    params = {
        "method": "RiskLoc",
        "citation": CITATION,
        "dims": list(dims),
        "max_set_size": cfg.max_set_size,
        "risk_threshold": risk_threshold,
        "pep_threshold": pep_threshold,
        "n_remove": n_remove,
        "alpha": alpha,
        "bonferroni_tests": cfg.n_tests,
        "direction": direction,
        "measures": {"actual": actual, "expected": expected, "volume": volume,
                     "expected_volume": expected_volume},
    }
    return Localization(
        root_causes=_root_cause_table(found, scored, excess),
        leaves=_public_leaves(scored, dims),
        cutoff=cutoff,
        excess=excess,
        abnormal_excess=total_ep,
        params=params,
        notes=notes,
        _scored=scored,
    )


def _public_leaves(scored: pd.DataFrame, dims: Sequence[str]) -> pd.DataFrame:
    return scored.rename(
        columns={_V: "incidents", _G: "expected", _VOL: "transactions", "ep": "excess"}
    )[[*dims, "incidents", "expected", "transactions", "deviation", "abnormal", "weight", "excess"]]


def _notes(
    scored: pd.DataFrame, total_ep: float, found: list, max_root_causes: int
) -> tuple[str, ...]:
    notes = []
    if total_ep <= 0:
        notes.append("no leaf is beyond the cutoff in the anomaly direction: nothing to localize")
    elif not found:
        notes.append("no attribute combination passes the risk threshold and the Poisson guard")
    if len(scored) and scored["abnormal"].all():
        notes.append(
            "every leaf is abnormal: a cause common to all (scope 'all') is more likely "
            "than any single attribute value"
        )
    typical = float(scored[_G].median()) if len(scored) else 0.0
    if typical < SPARSE_EXPECTED:
        notes.append(
            f"sparse leaves (median expected incidents per leaf {typical:.1f} < "
            f"{SPARSE_EXPECTED:g}): deviation scores are noisy and a fault may come out split "
            "into sub-combinations; use fewer dims or a longer period"
        )
    if len(found) == max_root_causes:
        notes.append(f"stopped after max_root_causes={max_root_causes}")
    return tuple(notes)


# =========================================================================== result


@dataclass(frozen=True)
class Localization:
    """Root causes of an incident-rate anomaly, ranked as RiskLoc finds them.

    Attributes
    ----------
    root_causes : pandas.DataFrame
        One row per root cause, in the order found (``rank`` 1 first): ``root_cause``
        (``"network_segment=CT-PD-0231 & model=P10"``), ``attributes`` (dict),
        ``layer`` (number of attributes), ``score`` (= ``r1 - r2``), ``r1``, ``r2``;
        over all leaves of the combination: ``incidents, expected, excess`` (=
        incidents - expected), ``transactions, rate, baseline_rate`` (expected /
        transactions), ``relative_risk`` (incidents / expected), ``p_value``
        (one-sided Poisson, uncorrected), ``n_leaves, n_abnormal_leaves``; and
        ``explained_share``: the share of ``excess`` this root cause explains beyond
        those ranked above it (its explanatory power over the leaves not yet
        explained when it was found).
    leaves : pandas.DataFrame
        Per leaf: the dims, ``incidents, expected`` (at the observed volume),
        ``transactions, deviation, abnormal, weight, excess`` (explanatory power).
    cutoff : float
        The partitioning point ``t`` on the oriented deviation.
    excess : float
        The excess being explained, in incidents: the net explanatory power over
        all leaves (actual - expected, summed, in the anomaly direction); the
        abnormal partition's excess when the net is not positive.
    abnormal_excess : float
        Excess incidents in the abnormal partition (the explanatory-power total).
    params : dict
        Settings, the method and its citation.
    notes : tuple of str
        What a reader should know (e.g. nothing found, every leaf abnormal).
    """

    root_causes: pd.DataFrame
    leaves: pd.DataFrame
    cutoff: float
    excess: float
    abnormal_excess: float
    params: Mapping[str, Any]
    notes: tuple[str, ...] = ()
    _scored: pd.DataFrame = field(default=None, repr=False, compare=False)

    def scores(self, attributes: Sequence[str]) -> pd.DataFrame:
        """RiskLoc scores of every element of one cuboid, over all leaves.

        Useful to see why a candidate was not chosen (e.g. ``model=A`` alone when
        the root cause is ``model=A & firmware=2.1``).

        Parameters
        ----------
        attributes : list of str
            The cuboid, e.g. ``["model"]`` or ``["model", "firmware"]``.

        Returns
        -------
        pandas.DataFrame
            ``root_cause, attributes, score, r1, r2, excess, p_value, n_leaves,
            n_abnormal_leaves, w_abnormal, w_normal`` sorted by score, highest first.

        Examples
        --------
        >>> import pandas as pd
        >>> leaves = pd.DataFrame({"seg": ["X", "Y"], "incidents": [30, 10],
        ...                        "expected": [10.0, 10.0], "transactions": [1000, 1000]})
        >>> loc = localize(leaves, ["seg"], n_remove=0, alpha=None)
        >>> loc.scores(["seg"])[["root_cause", "r1"]].values.tolist()
        [['seg=X', 0.5], ['seg=Y', 0.0]]
        """
        unknown = [a for a in attributes if a not in self.params["dims"]]
        if unknown:
            raise ValueError(f"attributes {unknown} are not among the dims {self.params['dims']}")
        e = _element_table(self._scored, list(attributes), self.params["direction"] == "up")
        e = e.assign(root_cause=e["attributes"].map(_label))
        out = e.rename(
            columns={"ep": "excess", "n": "n_leaves", "n_abn": "n_abnormal_leaves",
                     "w_abn": "w_abnormal", "w_norm": "w_normal"}
        )
        cols = ["root_cause", "attributes", "score", "r1", "r2", "excess", "p_value",
                "n_leaves", "n_abnormal_leaves", "w_abnormal", "w_normal"]
        return out.sort_values(["score", "root_cause"], ascending=[False, True])[cols].reset_index(
            drop=True
        )

    def summary(self) -> str:
        """The root causes as a short text a person can check.

        Examples
        --------
        >>> import pandas as pd
        >>> leaves = pd.DataFrame({"seg": ["X", "Y", "Z"], "incidents": [50, 10, 10],
        ...                        "expected": [10.0] * 3, "transactions": [1000] * 3})
        >>> print(localize(leaves, ["seg"], n_remove=0).summary().splitlines()[0])
        RiskLoc: 1 root cause over 3 leaves (dims: seg)
        """
        rc = self.root_causes
        n = len(rc)
        lines = [
            f"RiskLoc: {n} root cause{'s' * (n != 1)} over {len(self.leaves)} leaves "
            f"(dims: {', '.join(self.params['dims'])})"
        ]
        for r in rc.itertuples():
            lines.append(
                f"  {r.rank}. {r.root_cause}: {r.incidents:g} incidents vs "
                f"{r.expected:.1f} expected "
                f"(rate {r.rate:.4f} vs {r.baseline_rate:.4f}, x{r.relative_risk:.1f}), "
                f"score {r.score:.2f}, explains {r.explained_share:.0%} of the excess"
            )
        if n:
            lines.append(
                f"  together: {rc['explained_share'].sum():.0%} of {self.excess:.1f} "
                "excess incidents"
            )
        lines += [f"  note: {x}" for x in self.notes]
        lines.append(f"  method: {self.params['citation']}")
        return "\n".join(lines)

    def plot(self, ax=None, top: int = 10):
        """Bar chart of the top root causes: expected and excess incidents.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new figure is created when omitted.
        top : int, default 10
            Most root causes shown.

        Returns
        -------
        matplotlib.axes.Axes

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import pandas as pd
        >>> leaves = pd.DataFrame({"seg": ["X", "Y", "Z"], "incidents": [50, 10, 10],
        ...                        "expected": [10.0] * 3, "transactions": [1000] * 3})
        >>> ax = localize(leaves, ["seg"], n_remove=0).plot()
        >>> ax.get_xlabel()
        'incidents in the period'
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(8, 0.6 * max(3, min(top, len(self.root_causes))) + 1.5))
        rc = self.root_causes.head(top).iloc[::-1]
        y = np.arange(len(rc))
        up = self.params["direction"] == "up"
        base = np.minimum(rc["incidents"], rc["expected"])
        ax.barh(y, base, color="0.75", label="expected incidents" if up else "actual incidents")
        ax.barh(y, rc["excess"].abs(), left=base, color="tab:red" if up else "tab:blue",
                label="excess incidents (actual − expected)" if up
                else "missing incidents (expected − actual)")
        for yi, r in zip(y, rc.itertuples()):
            ax.annotate(f" ×{r.relative_risk:.2f}, score {r.score:.2f}, {r.explained_share:.0%}",
                        xy=(max(r.incidents, r.expected), yi), va="center", fontsize=8)
        ax.set_yticks(y, rc["root_cause"].tolist())
        ax.set_xlabel("incidents in the period")
        ax.set_title(
            f"Root causes of the excess incident rate (RiskLoc): {len(self.root_causes)} found"
            if len(rc) else "RiskLoc: no root cause found"
        )
        if not len(rc):
            ax.text(0.5, 0.5, "no root cause passes the thresholds", ha="center",
                    va="center", transform=ax.transAxes)
        ax.legend(loc="lower right", fontsize=8)
        ax.margins(x=0.25)
        return ax


# =========================================================================== expected incidents


def expected_from_baseline(
    current: pd.DataFrame,
    baseline: pd.DataFrame,
    dims: Sequence[str],
    *,
    actual: str = "incidents",
    volume: str = "transactions",
    prior_volume: float | None = None,
    out: str = "expected",
) -> pd.DataFrame:
    """Expected incidents per leaf from a baseline period's rate, shrunk for sparse leaves.

    Each leaf's baseline rate is an empirical-Bayes (Poisson-gamma) estimate that
    pulls sparse leaves toward the global baseline rate ``r0`` (Marshall 1991,
    "Mapping disease and mortality rates using empirical Bayes estimators",
    Applied Statistics 40:283-294)::

        rate_i = (y_i + n0 * r0) / (n_i + n0)
        n0     = r0 / A,   A = max(s2 - r0 / n_mean, 0)
        s2     = sum n_i (y_i / n_i - r0)^2 / sum n_i

    with ``y_i, n_i`` the leaf's baseline incidents and transactions: ``A`` is the
    between-leaf variance of true rates (method of moments), ``n0`` a pseudo-volume.
    A leaf with many transactions keeps about its own rate, a sparse one gets
    about ``r0``, a leaf missing from the baseline gets ``r0``. The current
    period's expected incidents are ``transactions x rate_i``.

    Parameters
    ----------
    current, baseline : pandas.DataFrame
        Leaves of the period analysed and of a normal reference period, each with
        the ``dims`` columns, ``actual`` and ``volume`` (baseline rows with the same
        attribute values, e.g. one per day, are summed).
    dims : list of str
        The attribute columns that define a leaf.
    actual, volume : str
        Incident and transaction columns.
    prior_volume : float, optional
        Fix ``n0`` instead of estimating it (0: no shrinkage; ``numpy.inf``: the
        global rate for every leaf).
    out : str, default "expected"
        Name of the added column.

    Returns
    -------
    pandas.DataFrame
        ``current`` (same rows and order) with ``out`` and ``baseline_rate`` added.
        If the baseline has no incident at all, ``r0`` is half an incident over
        its volume, so nothing is expected to be exactly 0.

    Examples
    --------
    >>> import pandas as pd
    >>> base = pd.DataFrame({"seg": ["X", "Y"], "incidents": [10, 30],
    ...                      "transactions": [1000, 1000]})
    >>> cur = pd.DataFrame({"seg": ["X", "Y", "Z"], "transactions": [2000] * 3})
    >>> expected_from_baseline(cur, base, ["seg"], prior_volume=0)["expected"].tolist()
    [20.0, 60.0, 40.0]
    """
    dims = list(dims)
    _require(current, [*dims, volume], "expected_from_baseline (current)")
    _require(baseline, [*dims, actual, volume], "expected_from_baseline (baseline)")
    _check_measures(baseline, [actual, volume])
    _check_measures(current, [volume])
    key = {d: baseline[d].astype("string").fillna(_MISSING).astype(str) for d in dims}
    b = pd.DataFrame(key).assign(
        y=pd.to_numeric(baseline[actual]).astype(float).to_numpy(),
        n=pd.to_numeric(baseline[volume]).astype(float).to_numpy(),
    ).groupby(dims, sort=True)[["y", "n"]].sum()
    if b["n"].sum() <= 0:
        raise ValueError(f"the baseline has no volume (column {volume!r} sums to 0); "
                         "choose a baseline period with transactions")
    r0 = max(b["y"].sum(), 0.5) / b["n"].sum()
    n0 = _prior_volume(b, r0) if prior_volume is None else float(prior_volume)
    if np.isinf(n0):
        rate = pd.Series(r0, index=b.index)
    else:
        rate = (b["y"] + n0 * r0) / (b["n"] + n0)
        rate = rate.where(b["n"] + n0 > 0, r0)
    cur_key = pd.MultiIndex.from_frame(
        pd.DataFrame({d: current[d].astype("string").fillna(_MISSING).astype(str) for d in dims})
    )
    leaf_rate = rate.reindex(cur_key).fillna(r0).to_numpy()
    return current.assign(
        **{out: pd.to_numeric(current[volume]).astype(float).to_numpy() * leaf_rate,
           "baseline_rate": leaf_rate}
    )


def _prior_volume(b: pd.DataFrame, r0: float) -> float:
    """Marshall's method-of-moments pseudo-volume ``n0 = r0 / A`` (inf when A = 0)."""
    seen = b[b["n"] > 0]
    s2 = float((seen["n"] * (seen["y"] / seen["n"] - r0) ** 2).sum() / seen["n"].sum())
    A = s2 - r0 / seen["n"].mean()
    return float(r0 / A) if A > 0 else float("inf")
