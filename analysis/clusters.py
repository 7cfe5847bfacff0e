"""Merchant clusters: who shares a place, and who shares infrastructure.

A shared fault (``shared/CONTRACT.md``, *Definitions*) is localized either by place
(shops close together, e.g. on one street served by one exchange) or by an
attribute of their terminals (network segment, model, firmware, connection). This
module builds both groupings, one row per merchant, and writes ``clusters.csv``.

Spatial clusters
----------------
Density-based clustering (DBSCAN, Ester et al. 1996; or HDBSCAN, Campello et al.
2013, both from scikit-learn) with ``metric="haversine"`` on ``(latitude,
longitude)`` in radians. Haversine distances are central angles, so a radius in
metres is converted with the mean Earth radius ``R = 6,371,008.8 m`` (IUGG mean
radius R1): ``eps_rad = eps_m / R``. Great-circle distances on the sphere differ
from WGS84 ellipsoidal ones by at most about 0.5 %, which is far below the
precision of shop coordinates.

Cluster ids (deterministic, independent of input row order)
-----------------------------------------------------------
* ``S001``, ``S002``, ... -- spatial clusters (at least ``min_samples`` merchants
  each for DBSCAN), numbered by size (largest first), ties broken by centroid
  latitude, then longitude (both descending: north first, then east), then by
  the smallest member ``merchant_id``.
* ``N-<merchant_id>`` -- a merchant that belongs to no spatial cluster (DBSCAN
  "noise") is its own singleton cluster, so every merchant has exactly one
  ``cluster_id``.

Rows are sorted by ``merchant_id`` before clustering, so DBSCAN's only
order-dependent step (which cluster claims a border point reachable from two
clusters) is decided by merchant id, never by file order.

Examples
--------
>>> import pandas as pd
>>> m = pd.DataFrame({
...     "merchant_id": ["001", "002", "003", "004"],
...     "latitude": [31.2300, 31.2305, 31.2310, 31.3000],
...     "longitude": [121.4700, 121.4700, 121.4700, 121.5000],
... })
>>> mc = spatial_clusters(m, eps_m=100, min_samples=3)
>>> mc.to_contract()["cluster_id"].tolist()
['S001', 'S001', 'S001', 'N-004']
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

import numpy as np
import pandas as pd

from .exceptions import DatasetError

#: mean Earth radius in metres (IUGG R1), used to turn metres into haversine radians
EARTH_RADIUS_M = 6_371_008.8

#: terminal attributes that can localize a shared fault
INFRA_ATTRIBUTES = ("network_segment", "model", "firmware", "connection")

NOISE_PREFIX = "N-"
SPATIAL_PREFIX = "S"

__all__ = [
    "EARTH_RADIUS_M",
    "INFRA_ATTRIBUTES",
    "MerchantClusters",
    "cluster_merchants",
    "group_table",
    "haversine_m",
    "infrastructure_groups",
    "spatial_clusters",
]


# --------------------------------------------------------------------------- geometry


def haversine_m(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in metres between points given in degrees (vectorized).

    Parameters
    ----------
    lat1, lon1, lat2, lon2 : array_like
        Coordinates in decimal degrees (WGS84); broadcast against each other.

    Returns
    -------
    numpy.ndarray
        Distances in metres on a sphere of radius :data:`EARTH_RADIUS_M`.

    Examples
    --------
    >>> round(float(haversine_m(0.0, 0.0, 0.0, 1.0)))  # one degree on the equator
    111195
    """
    p1, l1, p2, l2 = (np.radians(np.asarray(a, dtype=float)) for a in (lat1, lon1, lat2, lon2))
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin((l2 - l1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def _spherical_centroid(lat: np.ndarray, lon: np.ndarray) -> tuple[float, float]:
    """Centroid of points on the sphere (mean unit vector), in degrees; safe at the date line."""
    p, l = np.radians(lat), np.radians(lon)
    x, y, z = (np.cos(p) * np.cos(l)).mean(), (np.cos(p) * np.sin(l)).mean(), np.sin(p).mean()
    return float(np.degrees(np.arctan2(z, np.hypot(x, y)))), float(np.degrees(np.arctan2(y, x)))


# --------------------------------------------------------------------------- validation


def _require_columns(df: pd.DataFrame, columns: tuple[str, ...], table: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DatasetError(
            f"expected columns {list(columns)}, missing {missing}; "
            f"pass the contract's {table} table (see shared/CONTRACT.md)",
            file=table,
        )


def _validated_merchants(merchants: pd.DataFrame) -> pd.DataFrame:
    """merchant_id (str), latitude, longitude sorted by merchant_id; errors name the bad rows."""
    _require_columns(merchants, ("merchant_id", "latitude", "longitude"), "merchants")
    m = pd.DataFrame(
        {
            "merchant_id": merchants["merchant_id"].astype(str),
            "latitude": pd.to_numeric(merchants["latitude"], errors="coerce"),
            "longitude": pd.to_numeric(merchants["longitude"], errors="coerce"),
        }
    )
    dup = m["merchant_id"][m["merchant_id"].duplicated()].unique()
    if len(dup):
        raise DatasetError(
            f"merchant_id must be unique, found duplicates {sorted(dup)[:5]}; "
            "keep one row per merchant",
            file="merchants",
            column="merchant_id",
        )
    for col, bound in (("latitude", 90.0), ("longitude", 180.0)):
        bad = m["merchant_id"][~m[col].between(-bound, bound)]
        if len(bad):
            raise DatasetError(
                f"expected WGS84 degrees in [-{bound:g}, {bound:g}], found {len(bad)} missing or "
                f"out-of-range values (merchant_id {sorted(bad)[:5]}); fix or drop those rows",
                file="merchants",
                column=col,
            )
    return m.sort_values("merchant_id", kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- spatial


def _density_labels(
    lat: np.ndarray, lon: np.ndarray, eps_m: float, min_samples: int, method: str
) -> tuple[np.ndarray, float]:
    """Raw scikit-learn labels (-1 = noise) for points in degrees, and the eps applied (m)."""
    from sklearn.cluster import DBSCAN

    if method not in ("dbscan", "hdbscan"):
        raise ValueError(f"method must be 'dbscan' or 'hdbscan', got {method!r}")
    if len(lat) < (1 if method == "dbscan" else 2):
        return np.full(len(lat), -1), eps_m
    X = np.radians(np.column_stack([lat, lon]))
    if method == "hdbscan":
        return _hdbscan_labels(X, eps_m, min_samples)
    model = DBSCAN(
        eps=eps_m / EARTH_RADIUS_M, min_samples=min_samples, metric="haversine",
        algorithm="ball_tree",
    )
    return model.fit(X).labels_, eps_m


def _hdbscan_labels(X: np.ndarray, eps_m: float, min_samples: int) -> tuple[np.ndarray, float]:
    """HDBSCAN labels; without the eps merge where scikit-learn's epsilon search fails.

    scikit-learn issue #33219: with ``cluster_selection_epsilon > 0`` and NumPy 2.x,
    ``HDBSCAN.fit`` raises ``TypeError: only 0-dimensional arrays ...`` on some inputs
    (tied distances). Then plain HDBSCAN is used, with a warning, and the eps
    actually applied (0) is recorded in ``params["eps_applied_m"]``.
    """
    from sklearn.cluster import HDBSCAN

    def fit(eps: float) -> np.ndarray:
        return HDBSCAN(
            min_cluster_size=max(2, min_samples),
            min_samples=min(min_samples, len(X)),
            cluster_selection_epsilon=eps / EARTH_RADIUS_M,
            metric="haversine",
            copy=True,
        ).fit(X).labels_

    try:
        return fit(eps_m), eps_m
    except TypeError as exc:
        if eps_m == 0 or "0-dimensional" not in str(exc):
            raise
        warnings.warn(
            f"scikit-learn's HDBSCAN failed with cluster_selection_epsilon ({exc}; "
            "scikit-learn issue #33219); clustered without the eps merge",
            RuntimeWarning,
            stacklevel=3,
        )
        return fit(0.0), 0.0


def _cluster_ids(m: pd.DataFrame, labels: np.ndarray) -> pd.Series:
    """Map raw labels to the documented id scheme (see module docstring)."""
    clustered = m.assign(label=labels)[labels >= 0]
    if clustered.empty:
        ranked: dict[int, str] = {}
    else:
        stats = clustered.groupby("label").agg(
            size=("merchant_id", "size"),
            lat=("latitude", "mean"),
            lon=("longitude", "mean"),
            first=("merchant_id", "min"),
        )
        stats = stats.sort_values(
            ["size", "lat", "lon", "first"], ascending=[False, False, False, True], kind="stable"
        )
        width = max(3, len(str(len(stats))))
        ranked = {lab: f"{SPATIAL_PREFIX}{i:0{width}d}" for i, lab in enumerate(stats.index, 1)}
    ids = pd.Series(labels, index=m.index).map(ranked).astype("string")
    return ids.fillna(NOISE_PREFIX + m["merchant_id"].astype("string")).astype(str)


def spatial_clusters(
    merchants: pd.DataFrame,
    *,
    eps_m: float = 300.0,
    min_samples: int = 3,
    method: Literal["dbscan", "hdbscan"] = "dbscan",
) -> "MerchantClusters":
    """Cluster merchants by location with DBSCAN/HDBSCAN on great-circle distance.

    Parameters
    ----------
    merchants : pandas.DataFrame
        Needs ``merchant_id`` (unique), ``latitude`` and ``longitude`` (WGS84 degrees).
    eps_m : float, default 300
        Neighbourhood radius in metres. DBSCAN: two shops closer than this are
        neighbours. HDBSCAN: clusters closer than this are merged
        (``cluster_selection_epsilon``); use 0 for plain HDBSCAN. Where
        scikit-learn's epsilon search fails (its issue #33219) HDBSCAN runs without
        it, with a ``RuntimeWarning``; ``params["eps_applied_m"]`` says which ran.
    min_samples : int, default 3
        DBSCAN: neighbours (the shop itself included) a core shop needs, hence the
        smallest cluster size -- 3 matches the contract's "at least 3 merchants".
        HDBSCAN: used as both ``min_cluster_size`` and ``min_samples``.
    method : {"dbscan", "hdbscan"}
        The density algorithm. DBSCAN (default) gives the fixed-radius reading a
        street-level fault needs. HDBSCAN adapts to varying density, but its
        excess-of-mass selection attaches every point that falls out of a selected
        cluster to that cluster, so with few shops an isolated shop kilometres away
        can join a cluster; check ``summary()["radius_m"]`` when using it.

    Returns
    -------
    MerchantClusters
        One row per merchant; infrastructure columns are empty (see
        :func:`cluster_merchants` to fill them).

    Raises
    ------
    DatasetError
        Missing columns, duplicate ``merchant_id`` or missing/out-of-range coordinates.

    Examples
    --------
    >>> import pandas as pd
    >>> m = pd.DataFrame({"merchant_id": ["a", "b", "c"], "latitude": [31.0, 31.001, 31.002],
    ...                   "longitude": [121.0, 121.0, 121.0]})
    >>> spatial_clusters(m, eps_m=150).to_contract()["cluster_id"].tolist()
    ['S001', 'S001', 'S001']
    """
    if not eps_m >= 0 or int(min_samples) < 1:
        raise ValueError(f"need eps_m >= 0 and min_samples >= 1, got {eps_m!r}, {min_samples!r}")
    m = _validated_merchants(merchants)
    labels, eps_applied = _density_labels(
        m["latitude"].to_numpy(), m["longitude"].to_numpy(), float(eps_m), int(min_samples), method
    )
    cluster_id = _cluster_ids(m, labels)
    assignments = m.assign(
        cluster_id=cluster_id,
        spatial_cluster=cluster_id.where(labels >= 0, pd.NA),
        **{a: pd.Series(pd.NA, index=m.index, dtype="string") for a in INFRA_ATTRIBUTES},
    )[list(_ASSIGNMENT_COLUMNS)]
    params = {
        "method": method,
        "eps_m": float(eps_m),
        "eps_applied_m": float(eps_applied),
        "min_samples": int(min_samples),
        "metric": "haversine",
        "earth_radius_m": EARTH_RADIUS_M,
    }
    return MerchantClusters(assignments=assignments, params=params)


# --------------------------------------------------------------------------- infrastructure


def _dominant(terminals: pd.DataFrame, attribute: str) -> tuple[pd.Series, pd.Series]:
    """Per merchant: the value on most terminals (ties: smallest value) and the sorted values."""
    t = terminals[["merchant_id", attribute]].dropna()
    counts = t.groupby(["merchant_id", attribute]).size().rename("n").reset_index()
    counts = counts.sort_values(["merchant_id", "n", attribute], ascending=[True, False, True])
    dominant = counts.drop_duplicates("merchant_id").set_index("merchant_id")[attribute]
    by_value = counts.sort_values(["merchant_id", attribute])
    values = by_value.groupby("merchant_id")[attribute].agg(list)
    return dominant, values


def infrastructure_groups(
    terminals: pd.DataFrame, merchants: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per merchant: its network segment, model, firmware and connection.

    A merchant with several terminals may use several values; the *dominant* value
    is the one on most of its terminals (ties broken by the smallest value), and
    the plural column lists every value in sorted order.

    Parameters
    ----------
    terminals : pandas.DataFrame
        The contract's terminals table: ``merchant_id`` and any of
        ``network_segment, model, firmware, connection``.
    merchants : pandas.DataFrame, optional
        When given, the result has exactly its merchants (those without terminals
        get missing values and empty lists; terminals of unknown merchants are left out).

    Returns
    -------
    pandas.DataFrame
        Columns ``merchant_id, n_terminals`` and, per attribute ``a``, ``a`` (dominant)
        and ``a + "s"`` (list), e.g. ``network_segment, network_segments``; sorted by
        ``merchant_id``. Use :func:`group_table` for merchants per value.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"terminal_id": ["t1", "t2", "t3"], "merchant_id": ["m1", "m1", "m1"],
    ...                   "network_segment": ["CT-1", "CU-2", "CU-2"], "model": ["A", "A", "B"],
    ...                   "firmware": ["1.0", "1.0", "1.0"], "connection": ["4g", "4g", "wifi"]})
    >>> g = infrastructure_groups(t)
    >>> g.loc[0, "network_segment"], g.loc[0, "network_segments"]
    ('CU-2', ['CT-1', 'CU-2'])
    """
    _require_columns(terminals, ("merchant_id",), "terminals")
    attributes = [a for a in INFRA_ATTRIBUTES if a in terminals.columns]
    t = terminals.assign(merchant_id=terminals["merchant_id"].astype(str))
    ids = (
        pd.Index(merchants["merchant_id"].astype(str).unique(), name="merchant_id")
        if merchants is not None
        else pd.Index(t["merchant_id"].unique(), name="merchant_id")
    )
    out = pd.DataFrame(index=ids.sort_values())
    out["n_terminals"] = t.groupby("merchant_id").size().reindex(out.index).fillna(0).astype(int)
    for a in attributes:
        dominant, values = _dominant(t.assign(**{a: t[a].astype("string")}), a)
        out[a] = dominant.reindex(out.index).astype("string")
        lists = values.to_dict()
        out[f"{a}s"] = pd.Series(
            [lists.get(i, []) for i in out.index], index=out.index, dtype=object
        )
    return out.reset_index()


def group_table(terminals: pd.DataFrame, attribute: str) -> pd.DataFrame:
    """Merchants (and terminals) per value of one infrastructure attribute.

    Parameters
    ----------
    terminals : pandas.DataFrame
        ``merchant_id`` and ``attribute`` columns.
    attribute : str
        e.g. ``"network_segment"``, ``"model"``, ``"firmware"``, ``"connection"``.

    Returns
    -------
    pandas.DataFrame
        ``attribute, n_merchants, n_terminals, merchant_ids`` (sorted list), sorted by
        ``n_merchants`` descending then value. A merchant with terminals on two
        values counts in both.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"merchant_id": ["m1", "m2", "m2"], "model": ["A", "A", "B"]})
    >>> group_table(t, "model")[["model", "n_merchants", "n_terminals"]].values.tolist()
    [['A', 2, 2], ['B', 1, 1]]
    """
    _require_columns(terminals, ("merchant_id", attribute), "terminals")
    t = terminals[["merchant_id", attribute]].dropna().astype({"merchant_id": str})
    g = t.groupby(attribute)["merchant_id"]
    out = pd.DataFrame(
        {
            "n_merchants": g.nunique(),
            "n_terminals": g.size(),
            "merchant_ids": g.agg(lambda s: sorted(s.unique())),
        }
    ).reset_index()
    out = out.sort_values(["n_merchants", attribute], ascending=[False, True])
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------- result

_ASSIGNMENT_COLUMNS = (
    "merchant_id",
    "cluster_id",
    "spatial_cluster",
    "latitude",
    "longitude",
    *INFRA_ATTRIBUTES,
)


@dataclass(frozen=True)
class MerchantClusters:
    """Merchant clusters: one row per merchant, ready for ``clusters.csv``.

    Attributes
    ----------
    assignments : pandas.DataFrame
        ``merchant_id, cluster_id, spatial_cluster, latitude, longitude,
        network_segment, model, firmware, connection`` sorted by ``merchant_id``.
        ``cluster_id`` is always set (``S001``... or ``N-<merchant_id>``);
        ``spatial_cluster`` is the same id for clustered merchants and NA for
        singletons; the infrastructure columns are each merchant's dominant value
        (NA when unknown).
    params : dict
        The clustering parameters: method, eps_m, eps_applied_m (the eps actually
        used; 0 where HDBSCAN had to run without it), min_samples, metric, earth radius.
    groups : dict of str to pandas.DataFrame
        Per infrastructure attribute, merchants per value (:func:`group_table`);
        empty when no terminals were given.
    """

    assignments: pd.DataFrame
    params: Mapping[str, Any]
    groups: Mapping[str, pd.DataFrame] = field(default_factory=dict)

    # ----------------------------------------------------------------- tables

    def to_contract(self) -> pd.DataFrame:
        """``merchant_id, cluster_id`` -- the contract's ``clusters.csv``, one row per merchant.

        Examples
        --------
        >>> import pandas as pd
        >>> m = pd.DataFrame({"merchant_id": ["x"], "latitude": [31.0], "longitude": [121.0]})
        >>> spatial_clusters(m).to_contract().to_dict("records")
        [{'merchant_id': 'x', 'cluster_id': 'N-x'}]
        """
        return self.assignments[["merchant_id", "cluster_id"]].reset_index(drop=True)

    def summary(self, include_singletons: bool = False) -> pd.DataFrame:
        """One row per cluster: size, centroid, radius and dominant network segment.

        Parameters
        ----------
        include_singletons : bool, default False
            Also list the ``N-...`` singleton clusters.

        Returns
        -------
        pandas.DataFrame
            ``cluster_id, n_merchants, centroid_lat, centroid_lon, radius_m`` (largest
            great-circle distance from the centroid to a member),
            ``network_segment`` (most common dominant segment among members, NA when
            unknown), ``segment_share`` (fraction of members on it) and
            ``merchant_ids``; in cluster-id order (largest cluster first).

        Examples
        --------
        >>> import pandas as pd
        >>> m = pd.DataFrame({"merchant_id": ["a", "b", "c"], "latitude": [31.0, 31.001, 31.002],
        ...                   "longitude": [121.0, 121.0, 121.0]})
        >>> s = spatial_clusters(m, eps_m=150).summary()
        >>> int(s.loc[0, "n_merchants"]), round(float(s.loc[0, "radius_m"]))
        (3, 111)
        """
        a = self.assignments
        if not include_singletons:
            a = a[a["spatial_cluster"].notna()]
        if a.empty:
            return pd.DataFrame(columns=list(_SUMMARY_COLUMNS))
        return pd.DataFrame(
            [_cluster_row(cid, g) for cid, g in a.groupby("cluster_id", sort=False)],
            columns=list(_SUMMARY_COLUMNS),
        ).pipe(_order_clusters)

    # ----------------------------------------------------------------- figure

    def plot(
        self,
        ax=None,
        rates: pd.Series | Mapping[str, float] | None = None,
        *,
        max_legend: int = 12,
    ):
        """Map of merchants coloured by cluster (or by a rate) with cluster outlines.

        Axes are longitude/latitude in degrees with a local equal-distance aspect
        (``1 / cos(mean latitude)``), so a circle on the ground looks round; no web
        tiles are fetched.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new figure is created when omitted.
        rates : pandas.Series or mapping, optional
            Value per ``merchant_id`` (e.g. an unsettled rate in 0–1); when given,
            merchants are coloured by it with a colour bar, otherwise by cluster.
        max_legend : int, default 12
            Largest number of clusters named in the legend.

        Returns
        -------
        matplotlib.axes.Axes

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import pandas as pd
        >>> m = pd.DataFrame({"merchant_id": list("abcd"), "latitude": [31.0, 31.001, 31.002, 31.1],
        ...                   "longitude": [121.0, 121.001, 121.0, 121.1]})
        >>> ax = spatial_clusters(m, eps_m=200).plot()
        >>> ax.get_xlabel()
        'longitude (°E)'
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 6))
        a = self.assignments
        clustered = a[a["spatial_cluster"].notna()]
        ids = list(dict.fromkeys(clustered.sort_values("cluster_id")["cluster_id"]))
        colours = {cid: plt.get_cmap("tab20")(i % 20) for i, cid in enumerate(ids)}
        if rates is not None:
            r = pd.Series(rates, dtype=float).reindex(a["merchant_id"]).to_numpy()
            sc = ax.scatter(a["longitude"], a["latitude"], c=r, cmap="viridis", s=22, zorder=3,
                            edgecolors="k", linewidths=0.3, label="merchant (colour = rate)")
            ax.figure.colorbar(sc, ax=ax, label="rate (0–1)")
        else:
            noise = a[a["spatial_cluster"].isna()]
            ax.scatter(noise["longitude"], noise["latitude"], s=12, c="0.6", zorder=2,
                       label=f"not clustered ({len(noise)})")
            for i, cid in enumerate(ids):
                g = clustered[clustered["cluster_id"] == cid]
                ax.scatter(g["longitude"], g["latitude"], s=22, color=colours[cid], zorder=3,
                           label=f"{cid} ({len(g)})" if i < max_legend else None)
        for cid in ids:
            g = clustered[clustered["cluster_id"] == cid]
            _draw_hull(ax, g["longitude"].to_numpy(), g["latitude"].to_numpy(), colours[cid])
        lat0 = float(a["latitude"].mean()) if len(a) else 0.0
        ax.set_aspect(1.0 / max(np.cos(np.radians(lat0)), 1e-6), adjustable="datalim")
        ax.set_xlabel("longitude (°E)")
        ax.set_ylabel("latitude (°N)")
        p = self.params
        ax.set_title(
            f"Merchant clusters: {len(ids)} spatial, {len(a) - len(clustered)} single "
            f"({p.get('method', '?')}, eps {p.get('eps_m', float('nan')):g} m, "
            f"min {p.get('min_samples', '?')})"
        )
        ax.annotate(f"local equal-distance aspect at {lat0:.2f}°N; outlines = convex hulls",
                    xy=(0.01, 0.01), xycoords="axes fraction", fontsize=7, color="0.3")
        ax.legend(loc="best", fontsize=7, markerscale=0.8)
        return ax


