"""Interactive dashboards for analysts: incident triage and the fix lab.

Each dashboard is a small class holding its ipywidgets as attributes. A change
of any picker (``observe(..., names="value")``) calls a *pure* function
``render(data, params) -> matplotlib.figure.Figure`` built with the
object-oriented matplotlib API (no pyplot state); the figure's PNG bytes go into
a ``widgets.Image``, tables into a ``widgets.HTML`` and a ``widgets.Label``
(the *readout*) says in words what is shown. The same class therefore runs
unchanged in JupyterLab, Voila, nbval and plain pytest, where a test sets
``widget.value = ...`` and the callback fires synchronously.

Card numbers never reach a widget: the loader masks them, and every piece of
free text shown here goes through :func:`analysis.privacy.mask_text` again.

Examples
--------
>>> from analysis import load_dataset, analyze          # doctest: +SKIP
>>> ds = load_dataset("data/case_study")                # doctest: +SKIP
>>> dash = TriageDashboard(analyze(ds), dataset=ds)     # doctest: +SKIP
>>> dash.cause.value = "NETWORK_COMMUNICATION"          # doctest: +SKIP
>>> print(dash.readout.value)                           # doctest: +SKIP
"""

from __future__ import annotations

import html
import io
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .contract import CAUSES
from .metrics import ATTEMPT_TYPES
from .privacy import mask_text

if TYPE_CHECKING:  # pragma: no cover
    from .io import Dataset
    from .pipeline import AnalysisResult

__all__ = [
    "ALL",
    "FixLab",
    "FixLabData",
    "FixLabParams",
    "KIND_LABELS",
    "TriageDashboard",
    "TriageData",
    "TriageParams",
    "daily_attempts",
    "figure_png",
    "fixlab_readout",
    "fixlab_tables_html",
    "frame_html",
    "incident_table_html",
    "render_fixlab",
    "render_triage",
    "ticket_html",
    "triage_readout",
]

#: Picker value meaning "no filter".
ALL = ""
#: Complaint kinds as people say them.
KIND_LABELS = {
    "unsettled": "刷卡未到账 card paid, money not arrived",
    "transfer_failed": "转账失败 transfer failed",
}
#: Resolution of the PNG figures shown in the widgets.
PNG_DPI = 80
#: Causes drawn separately in the stacked counts; the rest are summed as "other".
TOP_CAUSES = 6

_TABLE_CSS = (
    "<style>.pos-table{border-collapse:collapse;font-size:12px}"
    ".pos-table th,.pos-table td{border:1px solid #ccc;padding:2px 6px;text-align:left;"
    "vertical-align:top}.pos-table th{background:#f3f3f3}</style>"
)


# --------------------------------------------------------------------------- shared helpers


