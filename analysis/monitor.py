"""Is it back? Binomial CUSUM charts on a group's daily incident rate.

:func:`cusum` charts one group's daily counts (``date, cases, n`` — e.g.
:func:`analysis.metrics.group_daily` of the unsettled attempts) with a
binomial CUSUM whose increments are log-likelihood ratios (Page 1954,
"Continuous inspection schemes", Biometrika 41; for proportions inspected
continuously: Reynolds & Stoumbos 1999, "A CUSUM chart for monitoring a
proportion when inspecting continuously", J Qual Technol 31). A day with
``n`` attempts and ``c`` cases adds

    W = c · log(p1/p0) + (n − c) · log((1 − p1)/(1 − p0)),

so a day with few attempts moves the chart little and the varying daily
volume needs no special limits. ``S_t = max(0, S_{t−1} + W_t)``; the chart
signals when ``S_t ≥ h`` and restarts from 0.

The decision interval ``h`` is calibrated by Monte Carlo so that the
in-control average run length (ARL, days between false alarms at rate
``p0``) is the one asked for, e.g. 370 days: in-control sequences are drawn
with the data's own daily volumes (resampled), their first-passage times
estimate the ARL for a grid of ``h`` (exponential maximum likelihood, censored
at the simulated length), and ``h`` is interpolated on the log-ARL curve.
Seeded, so a chart is reproducible.

:func:`monitor_clusters` runs one chart per group (network segment, cluster)
of a :func:`analysis.metrics.daily_panel`; :func:`back_to_baseline` says
whether, after a fix, a group's rate is back to its pre-fault baseline: the
after-period rate against the baseline (a one-sided test and a confidence
interval, widened for day-to-day overdispersion) and no alarm since.

Only mature days are charted by default: the unsettled rate of a day still
inside its credit cycle is a lower bound.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(1)
>>> n = np.full(60, 200)
>>> p = np.r_[np.full(40, 0.005), np.full(20, 0.02)]
>>> daily = pd.DataFrame({"date": pd.date_range("2026-03-01", periods=60),
...                       "cases": rng.binomial(n, p), "n": n})
>>> chart = cusum(daily, p0=0.005, arl0=200, seed=0)
>>> str(chart.alarms[0].date()) >= "2026-04-10"
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .metrics import group_daily

DEFAULT_ARL0 = 370.0
DEFAULT_RATIO = 3.0
#: Days of the default reference period (from the first day charted).
BASELINE_DAYS = 14


@dataclass(frozen=True)
class ControlChart:
    """A binomial CUSUM chart of one group's daily rate.

    Attributes
    ----------
    daily : DataFrame
        ``date, cases, n, rate, increment, statistic, alarm`` per day.
    p0, p1 : float
        In-control rate and the rate the chart is tuned to detect (0–1).
    h : float
        Decision interval.
    arl0 : float
        The in-control average run length asked for (days).
    arl0_simulated : float
        The Monte Carlo ARL at ``h`` (what the chart delivers).
    alarms : tuple of Timestamp
        Days the chart signalled (it restarts after each).
    onsets : tuple of Timestamp
        For each alarm, the day after the statistic last stood at 0 (the
        usual CUSUM estimate of when the change began).
    reference_period : (Timestamp, Timestamp)
        Days whose pooled rate gave ``p0`` (inclusive; None when ``p0`` was given).
    label : str
    """

    daily: pd.DataFrame = field(repr=False)
    p0: float
    p1: float
    h: float
    arl0: float
    arl0_simulated: float
    alarms: tuple[pd.Timestamp, ...] = ()
    onsets: tuple[pd.Timestamp, ...] = ()
    reference_period: tuple | None = None
    label: str = ""

    @property
    def false_alarm_rate(self) -> float:
        """In-control false alarms per day (1 / ARL0 as simulated)."""
        return 1.0 / self.arl0_simulated if self.arl0_simulated > 0 else np.nan

    @property
    def alarming(self) -> bool:
        """True when the chart signalled on its last day."""
        return bool(len(self.daily) and self.daily["alarm"].iat[-1])

    def summary(self) -> str:
        """Plain text: baseline, tuning, false-alarm rate and alarms.

        Examples
        --------
        >>> d = pd.DataFrame({"date": pd.date_range("2026-03-01", periods=10),
        ...                   "cases": [0] * 10, "n": [100] * 10})
        >>> cusum(d, p0=0.01, h=3.0).summary().startswith(
        ...     "CUSUM: baseline 1.00%, tuned to detect 3.00%, h = 3.00 (in-control ARL")
        True
        """
        head = (f"CUSUM{' ' + self.label if self.label else ''}: baseline {100 * self.p0:.2f}%, "
                f"tuned to detect {100 * self.p1:.2f}%, h = {self.h:.2f} "
                f"(in-control ARL {self.arl0_simulated:,.0f} days"
                + (f", asked {self.arl0:,.0f}" if np.isfinite(self.arl0) else " given h")
                + ").")
        lines = [head, f"False alarms expected: {self.false_alarm_rate:.4f} per day."]
        if self.alarms:
            shown = ", ".join(f"{a.date()} (began ~{o.date()})"
                              for a, o in zip(self.alarms[:6], self.onsets[:6]))
            lines.append(f"{len(self.alarms)} alarm(s): {shown}{', ...' if len(self.alarms) > 6 else ''}.")
        else:
            lines.append("No alarm.")
        if self.alarming:
            lines.append("The chart is signalling on its last day.")
        return "\n".join(lines)

    def plot(self, ax=None):
        """Daily rate (%, top) and the CUSUM statistic with ``h`` and alarms (bottom).

        With ``ax`` given only the statistic is drawn on it. Returns the Axes
        of the statistic.
        """
        import matplotlib.pyplot as plt

        d = self.daily
        if ax is None:
            fig, (top, ax) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
            top.plot(d["date"], 100 * d["rate"], marker=".", lw=1, color="C0", label="daily rate")
            top.axhline(100 * self.p0, color="C2", ls="--", lw=1, label=f"baseline p0 {100 * self.p0:.2f}%")
            top.axhline(100 * self.p1, color="C3", ls=":", lw=1, label=f"p1 {100 * self.p1:.2f}%")
            top.set_ylabel("rate (%)")
            top.set_title(f"Binomial CUSUM{' — ' + self.label if self.label else ''}", fontsize=10)
            top.legend(fontsize=8)
        ax.plot(d["date"], d["statistic"], color="k", lw=1.2, label="CUSUM statistic")
        ax.axhline(self.h, color="C3", ls="--", lw=1,
                   label=f"h = {self.h:.2f} (ARL0 {self.arl0_simulated:,.0f} d)")
        if self.alarms:
            hit = d.loc[d["alarm"]]
            ax.scatter(hit["date"], hit["statistic"], color="C3", zorder=3, label="alarm")
        ax.set_ylabel("log-likelihood ratio")
        ax.legend(fontsize=8)
        ax.figure.autofmt_xdate()
        return ax


# ---------------------------------------------------------------------------------
# The statistic and its calibration
# ---------------------------------------------------------------------------------


def _weights(p0: float, p1: float) -> tuple[float, float]:
    """LLR per case and per non-case."""
    return float(np.log(p1 / p0)), float(np.log((1 - p1) / (1 - p0)))


def cusum_path(cases: np.ndarray, n: np.ndarray, p0: float, p1: float, h: float | None = None):
    """The CUSUM statistic per day (restarting after each signal when ``h`` is given).

    Works on 1-D arrays or on (sequences × days) arrays. Returns
    ``(increments, statistic, alarm)``.

    Examples
    --------
    >>> inc, s, alarm = cusum_path(np.array([0, 5, 5]), np.array([100, 100, 100]), 0.01, 0.03, h=4)
    >>> alarm.tolist()
    [False, False, True]
    """
    a, b = _weights(p0, p1)
    cases, n = np.asarray(cases, float), np.asarray(n, float)
    inc = a * cases + b * (n - cases)
    s = np.zeros_like(inc)
    alarm = np.zeros(inc.shape, dtype=bool)
    prev = np.zeros(inc.shape[:-1])
    for t in range(inc.shape[-1]):
        cur = np.maximum(0.0, prev + inc[..., t])
        s[..., t] = cur
        if h is not None:
            hit = cur >= h
            alarm[..., t] = hit
            cur = np.where(hit, 0.0, cur)
        prev = cur
    return inc, s, alarm


def _first_passage(running: np.ndarray, h_grid: np.ndarray) -> np.ndarray:
    """(sequences × h) first day (1-based) the running maximum reaches each h; 0 where never.

    Each row of ``running`` is non-decreasing, so one ``searchsorted`` on the
    rows laid end to end (each lifted above the previous) answers every h.
    """
    n_seq, length = running.shape
    lift = (np.arange(n_seq, dtype=float) * (float(running.max()) + float(h_grid.max()) + 1.0))
    flat = (running + lift[:, None]).ravel()
    pos = np.searchsorted(flat, (h_grid[None, :] + lift[:, None]).ravel(), side="left")
    pos = pos.reshape(n_seq, len(h_grid)) - (np.arange(n_seq) * length)[:, None]
    return np.where(pos < length, pos + 1, 0)


def _simulated_arl(n_pool: np.ndarray, p0: float, p1: float, h_grid: np.ndarray, *,
                   n_seq: int, length: int, seed) -> np.ndarray:
    """Monte Carlo in-control ARL for each ``h`` in the grid (exponential MLE, censored)."""
    rng = np.random.default_rng(seed)
    n = rng.choice(n_pool, size=(n_seq, length))
    cases = rng.binomial(n.astype(np.int64), p0)
    _, s, _ = cusum_path(cases, n, p0, p1)
    first = _first_passage(np.maximum.accumulate(s, axis=1), np.asarray(h_grid, float))
    hits = (first > 0).sum(axis=0)
    days = np.where(first > 0, first, length).sum(axis=0)
    return days / np.maximum(hits, 0.5)


def calibrate_h(n_pool, p0: float, p1: float, arl0: float = DEFAULT_ARL0, *, n_seq: int = 300,
                seed=0) -> tuple[float, float]:
    """Decision interval ``h`` giving an in-control ARL of ``arl0`` days, and the ARL achieved.

    In-control days are drawn with volumes resampled from ``n_pool`` and
    cases Binomial(n, p0); the ARL of each ``h`` on a grid is estimated from
    the first passage times of the same sequences (exponential MLE: days at
    risk ÷ alarms, sequences 4 × arl0 days long), ``h`` is interpolated on log
    ARL and its ARL checked on fresh sequences.

    Examples
    --------
    >>> h, arl = calibrate_h(np.array([200]), 0.005, 0.015, arl0=100, seed=1)
    >>> 60 < arl < 160
    True
    """
    n_pool = np.asarray(n_pool, float)
    n_pool = n_pool[n_pool > 0]
    if not len(n_pool):
        raise ValueError("no day with attempts: cannot calibrate the chart")
    length = int(max(50, 4 * arl0))
    rng = np.random.default_rng(seed)
    n = rng.choice(n_pool, size=(n_seq, length))
    _, s, _ = cusum_path(rng.binomial(n.astype(np.int64), p0), n, p0, p1)
    running = np.maximum.accumulate(s, axis=1)
    top = max(float(np.quantile(running[:, -1], 0.9)), 1.0)
    h_grid = np.linspace(0.05, top, 120)
    first = _first_passage(running, h_grid)
    arl = np.where(first > 0, first, length).sum(axis=0) / np.maximum((first > 0).sum(axis=0), 0.5)
    log_arl = np.log(np.maximum.accumulate(np.maximum(arl, 1e-9)))
    target = np.log(arl0)
    h = float(np.interp(target, log_arl, h_grid)) if target < log_arl[-1] else float(h_grid[-1])
    achieved = float(_simulated_arl(n_pool, p0, p1, np.array([h]), n_seq=n_seq, length=length,
                                    seed=None if seed is None else seed + 1)[0])
    return h, achieved


def _reference(daily: pd.DataFrame, reference_period) -> tuple[pd.Timestamp, pd.Timestamp]:
    if reference_period is None:
        start = daily["date"].min()
        return start, start + pd.Timedelta(days=BASELINE_DAYS - 1)
    lo, hi = reference_period
    return pd.Timestamp(lo), pd.Timestamp(hi)


def baseline_rate(daily: pd.DataFrame, reference_period=None) -> tuple[float, tuple]:
    """Pooled rate of the reference period (Jeffreys-style (c + ½)/(n + 1), never 0).

    Examples
    --------
    >>> d = pd.DataFrame({"date": pd.date_range("2026-03-01", periods=3), "cases": [0, 0, 0],
    ...                   "n": [100, 100, 100]})
    >>> round(baseline_rate(d)[0], 5)
    0.00166
    """
    lo, hi = _reference(daily, reference_period)
    ref = daily.loc[(daily["date"] >= lo) & (daily["date"] <= hi)]
    c, n = float(ref["cases"].sum()), float(ref["n"].sum())
    if n <= 0:
        raise ValueError(f"the reference period {lo.date()}–{hi.date()} has no attempts")
    return (c + 0.5) / (n + 1.0), (lo, hi)


def _clean(daily: pd.DataFrame, date="date", cases="cases", n="n") -> pd.DataFrame:
    d = daily.rename(columns={date: "date", cases: "cases", n: "n"})[["date", "cases", "n"]]
    d = d.assign(date=pd.to_datetime(d["date"])).sort_values("date", kind="stable")
    return d.loc[d["n"] > 0].reset_index(drop=True)


def cusum(
    daily: pd.DataFrame,
    *,
    p0: float | None = None,
    p1: float | None = None,
    ratio: float = DEFAULT_RATIO,
    h: float | None = None,
    arl0: float = DEFAULT_ARL0,
    reference_period=None,
    n_seq: int = 300,
    seed=0,
    label: str = "",
) -> ControlChart:
    """A binomial CUSUM chart of a daily series (see the module docstring).

    Parameters
    ----------
    daily : DataFrame
        ``date, cases, n`` (days with ``n == 0`` are skipped).
    p0 : float, optional
        In-control rate; default the pooled rate of ``reference_period``
        (:func:`baseline_rate`).
    p1 : float, optional
        The rate to detect; default ``ratio × p0``.
    h : float, optional
        Decision interval; default calibrated for ``arl0`` (:func:`calibrate_h`).
    arl0 : float
        In-control average run length in days (370: one false alarm a year).
    reference_period : (date, date), optional
        Inclusive days for ``p0``; default the first 14 days.
    n_seq, seed : int
        Monte Carlo sequences and seed of the calibration.

    Returns
    -------
    ControlChart
    """
    d = _clean(daily)
    ref = None
    if p0 is None:
        p0, ref = baseline_rate(d, reference_period)
    p1 = ratio * p0 if p1 is None else p1
    if not 0 < p0 < p1 < 1:
        raise ValueError(f"need 0 < p0 < p1 < 1, got p0={p0}, p1={p1}")
    if h is None:
        h, achieved = calibrate_h(d["n"].to_numpy(), p0, p1, arl0, n_seq=n_seq, seed=seed)
    else:
        achieved = _simulated_arl(d["n"].to_numpy(float), p0, p1, np.array([h]), n_seq=n_seq,
                                  length=int(max(50, 4 * arl0)), seed=seed)[0]
        arl0 = np.nan
    inc, s, alarm = cusum_path(d["cases"].to_numpy(), d["n"].to_numpy(), p0, p1, h)
    out = d.assign(rate=d["cases"] / d["n"], increment=inc, statistic=s, alarm=alarm)
    alarms = tuple(pd.Timestamp(x) for x in out.loc[out["alarm"], "date"])
    return ControlChart(out, float(p0), float(p1), float(h), float(arl0), float(achieved),
                        alarms, _onsets(out), ref, label)


def _onsets(out: pd.DataFrame) -> tuple[pd.Timestamp, ...]:
    """For each alarm, the day after the statistic was last 0 before it."""
    s, dates = out["statistic"].to_numpy(), out["date"].to_numpy()
    onsets, last_zero = [], -1
    for t, (value, hit) in enumerate(zip(s, out["alarm"].to_numpy())):
        if hit:
            onsets.append(pd.Timestamp(dates[min(last_zero + 1, t)]))
            last_zero = t  # the chart restarts
        elif value == 0:
            last_zero = t
    return tuple(onsets)


# ---------------------------------------------------------------------------------
# Many groups
# ---------------------------------------------------------------------------------


def monitor_clusters(
    panel: pd.DataFrame,
    group_col: str = "network_segment",
    *,
    cases: str = "unsettled",
    n: str = "attempts",
    mature_only: bool = True,
    reference_period=None,
    min_attempts: int = 200,
    **cusum_options,
) -> pd.DataFrame:
    """One CUSUM per group of a daily panel; one row per group with its alarms.

    Parameters
    ----------
    panel : DataFrame
        :func:`analysis.metrics.daily_panel` (with ``group_col``, e.g. a
        ``cluster_id`` merged in, or ``network_segment``).
    cases, n : str
        Count columns charted.
    mature_only : bool
        Chart only mature days (default; see the module docstring).
    reference_period : (date, date), optional
        Baseline days for every group (default each group's first 14 days).
    min_attempts : int
        Groups with fewer attempts in the reference period are skipped.
    **cusum_options
        Passed to :func:`cusum` (``arl0``, ``ratio``, ``seed``, ...).

    Returns
    -------
    DataFrame
        ``group, p0, p1, h, arl0, n_alarms, first_alarm, first_onset,
        last_alarm, alarming, last_rate`` sorted with alarming groups first;
        ``attrs['charts']`` maps each group to its :class:`ControlChart`;
        ``attrs['skipped']`` maps each group no chart can be defined for (a
        baseline rate of 0, or a rate to detect of 1 or more) to the reason.
    """
    rows = panel.loc[panel["mature"]] if mature_only and "mature" in panel else panel
    daily = group_daily(rows, group_col, cases=cases, n=n)
    charts, skipped, out = {}, {}, []
    for group, d in daily.groupby(group_col, sort=True):
        try:
            p0, _ = baseline_rate(d, reference_period)
        except ValueError:
            continue
        lo, hi = _reference(d, reference_period)
        if d.loc[(d["date"] >= lo) & (d["date"] <= hi), "n"].sum() < min_attempts:
            continue
        try:
            chart = cusum(d, reference_period=reference_period, label=f"{group_col} {group}",
                          **cusum_options)
        except ValueError as err:  # e.g. a baseline rate of 0, or ratio × baseline >= 1
            skipped[group] = str(err)
            continue
        charts[group] = chart
        out.append({"group": group, "p0": chart.p0, "p1": chart.p1, "h": chart.h,
                    "arl0": chart.arl0_simulated, "n_alarms": len(chart.alarms),
                    "first_alarm": chart.alarms[0] if chart.alarms else pd.NaT,
                    "first_onset": chart.onsets[0] if chart.onsets else pd.NaT,
                    "last_alarm": chart.alarms[-1] if chart.alarms else pd.NaT,
                    "alarming": chart.alarming, "last_rate": float(chart.daily["rate"].iat[-1])})
    table = pd.DataFrame(out, columns=["group", "p0", "p1", "h", "arl0", "n_alarms", "first_alarm",
                                       "first_onset", "last_alarm", "alarming", "last_rate"])
    table = table.sort_values(["alarming", "n_alarms"], ascending=False, kind="stable")
    table = table.reset_index(drop=True)
    table.attrs["charts"] = charts
    table.attrs["skipped"] = skipped
    return table


# ---------------------------------------------------------------------------------
# Back to baseline?
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaselineCheck:
    """Whether a group's rate since ``after`` is back to its baseline.

    Attributes
    ----------
    back : bool
        True when the after-period rate is not significantly above the
        baseline, no CUSUM alarm fired in the after period, and it has at least
        ``min_days`` days.
    after : Timestamp
    baseline : float
        The pre-fault rate (0–1).
    rate, ci_low, ci_high : float
        The after period's pooled rate and its confidence interval (Wilson,
        on the overdispersion-adjusted effective sample size).
    ratio : float
        rate ÷ baseline.
    p_value : float
        One-sided test of "the after rate is above the baseline" (quasi-binomial z).
    dispersion : float
        Day-to-day overdispersion factor (Pearson χ² / df, at least 1).
    days, cases, n : int
    alarms : tuple of Timestamp
        CUSUM alarms in the after period (chart restarted at ``after``).
    chart : ControlChart
    """

    back: bool
    after: pd.Timestamp
    baseline: float
    rate: float
    ci_low: float
    ci_high: float
    ratio: float
    p_value: float
    dispersion: float
    days: int
    cases: int
    n: int
    alarms: tuple = ()
    chart: ControlChart | None = field(default=None, repr=False)
    reason: str = ""

    def __bool__(self) -> bool:
        return self.back

    def summary(self) -> str:
        """One sentence."""
        verdict = "back to baseline" if self.back else f"not back to baseline ({self.reason})"
        return (f"Since {self.after.date()} the rate is {100 * self.rate:.2f}% "
                f"(95% CI {100 * self.ci_low:.2f}–{100 * self.ci_high:.2f}%, {self.cases:,} of "
                f"{self.n:,} over {self.days} days) against a baseline of {100 * self.baseline:.2f}%: "
                f"{verdict}.")


def _wilson(c: float, n: float, z: float) -> tuple[float, float]:
    if n <= 0:
        return np.nan, np.nan
    p = c / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def back_to_baseline(
    chart_or_daily,
    after,
    *,
    baseline: float | None = None,
    reference_period=None,
    alpha: float = 0.05,
    min_days: int = 7,
    tolerance: float = 1.0,
    **cusum_options,
) -> BaselineCheck:
    """After a fix, is the rate back to its pre-fault baseline?

    Parameters
    ----------
    chart_or_daily : ControlChart or DataFrame
        A chart (its ``p0`` is the baseline, its ``h`` is reused) or a daily
        series ``date, cases, n``.
    after : date-like
        First day of the after period (e.g. the fix's first whole day).
    baseline : float, optional
        The pre-fault rate; default the chart's ``p0`` or the pooled rate of
        ``reference_period``.
    alpha : float
        Level of the one-sided test and 1 − confidence of the interval.
    min_days : int
        Fewest after-period days for a "back" verdict.
    tolerance : float
        The rate counts as back while not significantly above
        ``tolerance × baseline``.

    Returns
    -------
    BaselineCheck

    Examples
    --------
    >>> d = pd.DataFrame({"date": pd.date_range("2026-03-01", periods=40),
    ...                   "cases": [1] * 14 + [8] * 13 + [1] * 13, "n": [400] * 40})
    >>> back_to_baseline(d, "2026-03-28", arl0=100).back
    True
    """
    after = pd.Timestamp(after)
    if isinstance(chart_or_daily, ControlChart):
        chart = chart_or_daily
        daily = chart.daily[["date", "cases", "n"]]
        p0 = chart.p0 if baseline is None else baseline
        options = {"p1": chart.p1 if baseline is None else None, "h": chart.h, **cusum_options}
    else:
        daily = _clean(chart_or_daily)
        p0 = baseline if baseline is not None else baseline_rate(daily, reference_period)[0]
        options = dict(cusum_options)
    post = daily.loc[daily["date"] >= after]
    if post.empty:
        raise ValueError(f"no day with attempts on or after {after.date()}")
    c, n, days = float(post["cases"].sum()), float(post["n"].sum()), int(len(post))
    rate = c / n
    expected = post["n"].to_numpy(float) * rate
    var = np.maximum(expected * (1 - rate), 1e-12)
    dispersion = max(1.0, float(np.sum((post["cases"] - expected) ** 2 / var)) / max(days - 1, 1)) \
        if days > 1 else 1.0
    z = stats.norm.ppf(1 - alpha / 2)
    lo, hi = _wilson(c / dispersion, n / dispersion, z)
    target = tolerance * p0
    zstat = (c - n * target) / np.sqrt(dispersion * n * target * (1 - target))
    p_value = float(stats.norm.sf(zstat))
    post_chart = cusum(post, p0=p0, **options) if "p1" in options or "h" in options else \
        cusum(post, p0=p0, **options)
    alarms = post_chart.alarms
    reasons = []
    if p_value < alpha:
        reasons.append(f"the rate is above the baseline, p = {p_value:.3g}")
    if alarms:
        reasons.append(f"the CUSUM signalled on {alarms[0].date()}")
    if days < min_days:
        reasons.append(f"only {days} day(s) since {after.date()} (fewer than {min_days})")
    return BaselineCheck(not reasons, after, float(p0), rate, lo, hi, rate / p0, p_value,
                         dispersion, days, int(c), int(n), alarms, post_chart, "; ".join(reasons))


__all__ = [
    "BaselineCheck",
    "ControlChart",
    "back_to_baseline",
    "baseline_rate",
    "calibrate_h",
    "cusum",
    "cusum_path",
    "monitor_clusters",
]
