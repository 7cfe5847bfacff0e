"""The case report: the building blocks of ``notebooks/01_supermarket_case_study.ipynb``
and :func:`build_report`, which runs that notebook on any contract dataset and
writes one self-contained HTML file.

The notebook tells an investigation in the order an analyst works:

1. a merchant complains (the *focus* merchant: by default the one with the most
   tickets) — its incidents by cause (:func:`causes_table`);
2. its neighbours have the same problem (:func:`neighbours`, :func:`map_figure`);
3. several merchants reported on the same days (:func:`joint_reports`);
4. their terminals look healthy (:func:`terminal_check`, :func:`event_check`);
5. the scan statistic and the localization pin the problem on one attribute
   value, e.g. a network segment (:func:`scan_problem`, :func:`shared_clusters`,
   :func:`localize_problem`), and the link evidence dominates there
   (:func:`link_evidence`);
6. the verdict: the shared faults ``analyze`` found (:func:`faults_summary`,
   :func:`faults_figure`);
7. the fixes: their measured effect against control merchants beside a what-if
   prediction fitted on the days before each (:func:`interventions_table`,
   :func:`scope_rate_figure`, :func:`fix_sentences`, :func:`fix_comparison`,
   :func:`fix_figures`);
8. monitoring afterwards: is the problem back? (:func:`scope_chart`,
   :func:`monitoring_summary`, :func:`monitor_segments`);
9. the money still owed, with the next step (:func:`money_owed`).

The functions work from a :class:`CaseStudy` (the dataset, ``analyze``'s result
and the merchant-day panel of :mod:`analysis.metrics`) or from what an earlier
step returned; they read nothing from the ground truth and hard-code no number:
a different dataset gives a different story, or says plainly that there is none.

Figures use the object-oriented matplotlib API (``matplotlib.figure.Figure``)
and keep their text to codes and ids, because a CJK font is not assumed.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .contract import CAUSES, LINK_ERROR_EVENTS
from .exceptions import DatasetError

if TYPE_CHECKING:  # pragma: no cover
    from .clusters import MerchantClusters
    from .dashboards import FixLabData
    from .monitor import ControlChart
    from .io import Dataset
    from .localize import Localization
    from .pipeline import AnalysisResult
    from .scan import ScanResult

__all__ = [
    "BUNDLED_DATASET",
    "CASE_NOTEBOOK",
    "CaseStudy",
    "LOCALIZE_DIMS",
    "NOTEBOOK_DIR",
    "OWED_OUTCOMES",
    "ReportRun",
    "affected",
    "build_report",
    "causes_figure",
    "causes_table",
    "chart_figure",
    "complaints_summary",
    "event_check",
    "event_summary",
    "execute_notebook",
    "faults_figure",
    "faults_summary",
    "fault_window",
    "fix_comparison",
    "fix_figures",
    "fix_lab_data",
    "fix_sentences",
    "interventions_table",
    "joint_reports",
    "joint_summary",
    "link_evidence",
    "link_summary",
    "localization_figure",
    "localization_summary",
    "localize_problem",
    "map_figure",
    "merchant_rates",
    "money_owed",
    "money_owed_summary",
    "monitor_segments",
    "monitoring_summary",
    "neighbours",
    "neighbours_summary",
    "notebook_html",
    "problem_daily",
    "resolve_dataset_dir",
    "root_scope",
    "scan_figure",
    "scan_problem",
    "scope_chart",
    "scope_label",
    "scope_rate_figure",
    "shared_clusters",
    "terminal_check",
    "terminal_summary",
    "tickets_figure",
]

_ROOT = Path(__file__).resolve().parents[1]
#: The notebooks directory of the source tree.
NOTEBOOK_DIR = _ROOT / "notebooks"
#: The case-study notebook that :func:`build_report` runs.
CASE_NOTEBOOK = NOTEBOOK_DIR / "01_supermarket_case_study.ipynb"
#: The bundled reference case (simulated).
BUNDLED_DATASET = _ROOT / "data" / "case_study"

#: Outcomes whose money is still owed to someone (the merchant, the payee or the cardholder).
OWED_OUTCOMES = {
    "reversal_failed": "reversal never acknowledged: the card may be debited (单边账)",
    "not_cleared": "approved but never cleared: the merchant was not paid",
    "credit_overdue": "cleared, credit still pending past its cycle",
    "returned": "credit returned by the receiving bank",
}
#: Causes a problem is never about (a wait is not a fault).
_NOT_A_PROBLEM = ("PROCESSING_DELAY",)
#: Attributes the localization searches.
LOCALIZE_DIMS = ("network_segment", "model", "firmware", "connection", "cluster_id")
#: Events that say a terminal is alive and well (sign-in and end-of-day upload).
HEALTH_EVENTS = ("batch_upload_ok", "batch_upload_failed", "reboot")
#: Days of baseline the localization needs before a cluster's start.
_MIN_BASELINE_DAYS = 7


# =========================================================================== the case


def resolve_dataset_dir(path: str | Path | None = None, *, base: str | Path = NOTEBOOK_DIR) -> Path:
    """The dataset directory a notebook parameter names, whatever the working directory.

    Parameters
    ----------
    path : str or Path, optional
        ``None`` for the bundled reference case; an absolute path; or a path
        relative to the working directory or, failing that, to ``base`` (the
        notebooks directory, so ``"../data/case_study"`` works from anywhere).
    base : str or Path
        Where a relative path is tried second.

    Raises
    ------
    DatasetError
        When no such directory exists.

    Examples
    --------
    >>> resolve_dataset_dir("../data/case_study") == BUNDLED_DATASET
    True
    """
    if path is None or str(path).strip() == "":
        candidates = [BUNDLED_DATASET]
    else:
        p = Path(path).expanduser()
        candidates = [p] if p.is_absolute() else [Path.cwd() / p, Path(base) / p]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    raise DatasetError(
        f"the dataset directory {path} was not found (tried {', '.join(map(str, candidates))}); "
        "pass an existing directory with the contract's tables, or None for the bundled case",
        file=str(path),
    )


@dataclass(frozen=True)
class CaseStudy:
    """One investigation: the dataset, its analysis, its merchant-day panel and the focus.

    Attributes
    ----------
    dataset : Dataset
    result : AnalysisResult
    panel : pandas.DataFrame
        :func:`analysis.metrics.daily_panel` (merchant × business day).
    clusters : MerchantClusters
        Spatial clusters plus each merchant's dominant infrastructure.
    focus : str
        The merchant whose complaints start the story.
    problem : str
        The cause code the story follows: the most common cause of the focus
        merchant's tickets (of its incidents where it has none), a wait
        (``PROCESSING_DELAY``) excluded.
    """

    dataset: "Dataset"
    result: "AnalysisResult"
    panel: pd.DataFrame
    clusters: "MerchantClusters"
    focus: str
    problem: str

    @classmethod
    def load(
        cls,
        dataset_dir: str | Path | None = None,
        *,
        focus: str | None = None,
        problem: str | None = None,
        as_of: str | None = None,
    ) -> "CaseStudy":
        """Load, validate and analyse a dataset and pick the focus merchant and the problem.

        Parameters
        ----------
        dataset_dir : str or Path, optional
            See :func:`resolve_dataset_dir` (None: the bundled case).
        focus : str, optional
            A merchant id; default the merchant with the most tickets (most
            incidents where there are no tickets).
        problem : str, optional
            A cause code; default as described in the class docstring.
        as_of : str, optional
            Moment of analysis (default: the latest time in the data).
        """
        from .clusters import cluster_merchants
        from .io import load_dataset
        from .metrics import daily_panel
        from .pipeline import analyze

        ds = load_dataset(resolve_dataset_dir(dataset_dir))
        result = analyze(ds, as_of=as_of)
        panel = daily_panel(result.reconciled, ds.terminals, ds.terminal_events, as_of=result.as_of)
        clusters = cluster_merchants(ds.merchants, ds.terminals)
        focus = str(focus) if focus else _default_focus(ds, result)
        if focus not in set(ds.merchants["merchant_id"]):
            raise DatasetError(
                f"the focus merchant {focus} is not in the merchants table; "
                "pass one of its merchant_id values or None",
                column="merchant_id",
            )
        problem = problem or _default_problem(ds, result, focus)
        return cls(ds, result, panel, clusters, focus, problem)

    # ------------------------------------------------------------- small lookups

    @property
    def merchants(self) -> pd.DataFrame:
        """Merchants indexed by id, with their cluster and dominant infrastructure."""
        infra = self.clusters.assignments.set_index("merchant_id")
        m = self.dataset.merchants.set_index("merchant_id")
        cols = ["cluster_id", "network_segment", "model", "firmware", "connection"]
        return m.join(infra[cols])

    def name(self, merchant_id: str) -> str:
        """``name (merchant_id)``."""
        m = self.dataset.merchants.set_index("merchant_id")
        return (
            f"{m.at[merchant_id, 'name']} ({merchant_id})"
            if merchant_id in m.index
            else merchant_id
        )

    @property
    def problem_label(self) -> str:
        """``CODE 中文 (English)`` of the problem cause."""
        c = CAUSES.get(self.problem)
        return f"{self.problem} {c.zh} ({c.en.lower()})" if c else self.problem

    @property
    def attempts(self) -> pd.Series:
        """Purchase and transfer attempts per merchant over the whole period."""
        return self.panel.groupby("merchant_id")["attempts"].sum()

    @property
    def tickets(self) -> pd.DataFrame:
        """Complaints joined with their matched transaction and cause (empty without complaints)."""
        c = self.dataset.complaints
        if c is None or not len(c):
            return pd.DataFrame(
                {
                    **{
                        k: pd.Series(dtype=object)
                        for k in ("ticket_id", "merchant_id", "kind", "txn_id", "cause")
                    },
                    "opened_at": pd.Series(dtype="datetime64[us, Asia/Shanghai]"),
                    "date": pd.Series(dtype="datetime64[us]"),
                }
            )
        t = c.merge(
            self.result.tickets[["ticket_id", "txn_id", "cause"]], on="ticket_id", how="left"
        )
        return t.assign(date=t["opened_at"].dt.tz_localize(None).dt.normalize())

    def overview(self) -> str:
        """What was read and found, in a few lines."""
        ds, r = self.dataset, self.result
        days = self.panel["business_date"]
        lines = [
            f"Period: {days.min():%Y-%m-%d} to {days.max():%Y-%m-%d} "
            f"(as of {r.as_of:%Y-%m-%d %H:%M})",
            f"Merchants: {len(ds.merchants):,}; terminals: {len(ds.terminals):,}; "
            f"transactions: {len(ds.transactions):,} "
            f"({int(self.panel['attempts'].sum()):,} purchase "
            "and transfer attempts)",
            f"Incidents (money did not arrive as it should): {len(r.incidents):,}; "
            f"tickets: {len(r.tickets):,}; rows rejected by the loader: {len(ds.rejected):,}",
        ]
        lines += [f"Note: {n}" for n in ds.notes]
        return "\n".join(lines)


def _default_focus(ds: "Dataset", result: "AnalysisResult") -> str:
    if ds.complaints is not None and len(ds.complaints):
        counts = ds.complaints["merchant_id"].value_counts()
    else:
        counts = result.incidents["merchant_id"].value_counts()
    if counts.empty:
        return str(ds.merchants["merchant_id"].sort_values().iloc[0])
    top = counts[counts == counts.max()].index
    return str(sorted(top)[0])


def _default_problem(ds: "Dataset", result: "AnalysisResult", focus: str) -> str:
    causes = pd.Series(dtype=object)
    if ds.complaints is not None and len(ds.complaints):
        mine = ds.complaints.loc[ds.complaints["merchant_id"] == focus, "ticket_id"]
        causes = result.tickets.loc[result.tickets["ticket_id"].isin(mine), "cause"]
    causes = causes[~causes.isin(_NOT_A_PROBLEM)].dropna()
    if causes.empty:
        inc = result.incidents
        causes = inc.loc[
            (inc["merchant_id"] == focus) & ~inc["cause"].isin(_NOT_A_PROBLEM), "cause"
        ]
    if causes.empty:
        return "UNKNOWN"
    counts = causes.value_counts()
    return str(sorted(counts[counts == counts.max()].index)[0])


# =========================================================================== 1. the complaint


def complaints_summary(case: CaseStudy) -> str:
    """The focus merchant's tickets in words: how many, which kinds, when, and their causes."""
    t = case.tickets
    mine = t[t["merchant_id"] == case.focus]
    m = case.merchants.loc[case.focus]
    head = f"{case.name(case.focus)}, MCC {m['mcc']}, network segment {m['network_segment']}"
    if mine.empty:
        return f"{head}: no tickets (the focus was chosen by incidents)."
    kinds = mine["kind"].value_counts()
    kind_words = {
        "unsettled": "刷卡未到账 (card paid, money not arrived)",
        "transfer_failed": "转账失败 (transfer failed)",
    }
    causes = mine["cause"].value_counts()
    lines = [
        f"{head}: {len(mine)} tickets from {mine['date'].min():%Y-%m-%d} "
        f"to {mine['date'].max():%Y-%m-%d} "
        f"(rank 1 of {t['merchant_id'].nunique()} merchants with tickets)",
        *[f"  {n:>4} {kind_words.get(k, k)}" for k, n in kinds.items()],
        f"  {int(mine['txn_id'].notna().sum())} match a transaction; causes of the matched ones:",
        *[f"  {n:>4} {c} {CAUSES[c].zh if c in CAUSES else ''}" for c, n in causes.items()],
        f"The problem followed below: {case.problem_label}.",
    ]
    return "\n".join(lines)