def figure_png(fig: Figure, dpi: int = PNG_DPI) -> bytes:
    """PNG bytes of a figure (object-oriented API; the figure is not registered with pyplot).

    Examples
    --------
    >>> fig = Figure(figsize=(2, 1))
    >>> figure_png(fig)[:4]
    b'\\x89PNG'
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def frame_html(
    frame: pd.DataFrame, *, max_height_px: int = 380, empty: str = "nothing to show"
) -> str:
    """An HTML table of ``frame`` (every cell escaped and card-masked) in a scroll box.

    Examples
    --------
    >>> "&lt;b&gt;" in frame_html(pd.DataFrame({"a": ["<b>"]}))
    True
    """
    if frame.empty:
        return f"<p class='pos-empty'><i>{html.escape(empty)}</i></p>"
    shown = frame.astype(object).where(frame.notna(), "")
    shown = shown.map(lambda v: mask_text(str(v)))
    body = shown.to_html(index=False, escape=True, border=0, classes="pos-table")
    return f"{_TABLE_CSS}<div style='max-height:{max_height_px}px;overflow:auto'>{body}</div>"


def daily_attempts(reconciled: pd.DataFrame) -> pd.DataFrame:
    """Purchase and transfer attempts per business date and merchant.

    Parameters
    ----------
    reconciled : pandas.DataFrame
        :func:`analysis.reconcile.reconcile`'s result (``txn_type``,
        ``business_date``, ``merchant_id``).

    Returns
    -------
    pandas.DataFrame
        ``date, merchant_id, attempts``.

    Examples
    --------
    >>> r = pd.DataFrame({"txn_type": ["purchase", "void", "transfer"],
    ...                   "merchant_id": ["m", "m", "m"],
    ...                   "business_date": pd.to_datetime(["2026-03-02"] * 3)})
    >>> daily_attempts(r)["attempts"].tolist()
    [2]
    """
    att = reconciled[reconciled["txn_type"].isin(ATTEMPT_TYPES)]
    return (
        att.groupby([att["business_date"].rename("date"), "merchant_id"], observed=True)
        .size()
        .rename("attempts")
        .reset_index()
    )


def _cause_label(code: str) -> str:
    c = CAUSES.get(code)
    return f"{code} · {c.zh}" if c else str(code)


def _dates(frame: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_datetime(frame[column]).dt.normalize()


# --------------------------------------------------------------------------- triage data


@dataclass(frozen=True)
class TriageParams:
    """What the triage dashboard shows.

    Attributes
    ----------
    start, end : datetime.date
        Business dates, inclusive.
    cause : str
        A cause code, or :data:`ALL`.
    cluster : str
        A spatial cluster id (``S001``...), or :data:`ALL`.
    merchant : str
        A merchant id, or :data:`ALL` (when set it wins over ``cluster``).
    ticket : str
        The ticket shown in the drill-down, or :data:`ALL` for none.
    max_rows : int
        Most incident rows in the table (the latest first).
    """

    start: date
    end: date
    cause: str = ALL
    cluster: str = ALL
    merchant: str = ALL
    ticket: str = ALL
    max_rows: int = 50


@dataclass(frozen=True)
class TriageData:
    """Everything the triage dashboard needs, prepared once from an analysis result.

    Attributes
    ----------
    incidents : pandas.DataFrame
        ``AnalysisResult.incidents`` plus ``date`` (business date) and ``merchant_name``.
    attempts : pandas.DataFrame
        ``date, merchant_id, attempts`` (:func:`daily_attempts`).
    merchants : pandas.DataFrame
        ``merchant_id, name, cluster_id, label`` (label = name and id), sorted by id.
    tickets : pandas.DataFrame
        One row per ticket: the matched ``txn_id``, cause and next step, and where
        the complaints table is known its ``opened_at, merchant_id, kind, amount,
        description``.
    """

    incidents: pd.DataFrame
    attempts: pd.DataFrame
    merchants: pd.DataFrame
    tickets: pd.DataFrame

    @classmethod
    def from_result(
        cls, result: "AnalysisResult", dataset: "Dataset | None" = None
    ) -> "TriageData":
        """Prepare the dashboard's tables from ``analyze``'s result (and the dataset, for names
        and complaint details)."""
        merchants = _merchant_frame(result, dataset)
        names = merchants.set_index("merchant_id")["name"]
        inc = result.incidents.assign(date=_dates(result.incidents, "business_date"))
        inc = inc.assign(merchant_name=inc["merchant_id"].map(names).fillna(inc["merchant_id"]))
        tickets = _ticket_frame(result, dataset, inc)
        return cls(
            incidents=inc,
            attempts=daily_attempts(result.reconciled),
            merchants=merchants,
            tickets=tickets,
        )

    # ------------------------------------------------------------- ranges and options

    @property
    def date_range(self) -> tuple[date, date]:
        """First and last business date with attempts or incidents."""
        days = pd.concat([self.attempts["date"], self.incidents["date"]])
        if days.empty:
            today = pd.Timestamp("today").date()
            return today, today
        return days.min().date(), days.max().date()

    def cause_options(self) -> list[tuple[str, str]]:
        """``(label, code)`` pairs, most frequent cause first, "all causes" on top."""
        counts = self.incidents["cause"].value_counts()
        return [(f"all causes ({len(self.incidents):,})", ALL)] + [
            (f"{_cause_label(code)} ({n:,})", code) for code, n in counts.items()
        ]

    def cluster_options(self) -> list[tuple[str, str]]:
        """``(label, cluster_id)`` of spatial clusters (singletons left out), "all" on top."""
        m = self.merchants[~self.merchants["cluster_id"].str.startswith("N-")]
        sizes = m.groupby("cluster_id").size().sort_index()
        return [("all merchants", ALL)] + [
            (f"{cid} ({n} merchants)", cid) for cid, n in sizes.items()
        ]

    def merchant_options(self, cluster: str = ALL) -> list[tuple[str, str]]:
        """``(label, merchant_id)`` of the cluster's merchants (all merchants for :data:`ALL`)."""
        m = (
            self.merchants
            if cluster == ALL
            else self.merchants[self.merchants["cluster_id"] == cluster]
        )
        label = "all merchants" if cluster == ALL else f"all of {cluster}"
        return [(label, ALL)] + list(zip(m["label"], m["merchant_id"], strict=True))

    def ticket_options(self, params: TriageParams) -> list[tuple[str, str]]:
        """``(label, ticket_id)`` of the tickets in the selection (merchant, cause, dates)."""
        t = self.select_tickets(params)
        if t.empty:
            return [("no tickets in this selection", ALL)]
        labels = [
            f"{r.ticket_id} · {_when(r.opened_at)} · {r.merchant_name} · {r.cause}"
            for r in t.itertuples()
        ]
        return [(f"choose one of {len(t):,} tickets", ALL)] + list(
            zip(labels, t["ticket_id"], strict=True)
        )

    # ------------------------------------------------------------- selections

    def scope(self, params: TriageParams) -> pd.Index | None:
        """Merchant ids in scope (None: every merchant)."""
        if params.merchant != ALL:
            return pd.Index([params.merchant])
        if params.cluster != ALL:
            return pd.Index(
                self.merchants.loc[self.merchants["cluster_id"] == params.cluster, "merchant_id"]
            )
        return None

    def _in(self, frame: pd.DataFrame, params: TriageParams, day_column: str) -> pd.Series:
        days = frame[day_column]
        keep = (days >= pd.Timestamp(params.start)) & (days <= pd.Timestamp(params.end))
        scope = self.scope(params)
        if scope is not None:
            keep &= frame["merchant_id"].isin(scope)
        return keep

    def select_incidents(self, params: TriageParams) -> pd.DataFrame:
        """Incidents in the merchants, dates and cause of ``params``."""
        keep = self._in(self.incidents, params, "date")
        if params.cause != ALL:
            keep &= self.incidents["cause"] == params.cause
        return self.incidents[keep]

    def select_attempts(self, params: TriageParams) -> pd.DataFrame:
        """Daily attempts in the merchants and dates of ``params``."""
        return self.attempts[self._in(self.attempts, params, "date")]

    def select_tickets(self, params: TriageParams) -> pd.DataFrame:
        """Tickets opened in the dates and merchants of ``params`` (and of its cause, if set)."""
        t = self.tickets
        keep = self._in(t, params, "opened_date")
        if params.cause != ALL:
            keep &= t["cause"] == params.cause
        return t[keep]

    def default_params(self) -> TriageParams:
        """Everything, over the whole period."""
        start, end = self.date_range
        return TriageParams(start=start, end=end)