_SUMMARY_COLUMNS = (
    "cluster_id",
    "n_merchants",
    "centroid_lat",
    "centroid_lon",
    "radius_m",
    "network_segment",
    "segment_share",
    "merchant_ids",
)


def _cluster_row(cid: str, g: pd.DataFrame) -> dict[str, Any]:
    lat, lon = g["latitude"].to_numpy(), g["longitude"].to_numpy()
    clat, clon = _spherical_centroid(lat, lon)
    seg = g["network_segment"].dropna().value_counts()
    seg = seg[seg == seg.max()].sort_index() if len(seg) else seg
    return {
        "cluster_id": cid,
        "n_merchants": len(g),
        "centroid_lat": clat,
        "centroid_lon": clon,
        "radius_m": float(haversine_m(clat, clon, lat, lon).max()),
        "network_segment": seg.index[0] if len(seg) else pd.NA,
        "segment_share": float(seg.iloc[0]) / len(g) if len(seg) else float("nan"),
        "merchant_ids": sorted(g["merchant_id"]),
    }


def _order_clusters(s: pd.DataFrame) -> pd.DataFrame:
    """Spatial clusters by id (= size order), then singletons by id."""
    key = s["cluster_id"].str.startswith(NOISE_PREFIX)
    s = s.assign(_k=key).sort_values(["_k", "cluster_id"]).drop(columns="_k")
    return s.reset_index(drop=True)


