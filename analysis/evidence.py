"""The transaction-level evidence behind cause classification, as one SQL step on an engine.

:func:`incident_features_on` runs one query (DuckDB dialect, see
:mod:`analysis.engine`) over the engine tables ``reconciled``, ``transactions``,
``terminals`` and, when present, ``terminal_events``, and returns one row per
incident with every piece of evidence the rules of :mod:`analysis.causes` read.
Only the incidents leave the engine; the boolean flags over them
(:func:`flags`) are computed in pandas.

The evidence, each a join or an aggregate of the query:

- link errors within ±window of the incident on its terminal, per kind, and on
  its network segment: equi-joins on the key and a time bucket as wide as the
  window (the incident looks into its own bucket and both neighbours), then
  ``abs(t_event - t_incident) <= window``;
- link errors on the segment that day against the segment's *usual* day: a
  quantile of its daily counts over every day the data spans, days without
  errors included (a zero-filled segment × day grid, the quantile by row
  numbers with numpy's linear interpolation, so it is exact on both engines);
  a segment-day *surges* when its count is far above usual;
- per terminal and day: reboots that day, link errors and batch uploads over
  the upload days;
- reboots per firmware against the other firmware;
- ``A0``/``30`` responses per terminal; ``91``/``96`` purchase declines on
  distinct segments within ±window (bursts);
- per merchant and transaction type, credits returned for a wrong account
  against all cleared credits between the first and the last such return;
- runs of consecutive active days on which a terminal cleared none of its
  purchases (dark runs).

Examples
--------
>>> import pandas as pd
>>> from analysis.engine import DuckDBEngine
>>> from analysis.engine.tables import register_dataset
>>> from analysis.io import Dataset
>>> from analysis.reconcile import reconcile
>>> from analysis.workdays import china_calendar
>>> ds = Dataset(
...     merchants=pd.DataFrame({"merchant_id": ["M1"]}),
...     terminals=pd.DataFrame({"terminal_id": ["K1"], "merchant_id": ["M1"]}),
...     transactions=pd.DataFrame({
...         "txn_id": ["A"], "terminal_id": ["K1"], "merchant_id": ["M1"],
...         "timestamp": pd.to_datetime(["2026-03-10 10:00"]).tz_localize("Asia/Shanghai"),
...         "txn_type": ["purchase"], "amount": [88.0], "response_code": ["A0"],
...         "reversal": ["none"]}))
>>> rec = reconcile(ds.transactions, as_of="2026-03-20")
>>> with DuckDBEngine() as eng:
...     _ = register_dataset(eng, ds, china_calendar(2026))
...     eng.register_frame("reconciled", reconciled_for_engine(rec, ds.transactions))
...     f = incident_features_on(eng, has_events=False, has_settlements=False)
>>> f[["txn_id", "outcome", "term_a0", "mac_key"]].values.tolist()
[['A', 'declined', 1, False]]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .contract import INCIDENT_OUTCOMES, LINK_ERROR_EVENTS
from .engine.base import Engine
from .engine.tables import dates_from_days, day_numbers
from .reconcile import RESULT_COLUMNS

CORRUPTION_CODES = ("A0", "30")
OUTAGE_CODES = ("91", "96")
#: Response codes of incidents that look for a burst of outage declines.
BURST_CODES = (*OUTAGE_CODES, "68", "92")
WRONG_ACCOUNT_RETURNS = ("invalid_account", "name_mismatch")
INCIDENT_TXN_TYPES = ("purchase", "transfer")
#: Outcomes of an approved purchase or transfer whose cycle is over.
PAST_CYCLE = ("credited", "credited_late", "returned", "credit_overdue", "not_cleared")
UPLOAD_EVENTS = ("batch_upload_ok", "batch_upload_failed")

#: Date columns of :func:`analysis.reconcile.reconcile` and the engine's day-number columns.
RECONCILED_DAYS = {
    "business_date": "day",
    "due_date": "due_day",
    "deadline": "deadline_day",
    "wait_until": "wait_until_day",
    "cleared_date": "cleared_day",
}
#: Feature date columns (day numbers in the engine) and the reconciled column they come from.
FEATURE_DAYS = {
    "m_first_return": "cleared_date",
    "m_last_return": "cleared_date",
    "m_last_cleared": "cleared_date",
    "dark_start": "business_date",
    "dark_end": "business_date",
}


@dataclass(frozen=True)
class Thresholds:
    """How much evidence a rule needs. Tune against ground truth, not per dataset.

    Attributes
    ----------
    usual_quantile : float
        A segment's usual day is this quantile of its daily link-error counts
        (0.25: robust while a fault covers up to three quarters of the data).
    surge_ratio, surge_min_events : float, int
        A segment-day is "far above its usual" when its link errors reach
        ``surge_ratio`` × (usual + 1) and at least ``surge_min_events``.
    segment_near_min : int
        Link errors on the segment within ±window that count as link trouble
        (also at least ``surge_ratio`` times what the segment's usual day gives
        such a window).
    terminal_near_min : int
        Link errors on the terminal itself within ±window that count.
    terminal_day_min : int
        Link errors on the terminal over the upload days that count as link
        trouble for a batch upload.
    upload_days : int
        Calendar days from the business date (1 or more) in which a batch upload
        is looked for.
    burst_segments : int
        Distinct network segments with ``91``/``96`` purchase declines within
        ±window that make an issuer or switch outage.
    mac_key_repeats : int
        ``A0``/``30`` responses on one terminal that suggest its MAC key is out of step.
    pattern_min_returns, pattern_min_share : int, float
        A merchant's credits are "all or mostly returned" for a wrong account
        when at least this many are, making at least this share of its cleared
        credits between its first and last such return.
    never_clears_min_days : int
        A terminal "never reaches clearing" when it cleared none of its approved
        transactions on at least this many consecutive days with any (a dark run).
    firmware_min_terminals, firmware_factor : int, float
        A firmware "shows reboots across the city" when at least this many of
        its terminals rebooted and its share of rebooted terminals is this many
        times that of other firmware.

    Examples
    --------
    >>> Thresholds(upload_days=3).upload_days
    3
    """

    usual_quantile: float = 0.25
    surge_ratio: float = 4.0
    surge_min_events: int = 5
    segment_near_min: int = 3
    terminal_near_min: int = 1
    terminal_day_min: int = 2
    upload_days: int = 2
    burst_segments: int = 3
    mac_key_repeats: int = 3
    pattern_min_returns: int = 3
    pattern_min_share: float = 0.8
    never_clears_min_days: int = 2
    firmware_min_terminals: int = 3
    firmware_factor: float = 3.0


# --------------------------------------------------------------------------------------
# SQL text
# --------------------------------------------------------------------------------------


def _num(x: float) -> str:
    """A DOUBLE literal both engines parse to exactly ``x`` (17 significant digits)."""
    return f"{float(x):.17e}"


def _strings(values) -> str:
    """An SQL list of string literals."""
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)


def quantile_position(n: int, q: float) -> tuple[int, int, float]:
    """0-based positions and weight of numpy's linear quantile ``q`` of ``n`` sorted values.

    ``np.quantile(x, q) == lerp(x[lo], x[hi], w)`` with numpy's ``lerp``
    (``a + (b - a) * w`` below 0.5, ``b - (b - a) * (1 - w)`` from 0.5).

    Examples
    --------
    >>> quantile_position(5, 0.25), quantile_position(6, 0.25), quantile_position(4, 1.0)
    ((1, 2, 0.0), (1, 2, 0.25), (3, 3, 0.0))
    """
    virtual = (n - 1) * np.float64(q)
    if virtual >= n - 1:
        return n - 1, n - 1, 0.0
    lo = int(np.floor(virtual))
    return lo, lo + 1, float(virtual - lo)


def _lerp_sql(a: str, b: str, w: float) -> str:
    """numpy's linear interpolation between two BIGINT expressions, as DOUBLE."""
    diff = f"CAST({b} - {a} AS DOUBLE)"
    if w >= 0.5:
        return f"CAST({b} AS DOUBLE) - {diff} * {_num(1 - w)}"
    return f"CAST({a} AS DOUBLE) + {diff} * {_num(w)}"