def _merchant_frame(result: "AnalysisResult", dataset: "Dataset | None") -> pd.DataFrame:
    ids = pd.Index(result.clusters["merchant_id"].astype(str)).union(
        pd.Index(result.incidents["merchant_id"].astype(str).unique())
    )
    m = pd.DataFrame({"merchant_id": ids})
    if dataset is not None:
        names = dataset.merchants.set_index("merchant_id")["name"].astype(str)
        m["name"] = m["merchant_id"].map(names)
    else:
        m["name"] = pd.NA
    m["name"] = m["name"].fillna(m["merchant_id"]).astype(str)
    cl = result.clusters.set_index("merchant_id")["cluster_id"].astype(str)
    m["cluster_id"] = m["merchant_id"].map(cl).fillna("N-" + m["merchant_id"]).astype(str)
    m["label"] = np.where(
        m["name"] == m["merchant_id"], m["merchant_id"], m["name"] + " " + m["merchant_id"]
    )
    return m.sort_values("merchant_id").reset_index(drop=True)


def _ticket_frame(
    result: "AnalysisResult", dataset: "Dataset | None", inc: pd.DataFrame
) -> pd.DataFrame:
    t = result.tickets.copy()
    complaints = dataset.complaints if dataset is not None else None
    if complaints is not None and len(complaints):
        details = complaints[
            ["ticket_id", "opened_at", "merchant_id", "kind", "amount", "description"]
        ]
        t = t.merge(details, on="ticket_id", how="left")
    else:
        t = t.assign(
            opened_at=pd.NaT, kind=pd.NA, amount=np.nan, description=pd.NA, merchant_id=pd.NA
        )
    by_txn = inc.drop_duplicates("txn_id").set_index("txn_id")
    matched = (
        t["txn_id"].map(by_txn["merchant_id"]) if len(by_txn) else pd.Series(pd.NA, index=t.index)
    )
    t["merchant_id"] = t["merchant_id"].fillna(matched)
    if t["opened_at"].isna().all() and len(by_txn):
        t["opened_at"] = t["txn_id"].map(by_txn["timestamp"])
    t["opened_date"] = pd.to_datetime(
        pd.Series([_local_day(v) for v in t["opened_at"]], index=t.index, dtype="object")
    )
    names = inc.drop_duplicates("merchant_id").set_index("merchant_id")["merchant_name"]
    t["merchant_name"] = t["merchant_id"].map(names).fillna(t["merchant_id"]).fillna("?")
    return t.sort_values(["opened_date", "ticket_id"]).reset_index(drop=True)


def _local_day(value: Any) -> pd.Timestamp | None:
    if value is None or pd.isna(value):
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize(None).normalize() if ts.tzinfo else ts.normalize()


def _when(value: Any) -> str:
    return "?" if value is None or pd.isna(value) else f"{pd.Timestamp(value):%Y-%m-%d %H:%M}"


# --------------------------------------------------------------------------- triage views (pure)


def _scope_words(data: TriageData, p: TriageParams, *, plain: bool = False) -> str:
    """The selection in words; ``plain`` keeps to codes and ids (figures have no CJK font)."""
    cause = "all causes" if p.cause == ALL else (p.cause if plain else _cause_label(p.cause))
    if p.merchant != ALL:
        where = (
            f"merchant {p.merchant}"
            if plain
            else data.merchants.set_index("merchant_id")["label"].get(p.merchant, p.merchant)
        )
    elif p.cluster != ALL:
        where = f"cluster {p.cluster}"
    else:
        where = "all merchants"
    return f"{cause} · {where} · {p.start:%Y-%m-%d} to {p.end:%Y-%m-%d}"


def triage_readout(data: TriageData, params: TriageParams) -> str:
    """One line saying what the triage dashboard shows, with the counts behind it.

    Reads like ``Showing NETWORK_COMMUNICATION · 网络通讯问题 · all merchants ·
    2026-03-02 to 2026-04-30: 701 incidents in 273,647 attempts (0.256%); table:
    latest 50 of 701``.
    """
    n = len(data.select_incidents(params))
    attempts = int(data.select_attempts(params)["attempts"].sum())
    rate = f"{n / attempts:.3%}" if attempts else "no attempts"
    shown = min(n, params.max_rows)
    return (
        f"Showing {_scope_words(data, params)}: {n:,} incidents in {attempts:,} attempts "
        f"({rate}); table: latest {shown:,} of {n:,}"
    )


def render_triage(data: TriageData, params: TriageParams) -> Figure:
    """Daily incident counts by cause (top) and the daily incident rate (bottom).

    Parameters
    ----------
    data : TriageData
    params : TriageParams

    Returns
    -------
    matplotlib.figure.Figure
        Two axes sharing the date axis; titles, units and legends set. Figure
        text keeps to codes and ids: a CJK font is not assumed.
    """
    inc = data.select_incidents(params)
    att = data.select_attempts(params).groupby("date")["attempts"].sum()
    days = pd.date_range(pd.Timestamp(params.start), pd.Timestamp(params.end), freq="D")
    fig = Figure(figsize=(9, 5.6), layout="constrained")
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    counts = inc.groupby(["date", "cause"]).size().unstack(fill_value=0).reindex(days, fill_value=0)
    order = counts.sum().sort_values(ascending=False).index
    top = list(order[:TOP_CAUSES])
    bottom = np.zeros(len(days))
    colours = _cause_colours()
    for cause in top:
        ax1.bar(
            days, counts[cause], bottom=bottom, width=0.9, color=colours.get(cause), label=cause
        )
        bottom += counts[cause].to_numpy()
    rest = counts[list(order[TOP_CAUSES:])].sum(axis=1) if len(order) > TOP_CAUSES else None
    if rest is not None:
        ax1.bar(days, rest, bottom=bottom, width=0.9, color="0.7", label="other causes")
    ax1.set_ylabel("incidents per day")
    ax1.set_title(
        f"Incidents per business day: {_scope_words(data, params, plain=True)}", fontsize=10
    )
    if len(top):
        ax1.legend(fontsize=7, ncol=2, loc="upper left")
    else:
        ax1.text(
            0.5,
            0.5,
            "no incidents in this selection",
            ha="center",
            va="center",
            transform=ax1.transAxes,
        )
    per_day = counts.sum(axis=1)
    attempts = att.reindex(days, fill_value=0)
    rate = (per_day / attempts.where(attempts > 0)) * 100
    ax2.plot(days, rate, marker=".", lw=1, color="tab:red", label="incidents / attempts")
    total = per_day.sum() / attempts.sum() * 100 if attempts.sum() else np.nan
    if np.isfinite(total):
        ax2.axhline(total, color="0.4", ls="--", lw=0.8, label=f"period average {total:.2f} %")
    ax2.set_ylabel("incident rate (% of attempts)")
    ax2.set_xlabel("business date")
    ax2.set_title("Incident rate per day (purchase and transfer attempts)", fontsize=10)
    ax2.legend(fontsize=7, loc="upper left")
    ax2.tick_params(axis="x", labelrotation=30)
    return fig