def _draw_hull(ax, x: np.ndarray, y: np.ndarray, colour) -> None:
    """Outline one cluster by its convex hull (a segment when the points are collinear)."""
    from scipy.spatial import ConvexHull, QhullError

    pts = np.unique(np.column_stack([x, y]), axis=0)
    if len(pts) < 2:
        return
    try:
        ring = pts[ConvexHull(pts).vertices]
        ring = np.vstack([ring, ring[:1]])
    except (QhullError, ValueError):  # collinear or coincident points
        order = np.lexsort((pts[:, 1], pts[:, 0]))
        ring = pts[order[[0, -1]]]
    ax.plot(ring[:, 0], ring[:, 1], color=colour, lw=1.2, alpha=0.8, zorder=2)


# --------------------------------------------------------------------------- convenience


def cluster_merchants(
    merchants: pd.DataFrame, terminals: pd.DataFrame | None = None, **kw: Any
) -> MerchantClusters:
    """Spatial clusters plus each merchant's dominant infrastructure and group tables.

    Parameters
    ----------
    merchants : pandas.DataFrame
        The contract's merchants table.
    terminals : pandas.DataFrame, optional
        The contract's terminals table; without it the infrastructure columns stay NA.
    **kw
        Passed to :func:`spatial_clusters` (``eps_m``, ``min_samples``, ``method``).

    Returns
    -------
    MerchantClusters

    Examples
    --------
    >>> import pandas as pd
    >>> m = pd.DataFrame({"merchant_id": ["a", "b", "c"], "latitude": [31.0, 31.001, 31.002],
    ...                   "longitude": [121.0, 121.0, 121.0]})
    >>> t = pd.DataFrame({"merchant_id": ["a", "b", "c"], "network_segment": ["X", "X", "Y"],
    ...                   "model": "M", "firmware": "1", "connection": "4g"})
    >>> s = cluster_merchants(m, t, eps_m=150).summary()
    >>> s.loc[0, "network_segment"], round(float(s.loc[0, "segment_share"]), 3)
    ('X', 0.667)
    """
    spatial = spatial_clusters(merchants, **kw)
    if terminals is None:
        return spatial
    infra = infrastructure_groups(terminals, merchants).set_index("merchant_id")
    a = spatial.assignments.set_index("merchant_id")
    for col in INFRA_ATTRIBUTES:
        if col in infra.columns:
            a[col] = infra[col].reindex(a.index)
    groups = {c: group_table(terminals, c) for c in INFRA_ATTRIBUTES if c in terminals.columns}
    return MerchantClusters(
        assignments=a.reset_index()[list(_ASSIGNMENT_COLUMNS)], params=spatial.params, groups=groups
    )