def staging_sql(*, window_s: int, has_events: bool, order_by: str) -> dict[str, str]:
    """The tables :func:`evidence_sql` reads, in the order to create them (DuckDB dialect).

    ``evidence_terminals`` has one row per terminal id; ``evidence_events`` the
    events with their terminal's segment and time bucket (empty without
    ``terminal_events``); ``evidence_incidents`` the incident rows of
    ``reconciled`` numbered ``k`` in ``order_by`` order, with their terminal's
    attributes. Each is read several times, so it is computed once.

    Examples
    --------
    >>> list(staging_sql(window_s=600, has_events=False, order_by="t, txn_id"))
    ['evidence_terminals', 'evidence_events', 'evidence_incidents']
    """
    width = _bucket_width(window_s)
    if has_events:
        events = f"""
SELECT e.terminal_id, e.event, e.t, e.day, m.network_segment,
  CAST(FLOOR(e.t / {width}) AS BIGINT) AS b
FROM terminal_events AS e LEFT JOIN evidence_terminals AS m ON m.terminal_id = e.terminal_id
WHERE e.t IS NOT NULL"""
    else:
        events = (
            "SELECT CAST(NULL AS VARCHAR) AS terminal_id, CAST(NULL AS VARCHAR) AS event, "
            "CAST(NULL AS BIGINT) AS t, CAST(NULL AS INTEGER) AS day, "
            "CAST(NULL AS VARCHAR) AS network_segment, CAST(NULL AS BIGINT) AS b WHERE 1 = 0"
        )
    return {
        "evidence_terminals": """
SELECT terminal_id, network_segment, firmware, model FROM (
  SELECT terminal_id, network_segment, firmware, model, ROW_NUMBER() OVER (
    PARTITION BY terminal_id ORDER BY network_segment, firmware, model, merchant_id) AS rn
  FROM terminals WHERE terminal_id IS NOT NULL) AS x
WHERE rn = 1""",
        "evidence_events": events,
        "evidence_incidents": f"""
SELECT ROW_NUMBER() OVER (ORDER BY {order_by}) AS k,
  r.txn_id, r.merchant_id, r.terminal_id, r.timestamp, r.txn_type, r.amount,
  r.response_code, r.reversal, r.reversal_reason, r.outcome, r.approved, r.day,
  r.settlement_cycle, r.due_day, r.deadline_day, r.wait_until_day, r.cleared_day,
  r.credit_status, r.credited_at, r.return_reason, r.credit_business_days, r.settled,
  r.clearing_known, r.payee_bank, m.network_segment, m.firmware, m.model, r.t
FROM reconciled AS r LEFT JOIN evidence_terminals AS m ON m.terminal_id = r.terminal_id
WHERE r.txn_type IN ({_strings(INCIDENT_TXN_TYPES)})
  AND r.outcome IN ({_strings(INCIDENT_OUTCOMES)})""",
    }