def _cause_colours() -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return {code: cmap(i % 20) for i, code in enumerate(CAUSES)}


_TABLE_COLUMNS = {
    "timestamp": "time",
    "merchant_name": "merchant",
    "terminal_id": "terminal",
    "txn_type": "type",
    "amount": "amount (¥)",
    "outcome": "outcome",
    "cause": "cause",
    "cause_zh": "原因",
    "confidence": "confidence",
    "evidence": "evidence",
    "next_step": "next step",
}


def incident_table_html(data: TriageData, params: TriageParams) -> str:
    """The selection's incidents, latest first, with evidence and next step, as HTML."""
    inc = data.select_incidents(params).sort_values(
        ["timestamp", "txn_id"], ascending=[False, True]
    )
    rows = inc.head(params.max_rows)
    table = rows.reindex(columns=["txn_id", *_TABLE_COLUMNS]).rename(columns=_TABLE_COLUMNS)
    table["time"] = [_when(v) for v in table["time"]]
    table["amount (¥)"] = [f"{v:,.2f}" if pd.notna(v) else "" for v in table["amount (¥)"]]
    table["confidence"] = [f"{v:.2f}" if pd.notna(v) else "" for v in table["confidence"]]
    return frame_html(table, empty="no incidents in this selection")


def ticket_html(data: TriageData, ticket_id: str) -> str:
    """A ticket in detail: what the reporter said, the matched transaction, its cause,
    evidence and next step."""
    if ticket_id == ALL:
        return (
            "<p><i>Choose a ticket to see what the reporter said and what happened to the "
            "money.</i></p>"
        )
    t = data.tickets[data.tickets["ticket_id"] == ticket_id]
    if t.empty:
        return f"<p><i>ticket {html.escape(ticket_id)} not found</i></p>"
    r = t.iloc[0]
    inc = (
        data.incidents[data.incidents["txn_id"] == r["txn_id"]]
        if pd.notna(r["txn_id"])
        else t.iloc[:0]
    )
    kind = KIND_LABELS.get(str(r["kind"]), "") if pd.notna(r["kind"]) else ""
    rows = [
        ("ticket", r["ticket_id"]),
        ("opened", _when(r["opened_at"])),
        (
            "merchant",
            f"{r['merchant_name']} ({r['merchant_id']})" if pd.notna(r["merchant_id"]) else "?",
        ),
        ("kind", kind),
        ("stated amount (¥)", f"{r['amount']:,.2f}" if pd.notna(r["amount"]) else ""),
        ("description", r["description"] if pd.notna(r["description"]) else ""),
        ("matched transaction", r["txn_id"] if pd.notna(r["txn_id"]) else "none matches"),
        ("match", f"{r.get('match_status', '')}: {r.get('note', '')}"),
    ]
    if len(inc):
        i = inc.iloc[0]
        rows += [
            (
                "transaction",
                f"{_when(i['timestamp'])} · {i['txn_type']} · ¥{i['amount']:,.2f} · "
                f"terminal {i['terminal_id']}",
            ),
            ("outcome", i["outcome"]),
            ("cause", f"{_cause_label(i['cause'])} (confidence {i['confidence']:.2f})"),
            ("evidence", i["evidence"]),
        ]
    else:
        rows.append(("cause", _cause_label(str(r["cause"]))))
    rows.append(("next step", r["next_step"]))
    body = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(mask_text(str(v))))}</td></tr>"
        for k, v in rows
    )
    return f"{_TABLE_CSS}<table class='pos-table pos-ticket'>{body}</table>"


# --------------------------------------------------------------------------- widgets


class _Dashboard:
    """Common plumbing: a readout, a figure image, batched updates and display."""

    #: CSS class prefix of the widgets, for browser tests and styling.
    css: str = "pos"

    def __init__(self) -> None:
        import ipywidgets as widgets

        self._holding = False
        self.readout = widgets.Label(value="")
        self.figure = widgets.Image(
            format="png", layout=widgets.Layout(width="100%", max_width="900px")
        )
        self.readout.add_class(f"{self.css}-readout")
        self.figure.add_class(f"{self.css}-figure")
        self.widget: Any = None

    @contextmanager
    def _hold(self) -> Iterator[None]:
        """Change several pickers without re-rendering after each one."""
        outer = self._holding
        self._holding = True
        try:
            yield
        finally:
            self._holding = outer

    def _watch(self, controls: Sequence[Any], handler: Callable[[dict], None]) -> None:
        def guarded(change: dict) -> None:
            if not self._holding:
                handler(change)

        for w in controls:
            w.observe(guarded, names="value")

    def _show_figure(self, fig: Figure) -> None:
        self.figure.value = figure_png(fig)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


