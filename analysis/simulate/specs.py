"""What to simulate: the city, the faults injected into it and the fixes applied.

All specs are frozen dataclasses. Times are strings: ``"2026-03-16"`` (midnight)
or ``"2026-03-16 09:30"``, local Asia/Shanghai time (an ISO offset is converted).

Examples
--------
>>> from analysis.simulate.specs import CityConfig, UnstableLink, Fix
>>> cfg = CityConfig(seed=1, days=21, n_merchants=40,
...                  faults=(UnstableLink(start="2026-03-09"),),
...                  fixes=(Fix("network_upgrade", "network_segment", None, "2026-03-16 02:00"),))
>>> cfg.end_date
'2026-03-22'
>>> cfg.faults[0].error_rate
0.045
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from ..contract import INTERVENTION_KINDS, SCOPE_TYPES, TIMEZONE
from .catalog import ANCHOR_NAME, DISTRICTS

_LOCAL_SECOND = "datetime64[s]"


def local_seconds(value: str | None) -> np.datetime64 | None:
    """A time string as naive Asia/Shanghai ``datetime64[s]`` (None passes through).

    Examples
    --------
    >>> str(local_seconds("2026-03-16 09:30"))
    '2026-03-16T09:30:00'
    >>> str(local_seconds("2026-03-16T01:30:00+00:00"))
    '2026-03-16T09:30:00'
    """
    if value is None:
        return None
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert(TIMEZONE).tz_localize(None)
    return np.datetime64(ts.to_datetime64(), "s")


def _require(obj, name: str) -> None:
    if not getattr(obj, name):
        raise ValueError(f"{type(obj).__name__} needs {name}=..., e.g. {name}='2026-03-16'")


def _check_window(obj) -> None:
    """Validate ``start``/``end`` parse and end > start."""
    _require(obj, "start")
    start = local_seconds(obj.start)
    end = local_seconds(getattr(obj, "end", None))
    if end is not None and end <= start:
        raise ValueError(f"{type(obj).__name__}: end {obj.end!r} must be after start {obj.start!r}")


def _check_rate(obj, name: str) -> None:
    v = getattr(obj, name)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{type(obj).__name__}.{name} must lie in [0, 1], got {v}")


# -- faults ------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnstableLink:
    """A network segment whose link to the acquirer drops and corrupts messages.

    Parameters
    ----------
    segment : str or None
        The network segment (``terminals.network_segment``); None picks the
        city's case segment (the supermarket's, see ``SimulatedCity.truth.manifest``).
    start, end : str
        When the fault runs (end None: until the end of the simulation).
    error_rate : float
        Share of attempts on the segment that suffer a link failure while the
        fault runs (no response, MAC failure, ``A0``/``30``/``68``), on average.
    link_events_per_day : float
        Link-noise events (timeouts, resets, MAC errors, retransmits) per
        terminal and day at full strength, besides those tied to transactions.
    batch_failure_rate : float
        Probability per terminal and day that the end-of-day batch upload fails
        (that day's approved purchases then never clear).
    burstiness : float
        Sigma of the log-normal hour-by-hour multiplier of the error rate.

    Examples
    --------
    >>> UnstableLink(None, "2026-03-16").segment is None
    True
    """

    segment: str | None = None
    start: str = ""
    end: str | None = None
    error_rate: float = 0.045
    link_events_per_day: float = 6.0
    batch_failure_rate: float = 0.02
    burstiness: float = 0.8

    def __post_init__(self) -> None:
        _check_window(self)
        _check_rate(self, "error_rate")
        _check_rate(self, "batch_failure_rate")


@dataclass(frozen=True)
class FaultyFirmware:
    """Terminals running ``firmware`` reboot and reverse approved transactions (reason ``96``).

    Parameters
    ----------
    firmware : str
        A firmware version of :data:`analysis.simulate.catalog.FIRMWARES`.
    start, end : str
        When the fault runs.
    reboots_per_day : float
        Spontaneous reboots per affected terminal and day.
    reversal_rate : float
        Share of approved attempts reversed with reason ``96`` (reversal sent or failed).

    Examples
    --------
    >>> FaultyFirmware("A920-2.1.09", "2026-03-10").reversal_rate
    0.012
    """

    firmware: str
    start: str = ""
    end: str | None = None
    reboots_per_day: float = 0.6
    reversal_rate: float = 0.012

    def __post_init__(self) -> None:
        _check_window(self)
        _check_rate(self, "reversal_rate")


@dataclass(frozen=True)
class MisconfiguredMerchant:
    """One merchant's settings are wrong from ``start``.

    ``mode='wrong_account'``: every credit of its purchases is returned
    ``invalid_account``. ``mode='no_upload'``: its terminals never upload their
    batch (no ``batch_upload_ok`` events) so its approved purchases never clear,
    while its line is healthy.

    Parameters
    ----------
    merchant_id : str or None
        None picks a merchant away from any faulty segment.
    mode : {'wrong_account', 'no_upload'}
    start, end : str

    Examples
    --------
    >>> MisconfiguredMerchant(None, "no_upload", "2026-04-09").mode
    'no_upload'
    """

    merchant_id: str | None = None
    mode: str = "wrong_account"
    start: str = ""
    end: str | None = None

    def __post_init__(self) -> None:
        _check_window(self)
        if self.mode not in ("wrong_account", "no_upload"):
            raise ValueError(
                f"MisconfiguredMerchant.mode must be 'wrong_account' or 'no_upload', got {self.mode!r}"
            )


@dataclass(frozen=True)
class FrozenAccount:
    """A merchant's settlement account is frozen (or closed) from ``start``: credits are returned.

    Examples
    --------
    >>> FrozenAccount(None, "2026-04-20", closed=True).closed
    True
    """

    merchant_id: str | None = None
    start: str = ""
    closed: bool = False
    end: str | None = None

    def __post_init__(self) -> None:
        _check_window(self)


@dataclass(frozen=True)
class BankOutage:
    """A receiving bank is unavailable: transfers to it are declined ``91``/``92`` or returned.

    Parameters
    ----------
    bank : str
        A bank of :data:`analysis.simulate.catalog.BANK_NAMES`.
    start, end : str
    decline_rate : float
        Share of transfers to the bank declined (``91`` or ``92``) in the window.
    return_rate : float
        Share of the remaining approved transfers whose credit is returned ``bank_unavailable``.

    Examples
    --------
    >>> BankOutage("招商银行", "2026-03-25 08:00", "2026-03-26 20:00").decline_rate
    0.6
    """

    bank: str
    start: str = ""
    end: str = ""
    decline_rate: float = 0.6
    return_rate: float = 0.5

    def __post_init__(self) -> None:
        _check_window(self)
        _require(self, "end")
        _check_rate(self, "decline_rate")
        _check_rate(self, "return_rate")


@dataclass(frozen=True)
class IssuerOutage:
    """A city-wide burst of ``91``/``96`` on purchases (issuer or switch down).

    Examples
    --------
    >>> IssuerOutage("2026-03-20 14:00", "2026-03-20 15:30").decline_rate
    0.5
    """

    start: str = ""
    end: str = ""
    decline_rate: float = 0.5

    def __post_init__(self) -> None:
        _check_window(self)
        _require(self, "end")
        _check_rate(self, "decline_rate")


Fault = UnstableLink | FaultyFirmware | MisconfiguredMerchant | FrozenAccount | BankOutage | IssuerOutage
FAULT_KINDS: dict[type, str] = {
    UnstableLink: "unstable_link",
    FaultyFirmware: "faulty_firmware",
    MisconfiguredMerchant: "misconfigured_merchant",
    FrozenAccount: "frozen_account",
    BankOutage: "bank_outage",
    IssuerOutage: "issuer_outage",
}

# -- fixes -------------------------------------------------------------------------------

#: Which fix kind acts on which fault kind.
FIX_TARGETS = {
    "network_upgrade": "unstable_link",
    "message_validation": "unstable_link",
    "firmware_update": "faulty_firmware",
    "config_correction": "misconfigured_merchant",
}


@dataclass(frozen=True)
class Fix:
    """A change applied to part of the city (one ``interventions`` row).

    Parameters
    ----------
    kind : str
        ``network_upgrade`` (cuts link error rates by ``strength``),
        ``message_validation`` (corrupted messages are detected and retransmitted),
        ``firmware_update`` (ends a firmware fault), ``config_correction`` (ends a
        merchant misconfiguration) or ``other`` (no effect).
    scope_type : str
        ``network_segment``, ``merchant``, ``terminal_model``, ``firmware`` or ``all``.
    scope_value : str or None
        The segment, merchant id, model or firmware (``*`` for all). None takes
        the value of the fault the fix targets (the case segment, the
        misconfigured merchant, the faulty firmware or its model).
    applied_at : str
    strength : float
        For ``network_upgrade``: the share of link failures removed.
    description : str, optional
        Free text for the ``interventions`` row (a default is written otherwise).

    Examples
    --------
    >>> Fix("message_validation", "all", "*", "2026-04-15 02:00").scope_value
    '*'
    """

    kind: str
    scope_type: str
    scope_value: str | None
    applied_at: str
    strength: float = 0.9
    description: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in INTERVENTION_KINDS:
            raise ValueError(f"Fix.kind must be one of {INTERVENTION_KINDS}, got {self.kind!r}")
        if self.scope_type not in SCOPE_TYPES:
            raise ValueError(f"Fix.scope_type must be one of {SCOPE_TYPES}, got {self.scope_type!r}")
        local_seconds(self.applied_at)
        _check_rate(self, "strength")


# -- the city ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CityConfig:
    """One simulated city: its size, its period, its faults and fixes.

    Parameters
    ----------
    seed : int
        Everything random follows from it (same seed, same files).
    start : str
        First day (``YYYY-MM-DD``).
    days : int
        Number of days; the simulation ends at midnight after the last one.
    n_merchants, n_neighbourhoods : int
    txns_per_merchant_day : float
        Mean purchase and transfer attempts per merchant and day (before the
        shop type's and the merchant's own factors).
    transfer_share : float
        Share of attempts that are transfers, city-wide.
    faults, fixes : tuple
        Fault specs (:class:`UnstableLink`, ...) and :class:`Fix` specs.
    complaint_share : float
        Probability that a transaction whose money did not arrive gets a ticket
        from an average merchant (other incidents complain less often).
    district : str
        A district of :data:`analysis.simulate.catalog.DISTRICTS`.
    anchor_name : str
        Name of the supermarket at the centre of the case segment.
    case_segment_size : int
        Merchants sharing the case segment (the supermarket and its neighbours).
    orphan_ticket_share : float
        Tickets with no matching transaction, as a share of all tickets.
    background : float
        Multiplier of every background rate (declines, sporadic failures); 0 turns noise off.

    Examples
    --------
    >>> CityConfig(days=7).n_merchants
    250
    """

    seed: int = 0
    start: str = "2026-03-02"
    days: int = 60
    n_merchants: int = 250
    n_neighbourhoods: int = 12
    txns_per_merchant_day: float = 20.0
    transfer_share: float = 0.05
    faults: tuple = ()
    fixes: tuple = ()
    complaint_share: float = 0.3
    district: str = "浦东新区"
    anchor_name: str = ANCHOR_NAME
    case_segment_size: int = 11
    orphan_ticket_share: float = 0.03
    background: float = 1.0

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError(f"CityConfig.days must be at least 1, got {self.days}")
        if self.n_merchants < max(self.case_segment_size + 3, 8):
            raise ValueError(
                f"CityConfig.n_merchants must be at least {max(self.case_segment_size + 3, 8)} "
                f"(the case segment alone has {self.case_segment_size}), got {self.n_merchants}"
            )
        if not 1 <= self.n_neighbourhoods <= self.n_merchants:
            raise ValueError("CityConfig.n_neighbourhoods must lie in [1, n_merchants]")
        if self.district not in DISTRICTS:
            raise ValueError(f"CityConfig.district must be one of {sorted(DISTRICTS)}, got {self.district!r}")
        for name in ("transfer_share", "complaint_share", "orphan_ticket_share"):
            _check_rate(self, name)
        for f in self.faults:
            if type(f) not in FAULT_KINDS:
                raise TypeError(f"CityConfig.faults holds {f!r}, not a fault spec")
        for f in self.fixes:
            if not isinstance(f, Fix):
                raise TypeError(f"CityConfig.fixes holds {f!r}, not a Fix")
        object.__setattr__(self, "faults", tuple(self.faults))
        object.__setattr__(self, "fixes", tuple(self.fixes))
        local_seconds(self.start)

    @property
    def start_date(self) -> np.datetime64:
        """First day as ``datetime64[D]``."""
        return np.datetime64(pd.Timestamp(self.start).date(), "D")

    @property
    def end_date(self) -> str:
        """Last simulated day, ``YYYY-MM-DD``."""
        return str(self.start_date + np.timedelta64(self.days - 1, "D"))

    def to_dict(self) -> dict:
        """A JSON-ready description: every field, faults and fixes tagged with their kind.

        Examples
        --------
        >>> CityConfig(days=3).to_dict()["days"]
        3
        """
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("faults", "fixes")}
        out["faults"] = [{"kind": FAULT_KINDS[type(f)], **asdict(f)} for f in self.faults]
        out["fixes"] = [asdict(f) for f in self.fixes]
        return out


__all__ = [
    "BankOutage",
    "CityConfig",
    "FaultyFirmware",
    "Fix",
    "FrozenAccount",
    "IssuerOutage",
    "MisconfiguredMerchant",
    "UnstableLink",
    "local_seconds",
]
