"""Did the fix work? Effects of interventions on the unsettled rate, net of control merchants.

:func:`evaluate_fixes` takes a dataset and its reconciled transactions and
returns, for every ``interventions`` row, the change the fix made to the
contract's unsettled rate of its scope (and to the success rate and the link
errors per 100 attempts); :func:`evaluate_fix` does one fix on a panel of
:func:`analysis.metrics.daily_panel`; :func:`simulate_fix` estimates *before a
fix is made* how many incidents it would avoid.

Periods (:func:`split_periods`, used by every method)
-----------------------------------------------------
Fixes are grouped by scope (``scope_type, scope_value``) and taken in time
order. Fixes on one scope within 24 hours are evaluated as one (the
contract). A fix's *before* period runs from the previous fix on its scope
(or, for the first, from the onset of the fault — given, or detected as a
step up of the scope's unsettled, reversal or link-error rate,
:func:`detect_onset` — or the start of the data) to the fix; its *after*
period from the fix to the next fix on the scope (or the end of the data). A
fix applied before 06:00 acts on its whole day; one applied later leaves its day out of both periods (a transition day).
Two fixes closer than ``min_days`` days cannot be told apart: they are
evaluated together, flagged ``too_close`` and said so. A before or after
period shorter than ``min_days`` days, or fewer than ``min_events`` unsettled
attempts in the scope over both, is flagged as well.

Methods
-------
``did_cluster_se`` (primary)
    Difference in differences on the unit × day panel: weighted least squares
    of the daily rate on treated, post and treated × post with the attempts as
    weights, so that the coefficient is exactly the change in the *pooled*
    rate, (after − before) in the scope minus (after − before) in the
    controls. Standard errors are cluster-robust by merchant (Liang & Zeger
    1986; Bertrand, Duflo & Mullainathan 2004, "How much should we trust
    differences-in-differences estimates?", QJE 119(1); Angrist & Pischke
    2009, ch. 8) — the same numbers as statsmodels' ``cov_type='cluster'``,
    computed from per-merchant sums. See *Inference* for the two additions.
``did_bootstrap``
    The same estimate; a percentile interval from a cluster bootstrap that
    resamples merchants with replacement within the scope and within the
    controls (Cameron, Gelbach & Miller 2008).
``its_segmented``
    Segmented regression of the scope's daily rate on time, a level change
    and a slope change at the fix, weighted by attempts, with Newey–West
    (HAC) standard errors (Wagner, Soumerai, Zhang & Ross-Degnan 2002,
    "Segmented regression analysis of interrupted time series studies in
    medication use research", J Clin Pharm Ther 27). ``effect`` is the level
    change at the fix; no controls (it guards against a control group that
    moved for reasons of its own). Slopes are dropped when a segment has
    fewer than 8 days.

Inference: what the interval is about
-------------------------------------
The contract's effect (and the simulator's truth) is the change the fix made
to the rate of the attempts that actually happened after it — a *sample*
average effect on the treated (SATT), whose counterfactual after-period rate
(had the fix not been made) is itself a new draw of the faulty process. The
usual cluster-robust variance measures the after period's noise as observed,
which a fix that removes the fault makes nearly zero, and so understates the
uncertainty about the counterfactual. The primary interval therefore adds the
variance the scope's after-period rate would have had without the fix, taken
from the before period and scaled to the after period's volume (max(observed,
scaled before) — conservative for the population effect too). Faults on a
shared line hit all the scope's merchants on the same days, which merchant
clustering cannot see; the variance is clustered two ways, by merchant and by
day — V_merchant + V_day − V_merchant-day (Cameron, Gelbach & Miller 2011,
"Robust inference with multiway clustering", J Bus Econ Stat 29(2)), never
below either one-way variance, the day part with Newey–West weights over
neighbouring days (Driscoll & Kraay 1998) — and the interval uses Student's t
with min(treated merchants, days) − 1 degrees of freedom (few clusters:
Cameron & Miller 2015, "A practitioner's guide to cluster-robust inference",
J Hum Resour 50(2)); with fewer than 3 treated merchants only days count as
clusters. The
plain merchant-clustered SE and the bootstrap (population effect, PATT) stay
in ``FixEffect.methods`` and ``diagnostics``.

The unsettled rate as of the moment of analysis
-----------------------------------------------
A transaction still inside its credit cycle cannot be ``not_cleared`` yet, so
the last days' rate is a lower bound. The unsettled rate is split into what is
known at once (``reversal_failed``, ``returned``) — compared over all days —
and ``not_cleared`` — compared over mature days only (past every deadline) and
weighted by the share ``m`` of after-period attempts that are mature. The
effect is then the contract's rate *as of the analysis*, like the truth files;
the effect once every credit has matured (``m = 1``) is in the notes.

What the estimate targets
-------------------------
The effect of a fix followed by another on the same scope is measured until
that next fix — the only period in which it acted alone. The simulator's
truth (``truth.fix_effects``) measures each fix from its application to the
end of the data with the later fixes in place, so for the first of two
staggered fixes the two differ by design: after the second fix the first's
marginal effect is smaller (message validation already catches what the
upgrade would have saved), and that part cannot be identified from data
without a model (:func:`simulate_fix` is one). For the last fix on a scope,
and for a fix alone, estimand and truth agree. ``benchmarks/bench_fixes.py``
measures the primary interval's coverage of the truth on simulated cities:
over 144 seeds 133 of 144 comparable fixes (92%) were covered, mean bias
+0.06 points, mean width 2.6 points; a fix alone, 86% (its counterfactual
after period is three weeks of a bursty fault: a calm before period
understates both the counterfactual and its variance), the second of two,
97%.

Controls
--------
Units outside the scope and outside ``exclude_merchants`` (e.g. the merchants
of any shared fault), whose merchant has no unit in the scope and is not in
the scope of another fix within the periods. Control merchants whose own
unsettled rate changed significantly between the periods, or stood at three
times the other controls' or more (binomial tests, Bonferroni at
``screen_alpha``), had a problem of their own (a frozen account, a merchant
that stopped uploading) and are left out, named in the notes.
``match='mcc'``/``'volume'`` keeps only controls of the scope's MCCs / within
its range of daily volume.

What if
-------
:func:`simulate_fix` predicts, before a ``network_upgrade`` or
``message_validation`` is made, the unsettled attempts and incidents it would
avoid, from the scope's observed rates of corrupted and lost messages,
reversals and their failures, and failed uploads (Beta posteriors), through
a small model of the message pipeline.

Examples
--------
>>> from analysis.io import load_dataset                     # doctest: +SKIP
>>> from analysis.reconcile import reconcile                  # doctest: +SKIP
>>> ds = load_dataset("data/case_study")                      # doctest: +SKIP
>>> ev = evaluate_fixes(ds, reconcile(ds.transactions, ds.settlements, ds.merchants))  # doctest: +SKIP
>>> print(ev.effect("CHG-001").summary())                     # doctest: +SKIP
>>> ev.to_contract()                                          # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .aggregates import frames_engine
from .contract import OUTPUTS, SCOPE_TYPES
from .engine.base import Engine
from .metrics import COUNT_COLUMNS, daily_panel, daily_panel_on, moment_of
from .reconcile import to_local_time

# ---------------------------------------------------------------------------------
# Metrics and their components
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Component:
    """One additive part of a rate: sum of ``numerator`` columns ÷ ``denominator``.

    ``mature_only`` parts are compared over mature unit-days only and weighted
    by the share of after-period attempts that are mature (see the module
    docstring); ``scale`` multiplies the rate (100 for "per 100 attempts").
    """

    numerator: tuple[str, ...]
    denominator: str = "attempts"
    mature_only: bool = False
    scale: float = 1.0


#: The metrics evaluated, as sums of components of the panel's count columns.
METRICS: dict[str, tuple[Component, ...]] = {
    "unsettled_rate": (
        Component(("reversal_failed", "returned")),
        Component(("not_cleared",), mature_only=True),
    ),
    "success_rate": (Component(("approved",)),),
    "link_errors_per_100": (Component(("link_errors",), scale=100.0),),
}
DEFAULT_METRICS = tuple(METRICS)
#: Metric -> (unit word, multiplier for display, "points" word).
_UNITS = {"link_errors_per_100": ("per 100 attempts", 1.0, "per 100 attempts")}
_PRIMARY = "did_cluster_se"
METHODS = ("did_cluster_se", "did_bootstrap", "its_segmented")
SAME_SCOPE_HOURS = 24
#: A fix applied before this local hour acts on its whole day.
TRANSITION_HOUR = 6
#: Fewer treated merchants than this: the day is the only cluster.
MIN_TREATED_CLUSTERS = 3
#: Fewest days per segment for the ITS slope terms.
ITS_MIN_SLOPE_DAYS = 8
#: Cells of the 2×2 design: index = 2 × treated + post.
C0, C1, T0, T1 = 0, 1, 2, 3
_CONTRAST = np.array([1.0, -1.0, -1.0, 1.0])

_KIND_WORDS = {
    "network_upgrade": "the network upgrade",
    "message_validation": "message validation",
    "firmware_update": "the firmware update",
    "config_correction": "the configuration correction",
}
_METRIC_WORDS = {
    "unsettled_rate": "the unsettled rate",
    "success_rate": "the success rate",
    "link_errors_per_100": "link errors",
    "money_not_arrived_rate": "the money-not-arrived rate",
}


# ---------------------------------------------------------------------------------
# Periods: the one place that says which days are before and after a fix
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FixPeriods:
    """The before and after periods of one fix (or of fixes evaluated as one).

    Attributes
    ----------
    change_ids : tuple of str
        The fixes evaluated together (one, or several on one scope within 24 h
        or too close to separate).
    kind, scope_type, scope_value : str
    applied_at : Timestamp
        The first fix's time (Asia/Shanghai).
    before, after : (Timestamp, Timestamp)
        Half-open day ranges ``[first day, end day)`` (naive midnight).
    previous, following : tuple of str
        Change ids of the neighbouring fixes on the same scope.
    flags : tuple of str
        ``too_close`` (fixes merged), ``short_before``, ``short_after``.
    notes : tuple of str
        The sentences that go with the flags.
    remarks : tuple of str
        Other facts about the periods (fixes merged by the 24-hour rule, the onset).
    """

    change_ids: tuple[str, ...]
    kind: str
    scope_type: str
    scope_value: str
    applied_at: pd.Timestamp
    before: tuple[pd.Timestamp, pd.Timestamp]
    after: tuple[pd.Timestamp, pd.Timestamp]
    previous: tuple[str, ...] = ()
    following: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    remarks: tuple[str, ...] = ()

    @property
    def before_days(self) -> int:
        return max(0, (self.before[1] - self.before[0]).days)

    @property
    def after_days(self) -> int:
        return max(0, (self.after[1] - self.after[0]).days)

    @property
    def fix_day(self) -> pd.Timestamp:
        """The first day of the after period."""
        return self.after[0]

    def label(self, dates: pd.Series | np.ndarray) -> np.ndarray:
        """0 for days in the before period, 1 in the after period, -1 elsewhere.

        Examples
        --------
        >>> d = pd.Timestamp
        >>> p = FixPeriods(("X",), "other", "all", "*", d("2026-03-05 02:00", tz="Asia/Shanghai"),
        ...                (d("2026-03-01"), d("2026-03-05")), (d("2026-03-05"), d("2026-03-08")))
        >>> p.label(pd.to_datetime(["2026-02-28", "2026-03-04", "2026-03-05", "2026-03-08"])).tolist()
        [-1, 0, 1, -1]
        """
        days = pd.DatetimeIndex(pd.to_datetime(np.asarray(dates))).to_numpy()
        out = np.full(len(days), -1, dtype=np.int8)
        out[(days >= self.before[0].to_datetime64()) & (days < self.before[1].to_datetime64())] = 0
        out[(days >= self.after[0].to_datetime64()) & (days < self.after[1].to_datetime64())] = 1
        return out


def _local_naive(value) -> pd.Timestamp:
    return to_local_time(value).tz_localize(None)


def _effective_day(t: pd.Timestamp) -> pd.Timestamp:
    """First whole day a fix applied at local time ``t`` acts on."""
    day = t.normalize()
    return day if t.hour < TRANSITION_HOUR else day + pd.Timedelta(days=1)


def _scope_groups(frame: pd.DataFrame, min_days: int) -> list[list[int]]:
    """Row positions of one scope grouped into evaluation units (time-sorted frame).

    Fixes within 24 h of a group's first fix join it (the contract); a fix whose
    effective day is fewer than ``min_days`` after the group's last one joins
    it too (too close to separate).
    """
    groups: list[list[int]] = []
    for i, t in enumerate(frame["_t"]):
        if groups:
            first, last = frame["_t"].iat[groups[-1][0]], frame["_t"].iat[groups[-1][-1]]
            gap = (_effective_day(t) - _effective_day(last)).days
            if t - first <= pd.Timedelta(hours=SAME_SCOPE_HOURS) or gap < min_days:
                groups[-1].append(i)
                continue
        groups.append([i])
    return groups


def _onset_for(onsets: Mapping | None, ids: Sequence[str], scope_value: str):
    if not onsets:
        return None
    for key in (*ids, scope_value):
        if key in onsets and onsets[key] is not None:
            return _local_naive(onsets[key]).normalize()
    return None


def split_periods(
    interventions: pd.DataFrame,
    *,
    first_day,
    last_day,
    onsets: Mapping[str, object] | None = None,
    window_days: int | None = None,
    min_days: int = 3,
) -> dict[str, FixPeriods]:
    """Before and after periods of every intervention (see the module docstring).

    Parameters
    ----------
    interventions : DataFrame
        The contract's ``interventions`` table.
    first_day, last_day : date-like
        The first and last business day of the data (inclusive).
    onsets : mapping, optional
        Fault onset times keyed by change id or scope value: the first fix on a
        scope has its before period start there (not earlier).
    window_days : int, optional
        Longest before and after period, in days.
    min_days : int
        Shortest period that counts; fixes closer than this are merged.

    Returns
    -------
    dict
        change id -> :class:`FixPeriods` (fixes evaluated together share one).

    Examples
    --------
    >>> iv = pd.DataFrame({"change_id": ["A", "B"], "scope_type": ["network_segment"] * 2,
    ...     "scope_value": ["S1"] * 2, "kind": ["network_upgrade", "message_validation"],
    ...     "applied_at": pd.to_datetime(["2026-04-08 01:30", "2026-04-15 02:00"])})
    >>> p = split_periods(iv, first_day="2026-03-02", last_day="2026-04-30")
    >>> [str(d.date()) for d in p["B"].before], [str(d.date()) for d in p["B"].after]
    (['2026-04-08', '2026-04-15'], ['2026-04-15', '2026-05-01'])
    """
    first = pd.Timestamp(first_day).normalize()
    end = pd.Timestamp(last_day).normalize() + pd.Timedelta(days=1)
    window = pd.Timedelta(days=window_days) if window_days else None
    iv = interventions.copy()
    iv["_t"] = [_local_naive(t) for t in iv["applied_at"]]
    out: dict[str, FixPeriods] = {}
    for (stype, svalue), frame in iv.groupby(["scope_type", "scope_value"], sort=False):
        frame = frame.sort_values("_t", kind="stable")
        groups = _scope_groups(frame, min_days)
        units = []
        for g in groups:
            rows = frame.iloc[g]
            ids = tuple(rows["change_id"].astype(str))
            t_first, t_last = rows["_t"].iat[0], rows["_t"].iat[-1]
            units.append((ids, rows, t_first, t_last))
        for k, (ids, rows, t_first, t_last) in enumerate(units):
            flags, notes, remarks = [], [], []
            after_start = _effective_day(t_last)
            before_end = t_first.normalize()
            if k > 0:
                before_start = _effective_day(units[k - 1][3])
            else:
                onset = _onset_for(onsets, ids, str(svalue))
                before_start = first
                if onset is not None and first < onset < before_end:
                    before_start = onset
                    remarks.append(f"the before period starts at the fault's onset, {onset.date()}")
            after_end = units[k + 1][2].normalize() if k + 1 < len(units) else end
            after_end = min(after_end, end)
            if window is not None:
                before_start = max(before_start, before_end - window)
                after_end = min(after_end, after_start + window)
            if len(ids) > 1:
                apart = (t_last - t_first)
                if apart > pd.Timedelta(hours=SAME_SCOPE_HOURS):
                    flags.append("too_close")
                    notes.append(
                        f"{', '.join(ids)} were applied {_span(apart)} apart on the same scope: "
                        f"too close to separate (fewer than {min_days} days between them), so "
                        "the numbers are for all of them together"
                    )
                else:
                    remarks.append(f"{', '.join(ids)} were applied within 24 hours on the same "
                                   "scope and are evaluated as one (contract)")
            for name, lo, hi in (("before", before_start, before_end), ("after", after_start, after_end)):
                days = (hi - lo).days
                if days >= min_days:
                    continue
                flags.append(f"short_{name}")
                notes.append(f"there is no {name} period in the data" if days <= 0 else
                             f"the {name} period has only {days} day(s) (fewer than {min_days}): "
                             "the estimate is not reliable")
            periods = FixPeriods(
                change_ids=ids,
                kind="+".join(dict.fromkeys(rows["kind"].astype(str))),
                scope_type=str(stype),
                scope_value=str(svalue),
                applied_at=to_local_time(t_first),
                before=(before_start, before_end),
                after=(after_start, after_end),
                previous=units[k - 1][0] if k > 0 else (),
                following=units[k + 1][0] if k + 1 < len(units) else (),
                flags=tuple(flags),
                notes=tuple(notes),
                remarks=tuple(remarks),
            )
            for cid in ids:
                out[cid] = periods
    return out


def _span(delta: pd.Timedelta) -> str:
    days = delta / pd.Timedelta(days=1)
    return f"{days:.1f} days" if days >= 1 else f"{delta / pd.Timedelta(hours=1):.0f} hours"


# ---------------------------------------------------------------------------------
# Onset of a fault
# ---------------------------------------------------------------------------------


def _mann_whitney_less(x: np.ndarray, splits: np.ndarray) -> np.ndarray:
    """One-sided Mann–Whitney p-values of "x[:k] lower than x[k:]" for every split k, at once.

    Normal approximation with tie correction and continuity correction (as
    ``scipy.stats.mannwhitneyu(..., method='asymptotic')``), from one ranking.
    """
    t_len = len(x)
    ranks = stats.rankdata(x)
    _, ties = np.unique(x, return_counts=True)
    tie_term = float(np.sum(ties**3 - ties)) / (t_len * (t_len - 1))
    k = splits.astype(float)
    m = t_len - k
    u = np.cumsum(ranks)[splits - 1] - k * (k + 1) / 2
    sd = np.sqrt(k * m / 12 * ((t_len + 1) - tie_term))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (u - k * m / 2 + 0.5) / sd
    return np.where(sd > 0, stats.norm.cdf(z), 1.0)


def _onset_test(daily: pd.DataFrame, min_days: int) -> tuple[pd.Timestamp | None, float, float]:
    """The most significant step-up split of one daily series: (first day after, p, rate ratio).

    ``p`` is Bonferroni-corrected over the candidate splits.
    """
    d = daily.loc[daily["n"] > 0].sort_values("date")
    t_len = len(d)
    if t_len < 2 * min_days:
        return None, 1.0, np.nan
    x = (d["cases"] / d["n"]).to_numpy(float)
    splits = np.arange(min_days, t_len - min_days + 1)  # first index of the later segment
    if np.ptp(x) == 0:
        return None, 1.0, np.nan
    p = _mann_whitney_less(x, splits)
    best = int(np.argmin(p))
    k = splits[best]
    c, n = d["cases"].to_numpy(float), d["n"].to_numpy(float)
    low = c[:k].sum() / n[:k].sum()
    high = c[k:].sum() / n[k:].sum()
    ratio = high / max(low, 0.5 / n[:k].sum())
    return pd.Timestamp(d["date"].iat[k]), float(min(1.0, p[best] * len(splits))), float(ratio)


def detect_onset(
    daily: pd.DataFrame | Sequence[pd.DataFrame],
    *,
    alpha: float = 0.01,
    min_ratio: float = 2.0,
    min_days: int = 3,
) -> pd.Timestamp | None:
    """The day a group's rate stepped up, or None when there is no clear step.

    A maximally selected rank statistic (Lausen & Schumacher 1992): for every
    split of the days (at least ``min_days`` on each side) a one-sided
    Mann–Whitney test of "later days have higher rates"; the best split counts
    when its p-value, Bonferroni-corrected over the splits (and over the
    series, when several are given), is below ``alpha`` and the pooled rate at
    least doubled (``min_ratio``). Ranks make it indifferent to lumps (a
    failed batch upload loses a whole terminal-day at once), which would swamp
    a binomial likelihood test.

    Parameters
    ----------
    daily : DataFrame or sequence of DataFrames
        ``date, cases, n`` per day (e.g. :func:`analysis.metrics.group_daily`);
        several series (unsettled attempts, reversals, link errors) give the
        earliest clear step among them.

    Examples
    --------
    >>> d = pd.DataFrame({"date": pd.date_range("2026-03-01", periods=24),
    ...                   "cases": [0, 1, 0, 0, 0, 0, 0, 0, 1, 0,
    ...                             18, 1, 5, 11, 8, 1, 3, 0, 1, 1, 2, 1, 1, 3],
    ...                   "n": [200] * 24})
    >>> str(detect_onset(d).date())
    '2026-03-11'
    """
    series = [daily] if isinstance(daily, pd.DataFrame) else list(daily)
    found = []
    for d in series:
        day, p, ratio = _onset_test(d, min_days)
        if day is not None and p * len(series) < alpha and ratio >= min_ratio:
            found.append(day)
    return min(found) if found else None


# ---------------------------------------------------------------------------------
# Scope, treated and control units
# ---------------------------------------------------------------------------------


def scope_mask(panel: pd.DataFrame, scope_type: str, scope_value: str,
               terminals: pd.DataFrame | None = None) -> np.ndarray:
    """True for the panel rows a scope covers.

    A terminal-level panel (with ``terminal_id``) is matched on each
    terminal's own attributes; a merchant-level one on its dominant
    terminal's, or — given ``terminals`` — a merchant is in scope when any of
    its terminals is.

    Examples
    --------
    >>> p = pd.DataFrame({"merchant_id": ["M1", "M2"], "network_segment": ["S1", "S2"]})
    >>> scope_mask(p, "network_segment", "S2").tolist()
    [False, True]
    """
    if scope_type not in SCOPE_TYPES:
        raise ValueError(f"scope_type must be one of {SCOPE_TYPES}, got {scope_type!r}")
    if scope_type == "all":
        return np.ones(len(panel), dtype=bool)
    column = {"terminal_model": "model"}.get(scope_type, scope_type)
    if scope_type == "merchant":
        return panel["merchant_id"].eq(scope_value).to_numpy(dtype=bool)
    if terminals is not None and "terminal_id" not in panel.columns:
        ids = terminals.loc[terminals[column].eq(scope_value), "merchant_id"]
        return panel["merchant_id"].isin(ids).to_numpy(dtype=bool)
    return panel[column].eq(scope_value).fillna(False).to_numpy(dtype=bool)


class _ScopeMasks(dict):
    """:func:`scope_mask` of one panel by ``(scope_type, scope_value)``, each computed once."""

    def __init__(self, panel: pd.DataFrame, terminals: pd.DataFrame | None = None) -> None:
        super().__init__()
        self.panel, self.terminals = panel, terminals

    def __missing__(self, key: tuple[str, str]) -> np.ndarray:
        mask = self[key] = scope_mask(self.panel, key[0], key[1], self.terminals)
        return mask


@dataclass(frozen=True)
class _PanelKeys:
    """Integer codes of a panel's merchants and days (factorized once per panel).

    Attributes
    ----------
    merchants, days : ndarray
        The distinct merchant ids and business dates, sorted.
    merchant, day : ndarray
        Per panel row, the position of its merchant id and business date in them.
    text_rank : ndarray or None
        Per merchant, its rank when the ids are sorted as the text ``"<id>|"``, so
        that merchant-day clusters are ordered as the text ``"<id>|<date>"``
        (None when an id holds a ``|``: that order is then read from the text).
    """

    merchants: np.ndarray
    merchant: np.ndarray
    days: np.ndarray
    day: np.ndarray
    text_rank: np.ndarray | None

    @classmethod
    def of(cls, panel: pd.DataFrame) -> _PanelKeys:
        merchant, merchants = pd.factorize(panel["merchant_id"], sort=True, use_na_sentinel=False)
        day, days = pd.factorize(panel["business_date"].to_numpy(), sort=True, use_na_sentinel=False)
        ids = [str(m) for m in merchants]
        text_rank = None
        if not any("|" in m for m in ids):
            text_rank = np.empty(len(ids), dtype=np.int64)
            text_rank[np.argsort(np.array([m + "|" for m in ids], dtype=object), kind="stable")] = \
                np.arange(len(ids))
        return cls(np.asarray(merchants, dtype=object), merchant, np.asarray(days), day, text_rank)


def _control_mask(keys: _PanelKeys, treated, exclude_merchants, other_scopes) -> np.ndarray:
    """Units outside the scope whose merchant is not treated, excluded or in another fix's scope."""
    bad = np.bincount(keys.merchant[treated], minlength=len(keys.merchants)) > 0
    bad |= pd.Index(keys.merchants, dtype=object).isin(list(exclude_merchants))
    return ~treated & ~bad[keys.merchant] & ~other_scopes


