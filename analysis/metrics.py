"""Merchant × business-day metrics: the one panel that fix evaluation and monitoring read.

:func:`daily_panel` turns the reconciled transactions (one row per transaction,
:func:`analysis.reconcile.reconcile`) and the terminals' communication log into
one row per merchant and business day. Everything above it (``fixes``,
``monitor``, dashboards) works on this small aggregate and never on
transactions again; :func:`group_daily` sums it to any grouping.

The panel is one SQL step (:func:`panel_sql`, DuckDB dialect, also run on Spark)
over the engine tables ``reconciled``, ``terminals``, ``terminal_events`` and
``merchants``: :func:`daily_panel_on` runs it where the data lives, and
:func:`daily_panel` runs it on pandas frames through a fresh in-memory DuckDB
engine (:func:`analysis.aggregates.frames_engine`).

Definitions
-----------
attempts
    Purchase and transfer attempts (voids and refunds are not attempts).
approved
    Attempts approved (``00``) without a reversal.
unsettled
    The contract's numerator of the *unsettled rate*: attempts with outcome
    ``reversal_failed`` (reversal needed but never acknowledged, or no answer
    and no reversal), ``not_cleared`` (approved, no clearing row, past the
    credit deadline) or ``returned`` (credit returned). ``credit_overdue``
    (cleared, credit still *pending* past the deadline) is **not** counted: the
    contract says "approved and overdue *without clearing*", and a pending
    credit has cleared — the money is at the bank, late. It is kept as its own
    column, ``credit_overdue``, so a reader can add it. ``unsettled_rate`` is
    unsettled ÷ attempts (0–1), the contract's rate.
money_not_arrived
    The merchant's view (the complaint "刷卡未到账"): attempts the terminal showed
    as approved whose money has not arrived past the deadline — ``not_cleared``,
    ``credit_overdue`` or ``returned``; ``money_not_arrived_rate`` divides by
    ``approved``. It differs from the unsettled rate in its denominator and in
    leaving out reversal failures (the terminal did not show an approval).
success_rate
    approved ÷ attempts.
median_credit_days
    Median business days from the business date to the credit day over the
    day's credited attempts (missing when none was credited).
link_corrupted, link_lost, reversals, reversals_failed, corrupted_reversals, lost_reversals
    Link failures seen in the authorization log (:data:`LINK_FAILURE_COLUMNS`):
    what :func:`analysis.fixes.simulate_fix` models.
link_errors
    ``timeout``, ``mac_error``, ``connection_reset`` and ``retransmit`` events
    on the merchant's terminals that Shanghai calendar day;
    ``link_errors_per_100`` is 100 × link_errors ÷ attempts.
mature
    True when every attempt of the merchant-day is past its credit deadline as
    of the moment of analysis, so ``not_cleared`` can no longer grow. On an
    immature day only the outcomes known at once (``reversal_failed``; a
    ``returned`` once cleared) count, and its unsettled rate is a lower bound.
    ``daily_panel(..., mature_only=True)`` drops those days.

Examples
--------
>>> import pandas as pd
>>> from analysis.reconcile import reconcile
>>> t = pd.to_datetime(["2026-03-10 10:00", "2026-03-10 11:00"]).tz_localize("Asia/Shanghai")
>>> txns = pd.DataFrame({"txn_id": ["A", "B"], "terminal_id": ["K1", "K1"],
...     "merchant_id": ["M1", "M1"], "timestamp": t, "txn_type": ["purchase", "purchase"],
...     "amount": [10.0, 20.0], "response_code": [None, "00"], "reversal": ["failed", "none"]})
>>> terms = pd.DataFrame({"terminal_id": ["K1"], "merchant_id": ["M1"], "model": ["P1"],
...     "firmware": ["1.0"], "network_segment": ["CT-PD-0001"]})
>>> p = daily_panel(reconcile(txns, as_of="2026-03-30"), terms)
>>> print(p[["attempts", "approved", "unsettled", "unsettled_rate", "mature"]].to_string(index=False))
 attempts  approved  unsettled  unsettled_rate  mature
        2         1          2             1.0    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .aggregates import frames_engine, sql_string, sql_strings
from .contract import LINK_ERROR_EVENTS
from .engine.base import Engine
from .engine.tables import dates_from_days
from .reconcile import as_of_day, to_local_time

#: Transaction types that count as attempts.
ATTEMPT_TYPES = ("purchase", "transfer")
#: Outcomes counted by the contract's unsettled rate.
UNSETTLED_OUTCOMES = ("reversal_failed", "not_cleared", "returned")
#: Outcomes of approved attempts whose money has not arrived past the deadline.
NOT_ARRIVED_OUTCOMES = ("not_cleared", "credit_overdue", "returned")
#: Outcomes counted per merchant-day as their own columns.
COUNTED_OUTCOMES = (
    "reversal_failed", "not_cleared", "returned", "credit_overdue", "credited_late",
    "in_cycle", "declined", "reversed",
)
#: Response codes of a corrupted message (format error, MAC failure) and of a late response.
CORRUPTED_CODES = ("A0", "30")
LATE_CODES = ("68",)
#: Link failures and reversals per attempt: ``link_corrupted`` (reversal reason or response
#: ``A0``, response ``30``), ``link_lost`` (no response, reversal reason ``98`` or a late
#: ``68``), ``reversals`` (a reversal was needed: sent, failed, or no answer and none sent),
#: ``reversals_failed`` (not acknowledged or never sent), and the reversals among each kind.
LINK_FAILURE_COLUMNS = ("link_corrupted", "link_lost", "reversals", "reversals_failed",
                        "corrupted_reversals", "lost_reversals")
#: Infrastructure columns of the merchant's dominant terminal.
INFRA_COLUMNS = ("network_segment", "model", "firmware")
#: Count columns of the panel (summable over any grouping).
COUNT_COLUMNS = (
    "attempts", "approved", "unsettled", "money_not_arrived", *COUNTED_OUTCOMES,
    *LINK_FAILURE_COLUMNS, "link_errors",
)
#: Rates derived from the counts: name -> (numerator, denominator, scale).
RATES = {
    "unsettled_rate": ("unsettled", "attempts", 1.0),
    "money_not_arrived_rate": ("money_not_arrived", "approved", 1.0),
    "success_rate": ("approved", "attempts", 1.0),
    "link_errors_per_100": ("link_errors", "attempts", 100.0),
}
KEY = ("merchant_id", "business_date")
TERMINAL_KEY = ("merchant_id", "terminal_id", "business_date")


# --------------------------------------------------------------------------- the step SQL


def _count(condition: str) -> str:
    """SQL of the number of rows of a group where ``condition`` holds."""
    return f"CAST(SUM(CASE WHEN {condition} THEN 1 ELSE 0 END) AS BIGINT)"


#: Per attempt: 0/1 conditions of the counted columns, over the ``attempt`` CTE of :func:`panel_sql`.
_CONDITIONS = {
    "approved": "approved",
    "unsettled": f"outcome IN {sql_strings(UNSETTLED_OUTCOMES)}",
    "money_not_arrived": f"outcome IN {sql_strings(NOT_ARRIVED_OUTCOMES)}",
    **{o: f"outcome = {sql_string(o)}" for o in COUNTED_OUTCOMES},
    "link_corrupted": "corrupted",
    "link_lost": "lost AND NOT corrupted",
    "reversals": "needs",
    "reversals_failed": "failed",
    "corrupted_reversals": "corrupted AND needs",
    "lost_reversals": "lost AND NOT corrupted AND needs",
}
#: The link-failure flags of one attempt (see :data:`LINK_FAILURE_COLUMNS`); a missing
#: reversal is ``none``, and no response with none sent needed a reversal that failed.
_LINK_FLAGS = f"""
    COALESCE(reversal_reason = 'A0', FALSE) OR COALESCE(response_code IN {sql_strings(CORRUPTED_CODES)}, FALSE)
        AS corrupted,
    response_code IS NULL OR COALESCE(reversal_reason = '98', FALSE)
        OR COALESCE(response_code IN {sql_strings(LATE_CODES)}, FALSE) AS lost,
    COALESCE(reversal, 'none') IN ('sent', 'failed') OR (response_code IS NULL AND COALESCE(reversal, 'none') = 'none')
        AS needs,
    COALESCE(reversal, 'none') = 'failed' OR (response_code IS NULL AND COALESCE(reversal, 'none') = 'none')
        AS failed"""
_ATTEMPTS = f"txn_type IN {sql_strings(ATTEMPT_TYPES)}"

#: Each merchant's dominant terminal: most attempts, ties to the smallest terminal id.
DOMINANT_SQL = f"""
WITH volume AS (
    SELECT terminal_id, COUNT(*) AS n FROM reconciled WHERE {_ATTEMPTS} GROUP BY terminal_id
), ranked AS (
    SELECT tm.merchant_id, tm.terminal_id, {", ".join(f"tm.{c}" for c in INFRA_COLUMNS)},
           ROW_NUMBER() OVER (PARTITION BY tm.merchant_id ORDER BY COALESCE(v.n, 0) DESC, tm.terminal_id) AS rn
    FROM terminals tm LEFT JOIN volume v ON v.terminal_id = tm.terminal_id
)
SELECT merchant_id, terminal_id, {", ".join(INFRA_COLUMNS)} FROM ranked WHERE rn = 1"""


def _links_sql(level: str, link_errors: bool) -> str:
    """Link-error events per merchant (and terminal) and Shanghai day: the ``links`` CTE of :func:`panel_sql`."""
    if not link_errors:
        keys = "merchant_id, terminal_id, day" if level == "terminal" else "merchant_id, day"
        return f"SELECT {keys}, CAST(0 AS BIGINT) AS link_errors FROM counts WHERE FALSE"
    keys = "tm.merchant_id, e.terminal_id, e.day" if level == "terminal" else "tm.merchant_id, e.day"
    return f"""
    SELECT {keys}, CAST(COUNT(*) AS BIGINT) AS link_errors
    FROM terminal_events e JOIN terminals tm ON tm.terminal_id = e.terminal_id
    WHERE e.event IN {sql_strings(LINK_ERROR_EVENTS)} AND e.day IS NOT NULL
    GROUP BY {keys}"""


def panel_sql(level: str, *, as_of_day: int, link_errors: bool, mcc: bool, credit_days: bool = True,
              counts: Sequence[str] | None = None) -> str:
    """The panel step: one row per merchant (or terminal) and business day, over the engine tables.

    Parameters
    ----------
    level : {'merchant', 'terminal'}
        The unit of a row.
    as_of_day : int
        Day number of the moment of analysis (decides ``mature``).
    link_errors : bool
        Count the ``terminal_events`` table's link errors (else 0).
    mcc : bool
        Add the merchant's ``mcc`` from ``merchants``.
    credit_days : bool
        Compute ``median_credit_days`` (a median per row: the costliest
        aggregate of the step; callers that need only counts leave it out).
    counts : sequence of str, optional
        The :data:`COUNT_COLUMNS` to compute (default all); ``attempts`` and
        ``link_errors`` are always there.

    Returns
    -------
    str
        SQL (DuckDB dialect) over ``reconciled``, ``terminals`` and, as asked,
        ``terminal_events`` and ``merchants``. Days are day numbers
        (``business_date``, ``deadline``); :func:`daily_panel_on` makes them dates.

    Examples
    --------
    >>> "MEDIAN(credit_business_days)" in panel_sql("merchant", as_of_day=20540, link_errors=False, mcc=False)
    True
    """
    unit = "terminal_id" if level == "terminal" else "merchant_id"
    keys = ["merchant_id", "terminal_id", "day"] if level == "terminal" else ["merchant_id", "day"]
    group = ", ".join(keys)
    kept = {name: cond for name, cond in _CONDITIONS.items() if counts is None or name in counts}
    unknown = set(counts or ()) - set(COUNT_COLUMNS)
    if unknown:
        raise ValueError(f"not count columns of the panel: {', '.join(sorted(unknown))}")
    sums = "".join(f"\n        {_count(cond)} AS {name}," for name, cond in kept.items())
    infra = (f"SELECT terminal_id, {', '.join(INFRA_COLUMNS)} FROM terminals" if level == "terminal"
             else DOMINANT_SQL)
    key_cols = ", ".join(f"COALESCE(c.{k}, l.{k}) AS {k}" for k in keys[:-1])
    zeros = ",\n       ".join(f"COALESCE(c.{c}, 0) AS {c}" for c in ["attempts", *kept])
    return f"""