def causes_table(case: CaseStudy, merchant_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Incidents and tickets by cause for some merchants (default: the focus merchant).

    Returns
    -------
    pandas.DataFrame
        ``cause, 中文, incidents, share`` (0–1, rounded to 3 places) ``, tickets``,
        most incidents first.
    """
    ids = [case.focus] if merchant_ids is None else list(merchant_ids)
    inc = case.result.incidents
    inc = inc[inc["merchant_id"].isin(ids)]
    t = case.tickets
    t = t[t["merchant_id"].isin(ids)]
    counts = inc["cause"].value_counts()
    table = pd.DataFrame(
        {
            "cause": counts.index,
            "中文": [CAUSES[c].zh if c in CAUSES else "" for c in counts.index],
            "incidents": counts.to_numpy(),
            "share": (counts / max(counts.sum(), 1)).round(3).to_numpy(),
            "tickets": t["cause"].value_counts().reindex(counts.index, fill_value=0).to_numpy(),
        }
    )
    return table.reset_index(drop=True)


def causes_figure(case: CaseStudy, merchant_ids: Sequence[str] | None = None) -> Figure:
    """Incidents per week by cause (bars) and tickets per week (line) for some merchants."""
    ids = [case.focus] if merchant_ids is None else list(merchant_ids)
    inc = case.result.incidents
    inc = inc[inc["merchant_id"].isin(ids)]
    t = case.tickets
    t = t[t["merchant_id"].isin(ids)]
    week = lambda s: pd.to_datetime(s).dt.to_period("W-SUN").dt.start_time  # noqa: E731
    counts = inc.groupby([week(inc["business_date"]), "cause"]).size().unstack(fill_value=0)
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    ax = fig.subplots()
    if counts.empty:
        ax.text(0.5, 0.5, "no incidents", ha="center", transform=ax.transAxes)
    else:
        order = counts.sum().sort_values(ascending=False).index
        counts = counts[order]
        bottom = np.zeros(len(counts))
        for cause in order:
            ax.bar(counts.index, counts[cause], bottom=bottom, width=5, align="edge", label=cause)
            bottom += counts[cause].to_numpy()
    tickets = t.groupby(week(t["date"])).size() if len(t) else pd.Series(dtype=float)
    if len(tickets):
        ax.plot(
            tickets.index + pd.Timedelta(days=2.5),
            tickets.to_numpy(),
            "k-o",
            lw=1.5,
            label="tickets opened",
        )
    who = f"merchant {case.focus}" if len(ids) == 1 else f"{len(ids)} merchants"
    ax.set_title(f"Incidents per week by cause, and tickets opened: {who}")
    ax.set_xlabel("week (starting Monday)")
    ax.set_ylabel("incidents / tickets per week")
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    return fig


# =========================================================================== 2. the neighbours


def problem_daily(case: CaseStudy) -> pd.DataFrame:
    """Per merchant and business day: ``merchant_id, date, cases`` (problem incidents)
    ``, population``
    (purchase and transfer attempts); days without attempts left out."""
    inc = case.result.incidents
    cases = (
        inc[inc["cause"] == case.problem]
        .groupby(["merchant_id", "business_date"])
        .size()
        .rename("cases")
    )
    pop = case.panel.set_index(["merchant_id", "business_date"])["attempts"].rename("population")
    daily = pd.concat([pop, cases], axis=1).fillna(0).astype("int64").reset_index()
    daily = daily.rename(columns={"business_date": "date"})
    return daily[daily["population"] > 0].reset_index(drop=True)


def merchant_rates(case: CaseStudy) -> pd.DataFrame:
    """Per merchant: attempts, problem incidents and their rate, distance to the focus, tests.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``merchant_id``: ``name, cluster_id, network_segment, latitude,
        longitude, distance_m, attempts, cases, rate`` (0–1) and ``p_value``: a
        one-sided binomial test of ``cases`` against the rate of all merchants.
    """
    from scipy.stats import binom

    from .clusters import haversine_m

    daily = problem_daily(case)
    per = (
        daily.groupby("merchant_id")[["population", "cases"]]
        .sum()
        .rename(columns={"population": "attempts"})
    )
    m = case.merchants.join(per, how="left").fillna({"attempts": 0, "cases": 0})
    m[["attempts", "cases"]] = m[["attempts", "cases"]].astype("int64")
    total = m["attempts"].sum()
    p0 = m["cases"].sum() / total if total else 0.0
    m["rate"] = np.where(
        m["attempts"] > 0, m["cases"] / m["attempts"].where(m["attempts"] > 0), np.nan
    )
    m["p_value"] = binom.sf(m["cases"] - 1, m["attempts"], p0) if p0 > 0 else 1.0
    f = m.loc[case.focus]
    m["distance_m"] = haversine_m(f["latitude"], f["longitude"], m["latitude"], m["longitude"])
    cols = [
        "name",
        "cluster_id",
        "network_segment",
        "latitude",
        "longitude",
        "distance_m",
        "attempts",
        "cases",
        "rate",
        "p_value",
    ]
    return m[cols]


def neighbours(case: CaseStudy, radius_m: float = 400.0, alpha: float = 0.01) -> pd.DataFrame:
    """The focus merchant and the merchants within ``radius_m``, nearest first.

    ``elevated`` marks a problem rate above the city's beyond chance: one-sided
    binomial p-value below ``alpha`` divided by the number of merchants tested
    (Bonferroni).

    Returns
    -------
    pandas.DataFrame
        ``merchant_id, name, network_segment, distance_m, attempts, cases,
        rate_pct`` (percent, 2 decimals) ``, p_value, elevated``.
    """
    m = merchant_rates(case)
    near = m[m["distance_m"] <= radius_m].sort_values(["distance_m"]).copy()
    near["elevated"] = near["p_value"] < alpha / max(len(near), 1)
    out = near.reset_index()
    out["distance_m"] = out["distance_m"].round(0).astype("int64")
    out["rate_pct"] = (100 * out["rate"]).round(2)
    out["p_value"] = out["p_value"].map(lambda p: float(f"{p:.2g}"))
    return out[
        [
            "merchant_id",
            "name",
            "network_segment",
            "distance_m",
            "attempts",
            "cases",
            "rate_pct",
            "p_value",
            "elevated",
        ]
    ]


def affected(near: pd.DataFrame, focus: str) -> list[str]:
    """The focus merchant and its elevated neighbours (from :func:`neighbours`)."""
    ids = near.loc[near["elevated"], "merchant_id"].tolist()
    return [focus] + [i for i in ids if i != focus]


def neighbours_summary(case: CaseStudy, near: pd.DataFrame, radius_m: float) -> str:
    """How many neighbours share the focus merchant's problem, and on which network segments."""
    rates = merchant_rates(case)
    city = rates["cases"].sum() / max(rates["attempts"].sum(), 1)
    others = near[near["merchant_id"] != case.focus]
    hit = others[others["elevated"]]
    segs = hit["network_segment"].value_counts()
    seg_words = ", ".join(f"{s} ({n})" for s, n in segs.items()) or "none"
    return (
        f"{len(hit)} of {len(others)} merchants within {radius_m:g} m of the focus "
        f"have a {case.problem} "
        f"rate above the rate of all merchants ({100 * city:.3f}% of attempts) beyond chance; "
        f"their network segments: {seg_words}. The focus merchant's own rate: "
        f"{near.loc[near['merchant_id'] == case.focus, 'rate_pct'].iloc[0]:.2f}%."
    )


def _hull(ax, lon: np.ndarray, lat: np.ndarray, **kw: Any) -> None:
    from scipy.spatial import ConvexHull, QhullError

    pts = np.unique(np.column_stack([lon, lat]), axis=0)
    if len(pts) < 3:
        return
    try:
        ring = pts[ConvexHull(pts).vertices]
    except (QhullError, ValueError):
        return
    ring = np.vstack([ring, ring[:1]])
    ax.plot(ring[:, 0], ring[:, 1], **kw)


def map_figure(case: CaseStudy, group: Sequence[str], radius_m: float = 400.0) -> Figure:
    """Merchants coloured by their problem rate: the whole area with the spatial clusters
    outlined (left) and the focus merchant's neighbourhood with ``group`` outlined (right)."""
    m = merchant_rates(case)
    fig = Figure(figsize=(13, 5.8), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    case.clusters.plot(ax1, rates=m["rate"])
    ax1.set_title(
        f"All merchants: rate of {case.problem} incidents (0-1); outlines = spatial clusters",
        fontsize=9,
    )
    f = m.loc[case.focus]
    lat0 = np.radians(f["latitude"])
    dlat = 2.5 * radius_m / 111_195.0
    dlon = dlat / max(np.cos(lat0), 1e-6)
    box = m[
        (m["latitude"] - f["latitude"]).abs().le(dlat)
        & (m["longitude"] - f["longitude"]).abs().le(dlon)
    ]
    sc = ax2.scatter(
        box["longitude"],
        box["latitude"],
        c=100 * box["rate"],
        cmap="viridis",
        s=40,
        edgecolors="k",
        linewidths=0.3,
        zorder=3,
        label="merchant (colour = rate)",
    )
    fig.colorbar(sc, ax=ax2, label=f"{case.problem} incidents (% of attempts)")
    g = m.loc[[i for i in group if i in m.index]]
    _hull(
        ax2,
        g["longitude"].to_numpy(),
        g["latitude"].to_numpy(),
        color="tab:red",
        lw=2,
        ls="--",
        zorder=2,
        label=f"same problem ({len(g)} merchants)",
    )
    ax2.scatter(
        [f["longitude"]],
        [f["latitude"]],
        marker="*",
        s=320,
        color="tab:red",
        edgecolors="k",
        zorder=4,
        label=f"focus {case.focus}",
    )
    circle = np.linspace(0, 2 * np.pi, 100)
    r_lat = radius_m / 111_195.0
    ax2.plot(
        f["longitude"] + r_lat / np.cos(lat0) * np.cos(circle),
        f["latitude"] + r_lat * np.sin(circle),
        color="0.5",
        lw=0.8,
        ls=":",
        label=f"{radius_m:g} m around the focus",
    )
    ax2.set_aspect(1.0 / max(np.cos(lat0), 1e-6), adjustable="datalim")
    ax2.set_xlabel("longitude (°E)")
    ax2.set_ylabel("latitude (°N)")
    ax2.set_title("Neighbourhood of the focus merchant", fontsize=9)
    ax2.legend(fontsize=7, loc="lower left")
    return fig


# =========================================================================== 3. the joint report


def joint_reports(case: CaseStudy, merchant_ids: Sequence[str]) -> pd.DataFrame:
    """Days on which at least two of ``merchant_ids`` opened tickets.

    Returns
    -------
    pandas.DataFrame
        ``date, merchants, tickets, merchant_ids`` (space-separated), by date.
    """
    t = case.tickets
    t = t[t["merchant_id"].isin(list(merchant_ids))]
    per_day = t.groupby("date").agg(
        merchants=("merchant_id", "nunique"),
        tickets=("ticket_id", "size"),
        merchant_ids=("merchant_id", lambda s: " ".join(sorted(set(s)))),
    )
    out = per_day[per_day["merchants"] >= 2].reset_index()
    out["date"] = out["date"].dt.strftime("%Y-%m-%d")
    return out


def joint_summary(joint: pd.DataFrame, merchant_ids: Sequence[str]) -> str:
    """The joint report in words: on how many days several merchants complained together."""
    if joint.empty:
        return f"No day on which two or more of these {len(merchant_ids)} merchants opened tickets."
    three = joint[joint["merchants"] >= 3]
    words = (
        f"; on {len(three)} days three or more did, first on {three['date'].iloc[0]}"
        if len(three)
        else "; never three or more on one day"
    )
    return (
        f"On {len(joint)} days two or more of these {len(merchant_ids)} merchants opened tickets, "
        f"{int(joint['tickets'].sum())} tickets in all, from {joint['date'].iloc[0]} to "
        f"{joint['date'].iloc[-1]}{words}."
    )


def tickets_figure(case: CaseStudy, merchant_ids: Sequence[str]) -> Figure:
    """Tickets per day from each of ``merchant_ids`` (stacked), and how many merchants reported."""
    t = case.tickets
    t = t[t["merchant_id"].isin(list(merchant_ids))]
    days = case.panel["business_date"]
    index = pd.date_range(days.min(), days.max(), freq="D")
    counts = (
        t.groupby(["date", "merchant_id"]).size().unstack(fill_value=0).reindex(index, fill_value=0)
    )
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.subplots()
    bottom = np.zeros(len(index))
    for mid in counts.columns:
        ax.bar(index, counts[mid], bottom=bottom, width=0.9, label=mid)
        bottom += counts[mid].to_numpy()
    reporting = (counts > 0).sum(axis=1)
    ax.plot(
        index[reporting > 0], reporting[reporting > 0], "k.", label="merchants reporting that day"
    )
    ax.set_title(f"Tickets per day from {len(merchant_ids)} merchants with the same problem")
    ax.set_xlabel("date opened")
    ax.set_ylabel("tickets per day")
    ax.legend(
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        title="merchant_id",
        title_fontsize=7,
    )
    return fig


# =========================================================================== 4. the terminal check


def terminal_check(case: CaseStudy, merchant_ids: Sequence[str]) -> pd.DataFrame:
    """Terminal models, firmware and connections of ``merchant_ids``, and how the same value
    fares at the other merchants.

    A faulty model or firmware shows up elsewhere too; a value that is fine
    elsewhere does not explain the group's problem.

    Returns
    -------
    pandas.DataFrame
        ``attribute, value, terminals_in_group, merchants_elsewhere,
        rate_elsewhere_pct`` (problem incidents per 100 attempts at the other
        merchants whose dominant terminal has this value) ``, city_rate_pct``.
    """
    ids = set(merchant_ids)
    rates = merchant_rates(case)
    city = rates["cases"].sum() / max(rates["attempts"].sum(), 1)
    term = case.dataset.terminals
    mine = term[term["merchant_id"].isin(ids)]
    others = case.merchants[~case.merchants.index.isin(ids)].join(rates[["attempts", "cases"]])
    rows = []
    for attribute in ("model", "firmware", "connection"):
        for value, n in mine[attribute].value_counts().sort_index().items():
            same = others[others[attribute] == value]
            att = same["attempts"].sum()
            rows.append(
                {
                    "attribute": attribute,
                    "value": value,
                    "terminals_in_group": int(n),
                    "merchants_elsewhere": len(same),
                    "rate_elsewhere_pct": round(100 * same["cases"].sum() / att, 3)
                    if att
                    else np.nan,
                    "city_rate_pct": round(100 * city, 3),
                }
            )
    return pd.DataFrame(rows)


def event_check(case: CaseStudy, merchant_ids: Sequence[str]) -> pd.DataFrame:
    """Communication-log events per terminal and day: the group against the other terminals.

    Returns
    -------
    pandas.DataFrame
        ``event, kind`` (``health`` or ``link error``) ``, per_terminal_day_group,
        per_terminal_day_elsewhere, ratio``; empty without a terminal_events table.
    """
    ev = case.dataset.terminal_events
    if ev is None:
        return pd.DataFrame(
            columns=[
                "event",
                "kind",
                "per_terminal_day_group",
                "per_terminal_day_elsewhere",
                "ratio",
            ]
        )
    term = case.dataset.terminals
    in_group = term["merchant_id"].isin(set(merchant_ids))
    n_days = case.panel["business_date"].nunique()
    terminals = {True: int(in_group.sum()) * n_days, False: int((~in_group).sum()) * n_days}
    owner_in = (
        ev["terminal_id"].map(term.set_index("terminal_id")["merchant_id"]).isin(set(merchant_ids))
    )
    counts = ev.groupby([ev["event"], owner_in.rename("group")]).size().unstack(fill_value=0)
    counts = counts.reindex(columns=[True, False], fill_value=0)
    events = [e for e in (*HEALTH_EVENTS, *LINK_ERROR_EVENTS) if e in counts.index]
    out = pd.DataFrame(
        {
            "event": events,
            "kind": ["health" if e in HEALTH_EVENTS else "link error" for e in events],
            "per_terminal_day_group": [
                counts.at[e, True] / max(terminals[True], 1) for e in events
            ],
            "per_terminal_day_elsewhere": [
                counts.at[e, False] / max(terminals[False], 1) for e in events
            ],
        }
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        out["ratio"] = out["per_terminal_day_group"] / out["per_terminal_day_elsewhere"]
    return out.round({"per_terminal_day_group": 4, "per_terminal_day_elsewhere": 4, "ratio": 1})


def terminal_summary(check: pd.DataFrame) -> str:
    """Whether a terminal model, firmware or connection could explain the problem."""
    if check.empty:
        return "No terminals in the group."
    worst = (
        check.loc[check["rate_elsewhere_pct"].idxmax()]
        if check["rate_elsewhere_pct"].notna().any()
        else None
    )
    city = check["city_rate_pct"].iloc[0]
    if worst is None:
        return "The group's terminal models, firmware and connections are used nowhere else."
    verdict = (
        "no terminal attribute explains the problem"
        if worst["rate_elsewhere_pct"] <= 2 * city
        else f"{worst['attribute']}={worst['value']} is worth a closer look"
    )
    return (
        f"Every model, firmware and connection of the group is also used by other merchants; "
        f"there the highest problem rate is {worst['rate_elsewhere_pct']:.3f}% "
        f"({worst['attribute']}={worst['value']}) against {city:.3f}% for all merchants: {verdict}."
    )


def event_summary(events: pd.DataFrame) -> str:
    """Health events against link errors, group versus elsewhere, in words."""
    if events.empty:
        return "No terminal_events table: the terminals' health and link errors cannot be checked."
    lines = []
    for kind in ("health", "link error"):
        part = events[events["kind"] == kind]
        lines.append(
            f"{kind}: "
            + "; ".join(
                f"{r.event} {r.per_terminal_day_group:.3f} vs {r.per_terminal_day_elsewhere:.3f}"
                for r in part.itertuples()
            )
            + " per terminal-day (group vs elsewhere)"
        )
    return "\n".join(lines)


# ====================================================================== 5. the deeper investigation


def scan_problem(
    case: CaseStudy,
    *,
    space_time: bool = False,
    n_replicas: int = 999,
    seed: int = 1,
    max_population_share: float = 0.5,
) -> "ScanResult":
    """Kulldorff's scan (Bernoulli: problem incidents among attempts) over the merchants.

    Parameters
    ----------
    space_time : bool
        False: the purely spatial scan over the whole period (where);
        True: the space-time scan of cylinders (where and when).
    n_replicas, seed, max_population_share
        Passed to :func:`analysis.scan.spatial_scan` / :func:`~analysis.scan.space_time_scan`.
    """
    from .scan import space_time_scan, spatial_scan

    daily = problem_daily(case)
    locations = case.dataset.merchants[["merchant_id", "latitude", "longitude"]]
    opts = dict(
        model="bernoulli",
        n_replicas=n_replicas,
        seed=seed,
        max_population_share=max_population_share,
    )
    if space_time:
        return space_time_scan(daily, locations=locations, **opts)
    per = daily.groupby("merchant_id")[["cases", "population"]].sum().reset_index()
    return spatial_scan(per.merge(locations, on="merchant_id"), **opts)


def shared_clusters(
    scan: "ScanResult", *, min_merchants: int = 3, alpha: float = 0.05
) -> pd.DataFrame:
    """The scan's clusters that could be a shared fault: at least ``min_merchants`` merchants
    (the contract's definition) and a p-value below ``alpha``."""
    frame = scan.to_frame()
    if frame.empty:
        return frame
    keep = (frame["n_locations"] >= min_merchants) & (frame["p_value"] < alpha)
    cols = [
        c
        for c in (
            "rank",
            "centre_id",
            "n_locations",
            "radius_km",
            "start",
            "end",
            "cases",
            "expected",
            "relative_risk",
            "p_value",
            "member_ids",
        )
        if c in frame
    ]
    out = frame.loc[keep, cols].reset_index(drop=True)
    for c in ("start", "end"):
        if c in out:
            out[c] = pd.to_datetime(out[c]).dt.strftime("%Y-%m-%d")
    return out.round({"radius_km": 3, "expected": 2, "relative_risk": 2})


def scan_figure(scan: "ScanResult") -> Figure:
    """The scan's map (:meth:`analysis.scan.ScanResult.plot`) on its own figure."""
    fig = Figure(figsize=(8, 6.5), layout="constrained")
    scan.plot(fig.subplots())
    return fig


Window = tuple[pd.Timestamp, pd.Timestamp]


def fault_window(shared: pd.DataFrame) -> Window | None:
    """First and last day of the strongest shared cluster of a space-time scan (None when
    there is none)."""
    if shared.empty or "start" not in shared:
        return None
    return pd.Timestamp(shared["start"].iloc[0]), pd.Timestamp(shared["end"].iloc[0])


def _leaves(case: CaseStudy, start: pd.Timestamp, end: pd.Timestamp, inside: bool) -> pd.DataFrame:
    daily = problem_daily(case)
    days = daily["date"]
    mask = days.between(start, end) if inside else ~days.between(start, end)
    attrs = case.merchants[list(LOCALIZE_DIMS)].astype("string").fillna("(missing)")
    d = daily[mask].join(attrs, on="merchant_id")
    return (
        d.groupby(list(LOCALIZE_DIMS), observed=True)[["cases", "population"]]
        .sum()
        .rename(columns={"cases": "incidents", "population": "transactions"})
        .reset_index()
    )


def localize_problem(case: CaseStudy, window: Window | None) -> "Localization | None":
    """RiskLoc over network segment, model, firmware, connection and cluster: which attribute
    values explain the excess of problem incidents in ``window`` (first and last day)?

    The expected incidents come from the days before the window (all other days
    when there are fewer than a week of them), shrunk by empirical Bayes
    (:func:`analysis.localize.expected_from_baseline`). None without a window.
    """
    from .localize import expected_from_baseline, localize

    if window is None:
        return None
    start, end = pd.Timestamp(window[0]), pd.Timestamp(window[1])
    days = problem_daily(case)["date"]
    before = days[days < start].nunique()
    current = _leaves(case, start, end, inside=True)
    if before >= _MIN_BASELINE_DAYS:
        baseline = _leaves(case, days.min(), start - pd.Timedelta(days=1), inside=True)
    else:
        baseline = _leaves(case, start, end, inside=False)
    leaves = expected_from_baseline(current, baseline, list(LOCALIZE_DIMS))
    return localize(leaves, list(LOCALIZE_DIMS))


def localization_summary(loc: "Localization | None") -> str:
    """The localization's summary, or why there is none."""
    if loc is None:
        return "No shared cluster in space and time: nothing to localize."
    return loc.summary()


def localization_figure(loc: "Localization | None") -> Figure | None:
    """The localization's bar chart on its own figure (None without a localization)."""
    if loc is None:
        return None
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    loc.plot(fig.subplots())
    return fig


def root_scope(loc: "Localization | None") -> dict[str, str]:
    """The attributes of the first root cause (``{}`` when there is none)."""
    if loc is None or loc.root_causes.empty:
        return {}
    return dict(loc.root_causes.iloc[0]["attributes"])


def _in_scope(case: CaseStudy, attributes: Mapping[str, str]) -> pd.Series:
    m = case.merchants
    keep = pd.Series(True, index=m.index)
    for k, v in attributes.items():
        keep &= m[k].astype("string") == str(v)
    return keep


def link_evidence(
    case: CaseStudy, attributes: Mapping[str, str], window: Window | None
) -> pd.DataFrame:
    """Link evidence in a scope (e.g. ``{"network_segment": "CT-PD-0231"}``) against the rest,
    over ``window`` (first and last day): incidents by cause, reversals and link-error events.

    Returns
    -------
    pandas.DataFrame
        ``measure, in_scope, elsewhere``: the attempts, then counts per 100
        attempts so groups of any size compare; empty without a scope or window.
    """
    if not attributes or window is None:
        return pd.DataFrame(columns=["measure", "in_scope", "elsewhere"])
    start, end = pd.Timestamp(window[0]), pd.Timestamp(window[1])
    scope = _in_scope(case, attributes)
    ids = set(scope[scope].index)
    inc = case.result.incidents
    inc = inc[inc["business_date"].between(start, end)]
    panel = case.panel[case.panel["business_date"].between(start, end)]
    inside = panel["merchant_id"].isin(ids)
    attempts = {
        True: panel.loc[inside, "attempts"].sum(),
        False: panel.loc[~inside, "attempts"].sum(),
    }
    where = inc["merchant_id"].isin(ids)
    ev = case.dataset.terminal_events
    if ev is not None:
        owner = case.dataset.terminals.set_index("terminal_id")["merchant_id"]
        day = ev["timestamp"].dt.tz_localize(None).dt.normalize()
        ev = ev[day.between(start, end)]
        ev_in = ev["terminal_id"].map(owner).isin(ids)

    def per100(n_in: float, n_out: float) -> tuple[float, float]:
        return (
            round(100 * n_in / attempts[True], 3) if attempts[True] else np.nan,
            round(100 * n_out / attempts[False], 3) if attempts[False] else np.nan,
        )

    rows: list[tuple[str, Any, Any]] = [("attempts", int(attempts[True]), int(attempts[False]))]
    rows.append(("incidents per 100 attempts", *per100(where.sum(), (~where).sum())))
    for cause in inc.loc[where, "cause"].value_counts().index[:5]:
        is_c = inc["cause"] == cause
        rows.append((f"  {cause} per 100", *per100((where & is_c).sum(), (~where & is_c).sum())))
    for reason, words in (
        ("98", "reversal 98 (no response in time)"),
        ("A0", "reversal A0 (MAC check failed)"),
    ):
        is_r = inc["reversal_reason"].astype("string") == reason
        rows.append((f"{words} per 100", *per100((where & is_r).sum(), (~where & is_r).sum())))
    failed = inc["outcome"] == "reversal_failed"
    rows.append(
        (
            "failed reversals (单边账 risk) per 100",
            *per100((where & failed).sum(), (~where & failed).sum()),
        )
    )
    if ev is not None:
        for e in (*LINK_ERROR_EVENTS, "batch_upload_failed"):
            is_e = ev["event"] == e
            rows.append(
                (f"event {e} per 100", *per100((ev_in & is_e).sum(), (~ev_in & is_e).sum()))
            )
    return pd.DataFrame(rows, columns=["measure", "in_scope", "elsewhere"]).astype(object)


def link_summary(evidence: pd.DataFrame, attributes: Mapping[str, str]) -> str:
    """The strongest contrasts of :func:`link_evidence` in words."""
    if evidence.empty:
        return "No localized scope: no link evidence to compare."
    rates = evidence.iloc[1:].astype({"in_scope": float, "elsewhere": float})
    rates = rates[rates["in_scope"] > 0]
    with np.errstate(divide="ignore"):
        ratio = rates["in_scope"] / rates["elsewhere"]  # inf where nothing happened elsewhere
    top = rates.assign(ratio=ratio).sort_values(["ratio", "in_scope"], ascending=False).head(4)
    if top.empty:
        return f"Inside {scope_label(attributes)} nothing of the kind happened."
    parts = [
        f"{r.measure.strip()}: {r.in_scope:g} vs {r.elsewhere:g}"
        + ("" if not np.isfinite(r.ratio) else f" (x{r.ratio:.0f})")
        for r in top.itertuples()
    ]
    return (
        f"Inside {scope_label(attributes)} against elsewhere, the largest contrasts: "
        + "; ".join(parts)
        + "."
    )


def scope_label(attributes: Mapping[str, str]) -> str:
    """``network_segment=CT-PD-0231``."""
    return " & ".join(f"{k}={v}" for k, v in attributes.items())


# ====================================================================== 6. the verdict


def faults_summary(case: CaseStudy) -> str:
    """The shared faults ``analyze`` found (:func:`analysis.faults.find_shared_faults`): each
    one's summary and the evidence a person can check."""
    faults = list(case.result.shared_faults or [])
    if not faults:
        return "No shared fault: no problem is shared by three or more merchants beyond chance."
    blocks = []
    for f in faults:
        evidence = getattr(f, "evidence", "")
        blocks.append(f.summary() + (f"\n  evidence: {evidence}" if evidence else ""))
    return "\n\n".join(blocks)


def _plain_label(attributes: Mapping[str, Any]) -> str:
    """``key=value`` pairs for a figure: values outside ASCII (no CJK font is assumed) are
    named by their key only."""
    return " & ".join(
        f"{k}={v}" if str(v).isascii() else f"{k} (see text)" for k, v in attributes.items()
    )


def faults_figure(case: CaseStudy) -> Figure | None:
    """One panel per shared fault: its merchants' daily fault-incident rate against the rest of
    the city, its days shaded (:meth:`analysis.faults.SharedFault.plot`)."""
    faults = [f for f in (case.result.shared_faults or []) if getattr(f, "daily", None) is not None]
    if not faults:
        return None
    fig = Figure(figsize=(10, 3.2 * len(faults)), layout="constrained")
    for ax, f in zip(np.atleast_1d(fig.subplots(len(faults), 1)), faults, strict=True):
        f.plot(ax)
        ax.set_title(f"{f.fault_id} {f.cause}: {_plain_label(f.attributes)}", fontsize=10)
        ax.set_xlabel("business date")
    return fig


# ====================================================================== 7. the fixes


def interventions_table(case: CaseStudy) -> pd.DataFrame:
    """The change log (empty, with the contract's columns, when there is none)."""
    iv = case.dataset.interventions
    cols = ["change_id", "applied_at", "scope_type", "scope_value", "kind", "description"]
    if iv is None:
        return pd.DataFrame(columns=cols)
    out = iv.reindex(columns=cols).sort_values("applied_at").reset_index(drop=True)
    out["applied_at"] = out["applied_at"].dt.strftime("%Y-%m-%d %H:%M")
    return out


def scope_rate_figure(case: CaseStudy, attributes: Mapping[str, str]) -> Figure:
    """Daily unsettled rate (contract definition) inside a scope and elsewhere, with the
    interventions on that scope marked; weekly rolling means on top of the daily points."""
    from .metrics import group_daily

    scope = _in_scope(case, attributes)
    panel = case.panel.assign(_in=case.panel["merchant_id"].map(scope).fillna(False).astype(bool))
    daily = group_daily(panel, "_in")
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax = fig.subplots()
    name = scope_label(attributes) if attributes else "all merchants"
    for inside, colour, label in ((True, "tab:red", name), (False, "tab:blue", "elsewhere")):
        d = daily[daily["_in"] == inside].set_index("date")
        if d.empty:
            continue
        pct = 100 * d["rate"]
        ax.plot(d.index, pct, ".", color=colour, alpha=0.4)
        ax.plot(
            d.index,
            pct.rolling(7, min_periods=3).mean(),
            "-",
            color=colour,
            label=f"{label} (7-day mean)",
        )
    iv = interventions_table(case)
    for r in iv.itertuples():
        applies = (r.scope_type == "all") or any(
            r.scope_type == k and str(r.scope_value) == str(v) for k, v in attributes.items()
        )
        if applies:
            ax.axvline(pd.Timestamp(r.applied_at), color="k", ls="--", lw=1)
            ax.annotate(
                f" {r.change_id} {r.kind}",
                (pd.Timestamp(r.applied_at), 1),
                xycoords=("data", "axes fraction"),
                va="top",
                fontsize=8,
                rotation=90,
            )
    ax.set_title(
        "Unsettled rate per business day (reversal failed, not cleared past its cycle, or returned)"
    )
    ax.set_xlabel("business date")
    ax.set_ylabel("unsettled attempts (% of attempts)")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def fix_lab_data(case: CaseStudy, exclude_merchants: Sequence[str] = ()) -> "FixLabData | None":
    """The fix lab's data (terminal × day panel and change log); None without interventions.

    The merchants of the shared faults and ``exclude_merchants`` are never controls.
    """
    from .dashboards import FixLabData

    iv = case.dataset.interventions
    if iv is None or not len(iv):
        return None
    return FixLabData.from_result(case.dataset, case.result, exclude_merchants=exclude_merchants)


def fix_sentences(lab: "FixLabData | None") -> str:
    """Each fix's measured effect on the unsettled rate in a sentence, with its notes
    (:meth:`analysis.fixes.FixEffect.sentence`)."""
    if lab is None:
        return "No interventions table (or an empty one): no fix to evaluate."
    lines = []
    for cid in lab.interventions["change_id"]:
        e = lab.measured(cid, lab.real_date(cid))
        lines.append(f"{cid}: {e.sentence()}")
        lines += [f"    - {n}" for n in e.notes]
    return "\n".join(lines)


def fix_comparison(lab: "FixLabData | None") -> pd.DataFrame:
    """Per intervention: the measured change of the unsettled rate (vs controls, 95% CI) beside
    the what-if prediction fitted on the days before it, both in percentage points.

    Returns
    -------
    pandas.DataFrame
        ``change_id, kind, applied, measured, measured_low, measured_high, p_value,
        predicted, predicted_low, predicted_high, fitted_on``; empty without interventions.
    """
    cols = [
        "change_id",
        "kind",
        "applied",
        "measured",
        "measured_low",
        "measured_high",
        "p_value",
        "predicted",
        "predicted_low",
        "predicted_high",
        "fitted_on",
    ]
    if lab is None:
        return pd.DataFrame(columns=cols)
    rows = []
    for cid in lab.interventions["change_id"]:
        params = lab.default_params(cid)
        e = lab.measured(cid, params.fix_date)
        try:
            w = lab.predicted(params)
        except ValueError:
            w = None
        mean, lo, hi = w.avoided_unsettled_rate if w is not None else (np.nan,) * 3
        rows.append(
            {
                "change_id": cid,
                "kind": lab.intervention(cid)["kind"],
                "applied": f"{params.fix_date:%Y-%m-%d}",
                "measured": 100 * e.effect,
                "measured_low": 100 * e.ci_low,
                "measured_high": 100 * e.ci_high,
                "p_value": e.p_value,
                "predicted": -100 * mean,
                "predicted_low": -100 * hi,
                "predicted_high": -100 * lo,
                "fitted_on": (
                    f"{w.period[0]:%Y-%m-%d} to {w.period[1] - pd.Timedelta(days=1):%Y-%m-%d}"
                    if w is not None
                    else "no model"
                ),
            }
        )
    out = pd.DataFrame(rows, columns=cols)
    return out.round(
        {c: 3 for c in cols if c.startswith(("measured", "predicted"))} | {"p_value": 4}
    )


def fix_figures(lab: "FixLabData | None") -> list[Figure]:
    """One figure per intervention: the scope against the controls around it, and the predicted
    against the measured change (:func:`analysis.dashboards.render_fixlab`)."""
    from .dashboards import render_fixlab

    if lab is None:
        return []
    return [render_fixlab(lab, lab.default_params(cid)) for cid in lab.interventions["change_id"]]


# ====================================================================== 8. monitoring


def scope_chart(
    case: CaseStudy, attributes: Mapping[str, str], window: Window | None, *, seed: int = 0
) -> "ControlChart | None":
    """Binomial CUSUM of the scope's daily unsettled rate (mature days), its baseline the days
    before the shared cluster began (the first two weeks when there are too few)."""
    from .metrics import group_daily
    from .monitor import BASELINE_DAYS, cusum

    if not attributes:
        return None
    scope = _in_scope(case, attributes)
    rows = case.panel[
        case.panel["merchant_id"].map(scope).fillna(False).astype(bool) & case.panel["mature"]
    ]
    daily = group_daily(rows)
    daily = daily[daily["n"] > 0]
    if daily.empty:
        return None
    first = daily["date"].min()
    reference = None
    if window is not None and (window[0] - first).days >= BASELINE_DAYS:
        reference = (first, window[0] - pd.Timedelta(days=1))
    try:
        return cusum(daily, reference_period=reference, seed=seed, label=scope_label(attributes))
    except ValueError:  # no case at all in the baseline: nothing to chart against
        return None


def monitoring_summary(
    case: CaseStudy, chart: "ControlChart | None", attributes: Mapping[str, str]
) -> str:
    """The chart in words, and whether the rate is back to its baseline since the last fix."""
    from .monitor import back_to_baseline

    if chart is None:
        return "No localized scope (or no baseline): nothing to monitor."
    lines = [chart.summary()]
    iv = interventions_table(case)
    on_scope = iv[
        [
            r.scope_type == "all"
            or any(
                r.scope_type == k and str(r.scope_value) == str(v) for k, v in attributes.items()
            )
            for r in iv.itertuples()
        ]
    ]
    if on_scope.empty:
        lines.append("No fix on this scope yet.")
        return "\n".join(lines)
    after = pd.Timestamp(on_scope["applied_at"].iloc[-1]).normalize() + pd.Timedelta(days=1)
    try:
        lines.append(back_to_baseline(chart, after).summary())
    except ValueError as exc:
        lines.append(f"Too early to say whether it is back: {exc}.")
    return "\n".join(lines)


def chart_figure(chart: "ControlChart | None") -> Figure | None:
    """The CUSUM statistic with its decision interval and alarms."""
    if chart is None:
        return None
    fig = Figure(figsize=(10, 3.5), layout="constrained")
    ax = fig.subplots()
    chart.plot(ax)
    ax.set_title(
        f"Binomial CUSUM of the daily unsettled rate: {chart.label} "
        f"(baseline {100 * chart.p0:.3f}%, tuned to {100 * chart.p1:.3f}%)",
        fontsize=10,
    )
    ax.set_xlabel("business date")
    return fig


def monitor_segments(case: CaseStudy, *, seed: int = 0, top: int = 10) -> pd.DataFrame:
    """One CUSUM per network segment (:func:`analysis.monitor.monitor_clusters`): the segments
    that alarmed, alarming first, at most ``top`` rows."""
    from .monitor import monitor_clusters

    try:
        table = monitor_clusters(case.panel, "network_segment", seed=seed)
    except ValueError as exc:  # e.g. a baseline rate so high that no higher rate can be tuned to
        return pd.DataFrame({"note": [f"the segments cannot be charted: {exc}"]})
    table.attrs = {}  # the charts kept there cannot be compared by pandas' own operations
    table = table[table["n_alarms"] > 0].head(top).reset_index(drop=True)
    for c in ("first_alarm", "first_onset", "last_alarm"):
        table[c] = pd.to_datetime(table[c]).dt.strftime("%Y-%m-%d")
    return table.round({"p0": 5, "p1": 5, "h": 2, "arl0": 0, "last_rate": 5})


# ====================================================================== 9. the money still owed


def money_owed(case: CaseStudy, merchant_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Transactions whose money is still owed, per merchant and outcome, with the next step.

    Returns
    -------
    pandas.DataFrame
        ``merchant_id, outcome, transactions, amount_yuan, first, last,
        next_step`` (the most common next step of those incidents), the largest
        amount first.
    """
    inc = case.result.incidents
    inc = inc[inc["outcome"].isin(list(OWED_OUTCOMES))]
    if merchant_ids is not None:
        inc = inc[inc["merchant_id"].isin(list(merchant_ids))]
    cols = ["merchant_id", "outcome", "transactions", "amount_yuan", "first", "last", "next_step"]
    if inc.empty:
        return pd.DataFrame(columns=cols)
    g = inc.groupby(["merchant_id", "outcome"])
    out = g.agg(
        transactions=("txn_id", "size"),
        amount_yuan=("amount", "sum"),
        first=("business_date", "min"),
        last=("business_date", "max"),
        next_step=("next_step", lambda s: s.value_counts().index[0]),
    ).reset_index()
    out["amount_yuan"] = out["amount_yuan"].round(2)
    for c in ("first", "last"):
        out[c] = pd.to_datetime(out[c]).dt.strftime("%Y-%m-%d")
    return out.sort_values(["amount_yuan", "merchant_id"], ascending=[False, True])[
        cols
    ].reset_index(drop=True)


def money_owed_summary(case: CaseStudy, merchant_ids: Sequence[str] | None = None) -> str:
    """Totals of :func:`money_owed` per outcome, in words."""
    owed = money_owed(case, merchant_ids)
    if owed.empty:
        return "Nothing is owed: no failed reversal, uncleared, overdue or returned transaction."
    lines = []
    for outcome, g in owed.groupby("outcome", sort=False):
        lines.append(
            f"{OWED_OUTCOMES[outcome]}: {int(g['transactions'].sum()):,} transactions, "
            f"¥{g['amount_yuan'].sum():,.2f} at {g['merchant_id'].nunique()} merchants"
        )
    return "\n".join(sorted(lines))


# =========================================================================== running the notebook


@dataclass(frozen=True)
class ReportRun:
    """What :func:`build_report` produced.

    Attributes
    ----------
    html_path : Path
        The self-contained HTML report.
    notebook : nbformat.NotebookNode
        The executed notebook (parameters injected), for checks.
    seconds : float
        Wall time of the execution.
    """

    html_path: Path
    notebook: Any = field(repr=False)
    seconds: float = 0.0

    def __repr__(self) -> str:
        cells = len(getattr(self.notebook, "cells", []))
        return f"ReportRun(html_path={str(self.html_path)!r}, cells={cells}, seconds={self.seconds:.1f})"


def _current_env_kernel_manager():
    """A kernel manager that starts this Python (not whatever ``python3`` kernelspec is
    installed)."""
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import KernelManager

    class _CurrentEnv(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())

    return KernelManager(kernel_name="python3", kernel_spec_manager=_CurrentEnv())


def _inject_parameters(nb: Any, parameters: Mapping[str, Any]) -> Any:
    """A copy of ``nb`` with a cell assigning ``parameters`` after the cell tagged ``parameters``
    (papermill's convention: the cell is tagged ``injected-parameters``)."""
    import nbformat

    nb = copy.deepcopy(nb)
    if not parameters:
        return nb
    tagged = [
        i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    if not tagged:
        raise ValueError("the notebook has no cell tagged 'parameters' to override")
    source = "# Parameters injected by analysis.report\n" + "\n".join(
        f"{k} = {v!r}" for k, v in parameters.items()
    )
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(tagged[0] + 1, cell)
    return nb


def execute_notebook(
    path: str | Path = CASE_NOTEBOOK,
    parameters: Mapping[str, Any] | None = None,
    *,
    progress: bool = False,
    timeout: int = 600,
) -> Any:
    """Execute a notebook in a fresh kernel of this Python, with ``parameters`` injected.

    Parameters
    ----------
    path : str or Path
        The notebook; it runs in its own directory (relative paths as in Jupyter).
    parameters : mapping, optional
        Names and values (``repr``-able) that override the ``parameters`` cell.
    progress : bool
        Show a progress bar over the cells.
    timeout : int
        Seconds one cell may take.

    Returns
    -------
    nbformat.NotebookNode
        The executed notebook.

    Raises
    ------
    nbclient.exceptions.CellExecutionError
        A cell failed (the message names the cell and the error).
    """
    import nbformat
    from nbclient import NotebookClient
    from tqdm.auto import tqdm

    path = Path(path)
    nb = _inject_parameters(nbformat.read(path, as_version=4), dict(parameters or {}))
    code_cells = sum(c.cell_type == "code" for c in nb.cells)
    bar = tqdm(
        total=code_cells,
        desc=f"running {path.name}",
        unit="cell",
        disable=not progress,
        file=sys.stderr,
    )
    client = NotebookClient(
        nb,
        timeout=timeout,
        km=_current_env_kernel_manager(),
        resources={"metadata": {"path": str(path.parent)}},
        on_cell_executed=lambda **_: bar.update(),
    )
    try:
        # the kernel process's own stderr is chatter; cells' output arrives as messages
        client.execute(stderr=subprocess.DEVNULL)
    finally:
        bar.close()
    return nb


#: JupyterLab's HTML template without the scripts it would fetch from the web (require.js,
#: MathJax, mermaid): the report needs none of them and must open offline.
_OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{% block html_head_js_requirejs %}{% endblock %}
{% block html_head_js_mathjax %}{% endblock %}
{% block html_head_js_mermaidjs %}{% endblock %}
"""


def notebook_html(nb: Any, *, hide_code: bool = True) -> str:
    """Self-contained HTML of an executed notebook: styles inline, images embedded as data
    URIs, no script fetched from the web; code cells hidden by default."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab",
        template_file="pos_report.html.j2",
        extra_loaders=[DictLoader({"pos_report.html.j2": _OFFLINE_TEMPLATE})],
        embed_images=True,
        exclude_input=hide_code,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    body, _ = exporter.from_notebook_node(nb)
    return body


def _run_for_user(params: Mapping[str, Any], progress: bool) -> Any:
    """Execute the case notebook; a user error raised inside it (a bad dataset) comes out as the
    same :class:`~analysis.exceptions.PosIncidentError`, so the CLI can print it plainly."""
    from nbclient.exceptions import CellExecutionError

    from . import exceptions

    try:
        return execute_notebook(CASE_NOTEBOOK, params, progress=progress)
    except CellExecutionError as exc:
        cls = getattr(exceptions, str(getattr(exc, "ename", "")), None)
        if isinstance(cls, type) and issubclass(cls, exceptions.PosIncidentError):
            raise cls(str(exc.evalue)) from None
        raise


def build_report(
    dataset_dir: str | Path,
    out_html: str | Path,
    *,
    progress: bool = True,
    focus: str | None = None,
) -> ReportRun:
    """Run the case-study notebook on a contract dataset and write a self-contained HTML report.

    Parameters
    ----------
    dataset_dir : str or Path
        A contract dataset directory (``NAME.csv`` or ``NAME.parquet`` per table).
    out_html : str or Path
        Where the HTML goes (its directory is created).
    progress : bool, default True
        Show a progress bar over the notebook's cells on stderr.
    focus : str, optional
        The merchant whose complaints start the story (default: the most tickets).

    Returns
    -------
    ReportRun
        The HTML path, the executed notebook and the run time.

    Raises
    ------
    DatasetError
        The dataset directory does not exist or cannot be read as a contract
        dataset (the loader's message: file, line, column).
    PosIncidentError
        Any other user error raised while the notebook ran.
    nbclient.exceptions.CellExecutionError
        The analysis failed in a cell for another reason (the message says which).

    Examples
    --------
    >>> build_report("data/case_study", "out/report.html")  # doctest: +SKIP
    """
    import time

    data = Path(dataset_dir).expanduser()
    if not data.is_dir():
        raise DatasetError(
            f"the dataset directory {data} does not exist; pass a directory holding "
            "merchants, terminals and transactions (.csv or .parquet)",
            file=str(data),
        )
    params: dict[str, Any] = {"DATASET_DIR": str(data.resolve())}
    if focus is not None:
        params["FOCUS_MERCHANT"] = str(focus)
    t0 = time.perf_counter()
    nb = _run_for_user(params, progress)
    seconds = time.perf_counter() - t0
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(notebook_html(nb), encoding="utf-8")
    return ReportRun(html_path=out, notebook=nb, seconds=seconds)