class TriageDashboard(_Dashboard):
    """Incident triage: pick dates, a cause, a cluster, a merchant and a ticket.

    Parameters
    ----------
    result : AnalysisResult
        ``analyze``'s result.
    dataset : Dataset, optional
        The dataset analysed: merchant names and complaint details (what the
        reporter said) come from it.
    max_rows : int, default 50
        Most incident rows in the table.

    Attributes
    ----------
    dates : ipywidgets.SelectionRangeSlider
        Business-date range (value: a pair of ``datetime.date``).
    cause, cluster, merchant, ticket : ipywidgets.Dropdown
        Values are a cause code, cluster id, merchant id, ticket id, or
        :data:`ALL` (``""``) for no filter.
    readout : ipywidgets.Label
        What is shown, with the counts.
    figure : ipywidgets.Image
        Incidents per day by cause and the incident rate (:func:`render_triage`).
    table : ipywidgets.HTML
        Incidents with evidence and next step (:func:`incident_table_html`).
    ticket_view : ipywidgets.HTML
        The chosen ticket in detail (:func:`ticket_html`).
    widget : ipywidgets.VBox
        Everything, ready to display.
    """

    css = "triage"
    render = staticmethod(render_triage)

    def __init__(
        self, result: "AnalysisResult", *, dataset: "Dataset | None" = None, max_rows: int = 50
    ) -> None:
        import ipywidgets as widgets

        super().__init__()
        self.data = TriageData.from_result(result, dataset)
        self.max_rows = int(max_rows)
        start, end = self.data.date_range
        days = [d.date() for d in pd.date_range(start, end, freq="D")]
        wide = {"description_width": "70px"}
        self.dates = widgets.SelectionRangeSlider(
            options=[(f"{d:%m-%d}", d) for d in days],
            index=(0, len(days) - 1),
            description="dates",
            style=wide,
            layout=widgets.Layout(width="560px"),
        )
        self.cause = widgets.Dropdown(
            options=self.data.cause_options(), value=ALL, description="cause", style=wide
        )
        self.cluster = widgets.Dropdown(
            options=self.data.cluster_options(), value=ALL, description="cluster", style=wide
        )
        self.merchant = widgets.Dropdown(
            options=self.data.merchant_options(), value=ALL, description="merchant", style=wide
        )
        self.ticket = widgets.Dropdown(
            options=[("…", ALL)],
            value=ALL,
            description="ticket",
            style=wide,
            layout=widgets.Layout(width="560px"),
        )
        self.table = widgets.HTML()
        self.ticket_view = widgets.HTML()
        for name in ("dates", "cause", "cluster", "merchant", "ticket", "table", "ticket_view"):
            getattr(self, name).add_class(f"triage-{name.replace('_', '-')}")
        self._watch([self.dates, self.cause, self.merchant], self._on_filter)
        self._watch([self.cluster], self._on_cluster)
        self._watch([self.ticket], self._on_ticket)
        self.widget = widgets.VBox(
            [
                widgets.HTML("<b>Incident triage</b> — 刷卡未到账 / 转账失败"),
                self.dates,
                widgets.HBox([self.cause, self.cluster]),
                self.merchant,
                self.readout,
                self.figure,
                widgets.HTML("<b>Incidents</b> (latest first)"),
                self.table,
                widgets.HTML("<b>Ticket drill-down</b>"),
                self.ticket,
                self.ticket_view,
            ]
        )
        self.refresh()

    @property
    def params(self) -> TriageParams:
        """The pickers' current values."""
        start, end = self.dates.value
        return TriageParams(
            start=start,
            end=end,
            cause=self.cause.value or ALL,
            cluster=self.cluster.value or ALL,
            merchant=self.merchant.value or ALL,
            ticket=self.ticket.value or ALL,
            max_rows=self.max_rows,
        )

    def refresh(self) -> None:
        """Recompute the ticket list, readout, figure and table from the pickers."""
        p = self.params
        with self._hold():
            options = self.data.ticket_options(p)
            keep = p.ticket if p.ticket in {v for _, v in options} else ALL
            self.ticket.options = options
            self.ticket.value = keep
        p = replace(p, ticket=keep)
        self._show_figure(self.render(self.data, p))
        self.table.value = incident_table_html(self.data, p)
        self.ticket_view.value = ticket_html(self.data, p.ticket)
        self.readout.value = triage_readout(self.data, p)  # last: once it changes, all has

    def _on_filter(self, change: dict) -> None:
        self.refresh()

    def _on_cluster(self, change: dict) -> None:
        with self._hold():
            options = self.data.merchant_options(self.cluster.value or ALL)
            keep = self.merchant.value if self.merchant.value in {v for _, v in options} else ALL
            self.merchant.options = options
            self.merchant.value = keep
        self.refresh()

    def _on_ticket(self, change: dict) -> None:
        self.ticket_view.value = ticket_html(self.data, self.ticket.value or ALL)


# --------------------------------------------------------------------------- fix lab data

#: Time of day a hypothetical fix is applied (before 06:00 it acts on its whole day).
FIX_TIME = pd.Timedelta(hours=2)


@dataclass(frozen=True)
class FixLabParams:
    """What the fix lab shows.

    Attributes
    ----------
    change_id : str
        The intervention whose scope and kind are studied.
    fix_date : datetime.date
        When the fix is (hypothetically) applied; its real date by default.
    link_error_rate : float
        Link failures (corrupted + lost messages) per attempt assumed by the
        what-if, 0–1.
    upgrade : bool
        The what-if includes a network upgrade.
    validation : bool
        The what-if includes message validation with resends.
    retries : int
        Resends message validation allows.
    """

    change_id: str
    fix_date: date
    link_error_rate: float
    upgrade: bool
    validation: bool
    retries: int = 1

    @property
    def kinds(self) -> tuple[str, ...]:
        """The fixes the what-if assumes."""
        return tuple(
            k
            for k, on in (
                ("network_upgrade", self.upgrade),
                ("message_validation", self.validation),
            )
            if on
        )


