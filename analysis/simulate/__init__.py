"""A seeded, vectorized simulator of a city's POS data, with injectable faults and fixes.

It writes the seven contract tables (``../shared/CONTRACT.md``) and, apart, the
ground truth: the true cause of every incident, the faults, and the true effect
of every fix (common random numbers). The analysis never imports this package
and never reads the truth.

Modules, one job each: ``specs`` (what to simulate), ``catalog`` (static facts),
``city`` (merchants, segments, terminals), ``traffic`` (attempts and their
random draws), ``scenario`` (faults and fixes resolved), ``mechanisms`` (what
happens to each attempt), ``settlement`` (clearing, crediting, outcomes),
``transactions`` (the authorization log), ``events`` (the communication log),
``complaints`` (tickets), ``truth`` (ground truth), ``engine`` (run and write),
``casestudy`` (the bundled reference case).

Examples
--------
>>> from analysis.simulate import CityConfig, UnstableLink, Fix, simulate_city
>>> cfg = CityConfig(seed=11, n_merchants=30, n_neighbourhoods=3, days=14,
...                  faults=(UnstableLink(start="2026-03-05"),),
...                  fixes=(Fix("network_upgrade", "network_segment", None, "2026-03-10"),))
>>> city = simulate_city(cfg)
>>> city.truth.fix_effects[0]["true_effect"] < 0
True
"""

from .casestudy import CASE_STUDY_SEED, case_study_config, simulate_case_study
from .chunked import write_city_chunks
from .engine import SimulatedCity, simulate_city, write_city
from .specs import (
    BankOutage,
    CityConfig,
    FaultyFirmware,
    Fix,
    FrozenAccount,
    IssuerOutage,
    MisconfiguredMerchant,
    UnstableLink,
)
from .truth import Truth

__all__ = [
    "BankOutage",
    "CASE_STUDY_SEED",
    "CityConfig",
    "FaultyFirmware",
    "Fix",
    "FrozenAccount",
    "IssuerOutage",
    "MisconfiguredMerchant",
    "SimulatedCity",
    "Truth",
    "UnstableLink",
    "case_study_config",
    "simulate_case_study",
    "simulate_city",
    "write_city",
    "write_city_chunks",
]