WITH attempt AS (
    SELECT merchant_id, terminal_id, day, outcome, approved, credit_business_days, deadline_day,{_LINK_FLAGS}
    FROM reconciled
    WHERE {_ATTEMPTS} AND merchant_id IS NOT NULL AND day IS NOT NULL
          {"AND terminal_id IS NOT NULL" if level == "terminal" else ""}
), counts AS (
    SELECT {group},
        CAST(COUNT(*) AS BIGINT) AS attempts,{sums}
        {"MEDIAN(credit_business_days) AS median_credit_days," if credit_days else ""}
        MAX(deadline_day) AS deadline_day
    FROM attempt GROUP BY {group}
), links AS ({_links_sql(level, link_errors)}
), infra AS ({infra}
)
SELECT {key_cols}, COALESCE(c.day, l.day) AS business_date, {zeros},
       {"c.median_credit_days, " if credit_days else ""}c.deadline_day AS deadline, COALESCE(l.link_errors, 0) AS link_errors,
       COALESCE(c.deadline_day < {int(as_of_day)}, TRUE) AS mature,
       {", ".join(f"i.{col}" for col in INFRA_COLUMNS)}{", m.mcc" if mcc else ""}
FROM counts c
FULL OUTER JOIN links l ON {" AND ".join(f"l.{k} = c.{k}" for k in keys)}
LEFT JOIN infra i ON i.{unit} = COALESCE(c.{unit}, l.{unit})
{"LEFT JOIN merchants m ON m.merchant_id = COALESCE(c.merchant_id, l.merchant_id)" if mcc else ""}"""


def moment_of(reconciled: pd.DataFrame, as_of=None):
    """The moment of analysis of a pandas panel: ``as_of``, else the one reconcile used
    (``reconciled.attrs["as_of"]``), else the latest transaction.

    Examples
    --------
    >>> moment_of(pd.DataFrame({"timestamp": pd.to_datetime(["2026-03-10 10:00"])}))
    Timestamp('2026-03-10 10:00:00')
    """
    moment = as_of if as_of is not None else reconciled.attrs.get("as_of")
    return moment if moment is not None else reconciled["timestamp"].max()


def _check_level(level: str) -> None:
    if level not in ("merchant", "terminal"):
        raise ValueError(f"level must be 'merchant' or 'terminal', got {level!r}")


def daily_panel_on(
    engine: Engine,
    *,
    as_of,
    level: str = "merchant",
    mature_only: bool = False,
    mcc: bool = False,
    credit_days: bool = True,
    counts: Sequence[str] | None = None,
    release: bool = False,
) -> pd.DataFrame:
    """:func:`daily_panel` of the data in an engine (tables ``reconciled``, ``terminals``,
    ``terminal_events`` when present, ``merchants`` when ``mcc``).

    Parameters
    ----------
    engine : Engine
    as_of : time-like
        The moment of analysis (decides ``mature``).
    level : {'merchant', 'terminal'}
    mature_only : bool
        Drop the days that are not yet mature.
    mcc : bool
        Add the merchant's ``mcc`` (needs the ``merchants`` table).
    credit_days : bool
        Include ``median_credit_days`` (a median per row, the step's costliest
        part on big data; False leaves the column out).
    counts : sequence of str, optional
        Only these :data:`COUNT_COLUMNS` (and ``attempts``, ``link_errors``, and
        the rates they give); default all.
    release : bool
        Have the engine hand its cache back before pandas copies the panel
        (:meth:`Engine.fetch`): for a big panel.

    Returns
    -------
    DataFrame
        As :func:`daily_panel`; ``attrs["link_errors_known"]`` is True when the
        engine has a ``terminal_events`` table.

    Examples
    --------
    >>> from analysis.aggregates import frames_engine
    >>> t = pd.to_datetime(["2026-03-10 10:00"]).tz_localize("Asia/Shanghai")
    >>> rec = pd.DataFrame({"txn_id": ["A"], "merchant_id": ["M1"], "terminal_id": ["K1"], "timestamp": t,
    ...     "business_date": pd.to_datetime(["2026-03-10"]), "txn_type": ["purchase"], "outcome": ["returned"],
    ...     "approved": [True], "response_code": ["00"], "reversal": ["none"]})
    >>> terms = pd.DataFrame({"terminal_id": ["K1"], "merchant_id": ["M1"], "network_segment": ["S1"]})
    >>> with frames_engine(reconciled=rec, terminals=terms) as eng:
    ...     p = daily_panel_on(eng, as_of="2026-03-30")
    >>> print(p[["merchant_id", "attempts", "unsettled", "network_segment"]].to_string(index=False))
    merchant_id  attempts  unsettled network_segment
             M1         1          1              S1
    """
    _check_level(level)
    link_errors = engine.has("terminal_events")
    sql = panel_sql(level, as_of_day=as_of_day(as_of), link_errors=link_errors, mcc=mcc,
                    credit_days=credit_days, counts=counts)
    panel = engine.fetch(sql, release=release)
    panel["business_date"] = dates_from_days(panel["business_date"]).astype("datetime64[us]")
    panel["deadline"] = dates_from_days(panel["deadline"])
    panel["mature"] = panel["mature"].astype(bool)
    keys = list(TERMINAL_KEY if level == "terminal" else KEY)
    panel = add_rates(panel.sort_values(keys, kind="stable").reset_index(drop=True))
    if mature_only:
        panel = panel.loc[panel["mature"]].reset_index(drop=True)
    panel.attrs.update(as_of=to_local_time(as_of), link_errors_known=link_errors)
    return panel


def dominant_terminals_on(engine: Engine) -> pd.DataFrame:
    """:func:`dominant_terminals` of the data in an engine (tables ``reconciled`` and ``terminals``).

    Examples
    --------
    >>> from analysis.aggregates import frames_engine
    >>> terms = pd.DataFrame({"terminal_id": ["K1", "K2"], "merchant_id": ["M1", "M1"]})
    >>> with frames_engine(reconciled=pd.DataFrame({"terminal_id": ["K2"], "txn_type": ["purchase"]}),
    ...                    terminals=terms) as eng:
    ...     dominant_terminals_on(eng).loc["M1", "terminal_id"]
    'K2'
    """
    return engine.fetch(DOMINANT_SQL).sort_values("merchant_id", kind="stable").set_index("merchant_id")


def dominant_terminals(reconciled: pd.DataFrame, terminals: pd.DataFrame) -> pd.DataFrame:
    """Each merchant's dominant terminal (most attempts; else its first) and its infrastructure.

    Returns
    -------
    DataFrame
        Index ``merchant_id``; columns ``terminal_id`` and those of
        :data:`INFRA_COLUMNS` that ``terminals`` has.

    Examples
    --------
    >>> terms = pd.DataFrame({"terminal_id": ["K1", "K2"], "merchant_id": ["M1", "M1"],
    ...     "model": ["A", "B"], "firmware": ["1", "2"], "network_segment": ["S1", "S2"]})
    >>> rec = pd.DataFrame({"terminal_id": ["K2", "K2", "K1"], "txn_type": ["purchase"] * 3})
    >>> dominant_terminals(rec, terms).loc["M1", "network_segment"]
    'S2'
    """
    with frames_engine(reconciled=reconciled, terminals=terminals) as engine:
        first = dominant_terminals_on(engine)
    return first[["terminal_id", *[c for c in INFRA_COLUMNS if c in terminals.columns]]]


def add_rates(counts: pd.DataFrame) -> pd.DataFrame:
    """Add :data:`RATES` to a frame of summed counts (NaN where the denominator is 0).

    Examples
    --------
    >>> add_rates(pd.DataFrame({"unsettled": [1], "attempts": [4], "approved": [3],
    ...     "money_not_arrived": [0], "link_errors": [2]}))["link_errors_per_100"].tolist()
    [50.0]
    """
    out = counts.copy()
    for name, (num, den, scale) in RATES.items():
        if num in out.columns and den in out.columns:
            d = out[den].to_numpy(dtype="float64")
            with np.errstate(invalid="ignore", divide="ignore"):
                out[name] = np.where(d > 0, scale * out[num].to_numpy(dtype="float64") / d, np.nan)
    return out


def daily_panel(
    reconciled: pd.DataFrame,
    terminals: pd.DataFrame,
    terminal_events: pd.DataFrame | None = None,
    *,
    as_of=None,
    mature_only: bool = False,
    level: str = "merchant",
    merchants: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per merchant (or terminal) and business day with counts, rates and infrastructure.

    Parameters
    ----------
    reconciled : DataFrame
        :func:`analysis.reconcile.reconcile`'s result.
    terminals : DataFrame
        The contract's ``terminals`` table (terminal → merchant, infrastructure).
    terminal_events : DataFrame, optional
        The communication log; without it ``link_errors`` is 0 and the panel's
        ``attrs["link_errors_known"]`` is False.
    as_of : time-like, optional
        The moment of analysis that decides ``mature``; default
        ``reconciled.attrs["as_of"]`` (the moment reconcile used), else the
        latest transaction.
    mature_only : bool
        Drop merchant-days that are not yet mature (see the module docstring).
    level : {'merchant', 'terminal'}
        ``'terminal'`` gives one row per terminal and day (key ``merchant_id,
        terminal_id, business_date``) with that terminal's own infrastructure:
        what a fix scoped to a terminal model or firmware needs, since a
        merchant may run terminals of several kinds.
    merchants : DataFrame, optional
        The ``merchants`` table: adds ``mcc`` (for matched controls).

    Returns
    -------
    DataFrame
        Columns ``merchant_id, business_date`` (naive midnight), the counts
        :data:`COUNT_COLUMNS`, the rates :data:`RATES` (0–1, except
        ``link_errors_per_100``), ``median_credit_days``, ``deadline`` (the
        latest credit deadline of the day's attempts), ``mature`` and the
        dominant terminal's (at terminal level: the terminal's own)
        ``network_segment, model, firmware``. A merchant-day
        without attempts appears only when it has link errors (attempts 0, rates
        NaN). Sorted by merchant and day; ``attrs`` holds ``as_of``.

    Examples
    --------
    See the module docstring.
    """
    _check_level(level)
    moment = moment_of(reconciled, as_of)
    mcc = merchants is not None and "mcc" in merchants.columns
    with frames_engine(reconciled=reconciled, terminals=terminals, terminal_events=terminal_events,
                       merchants=merchants if mcc else None) as engine:
        return daily_panel_on(engine, as_of=moment, level=level, mature_only=mature_only, mcc=mcc)