def _bucket_width(window_s: int) -> int:
    """Width of the time buckets: the window reaches at most one bucket either side."""
    return max(int(window_s), 1)


def evidence_sql(
    *,
    window_s: int,
    thresholds: Thresholds,
    first_day: int,
    last_day: int,
    has_events: bool,
    has_settlements: bool,
) -> str:
    """The query of :func:`incident_features_on` over the :func:`staging_sql` tables (DuckDB dialect).

    Parameters
    ----------
    window_s : int
        Half-width of the window around an incident, seconds.
    thresholds : Thresholds
    first_day, last_day : int
        Day numbers of the span over which a segment's usual day is taken.
    has_events : bool
        Whether the engine has ``terminal_events``.
    has_settlements : bool
        Whether clearing is known; without it no credit was returned.

    Returns
    -------
    str
        One SELECT whose rows are the incidents in order (column ``k``), the
        reconciled columns (days as day numbers) and the evidence columns.

    Examples
    --------
    >>> sql = evidence_sql(window_s=600, thresholds=Thresholds(), first_day=0, last_day=9,
    ...                    has_events=False, has_settlements=True)
    >>> "FROM evidence_incidents" in sql, "PERCENTILE" in sql.upper()
    (True, False)
    """
    th = thresholds
    width = _bucket_width(window_s)
    lo, hi, w = quantile_position(last_day - first_day + 1, th.usual_quantile)
    link = _strings(LINK_ERROR_EVENTS)
    upload_offsets = ", ".join(f"({o})" for o in range(max(th.upload_days, 1)))
    kind_sums = ",\n    ".join(
        f"CAST(SUM(CASE WHEN e.event = '{kind}' THEN 1 ELSE 0 END) AS BIGINT) AS n_{kind}"
        for kind in LINK_ERROR_EVENTS
    )
    term_near = ",\n    ".join(
        f"COALESCE(tn.n_{kind}, 0) AS term_{kind}_near" for kind in LINK_ERROR_EVENTS
    )
    term_link_near = " + ".join(f"COALESCE(tn.n_{kind}, 0)" for kind in LINK_ERROR_EVENTS)
    returns_filter = "" if has_settlements else " AND FALSE"
    return f"""
WITH inc_b AS (
  SELECT i.k, i.terminal_id, i.network_segment, i.response_code, i.t,
    CAST(FLOOR(i.t / {width}) AS BIGINT) + o.d AS b
  FROM evidence_incidents AS i CROSS JOIN (VALUES (-1), (0), (1)) AS o(d)
  WHERE i.t IS NOT NULL
),
link_b AS (SELECT terminal_id, network_segment, t, event, b FROM evidence_events WHERE event IN ({link})),
term_near AS (
  SELECT i.k,
    {kind_sums}
  FROM inc_b AS i JOIN link_b AS e ON e.terminal_id = i.terminal_id AND e.b = i.b
  WHERE ABS(e.t - i.t) <= {int(window_s)}
  GROUP BY i.k
),
seg_near AS (
  SELECT i.k, CAST(COUNT(*) AS BIGINT) AS n
  FROM inc_b AS i JOIN link_b AS e ON e.network_segment = i.network_segment AND e.b = i.b
  WHERE ABS(e.t - i.t) <= {int(window_s)}
  GROUP BY i.k
),
seg_daily AS (
  SELECT network_segment, day,
    CAST(SUM(CASE WHEN event IN ({link}) THEN 1 ELSE 0 END) AS BIGINT) AS link
  FROM evidence_events WHERE network_segment IS NOT NULL
  GROUP BY network_segment, day
),
days AS (SELECT UNNEST(GENERATE_SERIES({int(first_day)}, {int(last_day)})) AS day),
grid AS (
  SELECT s.network_segment, d.day, COALESCE(c.link, 0) AS link
  FROM (SELECT DISTINCT network_segment FROM seg_daily) AS s CROSS JOIN days AS d
  LEFT JOIN seg_daily AS c ON c.network_segment = s.network_segment AND c.day = d.day
),
ranked AS (
  SELECT network_segment, link,
    ROW_NUMBER() OVER (PARTITION BY network_segment ORDER BY link, day) - 1 AS pos
  FROM grid
),
usual AS (
  SELECT network_segment, {_lerp_sql("q.a", "q.b", w)} AS usual
  FROM (
    SELECT network_segment, MAX(CASE WHEN pos = {lo} THEN link END) AS a,
      MAX(CASE WHEN pos = {hi} THEN link END) AS b
    FROM ranked WHERE pos IN ({lo}, {hi}) GROUP BY network_segment) AS q
),
seg_rates AS (
  SELECT g.network_segment, g.day, g.link, u.usual,
    g.link >= {int(th.surge_min_events)}
      AND CAST(g.link + 1 AS DOUBLE) / (u.usual + 1) >= {_num(th.surge_ratio)} AS surge
  FROM grid AS g JOIN usual AS u ON u.network_segment = g.network_segment
),
term_daily AS (
  SELECT terminal_id, day,
    CAST(SUM(CASE WHEN event IN ({link}) THEN 1 ELSE 0 END) AS BIGINT) AS link,
    CAST(SUM(CASE WHEN event = 'reboot' THEN 1 ELSE 0 END) AS BIGINT) AS reboot,
    CAST(SUM(CASE WHEN event = 'batch_upload_ok' THEN 1 ELSE 0 END) AS BIGINT) AS upload_ok,
    CAST(SUM(CASE WHEN event = 'batch_upload_failed' THEN 1 ELSE 0 END) AS BIGINT)
      AS upload_failed
  FROM evidence_events WHERE terminal_id IS NOT NULL
  GROUP BY terminal_id, day
),
inc_days AS (
  SELECT i.k, i.terminal_id, i.network_segment, i.day + o.d AS day, o.d
  FROM evidence_incidents AS i CROSS JOIN (VALUES {upload_offsets}) AS o(d)
),
upload_days AS (
  SELECT i.k,
    CAST(SUM(CASE WHEN i.d = 0 THEN COALESCE(td.reboot, 0) ELSE 0 END) AS BIGINT) AS reboot,
    CAST(SUM(COALESCE(td.link, 0)) AS BIGINT) AS link,
    CAST(SUM(COALESCE(td.upload_ok, 0)) AS BIGINT) AS upload_ok,
    CAST(SUM(COALESCE(td.upload_failed, 0)) AS BIGINT) AS upload_failed,
    MAX(CASE WHEN sr.surge THEN 1 ELSE 0 END) AS surge
  FROM inc_days AS i
  LEFT JOIN term_daily AS td ON td.terminal_id = i.terminal_id AND td.day = i.day
  LEFT JOIN seg_rates AS sr ON sr.network_segment = i.network_segment AND sr.day = i.day
  GROUP BY i.k
),
ok_terminals AS (SELECT DISTINCT terminal_id FROM evidence_events WHERE event = 'batch_upload_ok'),
recorded AS (
  SELECT COUNT(*) > 0 AS uploads_recorded FROM evidence_events WHERE event IN ({_strings(UPLOAD_EVENTS)})
),
rebooted AS (SELECT DISTINCT terminal_id FROM evidence_events WHERE event = 'reboot'),
term_reboots AS (
  SELECT t.firmware, CASE WHEN r.terminal_id IS NULL THEN 0 ELSE 1 END AS rebooted
  FROM terminals AS t LEFT JOIN rebooted AS r ON r.terminal_id = t.terminal_id
),
fleet AS (
  SELECT CAST(COUNT(*) AS BIGINT) AS n, CAST(COALESCE(SUM(rebooted), 0) AS BIGINT) AS rebooted
  FROM term_reboots
),
firmware AS (
  SELECT f.firmware, f.terminals, f.rebooted,
    CAST(f.rebooted AS DOUBLE) / f.terminals AS share,
    CASE WHEN a.n - f.terminals > 0
      THEN CAST(a.rebooted - f.rebooted AS DOUBLE) / (a.n - f.terminals)
      ELSE 0.0 END AS others_share
  FROM (
    SELECT firmware, CAST(COUNT(*) AS BIGINT) AS terminals,
      CAST(SUM(rebooted) AS BIGINT) AS rebooted
    FROM term_reboots WHERE firmware IS NOT NULL GROUP BY firmware) AS f
  CROSS JOIN fleet AS a
),
a0 AS (
  SELECT terminal_id, CAST(COUNT(*) AS BIGINT) AS n FROM transactions
  WHERE response_code IN ({_strings(CORRUPTION_CODES)}) GROUP BY terminal_id
),
outage_b AS (
  SELECT DISTINCT m.network_segment, r.t, CAST(FLOOR(r.t / {width}) AS BIGINT) AS b
  FROM reconciled AS r JOIN evidence_terminals AS m ON m.terminal_id = r.terminal_id
  WHERE r.outcome = 'declined' AND r.txn_type = 'purchase'
    AND r.response_code IN ({_strings(OUTAGE_CODES)})
    AND m.network_segment IS NOT NULL AND r.t IS NOT NULL
),
bursts AS (
  SELECT i.k, CAST(COUNT(DISTINCT o.network_segment) AS BIGINT) AS n
  FROM inc_b AS i JOIN outage_b AS o ON o.b = i.b
  WHERE i.response_code IN ({_strings(BURST_CODES)}) AND ABS(o.t - i.t) <= {int(window_s)}
  GROUP BY i.k
),
returned AS (
  SELECT merchant_id, txn_type, CAST(COUNT(*) AS BIGINT) AS returns,
    MIN(cleared_day) AS first_return, MAX(cleared_day) AS last_return
  FROM reconciled
  WHERE cleared_day IS NOT NULL AND credit_status = 'returned'
    AND return_reason IN ({_strings(WRONG_ACCOUNT_RETURNS)}){returns_filter}
  GROUP BY merchant_id, txn_type
),
patterns AS (
  SELECT p.*, CAST(p.returns AS DOUBLE) / p.credits >= {_num(th.pattern_min_share)}
      AND p.returns >= {int(th.pattern_min_returns)} AS pattern
  FROM (
    SELECT s.merchant_id, s.txn_type, s.returns, s.first_return, s.last_return,
      CAST(SUM(CASE WHEN r.cleared_day BETWEEN s.first_return AND s.last_return
        THEN 1 ELSE 0 END) AS BIGINT) AS credits,
      CAST(COUNT(*) AS BIGINT) AS all_credits, MAX(r.cleared_day) AS last_cleared
    FROM returned AS s JOIN reconciled AS r
      ON r.merchant_id = s.merchant_id AND r.txn_type = s.txn_type
    WHERE r.cleared_day IS NOT NULL
    GROUP BY s.merchant_id, s.txn_type, s.returns, s.first_return, s.last_return) AS p
),
active AS (
  SELECT terminal_id, day, MAX(CASE WHEN cleared_day IS NULL THEN 0 ELSE 1 END) AS cleared
  FROM reconciled
  WHERE outcome IN ({_strings(PAST_CYCLE)}) AND txn_type = 'purchase'
    AND terminal_id IS NOT NULL AND day IS NOT NULL
  GROUP BY terminal_id, day
),
runs AS (
  SELECT terminal_id, day, cleared, SUM(cleared) OVER (
    PARTITION BY terminal_id ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
  ) AS run
  FROM active
),
dark AS (
  SELECT terminal_id, day,
    CAST(COUNT(*) OVER (PARTITION BY terminal_id, run) AS BIGINT) AS run_days,
    MIN(day) OVER (PARTITION BY terminal_id, run) AS run_start,
    MAX(day) OVER (PARTITION BY terminal_id, run) AS run_end
  FROM runs WHERE cleared = 0
)
SELECT i.*,
    {term_near},
    {term_link_near} AS term_link_near,
    COALESCE(sn.n, 0) AS seg_link_near,
    COALESCE(sr.link, 0) AS seg_day_link,
    COALESCE(u.usual, 0.0) AS seg_usual,
    CAST(COALESCE(sr.link, 0) + 1 AS DOUBLE) / (COALESCE(u.usual, 0.0) + 1) AS seg_day_ratio,
    COALESCE(ud.surge, 0) > 0 AS seg_surge_upload_days,
    COALESCE(ud.reboot, 0) AS term_day_reboot,
    COALESCE(ud.link, 0) AS term_link_upload_days,
    COALESCE(ud.upload_ok, 0) AS term_upload_ok,
    COALESCE(ud.upload_failed, 0) AS term_upload_failed,
    ok.terminal_id IS NOT NULL AS term_upload_ok_ever,
    rc.uploads_recorded,
    COALESCE(fw.terminals, 0) AS fw_terminals,
    COALESCE(fw.rebooted, 0) AS fw_rebooted,
    COALESCE(fw.share, 0.0) AS fw_share,
    COALESCE(fw.others_share, 0.0) AS fw_others_share,
    COALESCE(fw.rebooted, 0) >= {int(th.firmware_min_terminals)}
      AND COALESCE(fw.share, 0.0) >= {_num(th.firmware_factor)} * COALESCE(fw.others_share, 0.0)
      AS fw_outlier,
    COALESCE(a0.n, 0) AS term_a0,
    COALESCE(bu.n, 0) AS burst_segments,
    COALESCE(p.returns, 0) AS m_returns,
    p.first_return AS m_first_return,
    p.last_return AS m_last_return,
    p.last_cleared AS m_last_cleared,
    COALESCE(p.credits, 0) AS m_credits,
    COALESCE(p.all_credits, 0) AS m_all_credits,
    COALESCE(p.pattern, FALSE) AS m_pattern,
    COALESCE(dk.run_days, 0) AS dark_days,
    dk.run_start AS dark_start,
    dk.run_end AS dark_end,
    {"TRUE" if has_events else "FALSE"} AS has_events,
    COALESCE(i.reversal_reason, CASE WHEN i.response_code IS NULL THEN '98' ELSE '06' END)
      AS eff_reason
FROM evidence_incidents AS i
LEFT JOIN term_near AS tn ON tn.k = i.k
LEFT JOIN seg_near AS sn ON sn.k = i.k
LEFT JOIN seg_rates AS sr ON sr.network_segment = i.network_segment AND sr.day = i.day
LEFT JOIN usual AS u ON u.network_segment = i.network_segment
LEFT JOIN upload_days AS ud ON ud.k = i.k
LEFT JOIN ok_terminals AS ok ON ok.terminal_id = i.terminal_id
CROSS JOIN recorded AS rc
LEFT JOIN firmware AS fw ON fw.firmware = i.firmware
LEFT JOIN a0 ON a0.terminal_id = i.terminal_id
LEFT JOIN bursts AS bu ON bu.k = i.k
LEFT JOIN patterns AS p ON p.merchant_id = i.merchant_id AND p.txn_type = i.txn_type
LEFT JOIN dark AS dk ON dk.terminal_id = i.terminal_id AND dk.day = i.day
ORDER BY i.k
"""