@dataclass(frozen=True)
class FixLabData:
    """A terminal × day panel and the change log, with cached measured effects.

    Attributes
    ----------
    panel : pandas.DataFrame
        :func:`analysis.metrics.daily_panel` at terminal level.
    interventions : pandas.DataFrame
        The change log.
    exclude_merchants : tuple of str
        Never controls (the merchants of a shared fault).
    onsets : dict
        Fault starts by change id or scope value (:func:`analysis.fixes.onsets_from_faults`):
        the first fix's before period starts there; detected where missing.
    window_days : int
        Longest period the what-if is fitted on (the days before the fix).
    horizon_days : int
        Days ahead of the what-if's counts.
    """

    panel: pd.DataFrame
    interventions: pd.DataFrame
    exclude_merchants: tuple[str, ...] = ()
    onsets: Mapping[str, Any] = field(default_factory=dict)
    window_days: int = 28
    horizon_days: int = 30
    _measured: dict = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_measured", {})

    @classmethod
    def from_result(
        cls,
        dataset: "Dataset",
        result: "AnalysisResult",
        *,
        exclude_merchants: Sequence[str] = (),
        **kw: Any,
    ) -> "FixLabData":
        """Build the panel from ``analyze``'s result; the dataset gives the change log.

        The merchants of the result's shared faults (and ``exclude_merchants``) are
        never controls, and a fault's start opens the first fix's before period, as in
        ``analyze``'s ``fix_effects``.
        """
        from .fixes import exclusions_from_faults, onsets_from_faults
        from .metrics import daily_panel

        if dataset.interventions is None or not len(dataset.interventions):
            raise ValueError(
                "the dataset has no interventions: there is no fix to study; "
                "add an interventions table (see shared/CONTRACT.md)"
            )
        panel = daily_panel(
            result.reconciled,
            dataset.terminals,
            dataset.terminal_events,
            as_of=result.as_of,
            level="terminal",
            merchants=dataset.merchants,
        )
        iv = dataset.interventions.sort_values("applied_at", kind="stable").reset_index(drop=True)
        faults = list(result.shared_faults or [])
        exclude = sorted(set(exclusions_from_faults(faults)) | set(map(str, exclude_merchants)))
        return cls(
            panel=panel,
            interventions=iv,
            exclude_merchants=tuple(exclude),
            onsets=onsets_from_faults(faults),
            **kw,
        )

    # ------------------------------------------------------------- the interventions

    def intervention(self, change_id: str) -> dict:
        """The change log row of ``change_id`` as a dict."""
        hit = self.interventions[self.interventions["change_id"] == change_id]
        if hit.empty:
            raise KeyError(
                f"no intervention {change_id!r}; known: {self.interventions['change_id'].tolist()}"
            )
        return hit.iloc[0].to_dict()

    def real_date(self, change_id: str) -> date:
        """The business date the change was really applied."""
        return pd.Timestamp(self.intervention(change_id)["applied_at"]).tz_localize(None).date()

    @property
    def days(self) -> list[date]:
        """Every business date of the panel."""
        d = self.panel["business_date"]
        return [x.date() for x in pd.date_range(d.min(), d.max(), freq="D")]

    def _moved(self, change_id: str, fix_date: date) -> tuple[dict, pd.DataFrame]:
        row = self.intervention(change_id)
        tz = pd.Timestamp(row["applied_at"]).tz
        row["applied_at"] = (pd.Timestamp(fix_date) + FIX_TIME).tz_localize(tz)
        table = self.interventions.copy()
        table.loc[table["change_id"] == change_id, "applied_at"] = row["applied_at"]
        return row, table

    def fit_period(self, change_id: str, fix_date: date) -> tuple[pd.Timestamp, pd.Timestamp]:
        """Days the what-if learns from: up to ``window_days`` before the fix, after any earlier
        fix on the same scope (inclusive start, exclusive end)."""
        row = self.intervention(change_id)
        end = pd.Timestamp(fix_date)
        start = end - pd.Timedelta(days=self.window_days)
        iv = self.interventions
        same = iv[
            (iv["scope_type"] == row["scope_type"])
            & (iv["scope_value"] == row["scope_value"])
            & (iv["change_id"] != change_id)
        ]
        earlier = [
            pd.Timestamp(t).tz_localize(None).normalize() + pd.Timedelta(days=1)
            for t in same["applied_at"]
            if pd.Timestamp(t).tz_localize(None).normalize() < end
        ]
        return (max([start, *earlier]), end)

    def observed_link_rate(self, change_id: str, fix_date: date) -> float:
        """Link failures (corrupted + lost) per attempt in the scope over the fit period."""
        from .fixes import scope_mask

        row = self.intervention(change_id)
        start, end = self.fit_period(change_id, fix_date)
        p = self.panel
        keep = (
            scope_mask(p, str(row["scope_type"]), str(row["scope_value"]))
            & p["business_date"].ge(start).to_numpy()
            & p["business_date"].lt(end).to_numpy()
        )
        rows = p.loc[keep]
        attempts = rows["attempts"].sum()
        return (
            float((rows["link_corrupted"].sum() + rows["link_lost"].sum()) / attempts)
            if attempts
            else 0.0
        )

    # ------------------------------------------------------------- the two answers

    def measured(self, change_id: str, fix_date: date):
        """The effect on the unsettled rate of the change applied on ``fix_date``
        (:func:`analysis.fixes.evaluate_fix`, no bootstrap; cached)."""
        from .fixes import evaluate_fix

        key = (change_id, fix_date)
        if key not in self._measured:
            row, table = self._moved(change_id, fix_date)
            self._measured[key] = evaluate_fix(
                self.panel,
                row,
                interventions=table,
                exclude_merchants=self.exclude_merchants,
                onset=self.onset(change_id),
                n_boot=0,
            )
        return self._measured[key]

    def onset(self, change_id: str) -> Any:
        """The start of the fault the change is on (None: unknown, detected if need be)."""
        row = self.intervention(change_id)
        for key in (change_id, str(row["scope_value"])):
            if self.onsets.get(key) is not None:
                return self.onsets[key]
        return None

    def predicted(self, params: FixLabParams):
        """The what-if (:func:`analysis.fixes.simulate_fix`) fitted on the days before the fix;
        None when no fix is assumed."""
        from .fixes import simulate_fix

        if not params.kinds:
            return None
        row = self.intervention(params.change_id)
        return simulate_fix(
            self.panel,
            (row["scope_type"], row["scope_value"]),
            params.kinds,
            link_error_rate=params.link_error_rate,
            retries=params.retries,
            period=self.fit_period(params.change_id, params.fix_date),
            horizon_days=self.horizon_days,
        )

    def default_params(self, change_id: str | None = None) -> FixLabParams:
        """The change at its real date with the observed link failure rate and its own kind."""
        cid = change_id or str(self.interventions["change_id"].iloc[0])
        kind = str(self.intervention(cid)["kind"])
        day = self.real_date(cid)
        return FixLabParams(
            change_id=cid,
            fix_date=day,
            link_error_rate=self.observed_link_rate(cid, day),
            upgrade=kind == "network_upgrade",
            validation=kind == "message_validation",
            retries=1,
        )