def group_daily(
    panel: pd.DataFrame,
    by: str | list[str] | None = None,
    *,
    cases: str = "unsettled",
    n: str = "attempts",
) -> pd.DataFrame:
    """Sum the panel per group and business day: ``date, cases, n, rate`` (plus the group columns).

    Parameters
    ----------
    panel : DataFrame
        :func:`daily_panel`'s result (or any frame with ``business_date`` and the counts).
    by : str or list of str, optional
        Group columns (e.g. ``"network_segment"``); None sums everything.
    cases, n : str
        Count columns for the numerator and denominator.

    Examples
    --------
    >>> p = pd.DataFrame({"business_date": pd.to_datetime(["2026-03-10"] * 2),
    ...                   "network_segment": ["S1", "S1"], "unsettled": [1, 0], "attempts": [5, 5]})
    >>> print(group_daily(p, "network_segment").to_string(index=False))
    network_segment       date  cases  n  rate
                 S1 2026-03-10      1 10   0.1
    """
    cols = [] if by is None else ([by] if isinstance(by, str) else list(by))
    daily = (panel.groupby([*cols, "business_date"], sort=True, observed=True)[[cases, n]].sum()
             .reset_index().rename(columns={"business_date": "date", cases: "cases", n: "n"}))
    with np.errstate(invalid="ignore", divide="ignore"):
        daily["rate"] = np.where(daily["n"] > 0, daily["cases"] / daily["n"].where(daily["n"] > 0), np.nan)
    return daily


__all__ = [
    "ATTEMPT_TYPES",
    "COUNT_COLUMNS",
    "DOMINANT_SQL",
    "INFRA_COLUMNS",
    "LINK_FAILURE_COLUMNS",
    "NOT_ARRIVED_OUTCOMES",
    "RATES",
    "UNSETTLED_OUTCOMES",
    "add_rates",
    "daily_panel",
    "daily_panel_on",
    "dominant_terminals",
    "dominant_terminals_on",
    "group_daily",
    "moment_of",
    "panel_sql",
]