# --------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------


def _day_span(engine: Engine) -> tuple[int, int]:
    """First and last day number over the reconciled transactions and the staged events."""
    row = engine.fetch(
        "SELECT MIN(day) AS lo, MAX(day) AS hi FROM "
        "(SELECT day FROM reconciled UNION ALL SELECT day FROM evidence_events) AS d"
    )
    lo, hi = row["lo"].iloc[0], row["hi"].iloc[0]
    if pd.isna(lo):
        return 0, 0
    return int(lo), int(hi)


def _to_frame(raw: pd.DataFrame) -> pd.DataFrame:
    """The query's result with dates as naive datetimes and the reconciled columns' names."""
    out = raw.drop(columns="k").rename(columns={v: k for k, v in RECONCILED_DAYS.items()})
    for col in (*RECONCILED_DAYS, *FEATURE_DAYS):
        out[col] = dates_from_days(out[col])
    out["credit_business_days"] = out["credit_business_days"].astype("Int64")
    out["eff_reason"] = out["eff_reason"].astype(object)
    head = [*RESULT_COLUMNS, "payee_bank", "network_segment", "firmware", "model", "t"]
    rest = [c for c in out.columns if c not in head]
    return out[head + rest]


def flags(f: pd.DataFrame, th: Thresholds, window_s: int) -> pd.DataFrame:
    """Add the boolean evidence the rules read to the incident features ``f`` (in place).

    Examples
    --------
    >>> f = pd.DataFrame({"seg_usual": [0.0], "seg_day_ratio": [6.0], "seg_day_link": [5],
    ...     "seg_link_near": [0], "has_events": [True], "term_link_near": [0],
    ...     "term_link_upload_days": [0], "seg_surge_upload_days": [False],
    ...     "term_upload_failed": [0], "term_upload_ok": [1], "uploads_recorded": [True],
    ...     "term_upload_ok_ever": [True], "burst_segments": [0], "term_a0": [0],
    ...     "clearing_known": [True], "dark_days": [0],
    ...     "cleared_date": pd.to_datetime([None]), "due_date": pd.to_datetime(["2026-03-11"])})
    >>> bool(flags(f, Thresholds(), 600)["seg_day_surge"].iloc[0])
    True
    """
    window_share = 2 * window_s / 86400
    seg_near_needed = np.maximum(
        th.segment_near_min, th.surge_ratio * (f["seg_usual"] + 1) * window_share
    )
    f["seg_day_surge"] = (f["seg_day_ratio"] >= th.surge_ratio) & (
        f["seg_day_link"] >= th.surge_min_events
    )
    f["seg_near_surge"] = f["seg_link_near"] >= seg_near_needed
    f["terminal_link_near"] = f["has_events"] & (f["term_link_near"] >= th.terminal_near_min)
    f["near_link"] = f["terminal_link_near"] | (
        f["has_events"] & (f["seg_near_surge"] | f["seg_day_surge"])
    )
    f["term_trouble_upload"] = f["has_events"] & (f["term_link_upload_days"] >= th.terminal_day_min)
    f["line_trouble_upload"] = f["term_trouble_upload"] | (
        f["has_events"] & f["seg_surge_upload_days"]
    )
    f["upload_failed"] = f["term_upload_failed"] > 0
    f["no_upload"] = f["uploads_recorded"] & (f["term_upload_ok"] == 0) & ~f["upload_failed"]
    f["never_uploaded"] = f["uploads_recorded"] & ~f["term_upload_ok_ever"]
    f["burst"] = f["burst_segments"] >= th.burst_segments
    f["mac_key"] = f["term_a0"] >= th.mac_key_repeats
    f["never_clears"] = f["clearing_known"] & (f["dark_days"] >= th.never_clears_min_days)
    f["cleared_late"] = (f["cleared_date"] > f["due_date"]).fillna(False).astype(bool)
    return f