def _match_controls(panel, treated, control, match) -> tuple[np.ndarray, list[str]]:
    """Restrict controls to the scope's MCCs and/or its range of daily volume."""
    if not match:
        return control, []
    wanted = (match,) if isinstance(match, str) else tuple(match)
    notes = []
    if "mcc" in wanted and "mcc" in panel.columns:
        control = control & panel["mcc"].isin(panel.loc[treated, "mcc"].unique()).to_numpy()
        notes.append("controls matched on MCC")
    if "volume" in wanted:
        vol = panel.groupby("merchant_id")["attempts"].mean()
        tv = vol[panel.loc[treated, "merchant_id"].unique()]
        ok = vol.between(tv.min(), tv.max())
        control = control & panel["merchant_id"].map(ok).fillna(False).to_numpy(dtype=bool)
        notes.append(f"controls matched on daily volume ({tv.min():.0f}–{tv.max():.0f} attempts)")
    return control, notes


# ---------------------------------------------------------------------------------
# Sums per cluster, cell and component: everything the estimators need
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sums:
    """Numerator and denominator sums, shape (clusters, 4 cells, components)."""

    keys: np.ndarray
    num: np.ndarray
    den: np.ndarray
    treated: np.ndarray  # (clusters,) True when the cluster holds treated rows


