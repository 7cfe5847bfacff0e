"""Why each incident happened: exactly one cause of the contract's taxonomy.

:func:`classify` takes the reconciled transactions (:func:`analysis.reconcile.reconcile`)
and gives every incident — a purchase or transfer whose outcome is in
:data:`analysis.contract.INCIDENT_OUTCOMES` — one cause code of
:data:`analysis.contract.CAUSES`, a confidence (0–1), one line of evidence a
person can check, and the next step.

How it works
------------
1. **Evidence features** are computed with vectorized joins and window counts,
   one small function per kind of evidence, so each can later move to an SQL
   engine: link errors near a transaction on its terminal and its network
   segment (:func:`count_near`), per segment-day link-error counts against the
   segment's usual day (:func:`segment_day_rates`), per terminal-day event
   counts (:func:`daily_event_counts`), firmware-wide reboots
   (:func:`firmware_reboots`), bursts of ``91``/``96`` across segments
   (:func:`distinct_near`), repeated ``A0`` responses per terminal
   (:func:`response_counts`), merchant-level return patterns
   (:func:`return_patterns`) and runs of days a terminal cleared nothing
   (:func:`dark_runs`).
2. **Rules** (:data:`RULES`) are tried in order; the first whose condition holds
   decides the cause, so every incident gets exactly one. Each rule names its
   cause, a confidence (raised or lowered by the evidence), an evidence template
   and the evidence phrases it adds. The contract's "Causes" table is the
   authority; the rules only add how much the evidence weighs.
3. Only the evidence strings and next steps are formatted row by row, for
   incidents only.

Missing optional tables narrow what can be concluded and the output says so:
without ``terminal_events`` link errors, reboots and batch uploads are unknown
(lower confidence, and a not-cleared transaction is UNKNOWN because a failed
upload cannot be told from a set-up problem); without ``settlements`` clearing
is unknown (an approved transaction past its cycle is UNKNOWN).

Examples
--------
>>> import pandas as pd
>>> from analysis.io import Dataset
>>> tz = "Asia/Shanghai"
>>> ds = Dataset(
...     merchants=pd.DataFrame({"merchant_id": ["M1"], "settlement_cycle": ["T1"]}),
...     terminals=pd.DataFrame({"terminal_id": ["K1"], "merchant_id": ["M1"],
...                             "firmware": ["1.0"], "network_segment": ["CT-PD-0001"]}),
...     transactions=pd.DataFrame({
...         "txn_id": ["A"], "terminal_id": ["K1"], "merchant_id": ["M1"],
...         "timestamp": pd.to_datetime(["2026-03-10 10:00"]).tz_localize(tz),
...         "txn_type": ["purchase"], "amount": [88.0], "response_code": ["51"],
...         "reversal": ["none"]}))
>>> row = classify(ds, as_of="2026-03-20").iloc[0]
>>> row["cause"], row["evidence"]
('INSUFFICIENT_FUNDS', 'declined 51 (insufficient funds) by the issuer')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .contract import (
    CAUSES,
    FRAUD_POLICE_THRESHOLD,
    INCIDENT_OUTCOMES,
    LINK_ERROR_EVENTS,
    OUTPUTS,
    RESPONSE_CODES,
    REVERSAL_REASON_MEANINGS,
    TIMEZONE,
)
from .reconcile import default_as_of, reconcile, to_local_time
from .workdays import WorkCalendar, to_business_date

# --------------------------------------------------------------------------------------
# Taxonomy and thresholds
# --------------------------------------------------------------------------------------

#: Decline codes whose cause the code alone decides (contract, "Causes").
DECLINE_CAUSES: dict[str, str] = {
    **dict.fromkeys(("14", "55"), "DECLINED_CARD_INFO"),
    **dict.fromkeys(("61", "65"), "DECLINED_LIMIT"),
    "51": "INSUFFICIENT_FUNDS",
    **dict.fromkeys(("54", "62", "57"), "CARD_EXPIRED_OR_RESTRICTED"),
    **dict.fromkeys(("41", "43", "59"), "FRAUD_SUSPECTED"),
    **dict.fromkeys(("13", "12", "94"), "OPERATOR_ERROR"),
    **dict.fromkeys(("03", "58", "97"), "MERCHANT_CONFIG"),
}
#: Who answered with a code that decides the cause (for the evidence line).
_DECLINED_BY = {"MERCHANT_CONFIG": "the acquirer", "OPERATOR_ERROR": "the acquirer"}
CORRUPTION_CODES = ("A0", "30")
OUTAGE_CODES = ("91", "96")
WRONG_ACCOUNT_RETURNS = ("invalid_account", "name_mismatch")
FROZEN_RETURNS = ("account_frozen", "account_closed")
INCIDENT_TXN_TYPES = ("purchase", "transfer")


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
        Calendar days from the business date in which a batch upload is looked for.
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


def cause_table() -> pd.DataFrame:
    """The cause taxonomy for display: ``code, zh, en, meaning, next_steps``.

    Examples
    --------
    >>> cause_table().set_index("code").loc["UNKNOWN", "zh"]
    '原因不明'
    """
    return pd.DataFrame(
        [
            {
                "code": c.code,
                "zh": c.zh,
                "en": c.en,
                "meaning": c.meaning,
                "next_steps": " ".join(c.next_steps),
            }
            for c in CAUSES.values()
        ]
    )


# --------------------------------------------------------------------------------------
# Window and day counting (the transaction-level work; SQL-shaped)
# --------------------------------------------------------------------------------------


def epoch_seconds(times: pd.Series) -> np.ndarray:
    """Seconds since the epoch (int64) of tz-aware or naive UTC times; missing → INT64_MIN."""
    values = times
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values.to_numpy(dtype="datetime64[s]").astype(np.int64)


_MISSING_TIME = np.iinfo(np.int64).min


def count_near(
    query_keys: pd.Series,
    query_times: np.ndarray,
    event_keys: pd.Series,
    event_times: np.ndarray,
    window_s: int,
) -> np.ndarray:
    """For each query, the number of events with the same key within ±``window_s`` seconds.

    Keys are factorized together and combined with the time into one sorted
    int64, so the count is two binary searches per query.

    Examples
    --------
    >>> count_near(pd.Series(["a", "b"]), np.array([100, 100]),
    ...            pd.Series(["a", "a", "b"]), np.array([50, 400, 99]), 60).tolist()
    [1, 1]
    """
    n_e = len(event_keys)
    codes, _ = pd.factorize(pd.concat([event_keys, query_keys], ignore_index=True))
    e_code, q_code = codes[:n_e], codes[n_e:]
    e_ok = (e_code >= 0) & (event_times != _MISSING_TIME)
    q_ok = (q_code >= 0) & (query_times != _MISSING_TIME)
    out = np.zeros(len(query_keys), dtype=np.int64)
    if not e_ok.any() or not q_ok.any():
        return out
    et, qt = event_times[e_ok], query_times[q_ok]
    origin = min(et.min(), qt.min()) - window_s - 1
    span = max(et.max(), qt.max()) - origin + window_s + 2
    combined = np.sort(e_code[e_ok] * span + (et - origin))
    base = q_code[q_ok] * span - origin
    lo = np.searchsorted(combined, base + qt - window_s, side="left")
    hi = np.searchsorted(combined, base + qt + window_s, side="right")
    out[q_ok] = hi - lo
    return out


def distinct_near(
    query_times: np.ndarray, event_times: np.ndarray, event_labels: pd.Series, window_s: int
) -> np.ndarray:
    """For each query, the number of distinct event labels within ±``window_s`` seconds.

    Examples
    --------
    >>> distinct_near(np.array([100]), np.array([90, 95, 500]),
    ...               pd.Series(["s1", "s2", "s3"]), 60).tolist()
    [2]
    """
    out = np.zeros(len(query_times), dtype=np.int64)
    labels, uniques = pd.factorize(event_labels)
    keep = (labels >= 0) & (event_times != _MISSING_TIME)
    if not keep.any() or not len(query_times):
        return out
    order = np.argsort(event_times[keep], kind="stable")
    times, labels = event_times[keep][order], labels[keep][order]
    lo = np.searchsorted(times, query_times - window_s, side="left")
    hi = np.searchsorted(times, query_times + window_s, side="right")
    n = np.where(query_times == _MISSING_TIME, 0, hi - lo)
    query = np.repeat(np.arange(len(query_times)), n)
    offset = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    pairs = np.unique(query * len(uniques) + labels[np.repeat(lo, n) + offset])
    return np.bincount(pairs // len(uniques), minlength=len(query_times)).astype(np.int64)


def daily_event_counts(events: pd.DataFrame, key: str) -> pd.DataFrame:
    """Events per ``key`` and Shanghai calendar day, one column per event kind plus ``link``.

    ``events`` needs ``key``, ``day`` and ``event``; ``link`` sums the link-error kinds.

    Examples
    --------
    >>> ev = pd.DataFrame({"terminal_id": ["K1", "K1"], "event": ["timeout", "reboot"],
    ...                    "day": pd.to_datetime(["2026-03-10", "2026-03-10"])})
    >>> daily_event_counts(ev, "terminal_id")[["link", "reboot"]].iloc[0].tolist()
    [1, 1]
    """
    counts = (
        events.groupby([key, "day", "event"], observed=True).size().unstack("event", fill_value=0)
    )
    for kind in (*LINK_ERROR_EVENTS, "reboot", "batch_upload_ok", "batch_upload_failed"):
        if kind not in counts.columns:
            counts[kind] = 0
    counts["link"] = counts[list(LINK_ERROR_EVENTS)].sum(axis=1)
    counts.columns.name = None
    return counts


def segment_day_rates(
    segment_daily: pd.DataFrame, days: pd.DatetimeIndex, quantile: float = 0.5
) -> pd.DataFrame:
    """Link errors per segment-day against the segment's usual day.

    The usual day is a quantile (default the median) of the segment's daily
    link-error counts over ``days`` (days without events count as 0); ``ratio``
    is (count + 1) / (usual + 1).

    Parameters
    ----------
    segment_daily : DataFrame
        :func:`daily_event_counts` by ``network_segment``.
    days : DatetimeIndex
        Every calendar day the data spans.
    quantile : float
        Which quantile of the daily counts is "usual"; a lower one stays a
        healthy day while a fault covers more than half of the span.

    Returns
    -------
    DataFrame
        Index (network_segment, day); columns ``link_errors``, ``usual``, ``ratio``.
    """
    grid = segment_daily["link"].unstack("day", fill_value=0).reindex(columns=days, fill_value=0)
    usual = grid.quantile(quantile, axis=1)
    long = grid.stack().rename("link_errors").to_frame()
    long.index = long.index.set_names(["network_segment", "day"])
    long["usual"] = usual.reindex(long.index.get_level_values(0)).to_numpy()
    long["ratio"] = (long["link_errors"] + 1) / (long["usual"] + 1)
    return long


def over_days(
    table: pd.DataFrame,
    keys: pd.Series,
    days: pd.Series,
    columns: list[str],
    n_days: int = 1,
    how: str = "sum",
) -> pd.DataFrame:
    """Per-(key, day) values of ``table`` summed (or maxed) over ``n_days`` days from each day.

    Missing (key, day) pairs count as 0.
    """
    parts = []
    for offset in range(n_days):
        idx = pd.MultiIndex.from_arrays(
            [keys.to_numpy(), (days + pd.Timedelta(days=offset)).to_numpy()]
        )
        parts.append(table[columns].reindex(idx).fillna(0).to_numpy())
    combined = np.max(parts, axis=0) if how == "max" else np.sum(parts, axis=0)
    return pd.DataFrame(combined, columns=columns, index=keys.index)


def firmware_reboots(reboot_terminals: pd.Series, terminals: pd.DataFrame) -> pd.DataFrame:
    """Share of terminals that rebooted, per firmware, against the other firmware.

    Parameters
    ----------
    reboot_terminals : Series
        Terminal ids with at least one ``reboot`` event.
    terminals : DataFrame
        The terminals table (``terminal_id``, ``firmware``).

    Returns
    -------
    DataFrame
        Index firmware; ``terminals``, ``rebooted``, ``share``, ``others_share``.
    """
    rebooted = terminals["terminal_id"].isin(pd.unique(reboot_terminals))
    table = (
        terminals.assign(rebooted=rebooted)
        .groupby("firmware", observed=True)["rebooted"]
        .agg(terminals="size", rebooted="sum")
    )
    others_terms = len(terminals) - table["terminals"]
    others_reb = int(rebooted.sum()) - table["rebooted"]
    table["share"] = table["rebooted"] / table["terminals"]
    table["others_share"] = (others_reb / others_terms.where(others_terms > 0)).fillna(0.0)
    return table


def response_counts(transactions: pd.DataFrame, codes: tuple[str, ...]) -> pd.Series:
    """Number of responses with one of ``codes`` per terminal."""
    hit = transactions["response_code"].isin(codes)
    return transactions.loc[hit].groupby("terminal_id").size()


def return_patterns(
    reconciled: pd.DataFrame, reasons: tuple[str, ...], th: Thresholds
) -> pd.DataFrame:
    """Per merchant and transaction type: credits returned for ``reasons`` against all cleared.

    Purchases credit the merchant's settlement account and transfers the payee's,
    so the two are kept apart. The span runs from the first to the last such
    return (by ``cleared_date``), so credits after a corrected account do not
    dilute it.

    Returns
    -------
    DataFrame
        Index (merchant_id, txn_type) with such a return; ``returns``,
        ``first_return``, ``last_return``, ``credits`` (cleared credits in the
        span), ``share``, ``pattern``, ``all_credits`` and ``last_cleared`` (over
        all its cleared credits of that type).

    Examples
    --------
    >>> rec = pd.DataFrame({"merchant_id": ["M"] * 3, "txn_type": ["purchase"] * 3,
    ...     "cleared_date": pd.to_datetime(["2026-03-02", "2026-03-03", "2026-03-04"]),
    ...     "credit_status": ["returned"] * 3, "return_reason": ["invalid_account"] * 3})
    >>> row = return_patterns(rec, ("invalid_account",), Thresholds()).iloc[0]
    >>> int(row["returns"]), float(row["share"]), bool(row["pattern"])
    (3, 1.0, True)
    """
    key = ["merchant_id", "txn_type"]
    cleared = reconciled.loc[
        reconciled["cleared_date"].notna(), [*key, "cleared_date", "credit_status", "return_reason"]
    ]
    hit = cleared["credit_status"].eq("returned") & cleared["return_reason"].isin(reasons)
    spans = (
        cleared.loc[hit]
        .groupby(key)["cleared_date"]
        .agg(returns="size", first_return="min", last_return="max")
    )
    within = cleared.merge(spans.reset_index(), on=key, how="inner")
    within = within[within["cleared_date"].between(within["first_return"], within["last_return"])]
    spans["credits"] = within.groupby(key).size().reindex(spans.index, fill_value=0)
    spans["share"] = spans["returns"] / spans["credits"]
    spans["pattern"] = (spans["returns"] >= th.pattern_min_returns) & (
        spans["share"] >= th.pattern_min_share
    )
    overall = cleared.groupby(key)["cleared_date"].agg(all_credits="size", last_cleared="max")
    return spans.join(overall)


#: Outcomes of an approved purchase or transfer whose cycle is over.
_PAST_CYCLE = ("credited", "credited_late", "returned", "credit_overdue", "not_cleared")


def dark_runs(reconciled: pd.DataFrame) -> pd.DataFrame:
    """Runs of consecutive active days on which a terminal cleared none of its purchases.

    Purchases reach clearing through the terminal's end-of-day batch (transfers
    do not), so a terminal-day is *active* when the terminal has approved
    purchases past their cycle that day, and *dark* when none of them cleared.
    Consecutive dark active days (days without activity in between do not break
    a run) form a run.

    Returns
    -------
    DataFrame
        Index (terminal_id, business_date) of dark days; ``run_days``,
        ``run_start``, ``run_end`` of the run each belongs to.

    Examples
    --------
    >>> rec = pd.DataFrame({"txn_id": list("abcd"), "terminal_id": ["K"] * 4,
    ...     "outcome": ["not_cleared", "credited", "not_cleared", "not_cleared"],
    ...     "txn_type": ["purchase"] * 4,
    ...     "cleared_date": pd.to_datetime([None, "2026-03-03", None, None]),
    ...     "business_date": pd.to_datetime(
    ...         ["2026-03-01", "2026-03-02", "2026-03-04", "2026-03-06"])})
    >>> dark_runs(rec)["run_days"].tolist()
    [1, 2, 2]
    """
    due = reconciled[
        reconciled["outcome"].isin(_PAST_CYCLE) & reconciled["txn_type"].eq("purchase")
    ]
    days = (
        due.assign(cleared=due["cleared_date"].notna())
        .groupby(["terminal_id", "business_date"])["cleared"]
        .any()
        .reset_index()
        .sort_values(["terminal_id", "business_date"])
    )
    new_terminal = days["terminal_id"].ne(days["terminal_id"].shift())
    run = (new_terminal | days["cleared"]).cumsum()
    dark = days[~days["cleared"]].assign(run=run[~days["cleared"]])
    spans = dark.groupby("run")["business_date"].agg(
        run_days="size", run_start="min", run_end="max"
    )
    return dark.join(spans, on="run").set_index(["terminal_id", "business_date"])[
        ["run_days", "run_start", "run_end"]
    ]


# --------------------------------------------------------------------------------------
# Incident features
# --------------------------------------------------------------------------------------


def _incidents(reconciled: pd.DataFrame) -> pd.DataFrame:
    """The incident rows of the reconciled transactions."""
    mask = reconciled["txn_type"].isin(INCIDENT_TXN_TYPES) & reconciled["outcome"].isin(
        INCIDENT_OUTCOMES
    )
    return reconciled.loc[mask].reset_index(drop=True)


def _lookup(frame: pd.DataFrame, key: str, values: pd.Series, columns: list[str]) -> pd.DataFrame:
    """Columns of ``frame`` aligned with ``values`` of its ``key`` (first row per key; else NA)."""
    index = pd.Index(frame[key])
    if not index.is_unique:
        frame = frame.drop_duplicates(key)
        index = pd.Index(frame[key])
    pos = index.get_indexer(values)
    found = pd.DataFrame(index=values.index)
    for c in columns:
        if c in frame.columns:
            col = frame[c].iloc[np.where(pos >= 0, pos, 0)] if len(frame) else frame[c].reindex([])
            found[c] = pd.Series(col.to_numpy(), index=values.index, dtype=frame[c].dtype).where(
                pos >= 0
            )
        else:
            found[c] = pd.Series(pd.NA, index=values.index, dtype="str")
    return found


def _event_frame(events: pd.DataFrame, terminals: pd.DataFrame) -> pd.DataFrame:
    """Events with their segment, merchant, Shanghai day and epoch seconds."""
    attrs = _lookup(
        terminals, "terminal_id", events["terminal_id"], ["network_segment", "merchant_id"]
    )
    return pd.DataFrame(
        {
            "terminal_id": events["terminal_id"],
            "network_segment": attrs["network_segment"],
            "merchant_id": attrs["merchant_id"],
            "event": events["event"],
            "day": to_business_date(events["timestamp"]),
            "t": epoch_seconds(events["timestamp"]),
        }
    )


def _link_features(inc: pd.DataFrame, ev: pd.DataFrame, window_s: int) -> dict[str, np.ndarray]:
    """Link errors within ±window of each incident on its terminal (per kind) and its segment."""
    t = inc["t"].to_numpy()
    out = {}
    for kind in LINK_ERROR_EVENTS:
        kind_ev = ev[ev["event"].eq(kind)]
        out[f"term_{kind}_near"] = count_near(
            inc["terminal_id"], t, kind_ev["terminal_id"], kind_ev["t"].to_numpy(), window_s
        )
    out["term_link_near"] = sum(out[f"term_{k}_near"] for k in LINK_ERROR_EVENTS)
    link_ev = ev[ev["event"].isin(LINK_ERROR_EVENTS)]
    out["seg_link_near"] = count_near(
        inc["network_segment"], t, link_ev["network_segment"], link_ev["t"].to_numpy(), window_s
    )
    return out


def _day_span(*days: pd.Series) -> pd.DatetimeIndex:
    """Every calendar day from the earliest to the latest of ``days``."""
    valid = [d.dropna() for d in days if d is not None and d.notna().any()]
    if not valid:
        return pd.DatetimeIndex([])
    lo = min(d.min() for d in valid)
    hi = max(d.max() for d in valid)
    return pd.date_range(lo, hi, freq="D")


def _event_features(
    inc: pd.DataFrame,
    events: pd.DataFrame,
    dataset,
    reconciled: pd.DataFrame,
    window_s: int,
    th: Thresholds,
) -> pd.DataFrame:
    """Every terminal_events feature of the incidents."""
    ev = _event_frame(events, dataset.terminals)
    feats = pd.DataFrame(_link_features(inc, ev, window_s), index=inc.index)

    seg_rates = segment_day_rates(
        daily_event_counts(ev, "network_segment"),
        _day_span(reconciled["business_date"], ev["day"]),
        th.usual_quantile,
    )
    today = over_days(seg_rates, inc["network_segment"], inc["business_date"], ["link_errors"])
    feats["seg_day_link"] = today["link_errors"].astype(int)
    seg_usual = seg_rates["usual"].groupby(level=0).first()
    feats["seg_usual"] = inc["network_segment"].map(seg_usual).fillna(0.0).to_numpy()
    feats["seg_day_ratio"] = (feats["seg_day_link"] + 1) / (feats["seg_usual"] + 1)
    surge = (seg_rates["ratio"] >= th.surge_ratio) & (
        seg_rates["link_errors"] >= th.surge_min_events
    )
    seg_rates["surge"] = surge.astype(float)
    upload = over_days(
        seg_rates,
        inc["network_segment"],
        inc["business_date"],
        ["surge", "link_errors"],
        th.upload_days,
        "max",
    )
    feats["seg_surge_upload_days"] = upload["surge"].to_numpy() > 0

    term_daily = daily_event_counts(ev, "terminal_id")
    day = over_days(term_daily, inc["terminal_id"], inc["business_date"], ["reboot", "link"])
    feats["term_day_reboot"] = day["reboot"].astype(int)
    span = over_days(
        term_daily,
        inc["terminal_id"],
        inc["business_date"],
        ["link", "batch_upload_ok", "batch_upload_failed"],
        th.upload_days,
    )
    feats["term_link_upload_days"] = span["link"].astype(int)
    feats["term_upload_ok"] = span["batch_upload_ok"].astype(int)
    feats["term_upload_failed"] = span["batch_upload_failed"].astype(int)
    ok_ever = ev.loc[ev["event"].eq("batch_upload_ok"), "terminal_id"]
    feats["term_upload_ok_ever"] = inc["terminal_id"].isin(pd.unique(ok_ever)).to_numpy()
    feats["uploads_recorded"] = bool(
        ev["event"].isin(["batch_upload_ok", "batch_upload_failed"]).any()
    )

    fw = firmware_reboots(ev.loc[ev["event"].eq("reboot"), "terminal_id"], dataset.terminals)
    fw_attrs = fw.reindex(inc["firmware"].to_numpy())
    for col in ("terminals", "rebooted", "share", "others_share"):
        feats[f"fw_{col}"] = fw_attrs[col].fillna(0).to_numpy()
    feats["fw_outlier"] = (feats["fw_rebooted"] >= th.firmware_min_terminals) & (
        feats["fw_share"] >= th.firmware_factor * feats["fw_others_share"]
    )
    return feats


def _no_events() -> pd.DataFrame:
    """An empty terminal_events table: the event features then take their neutral values."""
    return pd.DataFrame(
        {
            "terminal_id": pd.Series(dtype="str"),
            "timestamp": pd.Series(dtype=f"datetime64[ns, {TIMEZONE}]"),
            "event": pd.Series(dtype="str"),
        }
    )


def _response_features(
    inc: pd.DataFrame, dataset, reconciled: pd.DataFrame, window_s: int
) -> pd.DataFrame:
    """Repeated A0/30 on the terminal and 91/96 bursts across segments."""
    feats = pd.DataFrame(index=inc.index)
    a0 = response_counts(dataset.transactions, CORRUPTION_CODES)
    feats["term_a0"] = inc["terminal_id"].map(a0).fillna(0).astype(int).to_numpy()
    outage = reconciled[
        reconciled["outcome"].eq("declined")
        & reconciled["txn_type"].eq("purchase")
        & reconciled["response_code"].isin(OUTAGE_CODES)
    ]
    segments = _lookup(dataset.terminals, "terminal_id", outage["terminal_id"], ["network_segment"])
    asks = inc["response_code"].isin((*OUTAGE_CODES, "68", "92")).to_numpy()
    bursts = np.zeros(len(inc), dtype=np.int64)
    if asks.any() and len(outage):
        bursts[asks] = distinct_near(
            inc["t"].to_numpy()[asks],
            epoch_seconds(outage["timestamp"]),
            segments["network_segment"],
            window_s,
        )
    feats["burst_segments"] = bursts
    return feats


def _settlement_features(
    inc: pd.DataFrame, reconciled: pd.DataFrame, th: Thresholds
) -> pd.DataFrame:
    """Merchant return patterns and runs of days a terminal cleared nothing."""
    feats = pd.DataFrame(index=inc.index)
    pat = return_patterns(reconciled, WRONG_ACCOUNT_RETURNS, th).reindex(
        pd.MultiIndex.from_arrays([inc["merchant_id"].to_numpy(), inc["txn_type"].to_numpy()])
    )
    feats["m_returns"] = pat["returns"].fillna(0).astype(int).to_numpy()
    for col in ("first_return", "last_return", "last_cleared"):
        feats[f"m_{col}"] = pat[col].to_numpy()
    for col in ("credits", "all_credits"):
        feats[f"m_{col}"] = pat[col].fillna(0).astype(int).to_numpy()
    feats["m_pattern"] = pat["pattern"].fillna(False).astype(bool).to_numpy()
    runs = dark_runs(reconciled).reindex(
        pd.MultiIndex.from_arrays([inc["terminal_id"].to_numpy(), inc["business_date"].to_numpy()])
    )
    feats["dark_days"] = runs["run_days"].fillna(0).astype(int).to_numpy()
    feats["dark_start"] = runs["run_start"].to_numpy()
    feats["dark_end"] = runs["run_end"].to_numpy()
    return feats


def _flags(f: pd.DataFrame, th: Thresholds, window_s: int) -> pd.DataFrame:
    """Boolean evidence the rules read."""
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


def _effective_reversal_reason(inc: pd.DataFrame) -> pd.Series:
    """The reversal reason, or what it must have been: ``98`` without a response, else ``06``."""
    default = np.where(inc["response_code"].isna(), "98", "06")
    return inc["reversal_reason"].astype(object).where(inc["reversal_reason"].notna(), default)


def incident_features(
    dataset,
    reconciled: pd.DataFrame,
    *,
    window_minutes: int = 10,
    thresholds: Thresholds | None = None,
) -> pd.DataFrame:
    """One row per incident with every piece of evidence the rules use.

    Parameters
    ----------
    dataset : analysis.io.Dataset
    reconciled : DataFrame
        :func:`analysis.reconcile.reconcile` of the dataset.
    window_minutes : int
        Half-width of the window around a transaction for link errors and bursts.
    thresholds : Thresholds, optional

    Returns
    -------
    DataFrame
        The incident rows of ``reconciled`` plus terminal attributes, payee bank,
        link-error counts, segment-day rates, reboots, batch uploads, bursts,
        merchant return patterns, clearing ratios and boolean flags.
    """
    th = thresholds or Thresholds()
    window_s = int(window_minutes * 60)
    inc = _incidents(reconciled)
    txn_cols = ["payee_bank"]
    inc = inc.join(_lookup(dataset.transactions, "txn_id", inc["txn_id"], txn_cols))
    inc = inc.join(
        _lookup(
            dataset.terminals,
            "terminal_id",
            inc["terminal_id"],
            ["network_segment", "firmware", "model"],
        )
    )
    inc["t"] = epoch_seconds(inc["timestamp"])
    has_events = dataset.terminal_events is not None
    events = _event_features(
        inc,
        dataset.terminal_events if has_events else _no_events(),
        dataset,
        reconciled,
        window_s,
        th,
    )
    inc = pd.concat(
        [
            inc,
            events,
            _response_features(inc, dataset, reconciled, window_s),
            _settlement_features(inc, reconciled, th),
        ],
        axis=1,
    )
    inc["has_events"] = has_events
    inc["eff_reason"] = _effective_reversal_reason(inc)
    return _flags(inc, th, window_s)


# --------------------------------------------------------------------------------------
# Evidence phrases (row by row, incidents only)
# --------------------------------------------------------------------------------------


def _day(value) -> str:
    return "" if pd.isna(value) else str(pd.Timestamp(value).date())


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


_LINK_LABELS = {
    "timeout": "timeout",
    "mac_error": "MAC error",
    "retransmit": "retransmission",
    "connection_reset": "connection reset",
}


def _ph_reversal(r: Mapping) -> str:
    reason = r["eff_reason"]
    meaning = REVERSAL_REASON_MEANINGS.get(reason, "unknown reason")
    if pd.isna(r["response_code"]) and r["reversal"] == "none":
        return "no response reached the terminal and no reversal was recorded (单边账 risk)"
    head = "no response reached the terminal; " if pd.isna(r["response_code"]) else ""
    if r["outcome"] == "reversal_failed":
        return (
            f"{head}reversal {reason} ({meaning}) never acknowledged: "
            "the card may be debited (单边账)"
        )
    return f"{head}reversal {reason} ({meaning}) sent and acknowledged"


def _ph_terminal_link(r: Mapping) -> str:
    parts = [
        _plural(int(r[f"term_{k}_near"]), _LINK_LABELS[k])
        for k in LINK_ERROR_EVENTS
        if r[f"term_{k}_near"]
    ]
    if not parts:
        return ""
    return f"{', '.join(parts)} on terminal {r['terminal_id']} within ±{r['window_minutes']:g} min"


def _ph_segment(r: Mapping) -> str:
    if not r["has_events"]:
        return ""
    seg = r["network_segment"]
    if r["seg_day_surge"]:
        return (
            f"segment {seg} at {r['seg_day_ratio']:.0f}× its usual link-error rate that day "
            f"({r['seg_day_link']} vs usual {r['seg_usual']:g})"
        )
    others = int(r["seg_link_near"] - r["term_link_near"])
    if r["seg_near_surge"] and others > 0:
        return (
            f"{_plural(int(r['seg_link_near']), 'link error')} on segment {seg} within "
            f"±{r['window_minutes']:g} min ({others} on other terminals)"
        )
    return (
        f"segment {seg}: {_plural(int(r['seg_day_link']), 'link error')} that day "
        f"(usual {r['seg_usual']:g}, no surge)"
    )


def _ph_no_events(r: Mapping) -> str:
    return "" if r["has_events"] else "no terminal_events table: link errors could not be checked"


def _ph_burst(r: Mapping) -> str:
    n = int(r["burst_segments"])
    if n < 2:
        return ""
    tail = " (issuer or switch outage)" if r["burst"] else ""
    return (
        f"91/96 purchase declines on {n} network segments within ±{r['window_minutes']:g} min{tail}"
    )


def _ph_reboot(r: Mapping) -> str:
    parts = []
    if r["term_day_reboot"]:
        parts.append(
            f"terminal {r['terminal_id']} rebooted "
            f"{_plural(int(r['term_day_reboot']), 'time')} that day"
        )
    if r["fw_outlier"]:
        parts.append(
            f"firmware {r['firmware']}: {int(r['fw_rebooted'])} of "
            f"{int(r['fw_terminals'])} terminals "
            f"rebooted ({r['fw_share']:.0%}) vs {r['fw_others_share']:.0%} on other firmware"
        )
    return "; ".join(parts)


def _ph_mac_key(r: Mapping) -> str:
    if not r["mac_key"] or r["near_link"]:
        return ""
    return (
        f"terminal {r['terminal_id']} got A0/30 {r['term_a0']} times with no link errors near: "
        "its MAC key may be out of step (sign the terminal in again)"
    )


def _ph_pattern(r: Mapping) -> str:
    if not r["m_returns"]:
        return ""
    head = (
        f"{r['txn_type']} credits of merchant {r['merchant_id']} "
        "returned for a wrong account or name"
    )
    if not r["m_pattern"]:
        return f"{r['m_returns']} of {r['m_all_credits']} {head}: no merchant-wide pattern"
    if r["m_last_return"] >= r["m_last_cleared"]:
        span = f"since {_day(r['m_first_return'])}"
    else:
        span = f"from {_day(r['m_first_return'])} to {_day(r['m_last_return'])}"
    return f"{r['m_returns']} of {r['m_credits']} {head} {span}"


def _ph_clearing(r: Mapping) -> str:
    if not r["clearing_known"] or not r["dark_days"]:
        return ""
    if r["dark_days"] == 1:
        return f"terminal {r['terminal_id']} cleared none of its purchases that day"
    return (
        f"terminal {r['terminal_id']} cleared none of its purchases on "
        f"{r['dark_days']} consecutive "
        f"active days ({_day(r['dark_start'])} to {_day(r['dark_end'])})"
    )


def _ph_uploads(r: Mapping) -> str:
    if not r["has_events"]:
        return ""
    days = f"{r['business_day']} (+{r['upload_days'] - 1} d)"
    parts = []
    if r["term_upload_failed"]:
        parts.append(
            f"batch upload failed {_plural(int(r['term_upload_failed']), 'time')} "
            f"on terminal {r['terminal_id']} around {days}"
        )
    elif r["term_upload_ok"]:
        parts.append(f"batch uploaded OK on terminal {r['terminal_id']} around {days}")
    elif r["uploads_recorded"]:
        parts.append(f"no batch upload recorded for terminal {r['terminal_id']} around {days}")
    if r["never_uploaded"]:
        parts.append(f"terminal {r['terminal_id']} has no successful batch upload in the data")
    if r["term_link_upload_days"]:
        parts.append(
            f"{_plural(int(r['term_link_upload_days']), 'link error')} on the terminal those days"
        )
    elif r["seg_surge_upload_days"]:
        parts.append(
            f"segment {r['network_segment']} far above its usual link-error rate those days"
        )
    else:
        parts.append("no link errors on the terminal those days")
    return "; ".join(parts)


def _ph_no_settlements(r: Mapping) -> str:
    return "" if r["clearing_known"] else "no settlements table: clearing and crediting unknown"


PHRASES: dict[str, Callable[[dict], str]] = {
    "reversal": _ph_reversal,
    "terminal_link": _ph_terminal_link,
    "segment": _ph_segment,
    "no_events": _ph_no_events,
    "burst": _ph_burst,
    "reboot": _ph_reboot,
    "mac_key": _ph_mac_key,
    "pattern": _ph_pattern,
    "clearing": _ph_clearing,
    "uploads": _ph_uploads,
    "no_settlements": _ph_no_settlements,
}
_LINK = ("terminal_link", "segment", "no_events")

# --------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------

Confidence = float | Callable[[pd.DataFrame], "pd.Series | np.ndarray"]


@dataclass(frozen=True)
class Rule:
    """One way to decide a cause.

    Attributes
    ----------
    name : str
        Short id (the output's ``rule`` column), for tuning and audits.
    cause : str
        Code of :data:`analysis.contract.CAUSES`.
    when : callable
        Features → boolean Series: the incidents this rule decides.
    confidence : float or callable
        Confidence 0–1, or features → confidences.
    evidence : str
        Template of the evidence line over the feature columns (``str.format``).
    phrases : tuple of str
        Names of :data:`PHRASES` appended to the evidence where not empty.
    next_step : str, optional
        Template replacing the contract's next step for this situation.
    """

    name: str
    cause: str
    when: Callable[[pd.DataFrame], pd.Series]
    confidence: Confidence
    evidence: str
    phrases: tuple[str, ...] = ()
    next_step: str | None = None


def _declined(f: pd.DataFrame, codes=None) -> pd.Series:
    d = f["outcome"].eq("declined")
    return d & f["response_code"].isin(codes) if codes is not None else d


def _no_response(f: pd.DataFrame, reasons) -> pd.Series:
    return f["outcome"].isin(["reversed", "reversal_failed"]) & f["eff_reason"].isin(reasons)


def _returned(f: pd.DataFrame, reasons) -> pd.Series:
    return f["outcome"].eq("returned") & f["return_reason"].isin(reasons)


def _not_cleared(f: pd.DataFrame) -> pd.Series:
    return f["outcome"].eq("not_cleared") & f["clearing_known"] & f["has_events"]


def _where(mask, hi: float, lo: float) -> np.ndarray:
    return np.where(np.asarray(mask, dtype=bool), hi, lo)


_DECLINE_EVIDENCE = "declined {response_code} ({code_meaning}) by {declined_by}"
_NOT_CLEARED = "approved on {business_day} but not cleared by its deadline {deadline_day}"
_REUPLOAD = (
    "Have terminal {terminal_id} sign in again and re-upload its batch for {business_day} once "
    "the line is stable, and ask the acquirer to clear it; have the carrier check line {segment}."
)
_NOT_CLEARED_TRACE = (
    "Ask the acquirer whether the batch of terminal {terminal_id} for {business_day} arrived "
    "and have it resubmitted; the credit is past its deadline {deadline_day}."
)

RULES: tuple[Rule, ...] = (
    Rule(
        "in_cycle",
        "PROCESSING_DELAY",
        lambda f: f["outcome"].eq("in_cycle"),
        lambda f: np.where(
            ~f["clearing_known"], 0.5, _where(f["cleared_date"].notna(), 0.95, 0.85)
        ),
        "{clearing_state}; {settlement_cycle} cycle: normal processing until {wait_until_day}",
        ("no_settlements",),
    ),
    Rule(
        "decline_code",
        "",  # from DECLINE_CAUSES
        lambda f: _declined(f, tuple(DECLINE_CAUSES)),
        0.95,
        _DECLINE_EVIDENCE,
    ),
    Rule(
        "do_not_honour",
        "UNKNOWN",
        lambda f: _declined(f, ("05",)),
        0.3,
        "declined 05 (do not honour) by the issuer without a reason; the issuer's own reason "
        "for the refusal would decide it",
    ),
    Rule(
        "receiving_bank",
        "COUNTERPARTY_BANK",
        lambda f: _declined(f, ("91", "92")) & f["txn_type"].eq("transfer"),
        0.9,
        "transfer to {bank} declined {response_code} ({code_meaning})",
        ("burst",),
    ),
    Rule(
        "switch_outage",
        "SYSTEM_FAULT",
        lambda f: _declined(f, ("91", "92", "96")),
        lambda f: _where(f["burst"], 0.95, 0.8),
        "declined {response_code} ({code_meaning}) by the issuer or switch",
        ("burst",),
    ),
    Rule(
        "late_response_link",
        "NETWORK_COMMUNICATION",
        lambda f: _declined(f, ("68",)) & f["terminal_link_near"],
        lambda f: _where(f["seg_day_surge"] | f["seg_near_surge"], 0.92, 0.8),
        "declined 68 (response received too late) amid link errors on the terminal",
        _LINK,
    ),
    Rule(
        "late_response_system",
        "SYSTEM_FAULT",
        lambda f: _declined(f, ("68",)),
        lambda f: np.where(
            ~f["has_events"],
            0.5,
            np.where(f["burst"], 0.9, _where(f["seg_day_surge"] | f["seg_near_surge"], 0.6, 0.8)),
        ),
        "declined 68 (response received too late) with no link errors on terminal {terminal_id} "
        "near it: the issuer or switch answered late",
        ("burst", "segment", "no_events"),
    ),
    Rule(
        "corrupted_message",
        "NETWORK_COMMUNICATION",
        lambda f: _declined(f, CORRUPTION_CODES),
        lambda f: np.where(
            f["near_link"], 0.9, np.where(~f["has_events"], 0.6, _where(f["mac_key"], 0.5, 0.7))
        ),
        "declined {response_code} ({code_meaning}): the message was corrupted in transit",
        (*_LINK, "mac_key"),
    ),
    Rule(
        "other_code",
        "UNKNOWN",
        lambda f: _declined(f),
        0.2,
        "declined with code {response_code}, which the contract does not list; decide from the "
        "issuer's or switch's explanation of it",
    ),
    Rule(
        "no_response_link",
        "NETWORK_COMMUNICATION",
        lambda f: _no_response(f, ("98", "A0")),
        lambda f: np.where(f["near_link"], 0.92, _where(f["has_events"], 0.7, 0.65)),
        "{reversal_phrase}",
        _LINK,
    ),
    Rule(
        "terminal_fault",
        "SYSTEM_FAULT",
        lambda f: _no_response(f, ("96",)),
        lambda f: np.clip(
            0.7
            + 0.15 * (f["term_day_reboot"] > 0)
            + 0.1 * f["fw_outlier"]
            - 0.1 * ~f["has_events"],
            0,
            1,
        ),
        "{reversal_phrase}",
        ("reboot", "no_events"),
    ),
    Rule(
        "other_reversal_link",
        "NETWORK_COMMUNICATION",
        lambda f: _no_response(f, ("06",)) & f["near_link"],
        0.55,
        "{reversal_phrase}",
        _LINK,
    ),
    Rule(
        "other_reversal_reboot",
        "SYSTEM_FAULT",
        lambda f: _no_response(f, ("06",)) & (f["term_day_reboot"] > 0),
        0.55,
        "{reversal_phrase}",
        ("reboot",),
    ),
    Rule(
        "other_reversal",
        "UNKNOWN",
        lambda f: f["outcome"].isin(["reversed", "reversal_failed"]),
        0.3,
        "{reversal_phrase}; no link errors or reboots near it decide the reason",
        ("no_events",),
        "Ask the acquirer for the issuer's record of the authorization and settle any debit "
        "manually; the terminal's log would decide the reason.",
    ),
    Rule(
        "account_frozen",
        "ACCOUNT_FROZEN_OR_CLOSED",
        lambda f: _returned(f, FROZEN_RETURNS),
        0.95,
        "credit of {amount_str} returned {return_reason}",
    ),
    Rule(
        "bank_unavailable",
        "COUNTERPARTY_BANK",
        lambda f: _returned(f, ("bank_unavailable",)),
        0.85,
        "credit of {amount_str} to {bank} returned bank_unavailable",
    ),
    Rule(
        "merchant_account",
        "MERCHANT_CONFIG",
        lambda f: _returned(f, WRONG_ACCOUNT_RETURNS) & f["m_pattern"],
        0.92,
        "credit of {amount_str} returned {return_reason}",
        ("pattern",),
    ),
    Rule(
        "payee_details",
        "OPERATOR_ERROR",
        lambda f: _returned(f, WRONG_ACCOUNT_RETURNS) & f["txn_type"].eq("transfer"),
        0.8,
        "transfer credit of {amount_str} returned {return_reason}: "
        "the payee details typed were wrong",
        ("pattern",),
    ),
    Rule(
        "settlement_account",
        "MERCHANT_CONFIG",
        lambda f: _returned(f, WRONG_ACCOUNT_RETURNS),
        0.6,
        "purchase credit of {amount_str} returned {return_reason}: the settlement account on file "
        "does not take it",
        ("pattern",),
    ),
    Rule(
        "returned_other",
        "UNKNOWN",
        lambda f: f["outcome"].eq("returned"),
        0.3,
        "credit of {amount_str} returned without a known reason",
        (),
        "Ask the acquirer why the credit was returned and resend it once the account is corrected.",
    ),
    Rule(
        "late_upload",
        "NETWORK_COMMUNICATION",
        lambda f: (
            f["outcome"].eq("credited_late")
            & f["cleared_late"]
            & f["upload_failed"]
            & f["line_trouble_upload"]
        ),
        0.7,
        "credited {credited_day}, after its deadline {deadline_day}; cleared late on {cleared_day}",
        ("uploads",),
        _REUPLOAD,
    ),
    Rule(
        "credited_late",
        "SYSTEM_FAULT",
        lambda f: f["outcome"].eq("credited_late"),
        0.6,
        "credited {credited_day}, {credit_business_days} business days after {business_day}, past "
        "its deadline {deadline_day}: the bank's processing ran late",
        (),
        "No action needed for this credit: the money arrived on {credited_day}. If late credits "
        "recur, raise them with the acquirer.",
    ),
    Rule(
        "credit_overdue",
        "SYSTEM_FAULT",
        lambda f: f["outcome"].eq("credit_overdue"),
        0.7,
        "cleared {cleared_day} but still pending on {as_of_day}, past its deadline {deadline_day}: "
        "the bank's processing is stuck",
        (),
        "Contact the acquirer: the credit cleared on {cleared_day} is still pending past its "
        "deadline {deadline_day}; ask it to trace and release the credit.",
    ),
    Rule(
        "not_cleared_unknown_clearing",
        "UNKNOWN",
        lambda f: f["outcome"].eq("not_cleared") & ~f["clearing_known"],
        0.2,
        "approved on {business_day}, past its deadline {deadline_day}",
        ("no_settlements", "uploads"),
        "Supply the settlements table, or ask the acquirer whether this transaction cleared.",
    ),
    Rule(
        "not_cleared_no_events",
        "UNKNOWN",
        lambda f: f["outcome"].eq("not_cleared") & ~f["has_events"],
        0.3,
        "approved on {business_day} but not cleared by its deadline {deadline_day}; no "
        "terminal_events table: cannot tell a failed upload from a set-up problem",
        ("clearing",),
        _NOT_CLEARED_TRACE + " Supply the terminal_events table to decide the cause.",
    ),
    Rule(
        "upload_failed_link",
        "NETWORK_COMMUNICATION",
        lambda f: _not_cleared(f) & f["upload_failed"] & f["line_trouble_upload"],
        0.88,
        _NOT_CLEARED,
        ("uploads", "segment"),
        _REUPLOAD,
    ),
    Rule(
        "silent_terminal_link",
        "NETWORK_COMMUNICATION",
        lambda f: _not_cleared(f) & f["no_upload"] & f["term_trouble_upload"],
        0.6,
        _NOT_CLEARED,
        ("uploads", "segment"),
        _REUPLOAD,
    ),
    Rule(
        "never_uploads",
        "MERCHANT_CONFIG",
        lambda f: _not_cleared(f) & f["no_upload"],
        lambda f: np.where(
            f["never_clears"] | f["never_uploaded"],
            _where(f["line_trouble_upload"], 0.8, 0.92),
            0.7,
        ),
        _NOT_CLEARED + " and its batch was never uploaded",
        ("uploads", "clearing"),
    ),
    Rule(
        "upload_failed_healthy",
        "NETWORK_COMMUNICATION",
        lambda f: _not_cleared(f) & f["upload_failed"],
        0.55,
        _NOT_CLEARED,
        ("uploads", "segment"),
        _REUPLOAD,
    ),
    Rule(
        "unlogged_uploads_link",
        "NETWORK_COMMUNICATION",
        lambda f: _not_cleared(f) & ~f["uploads_recorded"] & f["line_trouble_upload"],
        0.6,
        _NOT_CLEARED + "; the events table records no batch uploads",
        ("uploads", "segment"),
        _REUPLOAD,
    ),
    Rule(
        "unlogged_uploads_dark",
        "MERCHANT_CONFIG",
        lambda f: _not_cleared(f) & ~f["uploads_recorded"] & f["never_clears"],
        0.7,
        _NOT_CLEARED + " on a healthy line; the events table records no batch uploads",
        ("clearing", "uploads"),
    ),
    Rule(
        "not_cleared_other",
        "UNKNOWN",
        lambda f: f["outcome"].eq("not_cleared"),
        0.35,
        _NOT_CLEARED + "; neither a failed upload, link errors nor a set-up problem explains it",
        ("uploads", "clearing"),
        _NOT_CLEARED_TRACE,
    ),
    Rule(
        "fallback",
        "UNKNOWN",
        lambda f: pd.Series(True, index=f.index),
        0.1,
        "outcome {outcome}: no rule decides it",
    ),
)

# --------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------


def _assign_rules(f: pd.DataFrame, rules: tuple[Rule, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first rule that holds for each incident, and its confidence."""
    rule_idx = np.full(len(f), -1, dtype=np.int64)
    confidence = np.zeros(len(f))
    for i, rule in enumerate(rules):
        free = rule_idx < 0
        if not free.any():
            break
        hit = free & np.asarray(rule.when(f).fillna(False), dtype=bool)
        if not hit.any():
            continue
        rule_idx[hit] = i
        conf = rule.confidence(f) if callable(rule.confidence) else rule.confidence
        confidence[hit] = np.broadcast_to(np.asarray(conf, dtype=float), (len(f),))[hit]
    return rule_idx, np.clip(confidence, 0.0, 1.0)


def _display_columns(
    f: pd.DataFrame, as_of: pd.Timestamp, window_minutes: float, th: Thresholds
) -> pd.DataFrame:
    """Formatted values the evidence and next-step templates use."""
    fmt = lambda s: s.dt.strftime("%Y-%m-%d").fillna("")  # noqa: E731
    credited_day = to_business_date(f["credited_at"])
    return f.assign(
        business_day=fmt(f["business_date"]),
        deadline_day=fmt(f["deadline"]),
        wait_until_day=fmt(f["wait_until"]),
        cleared_day=fmt(f["cleared_date"]),
        credited_day=fmt(credited_day),
        as_of_day=str(as_of.date()),
        amount_str=f["amount"].map("{:,.2f}".format),
        code_meaning=f["response_code"].map(RESPONSE_CODES).fillna("unlisted code"),
        declined_by=f["response_code"].map(DECLINE_CAUSES).map(_DECLINED_BY).fillna("the issuer"),
        bank=f["payee_bank"]
        .astype(object)
        .where(
            f["payee_bank"].notna() & f["txn_type"].eq("transfer"), "the merchant's settlement bank"
        ),
        segment=f["network_segment"]
        .astype(object)
        .where(f["network_segment"].notna(), "of the terminal"),
        clearing_state=np.select(
            [f["cleared_date"].notna(), f["clearing_known"]],
            [
                "cleared " + fmt(f["cleared_date"]) + ", credit pending",
                "approved " + fmt(f["business_date"]) + ", not yet cleared",
            ],
            "approved " + fmt(f["business_date"]),
        ),
        window_minutes=window_minutes,
        upload_days=th.upload_days,
    )


class _Rows:
    """Row views over a frame whose columns are turned into lists only when a row reads them."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame
        self._lists: dict[str, list] = {}

    def column(self, name: str) -> list:
        if name not in self._lists:
            self._lists[name] = self._frame[name].tolist()
        return self._lists[name]

    def __iter__(self):
        return (_Row(self, i) for i in range(len(self._frame)))


class _Row(Mapping):
    """One incident's values by column name (with a few extra values set per row)."""

    __slots__ = ("_rows", "_i", "extra")

    def __init__(self, rows: _Rows, i: int) -> None:
        self._rows, self._i, self.extra = rows, i, {}

    def __getitem__(self, key: str):
        if key in self.extra:
            return self.extra[key]
        try:
            return self._rows.column(key)[self._i]
        except KeyError:
            raise KeyError(key) from None

    def __iter__(self):
        return iter(self._rows._frame.columns)

    def __len__(self) -> int:
        return len(self._rows._frame.columns)


def _next_step(row: _Row, cause: str, override: str | None) -> str:
    """The next step: the rule's own template or the contract's, filled from the row."""
    steps = CAUSES[cause].next_steps
    row.extra.update(wait_until=row["wait_until_day"], terminal=row["terminal_id"])
    text = (override or steps[0]).format_map(row)
    if cause == "FRAUD_SUSPECTED" and row["amount"] >= FRAUD_POLICE_THRESHOLD and len(steps) > 1:
        text = f"{text} {steps[1]}"
    return text


def _evidence(row: _Row, rule: Rule) -> str:
    """The evidence line: the rule's template plus its non-empty phrases."""
    parts = [rule.evidence.format_map(row)] + [PHRASES[p](row) for p in rule.phrases]
    return "; ".join(p for p in parts if p)


OUTPUT_COLUMNS = (
    *(c for c in OUTPUTS["incidents.csv"] if c != "cluster_id"),
    "cause_zh",
    "cause_en",
    "rule",
    "timestamp",
    "business_date",
    "txn_type",
    "amount",
    "response_code",
    "reversal",
    "reversal_reason",
    "return_reason",
    "network_segment",
    "payee_bank",
    "wait_until",
)


def classify(
    dataset,
    reconciled: pd.DataFrame | None = None,
    *,
    as_of=None,
    calendar: WorkCalendar | None = None,
    window_minutes: float = 10,
    thresholds: Thresholds | None = None,
    rules: tuple[Rule, ...] = RULES,
) -> pd.DataFrame:
    """One row per incident with exactly one cause, a confidence, evidence and the next step.

    Parameters
    ----------
    dataset : analysis.io.Dataset
        The typed dataset.
    reconciled : DataFrame, optional
        :func:`analysis.reconcile.reconcile` of ``dataset``; computed when omitted.
    as_of : time-like, optional
        Moment of analysis; default the reconciled frame's, else the contract's
        default (:func:`analysis.reconcile.default_as_of`).
    calendar : WorkCalendar, optional
        Used when reconciling here.
    window_minutes : float
        Half-width of the window for link errors and bursts near a transaction.
    thresholds : Thresholds, optional
        Evidence thresholds (:class:`Thresholds`).
    rules : tuple of Rule
        The ordered rules (:data:`RULES`); the first that holds decides.

    Returns
    -------
    DataFrame
        :data:`OUTPUT_COLUMNS`: ``txn_id, merchant_id, terminal_id, outcome, cause,
        confidence, evidence, next_step`` and ``cause_zh, cause_en, rule``, the
        time, business date, type, amount, codes, return reason, segment, payee
        bank and ``wait_until`` (PROCESSING_DELAY). In transaction order.

    Examples
    --------
    See the module docstring.
    """
    th = thresholds or Thresholds()
    if as_of is None:
        as_of = (
            reconciled.attrs.get("as_of") if reconciled is not None else None
        ) or default_as_of(dataset)
    as_of = to_local_time(as_of)
    if reconciled is None:
        reconciled = reconcile(
            dataset.transactions,
            dataset.settlements,
            dataset.merchants,
            as_of=as_of,
            calendar=calendar,
        )
    f = incident_features(dataset, reconciled, window_minutes=window_minutes, thresholds=th)
    rule_idx, confidence = _assign_rules(f, rules)
    f = _display_columns(f, as_of, window_minutes, th)
    causes, evidence, steps = [], [], []
    for row, i in zip(_Rows(f), rule_idx, strict=True):
        rule = rules[i]
        cause = rule.cause or DECLINE_CAUSES[row["response_code"]]
        row.extra["reversal_phrase"] = (
            _ph_reversal(row) if "{reversal_phrase}" in rule.evidence else ""
        )
        causes.append(cause)
        evidence.append(_evidence(row, rule))
        steps.append(_next_step(row, cause, rule.next_step))
    f["cause"] = pd.Series(causes, index=f.index, dtype="str")
    f["confidence"] = confidence.round(3)
    f["evidence"] = pd.Series(evidence, index=f.index, dtype="str")
    f["next_step"] = pd.Series(steps, index=f.index, dtype="str")
    f["cause_zh"] = f["cause"].map({k: c.zh for k, c in CAUSES.items()}).astype("str")
    f["cause_en"] = f["cause"].map({k: c.en for k, c in CAUSES.items()}).astype("str")
    f["rule"] = pd.Series([rules[i].name for i in rule_idx], index=f.index, dtype="str")
    out = f[list(OUTPUT_COLUMNS)].reset_index(drop=True)
    out.attrs.update(
        as_of=as_of,
        terminal_events=dataset.terminal_events is not None,
        settlements=dataset.settlements is not None,
    )
    return out


__all__ = [
    "DECLINE_CAUSES",
    "OUTPUT_COLUMNS",
    "PHRASES",
    "RULES",
    "Rule",
    "Thresholds",
    "cause_table",
    "classify",
    "dark_runs",
    "count_near",
    "daily_event_counts",
    "distinct_near",
    "epoch_seconds",
    "firmware_reboots",
    "incident_features",
    "over_days",
    "response_counts",
    "return_patterns",
    "segment_day_rates",
]