def incident_features_on(
    engine: Engine,
    *,
    window_minutes: float = 10,
    thresholds: Thresholds | None = None,
    has_events: bool,
    has_settlements: bool,
) -> pd.DataFrame:
    """One row per incident with every piece of evidence the rules use, computed on ``engine``.

    Parameters
    ----------
    engine : Engine
        Holds ``reconciled`` (one row per transaction, the engine form of
        :func:`analysis.reconcile.reconcile`: see :func:`reconciled_for_engine`),
        the canonical ``transactions`` and ``terminals`` views and, when
        ``has_events``, ``terminal_events``. When ``reconciled`` has a
        ``_row`` column (the transaction's position, :func:`analysis.reconcile.reconcile_on`
        carries it) the incidents come in its order, else by time and id.
        The step leaves its :func:`staging_sql` tables in the engine.
    window_minutes : float
        Half-width of the window around a transaction for link errors and bursts.
    thresholds : Thresholds, optional
    has_events : bool
        Whether the dataset has ``terminal_events`` (without it the event
        evidence takes its neutral values).
    has_settlements : bool
        Whether the dataset has ``settlements``.

    Returns
    -------
    DataFrame
        The incidents' :data:`analysis.reconcile.RESULT_COLUMNS` (dates as naive
        datetimes) plus ``payee_bank``, the terminal's segment, firmware and
        model, ``t`` (epoch seconds), the link-error counts, segment-day rates,
        reboots, batch uploads, firmware shares, ``A0`` counts, bursts, merchant
        return patterns, dark runs, ``has_events``, ``eff_reason`` (the reversal
        reason or what it must have been) and the boolean :func:`flags`.

    Examples
    --------
    See the module docstring.
    """
    batches = incident_feature_batches_on(engine, window_minutes=window_minutes, thresholds=thresholds,
                                          has_events=has_events, has_settlements=has_settlements,
                                          batch_rows=None)
    return next(iter(batches))


