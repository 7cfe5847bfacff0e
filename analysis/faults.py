"""Shared faults: is a merchant's problem its own, or shared by its neighbours?

A supermarket complains that card payments never arrive (刷卡未到账). Is its own
terminal or account misconfigured, or do the shops around it suffer the same
thing because they share an access-network segment, a terminal firmware or a
receiving bank? :func:`find_shared_faults` answers with the contract's
*shared faults* (``shared/CONTRACT.md``, *Definitions*: a fault that at least 3
merchants share, localized by place or by an attribute; a city-wide issuer
outage or one receiving bank's maintenance window may also be reported).

Method
------
1. **Cases and population.** The population at risk is every purchase and
   transfer attempt. A *case* is an incident whose cause can be a shared
   infrastructure fault, :data:`FAULT_CAUSES`: ``NETWORK_COMMUNICATION``,
   ``SYSTEM_FAULT``, ``COUNTERPARTY_BANK``, ``MERCHANT_CONFIG`` and
   ``ACCOUNT_FROZEN_OR_CLOSED``. Cardholder-side outcomes (insufficient funds,
   wrong PIN, limits, expired, lost or stolen cards, ``05``), operator errors
   and ``PROCESSING_DELAY`` (money still inside its cycle, not a failure) are
   left out: their rates follow the cardholders, not the infrastructure, and
   would only add noise. The transactions are aggregated once into *cells*
   (terminal x day x payee bank) with attempts and cases per cause, by one SQL
   step where the transactions live (:func:`fault_cells_on`: DuckDB, Spark, or
   an in-memory DuckDB for pandas frames); everything below works on these
   small aggregates in pandas. Expected counts are indirectly
   standardized by transaction type (a transfer can fail in ways a purchase
   cannot): attempts times the case rate of their type.
2. **Detection.** Three detectors share ``alpha`` (Bonferroni: each runs at
   ``alpha / 3`` and its p-values are multiplied by 3), so a city with no
   shared fault raises an alarm with probability at most about ``alpha``:

   * *place* -- Kulldorff's purely spatial Bernoulli scan statistic
     (:func:`analysis.scan.spatial_scan`; Kulldorff 1997): cases against
     attempts per merchant, circles up to half the attempts, Monte Carlo
     p-values from ``n_replicas`` replicas; the most likely and the secondary
     clusters are candidates. A loud single merchant (a misconfiguration, a
     frozen account) is the most likely cluster, and secondary clusters may not
     overlap it, which could hide a shared fault around it: circles with fewer
     than ``min_merchants`` excess merchants are set aside (their merchants'
     cells in their days) before the scan that counts (:func:`_place_rounds`).
   * *attribute* -- RiskLoc (:func:`analysis.localize.localize`; Kalander 2022)
     over leaves = combinations of :data:`RISKLOC_DIMS` values (network segment,
     model, firmware, connection, spatial cluster, MCC, district), each leaf's
     expected incidents from the rest of the city (its type's rate over the
     other leaves). With sparse leaves RiskLoc tends to report a fault as a
     sub-combination (``network_segment=X & connection=wifi``); a root cause is
     generalized to its parent when the rest of the parent shows the same
     excess (:func:`_generalize`, RiskLoc's generalized ripple effect). Beside
     it, every single value of every dimension of :data:`LOCALIZATION_DIMS`
     (payee bank included: its leaves are too sparse for RiskLoc) is screened
     with RiskLoc's Poisson guard, Bonferroni-corrected over all values. RiskLoc
     and the screen run at ``alpha / 6`` each.
   * *time* -- a purely temporal Bernoulli scan
     (:func:`analysis.scan.space_time_scan` with the city as one location;
     Kulldorff et al. 1998) of the cases left once the faults above and the
     one- and two-merchant problems are removed, over the days whose credit
     deadlines have passed: a burst shared by the city, such as an issuer
     outage or a bank's maintenance window. Inside a significant burst's days
     the value screen runs again, each value now expected at its own rate
     outside the burst times the change the rest of the city shows (so a
     city-wide burst lifts every value alike and localizes nowhere), then, if
     that localizes nothing and the burst is strong, the place scan; when
     nothing shared localizes the burst, the city is the candidate:
     ``{"scope": "all"}`` (:func:`_burst_verdicts`).

3. **When.** The space-time cylinder of each candidate (Kulldorff et al. 1998):
   its cells times every interval of days, scored with the Bernoulli
   log-likelihood ratio against everything else
   (:func:`analysis.scan.llr_bernoulli`); the most likely interval gives
   ``start`` and ``end``. The scan is *retrospective* (all intervals, any
   length): it dates faults that ended -- when a fix worked -- as well as
   running ones, which a prospective scan (Kulldorff 2001: only intervals
   ending on the last day, for surveillance) would miss; watching for a fault
   that comes back is ``analysis.monitor``'s job. ``end`` is None (ongoing) when the interval reaches the last
   complete day before ``as_of``. The full space-time scan over every circle
   is not run: it costs a minute on the case study and cannot follow a
   firmware or a bank spread over the city.
4. **Verdict.** The candidate's cause is the fault cause with the largest
   excess (observed minus expected) in its cells and days. A merchant *shows
   excess* when its count of that cause is better explained by the
   candidate's pooled relative risk ``RR`` than by the baseline, ``cases >
   expected x (RR - 1) / ln RR`` (the Poisson likelihood-ratio rule); the
   interval is then found again from those merchants and that cause alone, so
   a neighbour with a problem of another kind (a frozen account beside a
   faulty line) is not taken in. A candidate is a shared fault only when (a)
   at least ``min_merchants`` merchants show excess, (b) the excess does not
   rest on a few of them: without its ``min_merchants - 1`` largest
   contributors, the rest of the candidate still has significantly more cases
   than expected (one-sided Poisson at ``alpha / 3``), and (c) its cause is at
   least :data:`MIN_RELATIVE_RISK` times as frequent in its cells and days as
   expected -- with millions of attempts a rise of a few percent (late
   credits around a holiday) is significant but no fault. A misconfigured merchant,
   a frozen settlement account, a circle drawn around one of them: one- or
   two-merchant problems stay with the incidents.
5. **One fault, one description.** Shared candidates are taken by decreasing
   log-likelihood ratio of their cells and days (an attribute before a scan
   circle on a tie), so what localizes a fault best -- a network segment
   rather than the neighbourhood around it or a circle with one healthy shop
   too many -- describes it. A candidate describing an accepted fault (same
   cause, overlapping days, half or more of the smaller merchant set shared)
   adds its support; every other candidate is judged again without the
   accepted faults' cases (as RiskLoc removes a root cause's leaves), so a
   terminal model that is merely common on a faulty segment is no second
   fault, while a faulty firmware with one terminal on that segment is seen.
6. **Output.** ``cause`` as in 4: ``NETWORK_COMMUNICATION`` where link
   evidence dominates (a segment, a place), ``SYSTEM_FAULT`` for a firmware or
   model across the city or a city-wide issuer burst, ``COUNTERPARTY_BANK`` for
   a payee bank outage. ``attributes`` are the dimension values that localize
   it (``{"network_segment": "CT-PD-8367"}``, ``{"payee_bank": ...}``,
   ``{"scope": "all"}``) or, when geography alone does, the scan circle
   (``centre_latitude, centre_longitude, radius_km``); ``merchant_ids`` the
   merchants that match them and show excess. ``observed`` counts their cases
   (all fault causes) in the fault's cells from ``start`` to ``end``;
   ``expected`` is the type-standardized ``sum C_type n_type / N_type`` (the
   scan's ``C n / N``); ``relative_risk = (observed / expected) / ((C -
   observed) / (C - expected))`` as in SaTScan. ``p_value`` is the Monte Carlo
   p-value of the spatial or temporal scan that found it, times 3 (detectors);
   for a fault only the attribute detectors found, their Poisson p-value times
   the elements searched, times 2 (RiskLoc and the screen) and 3; capped at 1.
   Each is Bonferroni-valid; the Monte Carlo one is preferred because it does
   not lean on the Poisson model, whose p-values for a loud segment run to
   1e-100 and beyond. ``evidence`` lists every detector's p-value. Totals ``C``, ``N`` leave out the one- and
   two-merchant problems set aside by the place rounds.

References
----------
.. [1] M. Kulldorff (1997). A spatial scan statistic. *Communications in
   Statistics -- Theory and Methods* 26:1481-1496.
.. [2] M. Kulldorff, W. F. Athas, E. J. Feuer, B. A. Miller, C. R. Key (1998).
   Evaluating cluster alarms: a space-time scan statistic and brain cancer in
   Los Alamos, New Mexico. *American Journal of Public Health* 88:1377-1380.
.. [3] M. Kulldorff (2001). Prospective time periodic geographical disease
   surveillance using a scan statistic. *Journal of the Royal Statistical
   Society A* 164:61-72.
.. [4] M. Kalander (2022). RiskLoc: Localization of multi-dimensional root
   causes by weighted risk. arXiv:2205.10004.

Limitations
-----------
* Days are the time unit: an outage of an hour is dated to its day.
* Outcomes that are only known after the credit cycle (a batch that never
  cleared, a returned credit) are still ``PROCESSING_DELAY`` in the last days
  before ``as_of``, so a fault of that kind may look as if it ended a few days
  early.
* A fault of a few days in a long period is found through the temporal burst
  only when it lifts the whole city's daily count noticeably.
* Merchants or terminals that change segment or firmware during the period
  (``interventions``) are described by the terminals table as of the start.

Examples
--------
>>> from analysis.io import load_dataset                          # doctest: +SKIP
>>> from analysis.reconcile import reconcile                      # doctest: +SKIP
>>> from analysis.causes import classify                          # doctest: +SKIP
>>> ds = load_dataset("data/case_study")                          # doctest: +SKIP
>>> rec = reconcile(ds.transactions, ds.settlements, ds.merchants)  # doctest: +SKIP
>>> faults = find_shared_faults(ds, rec, classify(ds, rec))       # doctest: +SKIP
>>> faults[0].cause, faults[0].attributes                         # doctest: +SKIP
('NETWORK_COMMUNICATION', {'network_segment': 'CT-PD-8367'})
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import poisson

from .aggregates import frames_engine, sql_string, sql_strings
from .clusters import INFRA_ATTRIBUTES, MerchantClusters, cluster_merchants
from .contract import CAUSES, SHARED_FAULT_FIELDS
from .engine.base import Engine
from .engine.tables import dates_from_days
from .localize import Localization, expected_from_baseline, localize
from .reconcile import as_of_day, default_as_of, to_local_time
from .scan import ScanCluster, ScanResult, SpaceTimeResult, llr_bernoulli, space_time_scan, spatial_scan

__all__ = [
    "CELL_COUNTS",
    "FAULT_CAUSES",
    "FAULT_INCIDENTS",
    "LOCALIZATION_DIMS",
    "RISKLOC_DIMS",
    "SharedFault",
    "fault_cells_on",
    "fault_cells_sql",
    "find_shared_faults",
    "find_shared_faults_on",
    "shared_faults_to_json",
]

#: Causes that can be a shared infrastructure fault: the scan's cases.
FAULT_CAUSES = (
    "NETWORK_COMMUNICATION",
    "SYSTEM_FAULT",
    "COUNTERPARTY_BANK",
    "MERCHANT_CONFIG",
    "ACCOUNT_FROZEN_OR_CLOSED",
)
#: Transaction types whose money can fail to arrive: the population at risk.
ATTEMPT_TYPES = ("purchase", "transfer")
MERCHANT_DIMS = ("cluster_id", "mcc", "district")
BANK_DIM = "payee_bank"
#: Dimensions a shared fault can be localized by (constant ones are dropped).
LOCALIZATION_DIMS = (*INFRA_ATTRIBUTES, *MERCHANT_DIMS, BANK_DIM)
#: RiskLoc's dimensions: the payee bank is left to the value screen (its leaves are too sparse).
RISKLOC_DIMS = (*INFRA_ATTRIBUTES, *MERCHANT_DIMS)
#: ``payee_bank`` value of a purchase leaf.
NOT_A_TRANSFER = "(purchase)"
MISSING = "(missing)"
#: Detectors sharing ``alpha`` (Bonferroni): spatial scan, attributes (RiskLoc and screen), temporal scan.
N_DETECTORS = 3
#: Rounds of setting aside the one- and two-merchant circles before the final spatial scan (each
#: costs a scan without replicas; a lone merchant hidden behind another one is rare).
MAX_ROUNDS = 1
#: Spatial scan circles hold at most the attempts of about this many merchants (and at most half).
SCAN_MAX_MERCHANTS = 250
#: Replicas of the spatial scan that localizes a burst inside its days (the burst's own test decides).
WINDOW_REPLICAS = 99
#: City-wide bursts looked for, one after the other.
MAX_BURSTS = 5
#: Deepest RiskLoc layer searched (pairs; deeper ones are rare and slow over seven dimensions).
RISKLOC_MAX_SET_SIZE = 2
#: A parent replaces a RiskLoc root cause when its rest has this share of the root cause's relative risk.
RIPPLE_SHARE = 1 / 3
#: Smallest relative risk of a shared fault's cause over its cells and days: with millions of
#: attempts, a 5 % rise (late credits around a holiday) is significant, but it is no fault.
MIN_RELATIVE_RISK = 1.5
#: A day is still open when more than this share of its attempts has its credit deadline
#: on or after the day of ``as_of``.
UNSETTLED_SHARE = 0.05
#: Smallest p-value reported (a Poisson tail can underflow to 0).
P_FLOOR = 1e-300
#: Two findings are one fault when they share this share of the smaller merchant set.
SAME_FAULT_OVERLAP = 0.5

SCAN = "spatial scan (Kulldorff 1997)"
RISKLOC = "RiskLoc (Kalander 2022)"
BURST = "temporal scan (Kulldorff et al. 1998)"
SCREEN = "attribute screen (Poisson, Bonferroni)"


# =========================================================================== result


@dataclass(frozen=True)
class SharedFault:
    """A fault shared by several merchants (``shared/CONTRACT.md``, ``shared_faults.json``).

    Attributes
    ----------
    fault_id : str
        ``SF001``, ``SF002``, ... in order of start.
    cause : str
        Cause code (``NETWORK_COMMUNICATION``, ``SYSTEM_FAULT``, ``COUNTERPARTY_BANK``...).
    merchant_ids : tuple of str
        Merchants that match the attributes and show excess, sorted.
    start, end : datetime.date
        First and last day of the fault; ``end`` is None while it is ongoing.
    observed : int
        Fault-cause incidents of those merchants in the fault's cells and days.
    expected : float
        Incidents expected there at the city's rate per transaction type.
    relative_risk : float
        ``(observed / expected) / ((C - observed) / (C - expected))`` (SaTScan's).
    p_value : float
        Detection p-value, Bonferroni-adjusted over the detectors: a scan's Monte
        Carlo p-value where a scan found it, else the attribute detectors'
        (module docstring, *Output*).
    attributes : dict
        The dimension values that localize it, e.g. ``{"network_segment": "CT-PD-8367"}``,
        ``{"payee_bank": "中国建设银行"}``, ``{"scope": "all"}`` or the scan circle.
    evidence : str
        One paragraph a person can check.
    detected_by : tuple of str
        The detectors that found it.
    cause_counts : dict
        Its incidents by fault cause.
    last_day : datetime.date
        Last day of the most likely interval (also when ``end`` is None).
    scan, localization : ScanResult, Localization or None
        The supporting results (the scan whose cluster it is; RiskLoc's result).
    daily : pandas.DataFrame
        ``date, cases, attempts, rate, rest_rate``: the excess merchants' fault
        cells per day against the rest of the city (for :meth:`plot`).
    """

    fault_id: str
    cause: str
    merchant_ids: tuple[str, ...]
    start: dt.date
    end: dt.date | None
    observed: int
    expected: float
    relative_risk: float
    p_value: float
    attributes: Mapping[str, Any]
    evidence: str = field(default="", repr=False)
    detected_by: tuple[str, ...] = ()
    cause_counts: Mapping[str, int] = field(default_factory=dict)
    last_day: dt.date | None = None
    scan: ScanResult | None = field(default=None, repr=False, compare=False)
    localization: Localization | None = field(default=None, repr=False, compare=False)
    daily: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    @property
    def ongoing(self) -> bool:
        """True while the fault runs to the last complete day."""
        return self.end is None

    def to_json(self) -> dict[str, Any]:
        """The contract's ``shared_faults.json`` record, fields in contract order.

        Examples
        --------
        >>> f = SharedFault("SF001", "NETWORK_COMMUNICATION", ("m1", "m2", "m3"),
        ...                 dt.date(2026, 3, 16), None, 30, 3.0, 12.5, 0.003,
        ...                 {"network_segment": "CT-PD-0231"})
        >>> f.to_json()["start"], f.to_json()["end"], list(f.to_json())[:3]
        ('2026-03-16', None, ['fault_id', 'cause', 'merchant_ids'])
        """
        values = {
            "fault_id": self.fault_id,
            "cause": self.cause,
            "merchant_ids": list(self.merchant_ids),
            "start": self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
            "observed": int(self.observed),
            "expected": _finite(round(float(self.expected), 4)),
            "relative_risk": _finite(round(float(self.relative_risk), 4)),
            "p_value": _finite(float(self.p_value)),
            "attributes": {k: _plain(v) for k, v in self.attributes.items()},
        }
        return {k: values[k] for k in SHARED_FAULT_FIELDS}

    def summary(self) -> str:
        """A few lines a person can read.

        Examples
        --------
        >>> f = SharedFault("SF001", "NETWORK_COMMUNICATION", ("m1", "m2", "m3"),
        ...                 dt.date(2026, 3, 16), None, 30, 3.0, 12.5, 0.003,
        ...                 {"network_segment": "CT-PD-0231"})
        >>> print(f.summary().splitlines()[0])
        SF001 NETWORK_COMMUNICATION (网络通讯问题): network_segment=CT-PD-0231
        """
        label = CAUSES[self.cause].zh if self.cause in CAUSES else self.cause
        until = "ongoing" if self.end is None else self.end.isoformat()
        lines = [
            f"{self.fault_id} {self.cause} ({label}): {_label(self.attributes)}",
            f"  {len(self.merchant_ids)} merchants, {self.start.isoformat()} to {until}",
            f"  {self.observed} incidents vs {self.expected:.1f} expected "
            f"(relative risk {self.relative_risk:.1f}), p = {self.p_value:.3g}",
        ]
        if self.cause_counts:
            lines.append("  by cause: " + ", ".join(f"{k} {v}" for k, v in self.cause_counts.items()))
        if self.detected_by:
            lines.append("  found by: " + "; ".join(self.detected_by))
        lines.append("  merchants: " + " ".join(self.merchant_ids))
        return "\n".join(lines)

    def plot(self, ax=None):
        """Daily fault-incident rate of its merchants against the rest of the city, its days shaded.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new figure is made when omitted.

        Returns
        -------
        matplotlib.axes.Axes
        """
        if self.daily is None:
            raise ValueError(f"{self.fault_id} has no daily series to plot; it comes with the faults "
                             "find_shared_faults returns")
        if ax is None:
            from matplotlib.figure import Figure

            ax = Figure(figsize=(8, 3.5)).subplots()
        d = self.daily
        ax.plot(d["date"], d["rate"] * 100, color="tab:red", lw=1.5, label=f"{self.fault_id} merchants")
        ax.plot(d["date"], d["rest_rate"] * 100, color="0.5", lw=1.0, label="rest of the city")
        last = self.end or self.last_day
        ax.axvspan(pd.Timestamp(self.start), pd.Timestamp(last) + pd.Timedelta(days=1), color="tab:red",
                   alpha=0.1, label="fault")
        ax.set_ylabel("fault incidents per 100 attempts")
        ax.set_title(f"{self.fault_id} {self.cause}: {_label(self.attributes)}")
        ax.legend(loc="upper right", fontsize=8)
        return ax


def shared_faults_to_json(faults: Iterable[SharedFault]) -> list[dict[str, Any]]:
    """The contract's ``shared_faults.json`` list (empty where there is none).

    Examples
    --------
    >>> shared_faults_to_json([])
    []
    """
    return [f.to_json() for f in faults]


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _plain(v: Any) -> Any:
    """A JSON-ready attribute value (numpy scalars to Python)."""
    return v.item() if isinstance(v, np.generic) else v


def _label(attributes: Mapping[str, Any]) -> str:
    return " & ".join(f"{k}={v}" for k, v in attributes.items())


# =========================================================================== cells


@dataclass(frozen=True)
class _Data:
    """Attempts and fault-cause cases per cell (terminal x day x payee bank), with lookups.

    ``cells`` columns: ``terminal, merchant, day, transfer, attempts, cases``, one
    count column per :data:`FAULT_CAUSES`, and the localization dims (categorical).
    """

    cells: pd.DataFrame
    merchants: pd.DataFrame  # by merchant code: merchant_id, latitude, longitude, dims
    days: pd.DatetimeIndex
    last_complete: int  # index in days of the last complete day
    last_settled: int = -1  # index of the last day whose outcomes are all but final (see _last_settled)
    min_merchants: int = 3
    _rates: dict = field(default_factory=dict, repr=False, compare=False)  # memo of _memo

    @property
    def n_days(self) -> int:
        return len(self.days)

    @functools.cached_property
    def _arrays(self) -> dict[str, np.ndarray]:
        numeric = ["terminal", "merchant", "day", "transfer", "attempts", "cases", *FAULT_CAUSES]
        arrays = {c: self.cells[c].to_numpy() for c in numeric}
        arrays["kind"] = arrays["transfer"].astype(np.intp)  # 0 purchase, 1 transfer: row of _type_rates
        # attempts and the counts of _RATE_COLUMNS side by side, for _type_rates' one pass
        arrays["rate_counts"] = np.column_stack(
            [arrays[c] for c in ("attempts", *_RATE_COLUMNS)]).astype(np.float64)
        return arrays

    def column(self, name: str) -> np.ndarray:
        """A numeric column of the cells as a NumPy array."""
        return self._arrays[name]


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"find_shared_faults: {what} needs columns {list(columns)}, missing {missing}; "
            f"pass the results of analysis.reconcile.reconcile and analysis.causes.classify"
        )


#: Engine table of each attempt's fault cause (``txn_id, cause``) that :func:`fault_cells_on` registers.
FAULT_INCIDENTS = "fault_incidents"
#: Count columns of a cell as :func:`fault_cells_on` returns it.
CELL_COUNTS = ("attempts", "still_open", *FAULT_CAUSES)


def fault_cells_sql(as_of_day: int) -> str:
    """The cells step: per terminal x day x payee bank x merchant, attempts, still-open attempts and
    cases per fault cause.

    Over the engine tables ``reconciled`` and :data:`FAULT_INCIDENTS`. The
    payee bank of a purchase is :data:`NOT_A_TRANSFER`, of a transfer without
    one :data:`MISSING`; an attempt is *still open* when its credit deadline is
    on or after the day of ``as_of`` (its outcome may still change).

    Examples
    --------
    >>> "LEFT JOIN fault_incidents" in fault_cells_sql(20540)
    True
    """
    causes = ",\n       ".join(f"CAST(SUM(CASE WHEN cause = {sql_string(c)} THEN 1 ELSE 0 END) AS BIGINT) AS {c}"
                                for c in FAULT_CAUSES)
    return f"""
WITH attempt AS (
    SELECT r.terminal_id, r.merchant_id, r.day, r.txn_type = 'transfer' AS transfer,
           CASE WHEN r.txn_type = 'transfer' THEN COALESCE(r.payee_bank, {sql_string(MISSING)})
                ELSE {sql_string(NOT_A_TRANSFER)} END AS payee_bank,
           COALESCE(r.deadline_day >= {int(as_of_day)}, FALSE) AS still_open, i.cause
    FROM reconciled r LEFT JOIN {FAULT_INCIDENTS} i ON i.txn_id = r.txn_id
    WHERE r.txn_type IN {sql_strings(ATTEMPT_TYPES)}
)
SELECT terminal_id, merchant_id, day, transfer, payee_bank,
       CAST(COUNT(*) AS BIGINT) AS attempts,
       CAST(SUM(CASE WHEN still_open THEN 1 ELSE 0 END) AS BIGINT) AS still_open,
       {causes}
FROM attempt GROUP BY terminal_id, merchant_id, day, transfer, payee_bank"""


def _fault_incidents(incidents: pd.DataFrame) -> pd.DataFrame:
    """Each transaction's fault cause: its first ``incidents`` row with one of :data:`FAULT_CAUSES`."""
    faulty = incidents.loc[incidents["cause"].isin(FAULT_CAUSES), ["txn_id", "cause"]].drop_duplicates("txn_id")
    return pd.DataFrame({c: faulty[c].astype("str").reset_index(drop=True) for c in ("txn_id", "cause")})


def fault_cells_on(engine: Engine, incidents: pd.DataFrame, *, as_of) -> pd.DataFrame:
    """The purchase and transfer attempts of the data in an engine, aggregated into cells.

    Parameters
    ----------
    engine : Engine
        With the table ``reconciled``.
    incidents : DataFrame
        ``txn_id, cause`` (:func:`analysis.causes.classify`'s result); its
        fault-cause rows are registered in the engine as :data:`FAULT_INCIDENTS`.
    as_of : time-like
        The moment of analysis (decides ``still_open``).

    Returns
    -------
    DataFrame
        One row per cell: ``terminal_id, merchant_id, day`` (day number),
        ``transfer``, ``payee_bank`` and the counts :data:`CELL_COUNTS`; in no
        particular order.

    Examples
    --------
    >>> from analysis.aggregates import frames_engine
    >>> rec = pd.DataFrame({"txn_id": ["A", "B"], "merchant_id": ["M1"] * 2, "terminal_id": ["K1"] * 2,
    ...     "business_date": pd.to_datetime(["2026-03-10"] * 2), "txn_type": ["purchase"] * 2})
    >>> inc = pd.DataFrame({"txn_id": ["B"], "cause": ["NETWORK_COMMUNICATION"]})
    >>> with frames_engine(reconciled=rec) as eng:
    ...     cells = fault_cells_on(eng, inc, as_of="2026-03-30")
    >>> print(cells[["terminal_id", "payee_bank", "attempts", "NETWORK_COMMUNICATION"]].to_string(index=False))
    terminal_id payee_bank  attempts  NETWORK_COMMUNICATION
             K1 (purchase)         2                      1
    """
    _require(incidents, ("txn_id", "cause"), "incidents")
    engine.register_frame(FAULT_INCIDENTS, _fault_incidents(incidents))
    return engine.fetch(fault_cells_sql(as_of_day(as_of)))


def _check_known(engine: Engine, cells: pd.DataFrame, merchants: pd.DataFrame) -> None:
    """Refuse attempts of a merchant missing from the merchants table or without a terminal."""
    unknown = ~cells["merchant_id"].isin(merchants["merchant_id"]) | cells["terminal_id"].isna()
    if not unknown.any():
        return
    names = cells.loc[unknown, "merchant_id"].dropna().unique()
    where = "merchant_id IS NULL OR terminal_id IS NULL" + (f" OR merchant_id IN {sql_strings(names)}" if len(names)
                                                            else "")
    example = engine.scalar(f"SELECT MIN(txn_id) FROM reconciled WHERE txn_type IN {sql_strings(ATTEMPT_TYPES)} "
                            f"AND ({where})")
    raise ValueError(
        f"find_shared_faults: {int(cells.loc[unknown, 'attempts'].sum())} transactions name a merchant missing "
        f"from the merchants table or no terminal (e.g. txn_id {example}); load the dataset with "
        "analysis.io.load_dataset, which rejects such rows"
    )


def _merchant_table(merchants: pd.DataFrame, clusters: MerchantClusters) -> pd.DataFrame:
    m = merchants.copy()
    m["merchant_id"] = m["merchant_id"].astype(str)
    m = m.merge(clusters.assignments[["merchant_id", "cluster_id"]].astype({"merchant_id": str}),
                on="merchant_id", how="left")
    for d in MERCHANT_DIMS:
        m[d] = m[d].astype("string").fillna(MISSING).astype(str) if d in m.columns else MISSING
    return m.sort_values("merchant_id").reset_index(drop=True)


def _terminal_table(terminals: pd.DataFrame, seen: pd.Series) -> pd.DataFrame:
    """Terminals (plus any ``seen`` only in transactions) with their infrastructure attributes."""
    t = terminals.copy()
    t["terminal_id"] = t["terminal_id"].astype(str)
    extra = pd.Index(pd.unique(seen)).astype(str).difference(t["terminal_id"])
    t = pd.concat([t, pd.DataFrame({"terminal_id": extra})], ignore_index=True)
    for a in INFRA_ATTRIBUTES:
        t[a] = t[a].astype("string").fillna(MISSING).astype(str) if a in t.columns else MISSING
    return t.sort_values("terminal_id").reset_index(drop=True)


def _build_data(raw: pd.DataFrame, merchants: pd.DataFrame, terminals: pd.DataFrame, as_of: pd.Timestamp) -> _Data:
    """:func:`fault_cells_on`'s cells as codes into the merchant, terminal and bank tables, in key order."""
    merchant = pd.Index(merchants["merchant_id"]).get_indexer(raw["merchant_id"].astype(str))
    terminal = pd.Index(terminals["terminal_id"]).get_indexer(raw["terminal_id"].astype(str))
    bank_text = raw[BANK_DIM].astype(str)
    banks = pd.Index(sorted({NOT_A_TRANSFER, MISSING, *bank_text.unique()}))
    bank = banks.get_indexer(bank_text)
    day0 = int(raw["day"].min())
    day = raw["day"].to_numpy(np.int64) - day0
    order = np.lexsort((merchant, bank, day, terminal))
    cells = pd.DataFrame({"terminal": terminal[order].astype(np.int64), "merchant": merchant[order].astype(np.int64),
                          "day": day[order], "transfer": raw["transfer"].to_numpy(bool)[order],
                          "attempts": raw["attempts"].to_numpy(np.int64)[order]})
    for c in FAULT_CAUSES:
        cells[c] = raw[c].to_numpy(np.int64)[order]
    cells["cases"] = cells[list(FAULT_CAUSES)].sum(axis=1)
    for d in INFRA_ATTRIBUTES:
        cells[d] = _categorical(terminals[d], cells["terminal"])
    for d in MERCHANT_DIMS:
        cells[d] = _categorical(merchants[d], cells["merchant"])
    cells[BANK_DIM] = pd.Categorical.from_codes(bank[order], categories=banks)
    n_days = int(day.max()) + 1
    first = pd.Timestamp(dates_from_days(pd.Series([day0])).iloc[0]).as_unit("us")
    days = pd.date_range(first, periods=n_days, freq="D")
    complete = (to_local_time(as_of) + pd.Timedelta(seconds=1)).tz_localize(None).floor("D") - pd.Timedelta(days=1)
    last_complete = int(min(n_days - 1, (complete - first).days))
    return _Data(cells=cells, merchants=merchants, days=days, last_complete=last_complete,
                 last_settled=_last_settled(day, raw["still_open"].to_numpy(np.int64),
                                            raw["attempts"].to_numpy(np.int64), n_days))


def _last_settled(day: np.ndarray, still_open: np.ndarray, attempts: np.ndarray, n_days: int) -> int:
    """Last day before the trailing days whose outcomes are still open (see :data:`UNSETTLED_SHARE`)."""
    share = (np.bincount(day, weights=still_open, minlength=n_days)
             / np.maximum(np.bincount(day, weights=attempts, minlength=n_days), 1))
    settled = np.flatnonzero(share <= UNSETTLED_SHARE)
    return int(settled[-1]) if len(settled) else -1


def _categorical(values: pd.Series, positions: pd.Series) -> pd.Categorical:
    """``values`` taken at ``positions`` as a categorical (built from codes: no string copies)."""
    codes, uniques = pd.factorize(values, sort=True)
    return pd.Categorical.from_codes(codes[positions.to_numpy()], categories=pd.Index(uniques).astype(str))


# =========================================================================== rates and windows


_RATE_COLUMNS = ("cases", *FAULT_CAUSES)


def _memo(data: _Data, active: np.ndarray, what: str, compute):
    """``compute()`` memoized per ``active`` mask and ``what`` (a few masks are reused many times)."""
    key = (hashlib.blake2b(np.packbits(active).tobytes(), digest_size=16).digest(), what)
    if key not in data._rates:
        if len(data._rates) > 256:
            data._rates.clear()
        data._rates[key] = compute()
    return data._rates[key]


def _type_rates(data: _Data, active: np.ndarray) -> np.ndarray:
    """Rates of cases and of each fault cause among active attempts, per type: shape (2, 1 + causes)."""
    def compute() -> np.ndarray:
        kind = data.column("kind")
        by_kind = np.stack([active & (kind == 0), active & (kind == 1)], 1).astype(np.float64)
        # one matrix product for every column; the counts are whole numbers, so the
        # sums are exact (the same as bincount's) whatever order BLAS adds them in
        sums = (data.column("rate_counts").T @ by_kind).T  # (2, 1 + causes)
        n, c = sums[:, 0], np.ascontiguousarray(sums[:, 1:])
        return np.divide(c, n[:, None], out=np.zeros_like(c), where=n[:, None] > 0)

    return _memo(data, active, "rates", compute)


def _active_total(data: _Data, active: np.ndarray, column: str):
    """Sum of a count column over the active cells (memoized)."""
    return _memo(data, active, column, lambda: data.column(column)[active].sum())


def _expected(data: _Data, active: np.ndarray, column: str = "cases", at: np.ndarray | None = None) -> np.ndarray:
    """Per cell (of ``at``, a mask or positions, when given): attempts x the rate of ``column``
    among active cells of the same type."""
    rates = _type_rates(data, active)[:, _RATE_COLUMNS.index(column)]
    if at is None:
        return data.column("attempts") * rates[data.column("kind")]
    return data.column("attempts")[at] * rates[data.column("kind")[at]]


def _is_member(data: _Data, members: np.ndarray) -> np.ndarray:
    """Per cell: its merchant is one of ``members`` (merchant codes)."""
    flag = np.zeros(len(data.merchants), dtype=bool)
    flag[members] = True
    return flag[data.column("merchant")]


def _window_mask(data: _Data, window: tuple[int, int]) -> np.ndarray:
    day = data.column("day")
    return (day >= window[0]) & (day <= window[1])


def _best_window(data: _Data, active: np.ndarray, group: np.ndarray, column: str = "cases") -> tuple[int, int]:
    """Most likely interval of days of a group's cells: the space-time cylinder (Kulldorff et al. 1998).

    Every interval is scored with the Bernoulli log-likelihood ratio of the
    group's ``column`` cases in it against everything else that is active.
    """
    T = data.n_days
    day, cases, attempts = data.column("day"), data.column(column), data.column("attempts")
    inside = np.flatnonzero(group & active)
    c_day = np.bincount(day[inside], weights=cases[inside], minlength=T)
    n_day = np.bincount(day[inside], weights=attempts[inside], minlength=T)
    C, N = float(_active_total(data, active, column)), float(_active_total(data, active, "attempts"))
    cc, nn = np.concatenate([[0.0], np.cumsum(c_day)]), np.concatenate([[0.0], np.cumsum(n_day)])
    i, j = np.triu_indices(T)
    llr = llr_bernoulli(cc[j + 1] - cc[i], nn[j + 1] - nn[i], C, N)
    if not np.any(llr > 0):
        seen = np.flatnonzero(n_day > 0)
        return (int(seen[0]), int(seen[-1])) if len(seen) else (0, T - 1)
    best = int(np.argmax(llr))
    return int(i[best]), int(j[best])


# =========================================================================== findings


@dataclass(frozen=True)
class _Finding:
    """A candidate from one detector: its cells (before any time window) and its support."""

    source: str
    group: np.ndarray = field(repr=False)  # bool over cells
    p_value: float
    attributes: Mapping[str, Any]
    window: tuple[int, int] | None = None  # fixed by the temporal scan
    scan: ScanResult | None = field(default=None, repr=False)
    cluster: ScanCluster | None = field(default=None, repr=False)
    localization: Localization | None = field(default=None, repr=False)
    note: str = ""
    also: tuple[str, ...] = ()  # further detectors behind it (a burst localized by RiskLoc)


@dataclass(frozen=True)
class _Verdict:
    """A finding judged: its window, excess merchants and whether it is shared."""

    finding: _Finding
    window: tuple[int, int]
    members: np.ndarray  # merchant codes showing excess
    inside: np.ndarray = field(repr=False)  # bool over cells: group, window and members
    shared: bool
    spread_p: float
    cause: str
    cause_counts: Mapping[str, int]
    observed: int
    expected: float
    relative_risk: float
    support: tuple[tuple[str, float], ...]  # (detector, its adjusted p-value) of every finding of it
    attributes: Mapping[str, Any]
    llr: float = 0.0  # of the group's cells in the window for the cause: how well it localizes the fault
    scan: ScanResult | None = None
    localization: Localization | None = None
    notes: tuple[str, ...] = ()

    @property
    def detected_by(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for name, _ in self.support))

    @property
    def p_value(self) -> float:
        """The Monte Carlo p-value of a scan that found it, else the attribute detectors' smallest."""
        scans = [p for name, p in self.support if SCAN in name or BURST in name]
        return min(scans or [p for _, p in self.support])


def _adjusted(p: float) -> float:
    """A detector's p-value times the number of detectors, in [1e-300, 1] (no underflow to 0)."""
    return float(min(1.0, max(p * N_DETECTORS, P_FLOOR)))


def _spatial_scan(data: _Data, active: np.ndarray, n_replicas: int, seed: int) -> ScanResult | None:
    """Kulldorff's Bernoulli spatial scan of the active cells' cases against attempts, per merchant.

    Circles hold up to half the attempts (SaTScan's default) but at most those
    of about :data:`SCAN_MAX_MERCHANTS` merchants: in a big city a wider place
    is a district, which the attribute screen and the temporal scan cover, and
    the Monte Carlo's cost grows with the number of windows.
    """
    merchant = data.column("merchant")
    M = len(data.merchants)
    population = np.bincount(merchant[active], weights=data.column("attempts")[active], minlength=M)
    cases = np.bincount(merchant[active], weights=data.column("cases")[active], minlength=M)
    seen = population > 0
    if cases.sum() < 2 or seen.sum() < 2:
        return None
    locations = data.merchants.loc[seen, ["merchant_id", "latitude", "longitude"]].assign(
        cases=cases[seen].round().astype(np.int64), population=population[seen].round().astype(np.int64))
    share = min(0.5, SCAN_MAX_MERCHANTS / int(seen.sum()))
    return spatial_scan(locations, n_replicas=n_replicas, seed=seed, max_population_share=share)


def _circle(data: _Data, result: ScanResult, c: ScanCluster) -> _Finding:
    """A scan cluster as a finding: its merchants' cells, the circle as attributes."""
    members = pd.Index(data.merchants["merchant_id"]).get_indexer(list(c.member_ids))
    attributes = {"centre_latitude": round(float(c.centre_latitude), 6),
                  "centre_longitude": round(float(c.centre_longitude), 6),
                  "radius_km": round(float(c.radius_km), 3)}
    return _Finding(SCAN, np.isin(data.column("merchant"), members), _adjusted(c.p_value), attributes,
                    scan=result, cluster=c,
                    note=f"scan circle of {c.radius_km:.2f} km around {c.centre_id} "
                         f"({c.n_locations} merchants, LLR {c.llr:.1f})")


def _scan_findings(data: _Data, active: np.ndarray, level: float, n_replicas: int, seed: int) -> list[_Finding]:
    """Circles of the spatial scan significant at ``level`` (none without replicas)."""
    result = _spatial_scan(data, active, n_replicas, seed) if n_replicas else None
    if result is None:
        return []
    return [_circle(data, result, c) for c in result.clusters if c.p_value <= level]


def _by_value(cells: pd.DataFrame, dims: Sequence[str]) -> pd.DataFrame:
    """Per combination of ``dims`` values and transaction type: ``incidents, transactions``."""
    keys = [*dims, "transfer"]
    out = cells.groupby(keys, observed=True, sort=True)[["cases", "attempts"]].sum().reset_index()
    out = out.rename(columns={"cases": "incidents", "attempts": "transactions"})
    return out.assign(**{d: out[d].astype(str) for d in dims})


def _rest_of_city(table: pd.DataFrame, dims: Sequence[str]) -> pd.DataFrame:
    """Rows of :func:`_by_value` summed over types, with incidents expected at the rate of the *other* rows.

    The rate is taken per transaction type over the rest of the city, so a loud
    value does not raise its own expectation.
    """
    totals = table.groupby("transfer")[["incidents", "transactions"]].transform("sum")
    rest_c = (totals["incidents"] - table["incidents"]).to_numpy(float)
    rest_n = (totals["transactions"] - table["transactions"]).to_numpy(float)
    rate = np.divide(rest_c, rest_n, out=np.zeros(len(table)), where=rest_n > 0)
    table = table.assign(expected=table["transactions"] * rate)
    return table.groupby(list(dims), sort=True)[["incidents", "transactions", "expected"]].sum().reset_index()


def _riskloc(data: _Data, active: np.ndarray, level: float) -> Localization | None:
    """RiskLoc (Kalander 2022) over leaves = combinations of :data:`RISKLOC_DIMS` values.

    A leaf's expected incidents come from the rest of the city: per transaction
    type, its attempts times the type's rate over the other leaves.
    """
    cells = data.cells.loc[active]
    dims = [d for d in RISKLOC_DIMS if cells[d].nunique() > 1]
    if not dims or cells["cases"].sum() == 0:
        return None
    leaves = _rest_of_city(_by_value(cells, dims), dims)
    return localize(leaves, dims, alpha=level, max_set_size=RISKLOC_MAX_SET_SIZE)


def _attribute_mask(data: _Data, attributes: Mapping[str, Any]) -> np.ndarray:
    """Cells whose attributes have the given values (compared on categorical codes)."""
    mask = np.ones(len(data.cells), bool)
    for k, v in attributes.items():
        column = data.cells[k].cat
        code = column.categories.get_indexer([str(v)])[0]
        mask &= column.codes.to_numpy() == code
    return mask


def _generalize(data: _Data, active: np.ndarray, attributes: Mapping[str, str], level: float) -> dict[str, str]:
    """Drop attributes while the anomaly covers the parent evenly (RiskLoc's generalized ripple effect).

    With sparse leaves RiskLoc may report a fault as a sub-combination
    (``network_segment=X & connection=wifi``). The parent without one attribute
    (``network_segment=X``) replaces it when, over the child's most likely days,
    the rest of the parent has significantly more cases than expected (one-sided
    Poisson at ``level``) and at least :data:`RIPPLE_SHARE` of the child's
    relative risk (a generous share: the child was chosen for being extreme):
    under the ripple effect the whole parent changed by about the same ratio, while
    a parent that mixes a faulty child with healthy siblings (a neighbourhood
    around one bad line) does not. Of several parents the one whose rest has
    the highest relative risk wins. A purchase restriction
    (``payee_bank="(purchase)"``) is always dropped.
    """
    attrs = {k: str(v) for k, v in attributes.items() if not (k == BANK_DIM and v == NOT_A_TRANSFER)}
    cases, expected = data.column("cases"), _expected(data, active)
    while len(attrs) > 1:
        child = _attribute_mask(data, attrs) & active
        days = _window_mask(data, _best_window(data, active, child))
        rr_child = cases[child & days].sum() / max(expected[child & days].sum(), 1e-12)
        best, best_rr = None, 0.0
        for drop in attrs:
            parent = {k: v for k, v in attrs.items() if k != drop}
            rest = _attribute_mask(data, parent) & active & days & ~child
            c_rest, e_rest = cases[rest].sum(), expected[rest].sum()
            if e_rest <= 0 or c_rest / e_rest <= best_rr:
                continue
            if poisson.sf(c_rest - 1, e_rest) <= level and c_rest / e_rest >= RIPPLE_SHARE * rr_child:
                best, best_rr = parent, c_rest / e_rest
        if best is None:
            break
        attrs = best
    return attrs


def _specialize(data: _Data, active: np.ndarray, v: _Verdict, level: float) -> dict[str, str]:
    """The most specific description of an accepted fault: the reverse of :func:`_generalize`.

    A screened value can be wider than the fault (``model=NEWLAND-N910`` when
    only its firmware ``N910-1.9.1`` is faulty). A child adding one value of
    another dimension replaces the description when, over the fault's days
    and for its cause, the rest of the parent does *not* pass the
    generalization test (significant excess at :data:`RIPPLE_SHARE` of the
    child's relative risk or more); of several children the one with the
    largest log-likelihood ratio wins (a purchase restriction or a missing
    value is no description). Attributes that no longer narrow the cells (a
    firmware implies its model) are then dropped.
    """
    attrs = {k: str(val) for k, val in v.attributes.items()}
    if not attrs or not set(attrs) <= set(LOCALIZATION_DIMS):
        return attrs
    cause, days = data.column(v.cause), _window_mask(data, v.window)
    expected, attempts = _expected(data, active, v.cause), data.column("attempts")
    parent = _attribute_mask(data, attrs) & active & days
    C, N = cause[active].sum(), attempts[active].sum()
    best, best_llr = None, -1.0
    for dim in (d for d in LOCALIZATION_DIMS if d not in attrs):
        codes = data.cells[dim].cat.codes.to_numpy()[parent]
        k = len(data.cells[dim].cat.categories)
        c, e, n = (np.bincount(codes, weights=x[parent], minlength=k) for x in (cause, expected, attempts))
        rest_c, rest_e = c.sum() - c, e.sum() - e
        with np.errstate(divide="ignore", invalid="ignore"):
            rr_child, rr_rest = c / e, rest_c / rest_e
            covers = (rest_e <= 0) | (poisson.sf(rest_c - 1, rest_e) > level) | (rr_rest < RIPPLE_SHARE * rr_child)
        llr = np.asarray(llr_bernoulli(c, n, C, N))
        names = data.cells[dim].cat.categories.astype(str)
        plain = ~names.isin([NOT_A_TRANSFER, MISSING])
        for code in np.flatnonzero(covers & plain & (rest_e > 0) & (c > e) & (llr > best_llr)):
            best, best_llr = (dim, str(names[code])), float(llr[code])
    if best is None:
        return attrs
    child = {**attrs, best[0]: best[1]}
    cells = _attribute_mask(data, child) & active
    return {k: val for k, val in child.items()
            if k == best[0] or not np.array_equal(_attribute_mask(data, {j: w for j, w in child.items() if j != k})
                                                  & active, cells)}


def _riskloc_findings(data: _Data, active: np.ndarray, level: float) -> list[_Finding]:
    """Significant RiskLoc root causes over the period, generalized (:func:`_generalize`)."""
    loc = _riskloc(data, active, level)
    if loc is None:
        return []
    n_tests = int(loc.params["bonferroni_tests"])
    out = []
    for r in loc.root_causes.itertuples():
        attributes = _generalize(data, active, r.attributes, level)
        if not attributes:
            continue
        found = "" if attributes == r.attributes else f", generalized to {_label(attributes)}"
        out.append(_Finding(
            RISKLOC, _attribute_mask(data, attributes), min(1.0, r.p_value * n_tests), attributes,
            localization=loc,
            note=f"RiskLoc root cause {r.root_cause} ({r.incidents:.0f} incidents vs {r.expected:.1f} "
                 f"expected, score {r.score:.2f}{found})"))
    return out


def _window_expected(cells: pd.DataFrame, inside: np.ndarray, dim: str) -> pd.DataFrame:
    """Per value of ``dim``: incidents inside a window and those expected there.

    The value's own rate outside the window (empirical-Bayes shrunk,
    :func:`analysis.localize.expected_from_baseline`) times the change the rest
    of the city shows between outside and inside the window: a city-wide burst
    lifts every value alike and localizes nowhere, while a bank's outage lifts
    that bank far beyond the others.
    """
    def per_value(part: pd.DataFrame) -> pd.DataFrame:
        return _by_value(part, [dim]).groupby(dim, as_index=False)[["incidents", "transactions"]].sum()

    def rest_rate(t: pd.DataFrame) -> np.ndarray:
        """Per row: the rate of all the other rows."""
        c, n = t["incidents"].to_numpy(float), t["transactions"].to_numpy(float)
        return np.divide(c.sum() - c, n.sum() - n, out=np.full(len(t), np.nan), where=n.sum() - n > 0)

    current, before = per_value(cells[inside]), per_value(cells[~inside])
    t = expected_from_baseline(current, before, [dim])
    rest_in, rest_out = rest_rate(t), rest_rate(before.set_index(dim).reindex(t[dim]).fillna(0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.where((rest_out > 0) & np.isfinite(rest_in), rest_in / rest_out, 1.0)
    return t.assign(expected=t["expected"].to_numpy() * change)


def _screen_findings(data: _Data, active: np.ndarray, level: float,
                     window: tuple[int, int] | None = None) -> list[_Finding]:
    """Single attribute values with significantly more cases than expected (RiskLoc's first layer).

    RiskLoc's deviation partition needs leaves with several expected incidents
    (a leaf with none has deviation -2 whatever its expectation), which a few
    days' data or a fault diluted over many leaves does not give. Every single
    value of every dimension is therefore also tested with RiskLoc's Poisson
    guard, Bonferroni-corrected over all values: over the period against the
    rest of the city, inside a ``window`` against :func:`_window_expected`.
    """
    cells = data.cells.loc[active]
    dims = [d for d in LOCALIZATION_DIMS if cells[d].nunique() > 1]
    if window is not None:
        inside = _window_mask(data, window)[active]
        if not inside.any() or inside.all():
            return []
    tables = [(_rest_of_city(_by_value(cells, [d]), [d]) if window is None else _window_expected(cells, inside, d))
              .assign(dim=d).rename(columns={d: "value"}) for d in dims]
    if not tables:
        return []
    values = pd.concat(tables, ignore_index=True)
    values = values[values["value"] != NOT_A_TRANSFER]
    values = values.assign(p=np.minimum(1.0, poisson.sf(values["incidents"] - 1, values["expected"]) * len(values)))
    hits = values[(values["p"] <= level) & (values["incidents"] > values["expected"])]
    return [_Finding(SCREEN, _attribute_mask(data, {h.dim: h.value}), float(h.p), {h.dim: h.value},
                     note=f"{h.dim}={h.value}: {h.incidents:.0f} incidents vs {h.expected:.1f} expected")
            for h in hits.itertuples()]


def _attribute_findings(data: _Data, active: np.ndarray, level: float) -> list[_Finding]:
    """RiskLoc and the value screen over the period, at ``level / 2`` each (p-values doubled)."""
    return [replace(f, p_value=_adjusted(min(1.0, 2 * f.p_value)))
            for f in (*_riskloc_findings(data, active, level / 2), *_screen_findings(data, active, level / 2))]


def _window_verdicts(data: _Data, active: np.ndarray, alpha: float, level: float, n_replicas: int, seed: int,
                     burst: _Finding, strong: bool) -> list[_Verdict]:
    """Candidates inside a burst's days, judged with the window fixed: the value screen, then the place scan.

    The spatial scan over the burst's days (with :data:`WINDOW_REPLICAS`
    replicas: the burst's own test decides significance) runs only when the
    screen localizes nothing shared and the burst is strong (relative risk at
    least :data:`MIN_RELATIVE_RISK`): in a big city the temporal scan finds
    weak bursts that are no fault, and scanning each would cost a minute.
    """
    window = burst.window

    def judged(findings: Iterable[_Finding]) -> list[_Verdict]:
        return [_judge(data, active, replace(f, window=window, p_value=burst.p_value, also=(BURST,),
                                             note=f"{burst.note}; {f.note}"), level) for f in findings]

    verdicts = judged(_screen_findings(data, active, alpha, window))
    if strong and not any(v.shared for v in verdicts):
        days = active & _window_mask(data, window)
        verdicts += judged(_scan_findings(data, days, alpha, min(n_replicas, WINDOW_REPLICAS), seed))
    return verdicts


# =========================================================================== verdict


def _per_merchant(data: _Data, at: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Sums per merchant code of ``values``, the values of the cells at positions ``at``."""
    return np.bincount(data.column("merchant")[at], weights=values, minlength=len(data.merchants))


def _excess_members(c: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Merchants whose count is likelier under the group's relative risk than under the baseline.

    Poisson likelihood ratio of ``RR e`` against ``e``: ``c ln RR - e (RR - 1) > 0``.
    """
    rr = c.sum() / e.sum() if e.sum() > 0 else np.inf
    if not rr > 1:
        return np.array([], dtype=np.int64)
    threshold = e * (rr - 1) / np.log(rr) if np.isfinite(rr) else np.zeros_like(e)
    return np.flatnonzero((c > threshold) & (c > 0))


def _spread_p(c: np.ndarray, e: np.ndarray, min_merchants: int) -> float:
    """Poisson p-value of the group's excess without its ``min_merchants - 1`` largest contributors."""
    keep = np.ones(len(c), bool)
    keep[np.argsort(-(c - e), kind="stable")[: max(min_merchants - 1, 0)]] = False
    rest_c, rest_e = c[keep].sum(), e[keep].sum()
    if rest_e <= 0:
        return 0.0 if rest_c > 0 else 1.0
    return float(poisson.sf(rest_c - 1, rest_e))


def _relative_risk(c: float, E: float, C: float) -> float:
    if E <= 0:
        return math.inf
    outside = (C - c) / (C - E) if C - E > 0 else 0.0
    return (c / E) / outside if outside > 0 else math.inf


def _excess_by_cause(data: _Data, active: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Observed minus expected cases of each fault cause in ``mask``."""
    at = np.flatnonzero(mask)
    return {c: float(data.column(c)[at].sum() - _expected(data, active, c, at).sum()) for c in FAULT_CAUSES}


def _dominant(data: _Data, active: np.ndarray, mask: np.ndarray) -> str:
    excess = _excess_by_cause(data, active, mask)
    return max(FAULT_CAUSES, key=lambda c: excess[c])


def _members_of(data: _Data, active: np.ndarray, mask: np.ndarray, cause: str) -> tuple[np.ndarray, float]:
    """Excess merchants for ``cause`` in ``mask`` and the spread p-value of the whole group."""
    at = np.flatnonzero(mask)
    c = _per_merchant(data, at, data.column(cause)[at])
    e = _per_merchant(data, at, _expected(data, active, cause, at))
    seen = e > 0
    return _excess_members(c, e), _spread_p(c[seen], e[seen], data.min_merchants)


def _judge(data: _Data, active: np.ndarray, f: _Finding, level: float) -> _Verdict:
    """Window, cause, excess merchants, the shared-or-not rule and the numbers of one finding.

    The first window and the cause come from all fault-cause cases of the
    finding's cells; the members, and the window again (unless a burst fixed
    it), from the cases of that cause only, so that a neighbour with a problem
    of another kind (a frozen account next to a faulty line) is not taken in.
    """
    group = f.group & active
    window = f.window or _best_window(data, active, group)
    in_window = group & _window_mask(data, window)
    cause = _dominant(data, active, in_window)
    members, spread_p = _members_of(data, active, in_window, cause)
    if len(members) and f.window is None:
        window = _best_window(data, active, group & _is_member(data, members), cause)
        in_window = group & _window_mask(data, window)
        members, spread_p = _members_of(data, active, in_window, cause)
    inside = in_window & _is_member(data, members)
    at_window, at_inside = np.flatnonzero(in_window), np.flatnonzero(inside)
    counts = {c: int(data.column(c)[at_inside].sum()) for c in FAULT_CAUSES}
    cases, attempts = data.column("cases"), data.column("attempts")
    c_k = data.column(cause)[at_window].sum()
    llr = llr_bernoulli(c_k, attempts[at_window].sum(), _active_total(data, active, cause),
                        _active_total(data, active, "attempts"))
    group_rr = c_k / max(_expected(data, active, cause, at_window).sum(), 1e-12)
    observed, E = int(cases[at_inside].sum()), float(_expected(data, active, "cases", at_inside).sum())
    k = data.min_merchants - 1
    return _Verdict(
        finding=f, window=window, members=members, inside=inside,
        shared=len(members) >= data.min_merchants and spread_p <= level and group_rr >= MIN_RELATIVE_RISK,
        spread_p=spread_p,
        cause=cause,
        cause_counts={c: n for c, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n},
        observed=observed, expected=E, relative_risk=_relative_risk(observed, E, float(_active_total(data, active, "cases"))),
        support=((" + ".join((*f.also, f.source)), f.p_value),), attributes=dict(f.attributes), llr=float(llr),
        scan=f.scan, localization=f.localization,
        notes=tuple(n for n in (f.note, f"without its {k} largest contributor{'s' * (k != 1)} the rest "
                                        f"still shows excess {cause} (Poisson p = {spread_p:.2g})") if n),
    )


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    if not len(a) or not len(b):
        return 0.0
    return len(np.intersect1d(a, b)) / min(len(a), len(b))


def _same_fault(a: _Verdict, b: _Verdict) -> bool:
    days_overlap = a.window[0] <= b.window[1] and b.window[0] <= a.window[1]
    return a.cause == b.cause and days_overlap and _overlap(a.members, b.members) >= SAME_FAULT_OVERLAP


def _absorb(kept: _Verdict, other: _Verdict) -> _Verdict:
    """``kept`` with the support of another finding of the same fault."""
    also = () if other.attributes == kept.attributes else (f"also seen as {_label(other.attributes)}",)
    return replace(
        kept,
        support=kept.support + other.support,
        scan=kept.scan or other.scan,
        localization=kept.localization or other.localization,
        notes=tuple(dict.fromkeys(kept.notes + also)),
    )


def _accept(data: _Data, active: np.ndarray, candidates: Iterable[_Verdict], level: float) -> list[_Verdict]:
    """Shared faults from shared candidates, strongest first, each explaining its cases away.

    Shared candidates are taken by decreasing log-likelihood ratio (an attribute
    before a scan circle on a tie), so the description that localizes a fault
    best -- a network segment rather than the neighbourhood around it or a
    circle with one healthy shop too many -- describes it. A candidate
    describing an accepted fault (same cause, overlapping days, half or more of
    the smaller merchant set shared) adds its support to it; every other one,
    shared or not at first, is judged again without the accepted faults' cases
    (as RiskLoc removes a root cause's leaves): a terminal model that is merely
    common on a faulty segment is not a second fault, and a faulty firmware
    whose terminals include one on the faulty segment is seen once that
    segment's incidents are explained.
    """
    accepted: list[_Verdict] = []
    remaining = active.copy()
    for v in sorted(candidates, key=lambda v: (v.shared, v.llr, v.finding.source != SCAN), reverse=True):
        if not accepted and not v.shared:
            break
        again = _judge(data, remaining, v.finding, level) if accepted else v
        same = next((k for k, a in enumerate(accepted) if _same_fault(a, v if v.shared else again)), None)
        if same is not None:
            accepted[same] = _absorb(accepted[same], v)
        elif again.shared:
            again = _specialized(data, remaining, again, level)
            accepted.append(again)
            remaining &= ~again.inside
    return accepted


def _specialized(data: _Data, active: np.ndarray, v: _Verdict, level: float) -> _Verdict:
    """``v`` judged again under its most specific description (:func:`_specialize`), if still shared."""
    attributes = _specialize(data, active, v, level)
    if attributes == dict(v.attributes):
        return v
    narrower = replace(v.finding, group=_attribute_mask(data, attributes), attributes=attributes,
                       note=f"{v.finding.note}; narrowed to {_label(attributes)}")
    again = _judge(data, active, narrower, level)
    return replace(again, support=v.support, scan=v.scan, localization=v.localization) if again.shared else v


def _set_aside(data: _Data, verdicts: Iterable[_Verdict]) -> np.ndarray:
    """Cells of the given verdicts' excess merchants in their cells and days."""
    mask = np.zeros(len(data.cells), bool)
    for v in verdicts:
        mask |= v.inside
    return mask


# =========================================================================== bursts


def _burst(data: _Data, active: np.ndarray, n_replicas: int, seed: int) -> SpaceTimeResult | None:
    """Purely temporal Bernoulli scan of the city's daily cases (one location, Kulldorff et al. 1998)."""
    day = data.column("day")[active]
    T = data.n_days
    n = np.bincount(day, weights=data.column("attempts")[active], minlength=T)
    c = np.bincount(day, weights=data.column("cases")[active], minlength=T)
    if c.sum() < 2 or T < 2 or not n_replicas:
        return None
    counts = pd.DataFrame({"merchant_id": "(city)", "date": data.days, "latitude": 0.0, "longitude": 0.0,
                           "cases": c.round().astype(np.int64), "population": n.round().astype(np.int64)})
    return space_time_scan(counts[n > 0], model="bernoulli", max_population_share=1.0, n_replicas=n_replicas,
                           seed=seed, n_secondary=0)


def _burst_verdicts(data: _Data, active: np.ndarray, alpha: float, level: float, n_replicas: int,
                    seed: int) -> list[_Verdict]:
    """Shared faults behind significant city-wide bursts, localized inside their days when possible.

    Inside a burst the place and attribute detectors run again (at ``alpha``:
    the burst's own test already decided significance); the one- and
    two-merchant problems they find are set aside, and when nothing shared
    localizes the burst, the whole city is the candidate (``{"scope": "all"}``).
    Each burst's days are then left out and the next burst looked for, up to
    :data:`MAX_BURSTS`. Only days up to the last settled one take part: in the
    last days before ``as_of`` most credits are still inside their cycle, late
    and overdue credits cannot be seen yet, and the days before would look
    like a burst.
    """
    out = []
    residual = active & (data.column("day") <= data.last_settled)
    for k in range(MAX_BURSTS):
        result = _burst(data, residual, n_replicas, seed + 1000 + k)
        if result is None or not result.clusters or result.clusters[0].p_value > level:
            break
        c = result.clusters[0]
        window = (int((c.start - data.days[0]).days), int((c.end - data.days[0]).days))
        p = _adjusted(c.p_value)
        note = f"city-wide burst {c.start:%Y-%m-%d} to {c.end:%Y-%m-%d} (LLR {c.llr:.1f})"
        burst = _Finding(BURST, np.ones(len(data.cells), bool), p, {"scope": "all"}, window=window, note=note)
        inner = _window_verdicts(data, residual, alpha, level, n_replicas, seed + 2000 + k, burst,
                                 strong=c.relative_risk >= MIN_RELATIVE_RISK)
        shared = _accept(data, residual, inner, level)
        if not shared:
            lone = _set_aside(data, [v for v in inner if 0 < len(v.members) < data.min_merchants])
            shared = [v for v in [_judge(data, residual & ~lone, burst, level)] if v.shared]
        out += [replace(v, scan=result) for v in shared]
        residual &= ~_window_mask(data, window)
    return out


# =========================================================================== public API


def _is_lone(data: _Data, active: np.ndarray, v: _Verdict, level: float) -> bool:
    """A one- or two-merchant problem: too few excess merchants, and their excess beyond chance.

    Their cases of the verdict's cause are tested against the expectation with a
    one-sided Poisson test, Bonferroni-corrected over the merchants.
    """
    if not 0 < len(v.members) < data.min_merchants:
        return False
    c = data.column(v.cause)[v.inside].sum()
    e = _expected(data, active, v.cause, v.inside).sum()
    return e > 0 and poisson.sf(c - 1, e) * len(data.merchants) <= level


def _place_rounds(data: _Data, level: float, n_replicas: int, seed: int,
                  progress) -> tuple[list[_Verdict], np.ndarray]:
    """The spatial scan, after setting aside the one- and two-merchant circles.

    A loud single merchant (a misconfiguration, a frozen account) is the scan's
    most likely cluster, and secondary clusters may not overlap it: a shared
    fault around it would be hidden. Its cells (in its days) are set aside
    before the final scan, for up to :data:`MAX_ROUNDS` rounds; a round needs
    no replicas (a lone merchant's excess is tested on its own, see
    :func:`_is_lone`), only the final scan has them.
    """
    active = np.ones(len(data.cells), bool)
    for _ in range(MAX_ROUNDS):
        result = _spatial_scan(data, active, 0, seed)
        if result is None:
            break
        verdicts = [_judge(data, active, _circle(data, result, c), level) for c in result.clusters]
        shared = _set_aside(data, [v for v in verdicts if v.shared])
        lone = _set_aside(data, [v for v in verdicts if _is_lone(data, active, v, level)]) & active & ~shared
        progress.update()
        if not lone.any():
            break
        active &= ~lone
    return [_judge(data, active, f, level) for f in _scan_findings(data, active, level, n_replicas, seed)], active


def _to_fault(data: _Data, v: _Verdict, fault_id: str) -> SharedFault:
    """The public record of an accepted verdict."""
    start, last = data.days[v.window[0]].date(), data.days[v.window[1]].date()
    end = None if v.window[1] >= data.last_complete else last
    ids = tuple(sorted(data.merchants["merchant_id"].to_numpy()[v.members]))
    return SharedFault(
        fault_id=fault_id, cause=v.cause, merchant_ids=ids, start=start, end=end, observed=v.observed,
        expected=v.expected, relative_risk=v.relative_risk, p_value=v.p_value,
        attributes=dict(v.attributes), evidence=_evidence(v, len(ids), start, end), detected_by=v.detected_by,
        cause_counts=dict(v.cause_counts), last_day=last, scan=v.scan, localization=v.localization,
        daily=_daily(data, v),
    )


def _evidence(v: _Verdict, n_merchants: int, start: dt.date, end: dt.date | None) -> str:
    """One paragraph: who, when, how many, which detectors with their p-values, and their notes."""
    by_cause = ", ".join(f"{n} {k}" for k, n in v.cause_counts.items())
    best: dict[str, float] = {}
    for name, p in v.support:
        best[name] = min(p, best.get(name, 1.0))
    found = "; ".join(f"{name} (p = {p:.2g})" for name, p in best.items())
    return (
        f"{n_merchants} merchants ({_label(v.attributes)}) had {v.observed} incidents of fault causes "
        f"({by_cause}) vs {v.expected:.1f} expected, from {start} to {'now' if end is None else end} "
        f"(relative risk {v.relative_risk:.1f}). Found by {found}. " + "; ".join(v.notes) + "."
    )


def _daily(data: _Data, v: _Verdict) -> pd.DataFrame:
    """Per day: the fault's merchants in its cells (whole period) against the rest."""
    group = v.finding.group & np.isin(data.column("merchant"), v.members)
    day, T = data.column("day"), data.n_days
    c_in = np.bincount(day[group], weights=data.column("cases")[group], minlength=T)
    n_in = np.bincount(day[group], weights=data.column("attempts")[group], minlength=T)
    c_all = np.bincount(day, weights=data.column("cases"), minlength=T)
    n_all = np.bincount(day, weights=data.column("attempts"), minlength=T)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame({"date": data.days, "cases": c_in.astype(int), "attempts": n_in.astype(int),
                             "rate": c_in / n_in, "rest_rate": (c_all - c_in) / (n_all - n_in)})


def find_shared_faults(
    dataset,
    reconciled: pd.DataFrame,
    incidents: pd.DataFrame,
    *,
    clusters: MerchantClusters | None = None,
    alpha: float = 0.05,
    n_replicas: int = 999,
    seed: int = 0,
    min_merchants: int = 3,
    as_of: str | pd.Timestamp | None = None,
    progress: bool = False,
) -> list[SharedFault]:
    """Find the faults that several merchants share (place, network segment, firmware, bank, city).

    Parameters
    ----------
    dataset : analysis.io.Dataset
        The dataset (merchants, terminals and transactions are used).
    reconciled : pandas.DataFrame
        :func:`analysis.reconcile.reconcile`'s result (one row per transaction).
    incidents : pandas.DataFrame
        :func:`analysis.causes.classify`'s result (``txn_id, cause``).
    clusters : MerchantClusters, optional
        :func:`analysis.clusters.cluster_merchants` of the dataset (computed when omitted);
        its ``cluster_id`` is one of RiskLoc's dimensions.
    alpha : float, default 0.05
        Family-wise level over the three detectors (module docstring).
    n_replicas : int, default 999
        Monte Carlo replicas of the scans (999: p-values down to 0.001 before
        the detectors' adjustment); 0 turns the spatial and temporal scans off
        (only the attribute detectors run).
    seed : int, default 0
        Seed of the replicas; equal seeds give equal results.
    min_merchants : int, default 3
        Fewest merchants showing excess for a shared fault (contract: 3).
    as_of : str or Timestamp, optional
        Moment of analysis (default: the contract's default as-of); a fault is
        ongoing (``end`` None) when it runs to the last complete day before it.
    progress : bool, default False
        Show a progress bar over the detection rounds.

    Returns
    -------
    list of SharedFault
        In order of start (``SF001`` first); empty when no fault is shared.

    Raises
    ------
    ValueError
        When ``reconciled`` or ``incidents`` lack their columns, or an option is out of range.

    Notes
    -----
    Method, cause families, levels and limitations are in the module docstring.

    Examples
    --------
    >>> from analysis.simulate import CityConfig, UnstableLink, simulate_city  # doctest: +SKIP
    >>> from analysis.io import Dataset                                        # doctest: +SKIP
    >>> from analysis.reconcile import reconcile                               # doctest: +SKIP
    >>> from analysis.causes import classify                                   # doctest: +SKIP
    >>> city = simulate_city(CityConfig(seed=3, n_merchants=120, days=30,
    ...                                 faults=(UnstableLink(start="2026-03-12"),)))  # doctest: +SKIP
    >>> ds = Dataset(**city.tables)                                            # doctest: +SKIP
    >>> rec = reconcile(ds.transactions, ds.settlements, ds.merchants)          # doctest: +SKIP
    >>> [f.cause for f in find_shared_faults(ds, rec, classify(ds, rec))]       # doctest: +SKIP
    ['NETWORK_COMMUNICATION']
    """
    _require(reconciled, ("txn_id", "merchant_id", "terminal_id", "txn_type", "business_date"), "reconciled")
    moment = as_of if as_of is not None else (default_as_of(dataset) or reconciled["timestamp"].max())
    with frames_engine(reconciled=reconciled, transactions=dataset.transactions) as engine:
        return find_shared_faults_on(engine, dataset.merchants, dataset.terminals, incidents, as_of=moment,
                                     clusters=clusters, alpha=alpha, n_replicas=n_replicas, seed=seed,
                                     min_merchants=min_merchants, progress=progress)


def find_shared_faults_on(
    engine: Engine,
    merchants: pd.DataFrame,
    terminals: pd.DataFrame,
    incidents: pd.DataFrame,
    *,
    as_of,
    clusters: MerchantClusters | None = None,
    alpha: float = 0.05,
    n_replicas: int = 999,
    seed: int = 0,
    min_merchants: int = 3,
    progress: bool = False,
) -> list[SharedFault]:
    """:func:`find_shared_faults` of the data in an engine.

    The transactions are aggregated where they live (:func:`fault_cells_on`
    over the engine's ``reconciled``); only the cells come back.

    Parameters
    ----------
    engine : Engine
        With the table ``reconciled`` (one row per transaction, ``payee_bank`` included).
    merchants, terminals : DataFrame
        The contract's ``merchants`` and ``terminals`` tables (small: one row per shop or terminal).
    incidents : DataFrame
        ``txn_id, cause`` of the incidents (:func:`analysis.causes.classify`).
    as_of : time-like
        The moment of analysis.
    clusters, alpha, n_replicas, seed, min_merchants, progress
        As :func:`find_shared_faults`.

    Returns
    -------
    list of SharedFault

    Examples
    --------
    >>> from analysis.aggregates import frames_engine                              # doctest: +SKIP
    >>> with frames_engine(reconciled=rec, transactions=ds.transactions) as eng:   # doctest: +SKIP
    ...     faults = find_shared_faults_on(eng, ds.merchants, ds.terminals, incidents,
    ...                                    as_of="2026-04-30 18:00")               # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if min_merchants < 1:
        raise ValueError(f"min_merchants must be at least 1, got {min_merchants}")
    if n_replicas < 0:
        raise ValueError(f"n_replicas must be >= 0, got {n_replicas}")
    moment = to_local_time(as_of)
    raw = fault_cells_on(engine, incidents, as_of=moment)
    if not len(raw):
        return []
    clusters = clusters if clusters is not None else cluster_merchants(merchants, terminals)
    merchant_table = _merchant_table(merchants, clusters)
    _check_known(engine, raw, merchant_table)
    with engine.spilled(), tqdm(total=MAX_ROUNDS + 3, desc="shared faults", unit="step",
                                disable=not progress) as bar:
        data = replace(_build_data(raw, merchant_table, _terminal_table(terminals, raw["terminal_id"]), moment),
                       min_merchants=int(min_merchants))
        bar.update()
        found = _shared_verdicts(data, alpha, n_replicas, seed, bar)
        bar.update(bar.total - bar.n)
    found = sorted(found, key=lambda v: (v.window[0], -v.observed))
    return [_to_fault(data, v, f"SF{k + 1:03d}") for k, v in enumerate(found)]


def _shared_verdicts(data: _Data, alpha: float, n_replicas: int, seed: int, bar) -> list[_Verdict]:
    """The three detectors, the verdicts and the accepted shared faults (module docstring, 2-5)."""
    level = alpha / N_DETECTORS
    places, active = _place_rounds(data, level, n_replicas, seed, bar)
    attributes = [_judge(data, active, f, level) for f in _attribute_findings(data, active, level)]
    bar.update()
    found = _accept(data, active, [*places, *attributes], level)
    lone = [v for v in attributes if 0 < len(v.members) < data.min_merchants]
    residual = active & ~_set_aside(data, found) & ~_set_aside(data, lone)
    return found + _burst_verdicts(data, residual, alpha, level, n_replicas, seed)