# --------------------------------------------------------------------------- fix lab views (pure)


def _points(value: float) -> str:
    return f"{100 * value:+.2f}" if np.isfinite(value) else "n/a"


def _lab_answers(data: FixLabData, params: FixLabParams) -> tuple[Any, Any, str | None]:
    """(measured effect, what-if, error message); the error says why something is missing."""
    try:
        measured = data.measured(params.change_id, params.fix_date)
    except ValueError as exc:
        return None, None, f"cannot measure: {exc}"
    try:
        whatif = data.predicted(params)
    except ValueError as exc:
        return measured, None, f"cannot predict: {exc}"
    return measured, whatif, None


def fixlab_readout(data: FixLabData, params: FixLabParams) -> str:
    """One line: the fix, the what-if's predicted change and the measured change, in points."""
    row = data.intervention(params.change_id)
    head = (
        f"{params.change_id} on {row['scope_type']} {row['scope_value']} from "
        f"{params.fix_date:%Y-%m-%d}"
    )
    measured, whatif, error = _lab_answers(data, params)
    if whatif is None:
        what = (
            "what-if: no fix assumed" if error is None or not params.kinds else f"what-if: {error}"
        )
    else:
        mean, lo, hi = whatif.avoided_unsettled_rate
        resends = f", {params.retries} resend(s)" if params.validation else ""
        what = (
            f"what-if ({' + '.join(params.kinds)}{resends}, link failures "
            f"{100 * params.link_error_rate:.2f}% of attempts): {_points(-mean)} points "
            f"(95% {_points(-hi)} to {_points(-lo)})"
        )
    if measured is None:
        seen = error or "measured: n/a"
    else:
        seen = (
            f"measured: {_points(measured.effect)} points (95% CI {_points(measured.ci_low)} to "
            f"{_points(measured.ci_high)}, {measured.method})"
        )
    return f"Unsettled rate change after {head} · {what} · {seen}"


def render_fixlab(data: FixLabData, params: FixLabParams) -> Figure:
    """The scope's and the controls' daily unsettled rate around the fix (left) and the
    predicted against the measured change of the unsettled rate (right)."""
    measured, whatif, error = _lab_answers(data, params)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1.6, 1])
    if measured is not None and len(measured.daily):
        measured.plot(ax1)
    else:
        ax1.text(
            0.5,
            0.5,
            error or "no data",
            ha="center",
            va="center",
            transform=ax1.transAxes,
            wrap=True,
        )
        ax1.set_title("Unsettled rate around the fix")
    ax1.axvline(pd.Timestamp(params.fix_date), color="tab:purple", lw=1, ls=":")
    rows = []
    if whatif is not None:
        mean, lo, hi = whatif.avoided_unsettled_rate
        rows.append(("what-if (predicted)", -mean, -hi, -lo, "tab:orange"))
    if measured is not None and np.isfinite(measured.effect):
        rows.append(
            (
                "measured (vs controls)",
                measured.effect,
                measured.ci_low,
                measured.ci_high,
                "tab:red",
            )
        )
    for y, (label, mid, lo, hi, colour) in enumerate(rows):
        lo = mid if not np.isfinite(lo) else lo
        hi = mid if not np.isfinite(hi) else hi
        ax2.errorbar(
            [100 * mid],
            [y],
            xerr=[[100 * (mid - lo)], [100 * (hi - mid)]],
            fmt="o",
            color=colour,
            capsize=5,
            label=f"{label}: {_points(mid)} points",
        )
    ax2.axvline(0, color="0.5", lw=0.8)
    ax2.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax2.set_ylim(-0.8, max(len(rows), 1) - 0.2)
    ax2.set_xlabel("change in unsettled rate (percentage points), 95% interval")
    ax2.set_title(
        f"Predicted vs measured: {params.change_id} from {params.fix_date:%Y-%m-%d}", fontsize=10
    )
    ax2.tick_params(axis="x", labelrotation=0)  # the left plot's date formatting rotates every axis
    for label in ax2.get_xticklabels():
        label.set_horizontalalignment("center")
    if rows:
        ax2.legend(fontsize=7, loc="lower left")
    return fig