def incident_feature_batches_on(
    engine: Engine,
    *,
    window_minutes: float = 10,
    thresholds: Thresholds | None = None,
    has_events: bool,
    has_settlements: bool,
    batch_rows: int | None = 250_000,
) -> Iterator[pd.DataFrame]:
    """:func:`incident_features_on`, ``batch_rows`` incidents at a time, in order.

    The features are computed once into the engine table ``incident_features``
    and fetched a slice at a time, so that pandas never holds the features of
    millions of incidents at once (their text is built a batch at a time).
    ``batch_rows=None`` gives one batch. At least one batch is yielded (empty
    when there is no incident).

    Examples
    --------
    See the module docstring.
    """
    th = thresholds or Thresholds()
    window_s = int(window_minutes * 60)
    order_by = "_row" if "_row" in engine.columns("reconciled") else "t, txn_id"
    for name, sql in staging_sql(window_s=window_s, has_events=has_events, order_by=order_by).items():
        engine.create_table(name, sql)
    first_day, last_day = _day_span(engine)
    sql = evidence_sql(
        window_s=window_s,
        thresholds=th,
        first_day=first_day,
        last_day=last_day,
        has_events=has_events,
        has_settlements=has_settlements,
    )
    if batch_rows is None:
        yield flags(_to_frame(engine.fetch(sql)), th, window_s)
        return
    engine.create_table("incident_features", sql)
    n = engine.count("incident_features")
    for lo in range(0, max(n, 1), batch_rows):
        raw = engine.fetch(f"SELECT * FROM incident_features WHERE k > {lo} AND k <= {lo + batch_rows} ORDER BY k")
        yield flags(_to_frame(raw), th, window_s)