def _component_arrays(rows: pd.DataFrame, components: Sequence[Component]):
    """Per row and component: numerator and denominator (both 0 where a mature-only part is immature)."""
    mature = rows["mature"].to_numpy(dtype=bool) if "mature" in rows else np.ones(len(rows), bool)
    use = np.column_stack([mature if c.mature_only else np.ones(len(rows), bool) for c in components])
    num = np.column_stack([rows[list(c.numerator)].to_numpy(float).sum(axis=1) * c.scale
                           for c in components])
    den = np.column_stack([rows[c.denominator].to_numpy(float) for c in components])
    return num * use, den * use


@dataclass(frozen=True)
class _Clusters:
    """Rows grouped into clusters: per row a code 0 … G − 1, and the G keys in code order."""

    codes: np.ndarray
    keys: np.ndarray


def _used_clusters(codes: np.ndarray, keys: np.ndarray) -> _Clusters:
    """The entries of ``keys`` that ``codes`` (positions in ``keys``) use, renumbered in order.

    Examples
    --------
    >>> c = _used_clusters(np.array([3, 1, 3]), np.array(["a", "b", "c", "d"]))
    >>> c.codes.tolist(), c.keys.tolist()
    ([1, 0, 1], ['b', 'd'])
    """
    used = np.bincount(codes, minlength=len(keys)) > 0
    return _Clusters((np.cumsum(used) - 1)[codes], keys[used])


def _merchant_day_clusters(keys: _PanelKeys, merchant: np.ndarray, day: np.ndarray) -> _Clusters:
    """Merchant × day clusters of rows (panel codes ``merchant``, ``day``), in the order of the
    text ``"<merchant id>|<date>"``."""
    if keys.text_rank is not None:
        key = keys.text_rank[merchant] * len(keys.days) + day
    else:
        key = (pd.Series(keys.merchants[merchant]).astype(str) + "|"
               + pd.Series(keys.days[day]).astype(str)).to_numpy()
    codes, uniques = pd.factorize(key, sort=True)
    return _Clusters(codes, np.asarray(uniques))


def _sums(cell: np.ndarray, num: np.ndarray, den: np.ndarray, clusters: _Clusters) -> _Sums:
    """Sum ``num``/``den`` (rows × components) by cluster and cell."""
    g, k = len(clusters.keys), num.shape[1]
    flat = clusters.codes * 4 + cell
    out_num, out_den = np.empty((g * 4, k)), np.empty((g * 4, k))
    for j in range(k):
        out_num[:, j] = np.bincount(flat, num[:, j], g * 4)
        out_den[:, j] = np.bincount(flat, den[:, j], g * 4)
    treated = np.bincount(clusters.codes, cell >= T0, g) > 0
    return _Sums(clusters.keys, out_num.reshape(g, 4, k), out_den.reshape(g, 4, k), treated)