def fixlab_tables_html(data: FixLabData, params: FixLabParams) -> str:
    """The what-if's inputs (rates with intervals) and the measured effect by method, as HTML."""
    measured, whatif, error = _lab_answers(data, params)
    parts = []
    if whatif is not None:
        inputs = whatif.inputs.reset_index()[
            ["input", "estimate", "ci_low", "ci_high", "cases", "n"]
        ]
        parts.append(
            "<b>What-if inputs</b> (per attempt or per event, fitted on "
            f"{whatif.period[0]:%Y-%m-%d} to {whatif.period[1] - pd.Timedelta(days=1):%Y-%m-%d})"
        )
        parts.append(frame_html(inputs.round(5)))
    if measured is not None:
        methods = measured.methods[["method", "effect", "ci_low", "ci_high", "p_value"]].copy()
        parts.append(
            f"<b>Measured effect</b> ({measured.n_treated} units in scope, "
            f"{measured.n_control} controls)"
        )
        parts.append(frame_html(methods.round(5)))
        if measured.notes:
            parts.append(
                "<ul>"
                + "".join(f"<li>{html.escape(str(mask_text(n)))}</li>" for n in measured.notes)
                + "</ul>"
            )
    if error:
        parts.append(f"<p><i>{html.escape(error)}</i></p>")
    return "".join(parts)


# --------------------------------------------------------------------------- fix lab widget


class FixLab(_Dashboard):
    """What-if prediction against measured effect for a fix, with sliders.

    Parameters
    ----------
    dataset : Dataset
        Needs an ``interventions`` table.
    result : AnalysisResult
        ``analyze``'s result of the dataset.
    change_id : str, optional
        The intervention to start with (default: the first applied).
    exclude_merchants : sequence of str
        Never controls (the merchants of a shared fault).

    Attributes
    ----------
    change : ipywidgets.Dropdown
        The intervention (its scope and kind).
    fix_date : ipywidgets.SelectionSlider
        When the fix is applied (value: ``datetime.date``); its real date first.
        Moving it measures a fix "as if" applied that day (a placebo check).
    link_error_rate : ipywidgets.FloatSlider
        Link failures per 100 attempts the what-if assumes (value in percent).
    upgrade, validation : ipywidgets.Checkbox
        The what-if includes a network upgrade / message validation.
    retries : ipywidgets.IntSlider
        Resends message validation allows.
    readout : ipywidgets.Label
        Predicted and measured change in words.
    figure : ipywidgets.Image
        :func:`render_fixlab`.
    table : ipywidgets.HTML
        :func:`fixlab_tables_html`.
    widget : ipywidgets.VBox
    """

    css = "fixlab"
    render = staticmethod(render_fixlab)

    def __init__(
        self,
        dataset: "Dataset",
        result: "AnalysisResult",
        *,
        change_id: str | None = None,
        exclude_merchants: Sequence[str] = (),
    ) -> None:
        import ipywidgets as widgets

        super().__init__()
        self.data = FixLabData.from_result(dataset, result, exclude_merchants=exclude_merchants)
        p = self.data.default_params(change_id)
        wide = {"description_width": "120px"}
        iv = self.data.interventions
        self.change = widgets.Dropdown(
            options=[
                (f"{r.change_id} {r.kind} {r.scope_type}={r.scope_value}", r.change_id)
                for r in iv.itertuples()
            ],
            value=p.change_id,
            description="fix",
            style=wide,
            layout=widgets.Layout(width="560px"),
        )
        self.fix_date = widgets.SelectionSlider(
            options=[(f"{d:%m-%d}", d) for d in self.data.days],
            value=p.fix_date,
            description="fix date",
            style=wide,
            layout=widgets.Layout(width="560px"),
        )
        top = max(5.0, round(300 * p.link_error_rate, 1))
        self.link_error_rate = widgets.FloatSlider(
            value=round(100 * p.link_error_rate, 2),
            min=0.0,
            max=top,
            step=0.01,
            readout_format=".2f",
            description="link failures %",
            style=wide,
            layout=widgets.Layout(width="560px"),
        )
        self.upgrade = widgets.Checkbox(
            value=p.upgrade, description="network upgrade", indent=False
        )
        self.validation = widgets.Checkbox(
            value=p.validation, description="message validation", indent=False
        )
        self.retries = widgets.IntSlider(
            value=p.retries, min=0, max=5, description="resends", style=wide
        )
        self.table = widgets.HTML()
        for name in (
            "change",
            "fix_date",
            "link_error_rate",
            "upgrade",
            "validation",
            "retries",
            "table",
        ):
            getattr(self, name).add_class(f"fixlab-{name.replace('_', '-')}")
        self._watch(
            [self.fix_date, self.link_error_rate, self.upgrade, self.validation, self.retries],
            lambda change: self.refresh(),
        )
        self._watch([self.change], self._on_change)
        self.widget = widgets.VBox(
            [
                widgets.HTML(
                    "<b>Fix lab</b> — what-if prediction (模拟预测) against measured effect (实测效果)"
                ),
                self.change,
                self.fix_date,
                self.link_error_rate,
                widgets.HBox([self.upgrade, self.validation, self.retries]),
                self.readout,
                self.figure,
                self.table,
            ]
        )
        self.refresh()

    @property
    def params(self) -> FixLabParams:
        """The controls' current values."""
        return FixLabParams(
            change_id=self.change.value,
            fix_date=self.fix_date.value,
            link_error_rate=self.link_error_rate.value / 100.0,
            upgrade=bool(self.upgrade.value),
            validation=bool(self.validation.value),
            retries=int(self.retries.value),
        )

    def refresh(self) -> None:
        """Recompute figure, tables and readout from the controls."""
        p = self.params
        self._show_figure(self.render(self.data, p))
        self.table.value = fixlab_tables_html(self.data, p)
        self.readout.value = fixlab_readout(self.data, p)  # last: once it changes, all has

    def _on_change(self, change: dict) -> None:
        p = self.data.default_params(self.change.value)
        with self._hold():
            self.fix_date.value = p.fix_date
            self.link_error_rate.value = round(100 * p.link_error_rate, 2)
            self.upgrade.value, self.validation.value = p.upgrade, p.validation
        self.refresh()