# --------------------------------------------------------------------------------------
# The pandas reconciled frame in the engine's form
# --------------------------------------------------------------------------------------


def _days_or_na(dates: pd.Series) -> pd.Series:
    """Day numbers (``Int64``) of naive dates; missing stays missing."""
    out = pd.Series(pd.NA, index=dates.index, dtype="Int64")
    ok = dates.notna().to_numpy()
    out[ok] = day_numbers(dates[ok].to_numpy())
    return out


def reconciled_for_engine(reconciled: pd.DataFrame, transactions: pd.DataFrame) -> pd.DataFrame:
    """:func:`analysis.reconcile.reconcile`'s frame in the form of the engine table ``reconciled``.

    Dates become day numbers (``business_date`` → ``day``, ``due_date`` →
    ``due_day``, …), the time gets ``t`` (epoch seconds), ``payee_bank`` comes
    from ``transactions`` (first row per ``txn_id``) and ``_row`` keeps the
    frame's row order.

    Examples
    --------
    >>> rec = pd.DataFrame({"txn_id": ["A"], "timestamp": pd.to_datetime(
    ...     ["2026-03-10 10:00"]).tz_localize("Asia/Shanghai"),
    ...     **{c: pd.to_datetime(["2026-03-10"]) for c in RECONCILED_DAYS}})
    >>> out = reconciled_for_engine(rec, pd.DataFrame({"txn_id": ["A"], "payee_bank": ["ICBC"]}))
    >>> out[["_row", "t", "day", "payee_bank"]].values.tolist()
    [[0, 1773108000, 20522, 'ICBC']]
    """
    out = reconciled.drop(columns=list(RECONCILED_DAYS)).reset_index(drop=True)
    for col, day in RECONCILED_DAYS.items():
        out[day] = _days_or_na(reconciled[col].reset_index(drop=True))
    utc = reconciled["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None)
    out["t"] = utc.to_numpy(dtype="datetime64[s]").astype(np.int64)
    if "payee_bank" in transactions.columns:
        banks = transactions.drop_duplicates("txn_id").set_index("txn_id")["payee_bank"]
        out["payee_bank"] = out["txn_id"].map(banks).astype("str")
    else:
        out["payee_bank"] = pd.Series(pd.NA, index=out.index, dtype="str")
    out["_row"] = np.arange(len(out), dtype=np.int64)
    out.attrs.clear()  # as_of is not Arrow metadata
    return out


__all__ = [
    "CORRUPTION_CODES",
    "INCIDENT_TXN_TYPES",
    "OUTAGE_CODES",
    "PAST_CYCLE",
    "Thresholds",
    "WRONG_ACCOUNT_RETURNS",
    "evidence_sql",
    "flags",
    "staging_sql",
    "incident_feature_batches_on",
    "incident_features_on",
    "quantile_position",
    "reconciled_for_engine",
]
