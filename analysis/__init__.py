"""pos-incident-analysis: investigate POS incidents (刷卡未到账, 转账失败).

Public functions are importable from here, e.g.::

    from analysis import load_dataset, analyze
    result = analyze(load_dataset("data/case_study"))
    print(result.summary())
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

#: public name -> module that defines it (imported lazily so ``import analysis`` stays light)
_EXPORTS = {
    "Dataset": "io",
    "load_dataset": "io",
    "write_tables": "io",
    "save_rejected": "io",
    "DatasetError": "exceptions",
    "CalendarError": "exceptions",
    "PosIncidentError": "exceptions",
    "china_calendar": "workdays",
    "WorkCalendar": "workdays",
    "mask_pan": "privacy",
    "mask_text": "privacy",
    "reconcile": "reconcile",
    "default_as_of": "reconcile",
    "outcome_counts": "reconcile",
    "classify": "causes",
    "cause_table": "causes",
    "match_tickets": "tickets",
    "cluster_merchants": "clusters",
    "spatial_clusters": "clusters",
    "infrastructure_groups": "clusters",
    "MerchantClusters": "clusters",
    "localize": "localize",
    "expected_from_baseline": "localize",
    "Localization": "localize",
    "daily_panel": "metrics",
    "group_daily": "metrics",
    "evaluate_fixes": "fixes",
    "evaluate_fix": "fixes",
    "simulate_fix": "fixes",
    "FixEffect": "fixes",
    "FixEvaluation": "fixes",
    "WhatIf": "fixes",
    "cusum": "monitor",
    "monitor_clusters": "monitor",
    "back_to_baseline": "monitor",
    "ControlChart": "monitor",
    "spatial_scan": "scan",
    "space_time_scan": "scan",
    "ScanResult": "scan",
    "find_shared_faults": "faults",
    "SharedFault": "faults",
    "shared_faults_to_json": "faults",
    "analyze": "pipeline",
    "AnalysisResult": "pipeline",
    "CAUSES": "contract",
    "TABLES": "contract",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
