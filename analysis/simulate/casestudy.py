"""The bundled reference case: a supermarket and its neighbours on an unstable line.

About two months (2026-03-02 to 2026-04-30) of 250 merchants in Pudong. The
supermarket 好邻居便利超市 and the ten shops nearest it share one telecom line;
from 2026-03-16 that line drops and corrupts messages. The carrier upgrades
the line on 2026-04-08 (``network_upgrade``) and the acquirer's front end
starts validating messages on 2026-04-15 (``message_validation``). Elsewhere:
one merchant whose terminals stopped uploading their batches (a
configuration fault of one shop, to contrast with the shared fault), one
merchant whose settlement account was frozen, a day and a half when one bank
could not take transfers, and the background noise of every other cause.

Examples
--------
>>> cfg = case_study_config()
>>> cfg.start, cfg.end_date, cfg.n_merchants
('2026-03-02', '2026-04-30', 250)
"""

from __future__ import annotations

from pathlib import Path

from .engine import SimulatedCity, simulate_city, write_city
from .specs import BankOutage, CityConfig, Fix, FrozenAccount, MisconfiguredMerchant, UnstableLink

CASE_STUDY_SEED = 20260316


def case_study_config(seed: int = CASE_STUDY_SEED) -> CityConfig:
    """The reference case's configuration (see the module docstring).

    Examples
    --------
    >>> [type(f).__name__ for f in case_study_config().faults]
    ['UnstableLink', 'MisconfiguredMerchant', 'FrozenAccount', 'BankOutage']
    """
    return CityConfig(
        seed=seed,
        start="2026-03-02",
        days=60,
        n_merchants=250,
        n_neighbourhoods=12,
        txns_per_merchant_day=17.0,
        transfer_share=0.05,
        faults=(
            UnstableLink(segment=None, start="2026-03-16 08:00", error_rate=0.045),
            MisconfiguredMerchant(None, "no_upload", "2026-04-09"),
            FrozenAccount(None, "2026-04-20"),
            BankOutage("中国建设银行", "2026-03-25 08:00", "2026-03-26 20:00"),
        ),
        fixes=(
            Fix("network_upgrade", "network_segment", None, "2026-04-08 01:30"),
            Fix("message_validation", "network_segment", None, "2026-04-15 02:00"),
        ),
        complaint_share=0.3,
        district="浦东新区",
        anchor_name="好邻居便利超市",  # the supermarket of the case (catalog.ANCHOR_NAME)
        case_segment_size=11,
    )


def simulate_case_study(
    out_dir: str | Path,
    truth_dir: str | Path | None = None,
    seed: int = CASE_STUDY_SEED,
    fmt: str = "parquet",
    mask_pans: bool = True,
) -> SimulatedCity:
    """Simulate the reference case and write it (dataset to ``out_dir``, truth to ``truth_dir``).

    The committed ``data/case_study`` is exactly
    ``simulate_case_study("data/case_study", "data/case_study_truth")``.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> city = simulate_case_study(d + "/case", d + "/truth")   # doctest: +SKIP
    """
    city = simulate_city(case_study_config(seed), full_pans=not mask_pans)
    write_city(city, out_dir, truth_dir, fmt=fmt, mask_pans=mask_pans)
    return city


__all__ = ["CASE_STUDY_SEED", "case_study_config", "simulate_case_study"]