def _rates(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Cell × component pooled rates from summed arrays (any leading dims); NaN for empty cells."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _combine(rates: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """Σ_k ω_k (contrast over cells) of a (..., 4, K) array; components with NaN weight 0 drop out."""
    diff = np.einsum("c,...ck->...k", _CONTRAST, rates)
    return np.nansum(diff * omega, axis=-1) if diff.ndim > 1 else float(np.nansum(diff * omega))


def _omega(components: Sequence[Component], m: float) -> np.ndarray:
    """Component weights: 1, or ``m`` (mature share of after attempts) for mature-only parts."""
    return np.array([m if c.mature_only else 1.0 for c in components])


def _influence(s: _Sums, omega: np.ndarray) -> np.ndarray:
    """Each cluster's linearized contribution to the DiD, split by cell: (clusters, 4).

    For the pooled rate R_c = U_c / N_c a cluster contributes (u_gc − R_c n_gc) / N_c;
    the DiD is a contrast of cells summed over components with weights ω.
    These are the scores of the saturated weighted regression, so
    Σ_g (Σ_c ψ_gc)² is its cluster-robust meat (sandwich with diagonal bread).
    """
    tot_num, tot_den = s.num.sum(0), s.den.sum(0)
    r = _rates(tot_num, tot_den)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = (s.num - r[None] * s.den) / np.where(tot_den > 0, tot_den, np.inf)[None]
    score = np.nan_to_num(score)
    return np.einsum("gck,k->gc", score, omega) * _CONTRAST[None, :]


def _cluster_variance(psi: np.ndarray, n_obs: int, n_params: int, *, satt: bool,
                      volume_ratio: float, lags: int = 0) -> tuple[float, float]:
    """(variance, plain cluster-robust variance) from per-cluster contributions ``psi`` (G, 4).

    ``lags`` > 0 adds Newey–West cross products between neighbouring clusters
    (clusters are consecutive days: Driscoll & Kraay 1998). The small-sample
    factor is statsmodels' default, G/(G−1) · (N−1)/(N−K). With ``satt`` the
    treated after cell's variance is raised to the before cell's scaled to the
    after volume (the module docstring).
    """
    g = psi.shape[0]
    if g < 2:
        return np.nan, np.nan
    factor = g / (g - 1) * (n_obs - 1) / max(n_obs - n_params, 1)

    def hac(x: np.ndarray) -> float:
        v = float(np.sum(x**2))
        for lag in range(1, min(lags, len(x) - 1) + 1):
            v += 2 * (1 - lag / (lags + 1)) * float(np.sum(x[lag:] * x[:-lag]))
        return v

    plain = factor * hac(psi.sum(1))
    if not satt:
        return plain, plain
    v_before, v_after = hac(psi[:, T0]), hac(psi[:, T1])
    extra = max(0.0, v_before * volume_ratio - v_after)
    return plain + factor * extra, plain


def _newey_west_lags(n_days: int) -> int:
    """Newey & West (1994) rule of thumb: floor(4 (T/100)^(2/9))."""
    return int(np.floor(4 * (max(n_days, 1) / 100) ** (2 / 9)))


# ---------------------------------------------------------------------------------
# The design of one evaluation
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Design:
    """Rows of one evaluation: the panel rows in a period of the treated or control units.

    ``rows`` holds only the count columns the estimators read (:func:`_count_columns`);
    ``merchants``, ``days`` and ``merchant_days`` group the rows into clusters.
    """

    rows: pd.DataFrame
    cell: np.ndarray  # per row, 0..3
    periods: FixPeriods
    dropped_controls: tuple[str, ...]
    notes: tuple[str, ...]
    merchants: _Clusters
    days: _Clusters
    merchant_days: _Clusters


def _metric_columns(metrics: Iterable[str]) -> list[str]:
    """The count columns of the components of ``metrics`` (numerators, then denominator)."""
    return [col for m in metrics for c in METRICS[m] for col in (*c.numerator, c.denominator)]


def _count_columns(panel: pd.DataFrame) -> list[str]:
    """The panel's columns the estimators read: every metric's counts, ``unsettled``, ``mature``."""
    wanted = ["mature", "unsettled", *_metric_columns(METRICS)]
    return [c for c in dict.fromkeys(wanted) if c in panel.columns]


def _take_rows(panel: pd.DataFrame, pos: np.ndarray) -> pd.DataFrame:
    """The count columns of the panel rows at positions ``pos``."""
    return pd.DataFrame({c: panel[c].array.take(pos) for c in _count_columns(panel)}, copy=False)


def _build_design(panel, keys: _PanelKeys, periods, treated, control, *, screen_alpha) -> _Design:
    """The rows of both periods of the treated and control units, controls screened."""
    post = periods.label(keys.days)[keys.day]
    pos = np.flatnonzero((post >= 0) & (treated | control))
    cell = (2 * treated[pos] + post[pos]).astype(np.int64)
    rows = _take_rows(panel, pos)
    merchants = _used_clusters(keys.merchant[pos], keys.merchants)
    notes: list[str] = []
    dropped: tuple[str, ...] = ()
    if screen_alpha:
        left_out = _screen_controls(rows, merchants, cell, screen_alpha)
        if left_out.any():
            dropped = tuple(str(m) for m in merchants.keys[left_out])
            ok = ~left_out[merchants.codes]
            pos, rows, cell = pos[ok], rows.loc[ok].reset_index(drop=True), cell[ok]
            merchants = _used_clusters(keys.merchant[pos], keys.merchants)
            notes.append(f"{len(dropped)} control merchant(s) left out: their own unsettled rate "
                         f"changed between the periods or stood far above the other controls' "
                         f"({', '.join(dropped[:5])}{', ...' if len(dropped) > 5 else ''})")
    return _Design(rows, cell, periods, dropped, tuple(notes), merchants,
                   _used_clusters(keys.day[pos], keys.days),
                   _merchant_day_clusters(keys, keys.merchant[pos], keys.day[pos]))


def _binom_two_sided(k: np.ndarray, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Two-sided binomial p-values (twice the smaller tail), vectorized."""
    lo = stats.binom.cdf(k, n, p)
    hi = stats.binom.sf(k - 1, n, p)
    return np.minimum(1.0, 2 * np.minimum(lo, hi))


def _screen_controls(rows: pd.DataFrame, merchants: _Clusters, cell: np.ndarray, alpha: float,
                     min_ratio: float = 3.0) -> np.ndarray:
    """Control merchants with a problem of their own (mature days, unsettled attempts).

    A control merchant is left out when, Bonferroni-corrected over the
    controls at ``alpha``, either its unsettled rate changed between the
    periods (conditional binomial test: given its unsettled attempts in both,
    the after-period count is Binomial(k, n1 / (n0 + n1)) under no change), or
    in either period its rate is ``min_ratio`` times the pooled control rate or
    more and a binomial test against the pooled rate rejects (a merchant that
    stopped uploading a few days before the period starts shows no change
    within it, but would still move the pooled control rate).

    Returns
    -------
    ndarray of bool
        Per cluster of ``merchants``: True when the merchant is left out.
    """
    out = np.zeros(len(merchants.keys), dtype=bool)
    ctrl = (cell < T0) & rows["mature"].to_numpy(dtype=bool)
    post = (cell[ctrl] == C1).astype(np.int64)
    if not post.any() or post.all():
        return out
    screened = _used_clusters(merchants.codes[ctrl], np.arange(len(merchants.keys)))
    g = len(screened.keys)
    flat = 2 * screened.codes + post
    u = np.bincount(flat, rows["unsettled"].to_numpy(float)[ctrl], 2 * g).reshape(g, 2)
    n = np.bincount(flat, rows["attempts"].to_numpy(float)[ctrl], 2 * g).reshape(g, 2)
    level = alpha / max(g, 1)
    k = u.sum(1)
    ok = (k > 0) & (n > 0).all(1)
    p_change = np.ones(g)
    p_change[ok] = _binom_two_sided(u[ok, 1], k[ok], n[ok, 1] / n[ok].sum(1))
    pool = u.sum(0) / np.maximum(n.sum(0), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        high = (u / np.where(n > 0, n, np.inf)) >= min_ratio * pool[None, :]
        p_high = stats.binom.sf(u - 1, n, np.maximum(pool[None, :], 1e-12))
    out[screened.keys[(p_change < level) | (high & (p_high < level)).any(1)]] = True
    return out


# ---------------------------------------------------------------------------------
# Estimators
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Estimate:
    method: str
    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    se: float = np.nan
    before: float = np.nan
    after: float = np.nan
    note: str = ""


def _did(design: _Design, components: Sequence[Component], num: np.ndarray, den: np.ndarray, *,
         alpha: float, cluster: str, n_boot: int, seed,
         resampled: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[dict, list[_Estimate]]:
    """The DiD point estimate with its clustered and bootstrap intervals, and the cell rates.

    ``num``, ``den`` are :func:`_component_arrays` of the design's rows; ``resampled``
    the bootstrap totals, if drawn already.
    """
    rows, cell = design.rows, design.cell
    all_den = rows[components[0].denominator].to_numpy(float)
    t1 = cell == T1
    m = float(den[t1][:, [c.mature_only for c in components]].sum() / all_den[t1].sum()) \
        if any(c.mature_only for c in components) and all_den[t1].sum() > 0 else 1.0
    by_merchant = _sums(cell, num, den, design.merchants)
    omega = _omega(components, m)
    tot_num, tot_den = by_merchant.num.sum(0), by_merchant.den.sum(0)
    rates = _rates(tot_num, tot_den)
    effect = _combine(rates, omega)
    eventual = _combine(rates, np.ones(len(components)))
    # observed pooled rates as the contract counts them (as of the analysis)
    cell_rate = _observed_cell_rates(num, all_den, cell)
    info = {"effect": effect, "eventual": eventual, "m": m, "cell_rate": cell_rate,
            "n_treated": int(by_merchant.treated.sum()),
            "n_control": int((~by_merchant.treated).sum())}

    volume_ratio = all_den[cell == T0].sum() / max(all_den[t1].sum(), 1.0)
    n_params = 4 * len(components)
    n_obs = len(rows)
    psi_m = _influence(by_merchant, omega)
    v_m, v_m_plain = _cluster_variance(psi_m, n_obs, n_params, satt=True, volume_ratio=volume_ratio)
    by_day = _sums(cell, num, den, design.days)
    day_index = pd.DatetimeIndex(by_day.keys)
    full = pd.date_range(day_index.min(), day_index.max()) if len(day_index) else day_index
    psi_d = np.zeros((len(full), 4))
    psi_d[full.get_indexer(day_index)] = _influence(by_day, omega)
    lags = _newey_west_lags(len(full))
    v_d, _ = _cluster_variance(psi_d, n_obs, n_params, satt=True, volume_ratio=volume_ratio,
                               lags=lags)
    v_md, _ = _cluster_variance(_influence(_sums(cell, num, den, design.merchant_days), omega), n_obs,
                                n_params, satt=True, volume_ratio=volume_ratio)
    g_t = info["n_treated"]
    df_m, df_d = max(g_t - 1, 1), max(len(full) - 1, 1)
    if cluster == "day" or (cluster == "auto" and g_t < MIN_TREATED_CLUSTERS):
        var, df = v_d, df_d
        how = "day-clustered (Driscoll–Kraay) variance"
        if cluster == "auto":
            how += " (too few treated merchants to cluster on them)"
    elif cluster == "merchant" or not np.isfinite(v_d):
        var, df, how = v_m, df_m, "merchant-clustered variance"
    else:  # two-way: merchant + day − merchant-day (Cameron, Gelbach & Miller 2011)
        var = max(v_m + v_d - v_md, v_m, v_d)
        df = min(df_m, df_d)
        how = "two-way (merchant and day) clustered variance"
    se = float(np.sqrt(var)) if np.isfinite(var) else np.nan
    q = stats.t.ppf(1 - alpha / 2, df)
    p = float(2 * stats.t.sf(abs(effect) / se, df)) if se > 0 else np.nan
    note = (f"{how}, raised to cover the after period's counterfactual noise (SATT); "
            f"t with {df} df; plain merchant-clustered SE {np.sqrt(v_m_plain):.5f}")
    ests = [_Estimate("did_cluster_se", effect, effect - q * se, effect + q * se, p, se, note=note)]
    ests.append(_bootstrap(by_merchant, omega, alpha=alpha, n_boot=n_boot, seed=seed,
                           resampled=resampled))
    info["diagnostics"] = {
        "se_merchant_plain": float(np.sqrt(v_m_plain)), "se_merchant": float(np.sqrt(v_m)),
        "se_day": float(np.sqrt(v_d)), "se_merchant_day": float(np.sqrt(v_md)), "df": int(df), "nw_lags": lags, "mature_share": m,
        "volume_ratio": float(volume_ratio), "eventual_effect": float(eventual),
        "components": {c.numerator: float(d) for c, d in zip(
            components, np.einsum("c,ck->k", _CONTRAST, rates))},
    }
    return info, ests


def _observed_cell_rates(num: np.ndarray, all_den: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Pooled rate per cell as counted as of the analysis: Σ all numerators ÷ all attempts."""
    tot = np.bincount(cell, num.sum(1), 4)
    n = np.bincount(cell, all_den, 4)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, tot / np.where(n > 0, n, 1), np.nan)


def _resampled_sums(rng: np.random.Generator, values: np.ndarray, n_boot: int) -> np.ndarray:
    """(n_boot, k) sums of the rows of ``values`` (m, k) over m draws with replacement, per replicate.

    The draws are indices (a few replicates at a time: the draws of a big
    group are many), counted per replicate — Multinomial(m, uniform) — and
    multiplied by ``values``. With integer-valued ``values`` the sums are
    exact, whatever the order BLAS adds them in.

    Examples
    --------
    >>> w = _resampled_sums(np.random.default_rng(0), np.eye(2), 4)
    >>> w.sum(axis=1).tolist()
    [2.0, 2.0, 2.0, 2.0]
    """
    m = len(values)
    if not m:
        return np.zeros((n_boot, values.shape[1]))
    seen: dict[bytes, int] = {}  # equal columns (zeros, attempts of every metric) summed once
    column = np.array([seen.setdefault(c.tobytes(), len(seen)) for c in values.T])
    distinct = values[:, np.unique(column, return_index=True)[1]]
    out = np.empty((n_boot, distinct.shape[1]))
    step = max(1, (1 << 22) // m)
    for b0 in range(0, n_boot, step):
        b1 = min(n_boot, b0 + step)
        picks = rng.integers(0, m, size=(b1 - b0, m), dtype=np.int32)
        counts = np.empty((b1 - b0, m))
        for i, drawn in enumerate(picks):  # one replicate's counts stay in cache
            counts[i] = np.bincount(drawn, minlength=m)
        out[b0:b1] = counts @ distinct
    return out[:, column]


def _resampled(sums: Sequence[_Sums], n_boot: int, seed) -> list[tuple[np.ndarray, np.ndarray]]:
    """Bootstrap totals ``(num, den)``, each (n_boot, 4, K), of each of ``sums`` (one design's
    merchants, any metrics) from one set of draws: merchants resampled with replacement within
    the scope and within the controls."""
    rng = np.random.default_rng(seed)
    G, treated = len(sums[0].keys), sums[0].treated
    parts = [a.reshape(G, -1) for s in sums for a in (s.num, s.den)]
    # Counts times integer-valued sums: exact in any order, so BLAS may add them up.
    values = np.concatenate(parts, axis=1)
    total = np.zeros((n_boot, values.shape[1]))
    for group in (treated, ~treated):
        total += _resampled_sums(rng, values[group], n_boot)
    pieces = np.split(total, np.cumsum([p.shape[1] for p in parts])[:-1], axis=1)
    return [(pieces[2 * i].reshape(n_boot, *s.num.shape[1:]),
             pieces[2 * i + 1].reshape(n_boot, *s.den.shape[1:])) for i, s in enumerate(sums)]


def _shared_resamples(design: _Design, metrics: Sequence[str], *, n_boot: int,
                      seed) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every metric's bootstrap totals (:func:`_resampled`) from one set of draws, by metric.

    With a fixed seed (an int) each metric's bootstrap draws the same merchants,
    so they are drawn once for all; otherwise (no seed, a generator) each metric
    draws its own, and this is empty.
    """
    if n_boot <= 0 or len(metrics) < 2 or not isinstance(seed, (int, np.integer)):
        return {}
    sums = [_sums(design.cell, *_component_arrays(design.rows, METRICS[m]), design.merchants)
            for m in metrics]
    if sums[0].treated.sum() < 2 or (~sums[0].treated).sum() < 2:
        return {}
    return dict(zip(metrics, _resampled(sums, n_boot, seed)))


def _bootstrap(s: _Sums, omega: np.ndarray, *, alpha: float, n_boot: int, seed,
               resampled: tuple[np.ndarray, np.ndarray] | None = None) -> _Estimate:
    """Percentile interval from resampling merchants within the scope and within the controls.

    ``resampled``: the totals of :func:`_resampled`, if drawn already.
    """
    if n_boot <= 0 or s.treated.sum() < 2 or (~s.treated).sum() < 2:
        return _Estimate("did_bootstrap", np.nan, np.nan, np.nan, np.nan,
                         note="not computed: fewer than 2 merchants in the scope or the controls")
    num, den = _resampled([s], n_boot, seed)[0] if resampled is None else resampled
    boot = _combine(_rates(num, den), omega)
    effect = _combine(_rates(s.num.sum(0), s.den.sum(0)), omega)
    lo, hi = np.nanquantile(boot, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2 * min((1 + np.sum(boot >= 0)) / (n_boot + 1), (1 + np.sum(boot <= 0)) / (n_boot + 1)))
    return _Estimate("did_bootstrap", effect, float(lo), float(hi), float(p), float(np.nanstd(boot)),
                     note=f"cluster bootstrap, {n_boot} resamples of merchants (population effect)")


def _daily_series(design: _Design, components: Sequence[Component],
                  num: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Daily pooled rates of the control and the treated rows: date, post, value, n.

    ``num`` is the numerator part of :func:`_component_arrays` of the design's
    rows. Days where a mature-only component is not yet mature are left out
    of ``value``, so every day's rate is complete (``value_as_of`` counts them).
    """
    rows, cell = design.rows, design.cell
    total = num.sum(1)
    complete = np.ones(len(rows), bool)
    if any(c.mature_only for c in components):
        complete = rows["mature"].to_numpy(bool)
    base = rows[components[0].denominator].to_numpy(float)
    size = 2 * len(design.days.keys)  # per group: by date, then post
    flat = (cell >= T0) * size + 2 * design.days.codes + cell % 2
    used = np.bincount(flat, minlength=2 * size) > 0
    sums = {name: np.bincount(flat, values, 2 * size) for name, values in (
        ("num", total * complete), ("n", base * complete), ("n_all", base), ("num_all", total))}
    date, post = np.repeat(design.days.keys, 2), np.tile(np.array([0, 1], dtype=np.int64), size // 2)
    out = []
    for group in (0, 1):
        ok = used[group * size:(group + 1) * size]
        daily = pd.DataFrame({"date": date[ok], "post": post[ok],
                              **{k: v[group * size:(group + 1) * size][ok] for k, v in sums.items()}})
        with np.errstate(invalid="ignore", divide="ignore"):
            daily["value"] = np.where(daily["n"] > 0, daily["num"] / daily["n"].where(daily["n"] > 0),
                                      np.nan)
            daily["value_as_of"] = daily["num_all"] / daily["n_all"].where(daily["n_all"] > 0)
        out.append(daily)
    return out[0], out[1]


def _its(design: _Design, components: Sequence[Component], daily: pd.DataFrame, *,
         alpha: float) -> _Estimate:
    """Segmented regression of the scope's daily rate (level and slope change), HAC SEs.

    ``daily`` is the scope's :func:`_daily_series`.
    """
    import statsmodels.api as sm

    daily = daily.loc[daily["n"] > 0].sort_values("date")
    pre, post = daily["post"].eq(0).to_numpy(), daily["post"].eq(1).to_numpy()
    if pre.sum() < 3 or post.sum() < 3:
        return _Estimate("its_segmented", np.nan, np.nan, np.nan, np.nan,
                         note="not computed: fewer than 3 complete days before or after the fix")
    t = ((daily["date"] - design.periods.fix_day) / pd.Timedelta(days=1)).to_numpy(float)
    slopes = pre.sum() >= ITS_MIN_SLOPE_DAYS and post.sum() >= ITS_MIN_SLOPE_DAYS
    cols = [np.ones(len(t)), post.astype(float)]
    if slopes:
        cols += [t, t * post]
    x = np.column_stack(cols)
    lags = _newey_west_lags(len(t))
    fit = sm.WLS(daily["value"].to_numpy(float), x, weights=daily["n"].to_numpy(float)).fit(
        cov_type="HAC", cov_kwds={"maxlags": lags})
    level, se = float(fit.params[1]), float(fit.bse[1])
    z = stats.norm.ppf(1 - alpha / 2)
    before = float(fit.params[0])
    note = (f"level change at the fix; Newey–West SE with {lags} lag(s)"
            + (f"; slope change {fit.params[3]:+.5f} per day" if slopes else
               f"; no trend terms (fewer than {ITS_MIN_SLOPE_DAYS} days in a segment)")
            + ("; mature days only" if any(c.mature_only for c in components) else ""))
    return _Estimate("its_segmented", level, level - z * se, level + z * se,
                     float(fit.pvalues[1]), se, before=before, after=before + level, note=note)


# ---------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------


def _fmt_rate(metric: str, value: float) -> str:
    if not np.isfinite(value):
        return "n/a"
    if metric in _UNITS:
        return f"{value:.2f} {_UNITS[metric][0]}"
    return f"{100 * value:.2f}%" if abs(value) < 0.01 else f"{100 * value:.1f}%"


def _decimals(metric: str, value: float) -> int:
    """Decimals that show a change of this size (percentage points or per-100 units)."""
    v = abs(value) * (1 if metric in _UNITS else 100)
    return 2 if (not np.isfinite(v) or v < 0.1 or metric in _UNITS) else 1


def _fmt_change(metric: str, value: float, decimals: int | None = None) -> str:
    """A signed change in percentage points (or in the metric's own unit)."""
    if not np.isfinite(value):
        return "n/a"
    sign = "−" if value < 0 else "+"
    d = _decimals(metric, value) if decimals is None else decimals
    return f"{sign}{abs(value) * (1 if metric in _UNITS else 100):.{d}f}"


def _scope_words(scope_type: str, scope_value: str) -> str:
    return {
        "network_segment": f"on segment {scope_value}",
        "merchant": f"at merchant {scope_value}",
        "terminal_model": f"on {scope_value} terminals",
        "firmware": f"on terminals running firmware {scope_value}",
        "all": "city-wide",
    }.get(scope_type, f"on {scope_type} {scope_value}")


@dataclass(frozen=True)
class FixEffect:
    """The effect of one fix (or fixes evaluated as one) on one metric.

    Attributes
    ----------
    change_id, kind : str
        The (first) change id and its kind; ``evaluated_with`` lists the others.
    scope : dict
        ``{"scope_type": ..., "scope_value": ...}``.
    applied_at : Timestamp
    metric : str
        ``unsettled_rate`` (0–1), ``success_rate`` (0–1) or ``link_errors_per_100``.
    before, after : float
        The scope's pooled rate in the before and after periods as counted as of
        the analysis.
    effect, ci_low, ci_high, p_value : float
        The primary method's estimate, interval and two-sided p-value.
    method : str
        The primary method (``did_cluster_se``; ``its_segmented`` without controls).
    control_before, control_after : float
        The controls' pooled rates.
    n_treated, n_control : int
        Merchants in the scope and among the controls.
    notes : tuple of str
        Plain sentences: flags, periods, dropped controls, the effect once every
        credit has matured.
    flags : tuple of str
        ``too_close``, ``short_before``, ``short_after``, ``few_events``, ``no_controls``.
    methods : DataFrame
        One row per method: ``method, effect, ci_low, ci_high, p_value, se, note``.
    daily : DataFrame
        ``date, group ('scope'/'control'), rate, n, post``: the series :meth:`plot` draws.
    periods : FixPeriods
    diagnostics : dict
        The variance parts (merchant- and day-clustered, plain), degrees of
        freedom, mature share, the effect once every credit matured, and the
        DiD of each component.
    """

    change_id: str
    kind: str
    scope: dict
    applied_at: pd.Timestamp
    metric: str
    before: float
    after: float
    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    method: str
    control_before: float
    control_after: float
    n_treated: int
    n_control: int
    notes: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    evaluated_with: tuple[str, ...] = ()
    se: float = np.nan
    methods: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    daily: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    periods: FixPeriods | None = field(default=None, repr=False)
    diagnostics: dict = field(default_factory=dict, repr=False)

    @property
    def reliable(self) -> bool:
        """False when a flag says the periods or the data cannot carry the estimate."""
        return not self.flags

    def sentence(self) -> str:
        """One plain sentence a person can read aloud.

        Examples
        --------
        >>> e = FixEffect("CHG-1", "network_upgrade", {"scope_type": "network_segment",
        ...     "scope_value": "S1"}, pd.Timestamp("2026-04-08 01:30"), "unsettled_rate",
        ...     0.041, 0.003, -0.038, -0.044, -0.032, 0.0001, "did_cluster_se", 0.002, 0.002, 11, 200)
        >>> import textwrap
        >>> print(textwrap.fill(e.sentence(), 88))
        After the network upgrade on 2026-04-08 the unsettled rate on segment S1 fell from 4.1%
        to 0.30% (−3.8 points, 95% CI −4.4 to −3.2) while control merchants stayed at 0.20%.
        """
        what = _KIND_WORDS.get(self.kind.split("+")[0], f"change {self.change_id}")
        if self.evaluated_with:
            what += f" (with {', '.join(self.evaluated_with)})"
        day = pd.Timestamp(self.applied_at).date()
        where = _scope_words(self.scope.get("scope_type", ""), self.scope.get("scope_value", ""))
        metric = _METRIC_WORDS.get(self.metric, self.metric)
        if not np.isfinite(self.effect):
            return (f"The effect of {what} on {day} on {metric} {where} could not be estimated"
                    f"{': ' + self.notes[0] if self.notes else ''}.")
        move = "fell" if self.after < self.before else "rose" if self.after > self.before else "stayed"
        unit = "points" if self.metric not in _UNITS else _UNITS[self.metric][2]
        d = _decimals(self.metric, self.effect)
        ci = (f", 95% CI {_fmt_change(self.metric, self.ci_low, d)} to "
              f"{_fmt_change(self.metric, self.ci_high, d)}" if np.isfinite(self.ci_low) else "")
        text = (f"After {what} on {day} {metric} {where} {move} from "
                f"{_fmt_rate(self.metric, self.before)} to {_fmt_rate(self.metric, self.after)} "
                f"({_fmt_change(self.metric, self.effect, d)} {unit}{ci})")
        if np.isfinite(self.control_before):
            cb, ca = _fmt_rate(self.metric, self.control_before), _fmt_rate(self.metric, self.control_after)
            text += (f" while control merchants stayed at {ca}" if cb == ca
                     else f" while control merchants went from {cb} to {ca}")
        else:
            text += " (no control merchants: not net of city-wide changes)"
        if not self.reliable and self.notes:
            text += f"; but {self.notes[0]}"
        return text + "."

    def summary(self) -> str:
        """The plain sentence, then a small table (one row per method) and the notes."""
        shown = self.table().drop(columns=["change_id", "metric", "note"], errors="ignore")
        lines = [self.sentence(), "", shown.to_string(index=False, float_format=lambda v: f"{v:.5f}")]
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines)

    def table(self) -> pd.DataFrame:
        """One row per method: ``change_id, metric, method, effect, ci_low, ci_high, p_value, se, note``."""
        table = self.methods.copy() if len(self.methods) else pd.DataFrame(
            [{"method": self.method, "effect": self.effect, "ci_low": self.ci_low,
              "ci_high": self.ci_high, "p_value": self.p_value}])
        table.insert(0, "metric", self.metric)
        table.insert(0, "change_id", self.change_id)
        return table

    def plot(self, ax=None):
        """Scope vs control daily rate with the fix marked (matplotlib OO API); returns the Axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(8, 3.5))
        scale = 1.0 if self.metric in _UNITS else 100.0
        unit = _UNITS[self.metric][0] if self.metric in _UNITS else "%"
        d = self.daily
        for group, style in (("scope", dict(color="C3", lw=1.8)), ("control", dict(color="C0", lw=1.2))):
            part = d.loc[d["group"].eq(group)] if len(d) else d
            if len(part):
                ax.plot(part["date"], scale * part["rate"], marker=".", label=f"{group} (daily)", **style)
        if self.periods is not None:
            ax.axvspan(self.periods.before[0], self.periods.before[1], color="0.9", lw=0,
                       label="before period")
            ax.axvline(pd.Timestamp(self.applied_at).tz_localize(None), color="k", ls="--", lw=1,
                       label=f"fix {self.change_id}")
        for level, group, color in ((self.before, 0, "C3"), (self.after, 1, "C3")):
            if self.periods is not None and np.isfinite(level):
                span = self.periods.before if group == 0 else self.periods.after
                ax.hlines(scale * level, span[0], span[1], colors=color, linestyles=":", lw=1.5)
        ax.set_ylabel(f"{_METRIC_WORDS.get(self.metric, self.metric).removeprefix('the ')} ({unit})")
        where = _scope_words(self.scope.get("scope_type", ""), self.scope.get("scope_value", ""))
        unit_word = "points" if self.metric not in _UNITS else ""
        ax.set_title(f"{self.change_id} {self.kind} {where}: effect "
                     f"{_fmt_change(self.metric, self.effect)} {unit_word}".strip(), fontsize=10)
        ax.legend(fontsize=8, loc="best")
        ax.figure.autofmt_xdate()
        return ax


@dataclass(frozen=True)
class FixEvaluation:
    """Every intervention's effects: ``effects`` (primary, one per fix and metric) and ``table``.

    Attributes
    ----------
    effects : tuple of FixEffect
    notes : tuple of str
        Dataset-level remarks (no interventions table, no link-error log).
    """

    effects: tuple[FixEffect, ...] = ()
    notes: tuple[str, ...] = ()

    def effect(self, change_id: str, metric: str = "unsettled_rate") -> FixEffect:
        """The effect of one fix on one metric (KeyError when absent)."""
        for e in self.effects:
            if e.metric == metric and (e.change_id == change_id or change_id in e.evaluated_with):
                return e
        raise KeyError(f"no effect for change {change_id!r} and metric {metric!r}")

    def table(self) -> pd.DataFrame:
        """Every method's row for every fix and metric (long format)."""
        parts = [e.table() for e in self.effects]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def to_contract(self, all_methods: bool = False) -> pd.DataFrame:
        """The contract's ``fix_effects.csv``: one row per intervention and metric.

        Each row is the primary method (``method`` names it). Fixes evaluated
        as one carry the same numbers under each change id. ``all_methods=True``
        gives one row per method instead (not the contract's shape).
        """
        cols = list(OUTPUTS["fix_effects.csv"])
        rows = []
        for e in self.effects:
            for cid in (e.change_id, *e.evaluated_with):
                if all_methods and len(e.methods):
                    for m in e.methods.itertuples():
                        rows.append({"change_id": cid, "metric": e.metric, "before": e.before,
                                     "after": e.after, "effect": m.effect, "ci_low": m.ci_low,
                                     "ci_high": m.ci_high, "p_value": m.p_value, "method": m.method})
                else:
                    rows.append({"change_id": cid, "metric": e.metric, "before": e.before,
                                 "after": e.after, "effect": e.effect, "ci_low": e.ci_low,
                                 "ci_high": e.ci_high, "p_value": e.p_value, "method": e.method})
        return pd.DataFrame(rows, columns=cols)

    def summary(self) -> str:
        """One sentence per fix on the unsettled rate with its notes, then the dataset's notes."""
        lines = []
        for e in self.effects:
            if e.metric == "unsettled_rate":
                lines.append(f"{', '.join((e.change_id, *e.evaluated_with))}: {e.sentence()}")
                lines += [f"    - {n}" for n in e.notes]
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) if lines else "No interventions to evaluate."

    def plot(self, change_id: str | None = None, metric: str = "unsettled_rate", ax=None):
        """Plot one fix's series (the first fix when ``change_id`` is None)."""
        chosen = [e for e in self.effects if e.metric == metric]
        if change_id is not None:
            chosen = [self.effect(change_id, metric)]
        if not chosen:
            raise ValueError(f"no effect on {metric!r} to plot")
        return chosen[0].plot(ax=ax)


# ---------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------


def _intervention_row(intervention, interventions: pd.DataFrame | None) -> tuple[dict, pd.DataFrame]:
    """The intervention as a dict and the table it belongs to (for neighbouring fixes)."""
    if isinstance(intervention, str):
        if interventions is None:
            raise ValueError("a change id needs interventions=<the interventions table>")
        hit = interventions.loc[interventions["change_id"].eq(intervention)]
        if hit.empty:
            raise KeyError(f"no intervention {intervention!r}; known: "
                           f"{interventions['change_id'].tolist()}")
        row = hit.iloc[0].to_dict()
    else:
        row = dict(intervention)
    table = interventions if interventions is not None else pd.DataFrame([row])
    return row, table


#: Daily signals of a fault for onset detection: cases columns per attempt.
ONSET_SIGNALS = (("unsettled",), ("reversed", "reversal_failed"), ("link_errors",))


def _panel_counts(metrics: Sequence[str]) -> list[str]:
    """The panel's count columns an evaluation of ``metrics`` reads: the metrics' components,
    the onset signals and the control screen's ``unsettled``.

    Examples
    --------
    >>> _panel_counts(["success_rate"])
    ['unsettled', 'reversed', 'reversal_failed', 'link_errors', 'approved', 'attempts']
    """
    wanted = ["unsettled", *[c for signal in ONSET_SIGNALS for c in signal], *_metric_columns(metrics)]
    return [c for c in dict.fromkeys(wanted) if c in COUNT_COLUMNS]


def _onset_signals(panel: pd.DataFrame, treated: np.ndarray) -> list[pd.DataFrame]:
    """The scope's daily ``date, cases, n`` for each of :data:`ONSET_SIGNALS` (mature days only).

    Link errors count only when the panel has them.
    """
    rows = panel.loc[treated & panel["mature"].to_numpy(bool)]
    out = []
    for cols in ONSET_SIGNALS:
        if cols == ("link_errors",) and not panel.attrs.get("link_errors_known", True):
            continue
        if not set(cols) <= set(panel.columns):
            continue
        frame = pd.DataFrame({"date": rows["business_date"].to_numpy(),
                              "cases": rows[list(cols)].to_numpy(float).sum(1),
                              "n": rows["attempts"].to_numpy(float)})
        out.append(frame.groupby("date", as_index=False).sum())
    return out


def evaluate_fix(
    panel: pd.DataFrame,
    intervention,
    *,
    interventions: pd.DataFrame | None = None,
    terminals: pd.DataFrame | None = None,
    treated: Iterable[str] | None = None,
    controls: Iterable[str] | None = None,
    exclude_merchants: Iterable[str] = (),
    metric: str = "unsettled_rate",
    window_days: int | None = None,
    onset=None,
    detect: bool = True,
    match=None,
    n_boot: int = 999,
    seed=None,
    min_days: int = 3,
    min_events: int = 5,
    alpha: float = 0.05,
    cluster: str = "auto",
    screen_alpha: float = 0.01,
    periods: FixPeriods | None = None,
    scopes: Mapping[tuple[str, str], np.ndarray] | None = None,
) -> FixEffect:
    """The effect of one intervention on one metric of its scope (see the module docstring).

    Parameters
    ----------
    panel : DataFrame
        :func:`analysis.metrics.daily_panel` (merchant or terminal level).
    intervention : str or mapping
        A change id (with ``interventions``) or an interventions row.
    interventions : DataFrame, optional
        The whole table: fixes on the same scope bound the periods.
    terminals : DataFrame, optional
        For a merchant-level panel: a merchant is in scope when any terminal is.
    treated, controls : iterable of str, optional
        Merchant ids overriding the scope and the default controls.
    exclude_merchants : iterable of str
        Never controls (e.g. merchants of any shared fault).
    metric : str
        A key of :data:`METRICS`.
    window_days : int, optional
        Longest before and after period.
    onset : time-like, optional
        When the fault began (the first fix's before period starts there);
        with ``detect`` and no onset, :func:`detect_onset` looks for a step up.
    match : str or tuple, optional
        ``'mcc'``, ``'volume'`` or both: matched controls.
    n_boot, seed : int
        Cluster bootstrap resamples (0 skips it) and its seed.
    min_days, min_events : int
        Shortest period and fewest unsettled attempts in the scope that count.
    alpha : float
        1 − confidence level.
    cluster : {'auto', 'merchant', 'day'}
        Variance: two-way clustered by merchant and day (``auto``; with fewer
        than 3 treated merchants, day only), or one of them.
    screen_alpha : float
        Family-wise level of the control screen (0 turns it off).
    periods : FixPeriods, optional
        Precomputed periods (:func:`split_periods`).
    scopes : mapping, optional
        Precomputed :func:`scope_mask` of ``panel`` by ``(scope_type, scope_value)``
        (evaluating many fixes on one big panel).

    Returns
    -------
    FixEffect
    """
    _check_metric(metric)
    row, design, match_notes = _design_of(
        panel, intervention, interventions=interventions, terminals=terminals, treated=treated,
        controls=controls, exclude_merchants=exclude_merchants, window_days=window_days, onset=onset,
        detect=detect, match=match, min_days=min_days, screen_alpha=screen_alpha, periods=periods,
        scopes=scopes)
    return _effect(design, design.periods, row, metric, alpha=alpha, cluster=cluster, n_boot=n_boot,
                   seed=seed, min_events=min_events, extra_notes=match_notes)


def _check_metric(metric: str) -> None:
    """ValueError unless ``metric`` is a key of :data:`METRICS`."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")


def _design_of(
    panel: pd.DataFrame,
    intervention,
    *,
    interventions: pd.DataFrame | None = None,
    terminals: pd.DataFrame | None = None,
    treated: Iterable[str] | None = None,
    controls: Iterable[str] | None = None,
    exclude_merchants: Iterable[str] = (),
    window_days: int | None = None,
    onset=None,
    detect: bool = True,
    match=None,
    min_days: int = 3,
    screen_alpha: float = 0.01,
    periods: FixPeriods | None = None,
    scopes: Mapping[tuple[str, str], np.ndarray] | None = None,
    keys: _PanelKeys | None = None,
) -> tuple[dict, _Design, list[str]]:
    """The intervention row, the design of its evaluation (whatever the metric) and notes on the
    matched controls; parameters as :func:`evaluate_fix` (``keys``: the panel's, if computed)."""
    row, table = _intervention_row(intervention, interventions)
    stype, svalue = str(row["scope_type"]), str(row["scope_value"])
    scopes = _ScopeMasks(panel, terminals) if scopes is None else scopes
    keys = _PanelKeys.of(panel) if keys is None else keys
    if treated is not None:
        in_scope = panel["merchant_id"].isin(list(treated)).to_numpy()
    else:
        in_scope = scopes[stype, svalue]
    if periods is None:
        onsets = {str(row["change_id"]): onset} if onset is not None else None
        first, last = panel["business_date"].min(), panel["business_date"].max()
        periods = split_periods(table, first_day=first, last_day=last, onsets=onsets,
                                window_days=window_days, min_days=min_days)[str(row["change_id"])]
        if onset is None and detect and not periods.previous:
            periods = _with_detected_onset(periods, _onset_signals(panel, in_scope),
                                           table, first, last, window_days, min_days)
    if not in_scope.any():
        periods = replace(periods, flags=("no_data", *periods.flags), notes=(
            f"nothing in the data is in the scope ({stype} {svalue})", *periods.notes))
    other = _other_scopes(panel, table, periods, scopes)
    if controls is not None:
        control = panel["merchant_id"].isin(list(controls)).to_numpy() & ~in_scope
    else:
        control = _control_mask(keys, in_scope, exclude_merchants, other)
    control, match_notes = _match_controls(panel, in_scope, control, match)
    design = _build_design(panel, keys, periods, in_scope, control, screen_alpha=screen_alpha)
    return row, design, match_notes


def _with_detected_onset(periods, signals, table, first, last, window_days, min_days) -> FixPeriods:
    """Periods whose first before period starts at a detected step up, if there is one."""
    pre = [d.loc[(d["date"] >= periods.before[0]) & (d["date"] < periods.before[1])] for d in signals]
    onset = detect_onset(pre, min_days=min_days)
    if onset is None:
        return periods
    out = split_periods(table, first_day=first, last_day=last, onsets={periods.change_ids[0]: onset},
                        window_days=window_days, min_days=min_days)[periods.change_ids[0]]
    remarks = tuple(n.replace("the fault's onset", "the fault's onset (detected as a step up of "
                              "the scope's unsettled, reversal or link-error rate)") for n in out.remarks)
    return replace(out, remarks=remarks)


def _other_scopes(panel, table, periods: FixPeriods, scopes: Mapping[tuple[str, str], np.ndarray]) -> np.ndarray:
    """Rows in the scope of another fix applied within this evaluation's periods."""
    mask = np.zeros(len(panel), dtype=bool)
    lo, hi = periods.before[0], periods.after[1]
    for r in table.itertuples(index=False):
        if str(r.change_id) in periods.change_ids or (
            (str(r.scope_type), str(r.scope_value)) == (periods.scope_type, periods.scope_value)
        ):
            continue
        t = _local_naive(r.applied_at)
        if lo <= t.normalize() < hi and str(r.scope_type) != "all":
            mask |= scopes[str(r.scope_type), str(r.scope_value)]
    return mask


def _effect(design: _Design, periods: FixPeriods, row: dict, metric: str, *, alpha=0.05,
            cluster="auto", n_boot=999, seed=None, min_events=5, extra_notes=(),
            resampled=None) -> FixEffect:
    """Run the estimators on a design and assemble the :class:`FixEffect` (defaults as
    :func:`evaluate_fix`; ``resampled``: the bootstrap totals, if drawn already)."""
    comps = METRICS[metric]
    cell = design.cell
    num, den = _component_arrays(design.rows, comps)
    daily = _daily_series(design, comps, num)
    flags, notes = list(periods.flags), list(periods.notes)
    remarks = list(periods.remarks) + list(extra_notes) + list(design.notes)
    has_treated = bool((cell >= T0).any()) and (cell == T0).any() and (cell == T1).any()
    has_control = bool((cell == C0).any()) and bool((cell == C1).any())
    if metric == "link_errors_per_100" and "link_errors" in design.rows and \
            not design.rows["link_errors"].any():
        remarks.append("no link-error events in the periods (is there a terminal_events table?)")
    events = design.rows.loc[cell >= T0, "unsettled"].sum() if "unsettled" in design.rows else 0
    if events < min_events and metric == "unsettled_rate" and "no_data" not in flags:
        flags.append("few_events")
        notes.append(f"only {int(events)} unsettled attempts in the scope over both periods "
                     f"(fewer than {min_events}): too few events to estimate an effect reliably")
    methods: list[_Estimate] = []
    info = {"cell_rate": np.full(4, np.nan), "n_treated": 0, "n_control": 0, "m": 1.0,
            "eventual": np.nan}
    if has_treated and has_control:
        info, methods = _did(design, comps, num, den, alpha=alpha, cluster=cluster, n_boot=n_boot,
                             seed=seed, resampled=resampled)
        if info["m"] < 1 and any(c.mature_only for c in comps):
            remarks.append(
                f"{100 * (1 - info['m']):.0f}% of the after period's attempts are still inside "
                f"their credit cycle, so their not-cleared credits cannot be seen yet; the effect "
                f"is as of the analysis; once every credit has matured it is expected to be "
                f"{_fmt_change(metric, info['eventual'])} points")
    elif has_treated:
        flags.append("no_controls")
        notes.append("no control merchants (the scope covers everyone, or all were excluded): "
                     "a before/after comparison, not net of city-wide changes")
    elif "no_data" not in flags:
        flags.append("no_data")
        notes.append("the scope has no attempts in the before or after period")
    if has_treated:
        methods.append(_its(design, comps, daily[1], alpha=alpha))
        if not has_control:
            info["cell_rate"] = _observed_cell_rates(num, design.rows[comps[0].denominator]
                                                     .to_numpy(float), cell)
            info["n_treated"] = len(np.unique(design.merchants.codes[cell >= T0]))
    remarks += _interval_remarks(methods, metric)
    primary = next((m for m in methods if m.method == _PRIMARY), None)
    if primary is None:
        primary = next((m for m in methods if m.method == "its_segmented"), None)
    if primary is None:
        primary = _Estimate(_PRIMARY, np.nan, np.nan, np.nan, np.nan)
    rates = info["cell_rate"]
    table = pd.DataFrame([{"method": m.method, "effect": m.effect, "ci_low": m.ci_low,
                           "ci_high": m.ci_high, "p_value": m.p_value, "se": m.se, "note": m.note}
                          for m in methods], columns=["method", "effect", "ci_low", "ci_high",
                                                      "p_value", "se", "note"])
    ids = periods.change_ids
    cid = str(row["change_id"]) if str(row["change_id"]) in ids else ids[0]
    return FixEffect(
        change_id=cid,
        kind=str(row.get("kind", periods.kind)),
        scope={"scope_type": periods.scope_type, "scope_value": periods.scope_value},
        applied_at=periods.applied_at,
        metric=metric,
        before=float(rates[T0]),
        after=float(rates[T1]),
        effect=float(primary.effect),
        ci_low=float(primary.ci_low),
        ci_high=float(primary.ci_high),
        p_value=float(primary.p_value),
        method=primary.method,
        control_before=float(rates[C0]),
        control_after=float(rates[C1]),
        n_treated=int(info["n_treated"]),
        n_control=int(info["n_control"]),
        notes=tuple(notes + remarks),
        flags=tuple(dict.fromkeys(flags)),
        evaluated_with=tuple(c for c in ids if c != cid),
        se=float(primary.se),
        methods=table,
        daily=_plot_series(daily),
        periods=periods,
        diagnostics=info.get("diagnostics", {}),
    )


def _interval_remarks(methods: list[_Estimate], metric: str) -> list[str]:
    """Say so when the population (bootstrap) interval excludes 0 but the SATT interval does not."""
    by = {m.method: m for m in methods}
    did, boot = by.get(_PRIMARY), by.get("did_bootstrap")
    if did is None or boot is None or not np.isfinite(boot.ci_low):
        return []
    if did.ci_low <= 0 <= did.ci_high and not boot.ci_low <= 0 <= boot.ci_high:
        unit = "points" if metric not in _UNITS else _UNITS[metric][2]
        return [f"the fix changed the expected rate (cluster bootstrap 95% CI "
                f"{_fmt_change(metric, boot.ci_low)} to {_fmt_change(metric, boot.ci_high)} {unit}); "
                "the primary interval is wider because it is about what these particular "
                "after-period attempts would have suffered without the fix, which a short or "
                "lumpy period leaves uncertain"]
    return []


def _plot_series(daily: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The series :meth:`FixEffect.plot` draws, from the control and scope :func:`_daily_series`."""
    parts = []
    for group, name in ((1, "scope"), (0, "control")):
        d = daily[group]
        if len(d):
            parts.append(pd.DataFrame({"date": d["date"], "group": name, "rate": d["value_as_of"],
                                       "n": d["n_all"], "post": d["post"]}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["date", "group", "rate", "n", "post"])


#: Attributes of a shared fault that name a fix scope value.
_SCOPE_ATTRIBUTES = ("network_segment", "model", "terminal_model", "firmware", "merchant_id")
#: Attributes of a fault that hits everyone alike (no reason to drop its merchants as controls).
_CITY_WIDE_ATTRIBUTES = ("scope", "payee_bank")


def _fault_fields(fault) -> tuple[object, dict, tuple]:
    get = fault.get if isinstance(fault, Mapping) else (lambda k, f=fault: getattr(f, k, None))
    return get("start"), dict(get("attributes") or {}), tuple(get("merchant_ids") or ())


def onsets_from_faults(shared_faults: Iterable) -> dict[str, pd.Timestamp]:
    """Fault starts keyed by the scope values that localize them (for ``onsets=``).

    Accepts :class:`analysis.faults.SharedFault` objects or the contract's
    ``shared_faults.json`` dicts. A fault with ``{"scope": "all"}`` gives the
    start for scope value ``*``; the earliest start wins.

    Examples
    --------
    >>> onsets_from_faults([{"start": "2026-03-16T08:00:00+08:00",
    ...                      "attributes": {"network_segment": "CT-PD-8367"}}])
    {'CT-PD-8367': Timestamp('2026-03-16 08:00:00+0800', tz='Asia/Shanghai')}
    """
    out: dict[str, pd.Timestamp] = {}
    for fault in shared_faults:
        start, attrs, _ = _fault_fields(fault)
        if start is None:
            continue
        t = to_local_time(pd.Timestamp(start))
        keys = [str(attrs[k]) for k in _SCOPE_ATTRIBUTES if k in attrs]
        if attrs.get("scope") == "all":
            keys.append("*")
        for key in keys:
            out[key] = min(out.get(key, t), t)
    return out


def exclusions_from_faults(shared_faults: Iterable) -> set[str]:
    """Merchants of localized shared faults: not fit to be controls (for ``exclude_merchants=``).

    City-wide faults (``{"scope": "all"}``, a receiving bank's outage) hit
    treated and control merchants alike, which the difference in differences
    removes; their merchants stay eligible.

    Examples
    --------
    >>> sorted(exclusions_from_faults([
    ...     {"merchant_ids": ["M1", "M2", "M3"], "attributes": {"network_segment": "S1"}},
    ...     {"merchant_ids": ["M4", "M5", "M6"], "attributes": {"payee_bank": "B"}}]))
    ['M1', 'M2', 'M3']
    """
    out: set[str] = set()
    for fault in shared_faults:
        _, attrs, merchants = _fault_fields(fault)
        if not any(k in attrs for k in _CITY_WIDE_ATTRIBUTES):
            out.update(str(m) for m in merchants)
    return out


def evaluate_fixes(
    dataset,
    reconciled: pd.DataFrame,
    *,
    exclude_merchants: Iterable[str] = (),
    onsets: Mapping[str, object] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    as_of=None,
    window_days: int | None = None,
    n_boot: int = 999,
    seed: int | None = 0,
    min_days: int = 3,
    detect: bool = True,
    **options,
) -> FixEvaluation:
    """Evaluate every ``interventions`` row of a dataset on every metric.

    Parameters
    ----------
    dataset : analysis.io.Dataset
    reconciled : DataFrame
        :func:`analysis.reconcile.reconcile` of the dataset.
    exclude_merchants : iterable of str
        Never controls: the merchants of any shared fault.
    onsets : mapping, optional
        Fault onsets by change id or scope value (:func:`onsets_from_faults`);
        missing ones are detected.
    metrics : sequence of str
        Keys of :data:`METRICS` (``unsettled_rate`` always comes first).
    as_of : time-like, optional
        Default ``reconciled.attrs['as_of']``.
    **options
        Passed to :func:`evaluate_fix` (``match``, ``alpha``, ``cluster``, ...).

    Returns
    -------
    FixEvaluation
    """
    moment = moment_of(reconciled, as_of)
    with frames_engine(reconciled=reconciled, terminals=dataset.terminals, terminal_events=dataset.terminal_events,
                       merchants=dataset.merchants) as engine:
        return evaluate_fixes_on(engine, dataset.interventions, as_of=moment, exclude_merchants=exclude_merchants,
                                 onsets=onsets, metrics=metrics, window_days=window_days, n_boot=n_boot, seed=seed,
                                 min_days=min_days, detect=detect, **options)


def evaluate_fixes_on(
    engine: Engine,
    interventions: pd.DataFrame | None,
    *,
    as_of,
    exclude_merchants: Iterable[str] = (),
    onsets: Mapping[str, object] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    window_days: int | None = None,
    n_boot: int = 999,
    seed: int | None = 0,
    min_days: int = 3,
    detect: bool = True,
    **options,
) -> FixEvaluation:
    """:func:`evaluate_fixes` of the data in an engine.

    The terminal-level panel is built where the data lives
    (:func:`analysis.metrics.daily_panel_on` over the engine's ``reconciled``,
    ``terminals``, ``merchants`` and, when present, ``terminal_events``); the
    evaluation runs on it in pandas.

    Parameters
    ----------
    engine : Engine
    interventions : DataFrame or None
        The dataset's ``interventions`` table (None when it has none).
    as_of : time-like
        The moment of analysis.
    exclude_merchants, onsets, metrics, window_days, n_boot, seed, min_days, detect, **options
        As :func:`evaluate_fixes`.

    Returns
    -------
    FixEvaluation

    Examples
    --------
    >>> from analysis.aggregates import frames_engine                              # doctest: +SKIP
    >>> with frames_engine(reconciled=rec, terminals=ds.terminals, merchants=ds.merchants,
    ...                    terminal_events=ds.terminal_events) as eng:              # doctest: +SKIP
    ...     ev = evaluate_fixes_on(eng, ds.interventions, as_of="2026-04-30 18:00")  # doctest: +SKIP
    """
    notes = []
    iv = interventions
    if iv is None or not len(iv):
        notes.append("no interventions table: the effect of fixes cannot be evaluated"
                     if iv is None else "the interventions table is empty")
        return FixEvaluation((), tuple(notes))
    if not engine.has("terminal_events"):
        notes.append("no terminal_events table: link errors per 100 attempts cannot be measured")
        metrics = [m for m in metrics if m != "link_errors_per_100"]
    metrics = ["unsettled_rate", *[m for m in metrics if m != "unsettled_rate"]]
    for metric in metrics:
        _check_metric(metric)
    panel = daily_panel_on(engine, as_of=as_of, level="terminal", mcc=True, credit_days=False,
                           counts=_panel_counts(metrics), release=True)
    scopes = _ScopeMasks(panel, options.get("terminals"))
    keys = _PanelKeys.of(panel)
    effect_options = {k: options.pop(k) for k in ("alpha", "cluster", "min_events") if k in options}
    first, last = panel["business_date"].min(), panel["business_date"].max()
    all_periods = split_periods(iv, first_day=first, last_day=last, onsets=onsets,
                                window_days=window_days, min_days=min_days)
    with engine.spilled():
        effects = []
        done: set[tuple[str, ...]] = set()
        for r in iv.sort_values("applied_at", kind="stable").itertuples(index=False):
            periods = all_periods[str(r.change_id)]
            if periods.change_ids in done:
                continue
            done.add(periods.change_ids)
            row = r._asdict()
            in_scope = scopes[periods.scope_type, periods.scope_value]
            if detect and not periods.previous and not _onset_for(onsets, periods.change_ids,
                                                                   periods.scope_value):
                periods = _with_detected_onset(periods, _onset_signals(panel, in_scope),
                                               iv, first, last, window_days, min_days)
            row, design, match_notes = _design_of(
                panel, row, interventions=iv, exclude_merchants=exclude_merchants, periods=periods,
                min_days=min_days, scopes=scopes, keys=keys, **options)
            shared = _shared_resamples(design, metrics, n_boot=n_boot, seed=seed)
            for metric in metrics:  # one design (and one bootstrap draw) serves every metric
                effects.append(_effect(design, design.periods, row, metric, n_boot=n_boot, seed=seed,
                                       extra_notes=match_notes, resampled=shared.get(metric),
                                       **effect_options))
    return FixEvaluation(tuple(effects), tuple(notes))


# ---------------------------------------------------------------------------------
# What if? Avoided incidents of a fix not yet made
# ---------------------------------------------------------------------------------

WHATIF_KINDS = ("network_upgrade", "message_validation")
#: Inputs of the what-if model: name -> (numerator column, denominator column).
WHATIF_RATES = {
    "corrupted_rate": ("link_corrupted", "attempts"),
    "lost_rate": ("link_lost", "attempts"),
    "reversal_given_corrupted": ("corrupted_reversals", "link_corrupted"),
    "reversal_given_lost": ("lost_reversals", "link_lost"),
    "reversal_failure": ("reversals_failed", "reversals"),
    "not_cleared_rate": ("not_cleared", "attempts"),
}


@dataclass(frozen=True)
class WhatIf:
    """The predicted effect of a fix before it is made (see :func:`simulate_fix`).

    Attributes
    ----------
    kinds : tuple of str
        The fixes assumed (``network_upgrade``, ``message_validation`` or both).
    scope : dict
    period : (Timestamp, Timestamp)
        The days whose data fed the model (inclusive start, exclusive end).
    attempts, days : int
        Attempts and days with attempts observed in the period.
    horizon_days : int
    horizon_attempts : float
        Attempts expected over the horizon at the period's daily volume.
    inputs : DataFrame
        Each estimated rate: ``estimate, ci_low, ci_high, cases, n, dispersion``.
    assumptions : dict
        ``reduction``, ``retries``, ``resend_failure``, ``link_error_scale``.
    unsettled_now, unsettled_after : float
        Link-caused unsettled rate per attempt now (model) and with the fix.
    avoided_unsettled_rate, avoided_incident_rate : (float, float, float)
        Mean and 95% interval (posterior over the inputs) per attempt.
    avoided_unsettled, avoided_incidents : (float, float, float)
        Expected counts over the horizon and a 95% predictive interval.
    draws : DataFrame
        Posterior draws of every input and output.
    notes : tuple of str
    """

    kinds: tuple[str, ...]
    scope: dict
    period: tuple
    attempts: int
    days: int
    horizon_days: int
    horizon_attempts: float
    inputs: pd.DataFrame = field(repr=False)
    assumptions: dict = field(repr=False)
    unsettled_now: float = np.nan
    unsettled_after: float = np.nan
    avoided_unsettled_rate: tuple = (np.nan, np.nan, np.nan)
    avoided_incident_rate: tuple = (np.nan, np.nan, np.nan)
    avoided_unsettled: tuple = (np.nan, np.nan, np.nan)
    avoided_incidents: tuple = (np.nan, np.nan, np.nan)
    draws: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """One plain sentence, then the inputs table."""
        what = " and ".join(_KIND_WORDS.get(k, k) for k in self.kinds)
        if "message_validation" in self.kinds:
            what += f" ({self.assumptions['retries']} resend(s))"
        where = _scope_words(self.scope.get("scope_type", ""), self.scope.get("scope_value", ""))
        u, i = self.avoided_unsettled, self.avoided_incidents
        r = self.avoided_unsettled_rate
        text = (f"With {what} {where}, about {u[0]:,.0f} (95% interval {u[1]:,.0f}–{u[2]:,.0f}) "
                f"of the next {self.horizon_days} days' ~{self.horizon_attempts:,.0f} attempts would "
                f"not end unsettled ({_fmt_change('unsettled_rate', -r[0])} points of unsettled rate, "
                f"95% CI {_fmt_change('unsettled_rate', -r[2])} to {_fmt_change('unsettled_rate', -r[1])}), "
                f"and about {i[0]:,.0f} ({i[1]:,.0f}–{i[2]:,.0f}) fewer incidents overall "
                f"(model fitted on {self.attempts:,} attempts, {self.period[0].date()} to "
                f"{(self.period[1] - pd.Timedelta(days=1)).date()}).")
        lines = [text, "", self.inputs.round(5).to_string()]
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines)

    def plot(self, ax=None):
        """Posterior of the avoided unsettled rate (points) with its mean and interval; returns the Axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.2))
        values = 100 * self.draws["avoided_unsettled_rate"]
        ax.hist(values, bins=40, color="C0", alpha=0.7, label="posterior draws")
        mean, lo, hi = (100 * v for v in self.avoided_unsettled_rate)
        ax.axvline(mean, color="k", lw=1.5, label=f"mean {mean:.3f} points")
        ax.axvspan(lo, hi, color="C1", alpha=0.2, label="95% interval")
        ax.set_xlabel("avoided unsettled rate (percentage points)")
        ax.set_ylabel("draws")
        ax.set_title(f"What if: {' + '.join(self.kinds)} "
                     f"{_scope_words(self.scope.get('scope_type', ''), self.scope.get('scope_value', ''))}",
                     fontsize=10)
        ax.legend(fontsize=8)
        return ax


def _whatif_inputs(rows: pd.DataFrame, n_draws: int, rng) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Point estimates and posterior draws of :data:`WHATIF_RATES` from the scope's rows.

    Each rate gets a Jeffreys Beta(k + ½, n − k + ½) posterior on an effective
    sample size divided by the day-to-day dispersion (Pearson χ²/df of the
    daily counts, at least 1), so lumpy counts (a failed batch upload) widen
    their interval instead of pretending to be binomial.
    """
    daily = rows.groupby("business_date")[list({c for pair in WHATIF_RATES.values() for c in pair})].sum()
    table, draws = [], {}
    for name, (num, den) in WHATIF_RATES.items():
        k, n = float(daily[num].sum()), float(daily[den].sum())
        p = k / n if n > 0 else 0.0
        ok = daily[den] > 0
        e = daily.loc[ok, den] * p
        var = np.maximum(e * (1 - p), 1e-12)
        phi = max(1.0, float(((daily.loc[ok, num] - e) ** 2 / var).sum()) / max(ok.sum() - 1, 1)) \
            if ok.sum() > 1 and 0 < p < 1 else 1.0
        a, b = k / phi + 0.5, (n - k) / phi + 0.5
        draws[name] = rng.beta(a, b, size=n_draws)
        lo, hi = stats.beta.ppf([0.025, 0.975], a, b)
        table.append({"input": name, "estimate": p, "ci_low": lo, "ci_high": hi, "cases": int(k),
                      "n": int(n), "dispersion": phi})
    return pd.DataFrame(table).set_index("input"), pd.DataFrame(draws)


def _whatif_model(d: pd.DataFrame, kinds, *, reduction: float, retries: int, resend_failure,
                  link_error_scale: float) -> pd.DataFrame:
    """Link-caused unsettled and incident rates now and with the fix, per draw (vectorized).

    A corrupted message fails its MAC check: without validation the terminal
    reverses it (with probability ``reversal_given_corrupted``; otherwise the
    host declines it ``A0``/``30``) and the reversal fails with probability
    ``reversal_failure`` — unsettled; with validation it is detected and
    resent, and stays a failure only if all ``retries`` resends fail too
    (probability π each, π the link failure rate by default). A lost message
    needs a reversal likewise; validation cannot help it. A failed batch
    upload leaves purchases not cleared. A network upgrade scales every link
    failure (corrupted, lost, failed uploads) by ``1 − reduction``.
    """
    corrupted = d["corrupted_rate"] * link_error_scale
    lost = d["lost_rate"] * link_error_scale
    batch = d["not_cleared_rate"] * link_error_scale
    fail = d["reversal_failure"]
    per_corrupted = d["reversal_given_corrupted"] * fail
    per_lost = d["reversal_given_lost"] * fail
    pi = (corrupted + lost).clip(0, 1) if resend_failure is None else pd.Series(resend_failure, d.index)
    network = 1 - reduction if "network_upgrade" in kinds else 1.0
    still = pi**retries if "message_validation" in kinds else 1.0
    unsettled_now = corrupted * per_corrupted + lost * per_lost + batch
    incidents_now = corrupted + lost + batch
    unsettled_after = network * (corrupted * still * per_corrupted + lost * per_lost + batch)
    incidents_after = network * (corrupted * still + lost + batch)
    return d.assign(unsettled_now=unsettled_now, unsettled_after=unsettled_after,
                    avoided_unsettled_rate=unsettled_now - unsettled_after,
                    avoided_incident_rate=incidents_now - incidents_after, resend_failure=pi)


def simulate_fix(
    panel_or_dataset,
    scope,
    kind="network_upgrade",
    *,
    link_error_rate: float | None = None,
    validation: bool | None = None,
    retries: int = 1,
    reduction: float = 0.9,
    resend_failure: float | None = None,
    period=None,
    window_days: int = 28,
    horizon_days: int = 30,
    reconciled: pd.DataFrame | None = None,
    n_draws: int = 4000,
    seed=0,
) -> WhatIf:
    """Estimate, before a fix is made, how many incidents it would avoid in its scope.

    Only the dataset is used: the observed rates of corrupted and lost
    messages, how often each needed a reversal, how often reversals failed on
    the scope, and the not-cleared rate (failed batch uploads), each with a
    Beta posterior; the pipeline model is :func:`_whatif_model`. The result
    is the expected avoided unsettled rate with a 95% interval over the
    posterior, and expected avoided counts over ``horizon_days`` at the
    observed volume with a predictive interval (binomial noise added).

    Parameters
    ----------
    panel_or_dataset : DataFrame or Dataset
        A :func:`analysis.metrics.daily_panel` (merchant or terminal level), or
        a dataset (then ``reconciled`` is needed; a terminal panel is built).
    scope : tuple or mapping
        ``(scope_type, scope_value)`` or ``{"scope_type": ..., "scope_value": ...}``.
    kind : str or tuple of str
        ``network_upgrade``, ``message_validation`` or both.
    link_error_rate : float, optional
        Link failures per attempt to assume (corrupted + lost); default the
        observed one. The observed mix of corrupted and lost messages and of
        failed uploads is scaled to it.
    validation : bool, optional
        Add message validation (default: when ``kind`` names it).
    retries : int
        Resends message validation allows.
    reduction : float
        Share of link failures a network upgrade removes (0–1).
    resend_failure : float, optional
        Probability a resend fails too; default the link failure rate.
    period : (date, date), optional
        Days to fit on (inclusive start, exclusive end); default the last
        ``window_days`` days of the scope's data (mature days only).
    horizon_days : int
        Days ahead for the expected counts.
    n_draws, seed : int
        Posterior draws and their seed.

    Returns
    -------
    WhatIf

    Examples
    --------
    >>> w = simulate_fix(panel, ("network_segment", "CT-PD-8367"), "message_validation")  # doctest: +SKIP
    >>> print(w.summary())                                                             # doctest: +SKIP
    """
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    if validation and "message_validation" not in kinds:
        kinds += ("message_validation",)
    if validation is False:
        kinds = tuple(k for k in kinds if k != "message_validation")
    bad = [k for k in kinds if k not in WHATIF_KINDS]
    if bad or not kinds:
        raise ValueError(f"simulate_fix models {WHATIF_KINDS}, got {kinds!r}")
    if not 0 <= reduction <= 1 or retries < 0:
        raise ValueError("reduction must lie in [0, 1] and retries be >= 0")
    stype, svalue = (scope["scope_type"], scope["scope_value"]) if isinstance(scope, Mapping) else scope
    panel = panel_or_dataset
    if not isinstance(panel_or_dataset, pd.DataFrame):
        if reconciled is None:
            raise ValueError("a dataset needs reconciled=<reconcile(...) of it>")
        ds = panel_or_dataset
        panel = daily_panel(reconciled, ds.terminals, ds.terminal_events, level="terminal")
    rows = panel.loc[scope_mask(panel, str(stype), str(svalue)) & panel["mature"].to_numpy(bool)]
    if rows.empty or rows["attempts"].sum() == 0:
        raise ValueError(f"no mature attempts in scope {stype} {svalue}")
    if period is None:
        end = rows["business_date"].max() + pd.Timedelta(days=1)
        start = end - pd.Timedelta(days=window_days)
    else:
        start, end = (pd.Timestamp(x).normalize() for x in period)
    rows = rows.loc[(rows["business_date"] >= start) & (rows["business_date"] < end)]
    if rows.empty:
        raise ValueError(f"no mature attempts in scope {stype} {svalue} "
                         f"between {start.date()} and {end.date()}")
    rng = np.random.default_rng(seed)
    inputs, draws = _whatif_inputs(rows, n_draws, rng)
    observed = inputs.loc["corrupted_rate", "estimate"] + inputs.loc["lost_rate", "estimate"]
    scale = 1.0 if link_error_rate is None else (link_error_rate / observed if observed > 0 else np.nan)
    if not np.isfinite(scale):
        raise ValueError("no link failure observed in the period: cannot scale to link_error_rate")
    out = _whatif_model(draws, kinds, reduction=reduction, retries=retries,
                        resend_failure=resend_failure, link_error_scale=scale)
    days = int(rows["business_date"].nunique())
    horizon = float(rows["attempts"].sum()) / max(days, 1) * horizon_days
    notes = []
    if link_error_rate is not None:
        notes.append(f"link failures assumed at {100 * link_error_rate:.2f}% of attempts "
                     f"(observed {100 * observed:.2f}%)")
    if inputs.loc["reversal_failure", "n"] < 20:
        notes.append(f"only {inputs.loc['reversal_failure', 'n']} reversals on the scope: the "
                     "reversal failure probability is uncertain")

    def interval(col):
        v = out[col].to_numpy()
        return (float(v.mean()), *map(float, np.quantile(v, [0.025, 0.975])))

    def counts(col):
        n = int(round(horizon))
        sim = rng.binomial(n, np.clip(out[col].to_numpy(), 0, 1))
        return (float(out[col].mean() * horizon), *map(float, np.quantile(sim, [0.025, 0.975])))

    return WhatIf(
        kinds=kinds, scope={"scope_type": str(stype), "scope_value": str(svalue)},
        period=(start, end), attempts=int(rows["attempts"].sum()), days=days,
        horizon_days=horizon_days, horizon_attempts=horizon, inputs=inputs,
        assumptions={"reduction": reduction, "retries": retries, "resend_failure": resend_failure,
                     "link_error_scale": scale},
        unsettled_now=float(out["unsettled_now"].mean()),
        unsettled_after=float(out["unsettled_after"].mean()),
        avoided_unsettled_rate=interval("avoided_unsettled_rate"),
        avoided_incident_rate=interval("avoided_incident_rate"),
        avoided_unsettled=counts("avoided_unsettled_rate"),
        avoided_incidents=counts("avoided_incident_rate"),
        draws=out, notes=tuple(notes),
    )


__all__ = [
    "Component",
    "DEFAULT_METRICS",
    "FixEffect",
    "FixEvaluation",
    "FixPeriods",
    "METHODS",
    "METRICS",
    "detect_onset",
    "evaluate_fix",
    "evaluate_fixes",
    "evaluate_fixes_on",
    "exclusions_from_faults",
    "onsets_from_faults",
    "scope_mask",
    "simulate_fix",
    "split_periods",
    "WhatIf",
]
