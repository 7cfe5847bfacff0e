"""The ``pos-incidents`` command line.

Commands
--------
``analyze DATASET_DIR --out OUT_DIR [--as-of TIME] [--engine duckdb|spark] [--spark-master URL]``
    Reconcile, classify, find shared faults, evaluate fixes and match tickets;
    write the contract's output files.
``validate DATASET_DIR [--rejected-out DIR]``
    Load and check a dataset; print the row accounting.
``simulate case-study OUT_DIR [--truth-dir DIR]``
    Write the simulated reference case (a supermarket on an unstable network link).
``report DATASET_DIR --out report.html``
    Run the case-study notebook on a dataset and write a self-contained HTML report.
``causes``
    Print the cause taxonomy with labels and next steps.

A user error (bad input, unknown year in the calendar, …) prints one paragraph
and exits with status 2; no traceback reaches the user.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path
from typing import Optional

import typer

from .exceptions import PosIncidentError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Investigate POS incidents: 刷卡未到账 (card paid, money not arrived) and 转账失败 (transfer failed).",
)
simulate_app = typer.Typer(no_args_is_help=True, help="Write simulated datasets with ground truth.")
app.add_typer(simulate_app, name="simulate")

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3


def _say_error(message: str) -> None:
    """Print one masked paragraph to stderr (an error text never shows a card number)."""
    from .privacy import mask_text

    typer.echo(textwrap.fill(mask_text(message), width=100), err=True)


def _load(dataset_dir: Path, progress: bool):
    from .io import load_dataset

    dataset = load_dataset(dataset_dir, progress=progress)
    typer.echo(dataset.summary())
    return dataset


@app.command()
def validate(
    dataset_dir: Path = typer.Argument(..., help="Directory with one NAME.csv or NAME.parquet per table."),
    rejected_out: Optional[Path] = typer.Option(None, help="Write rejected rows (masked) here."),
    progress: bool = typer.Option(True, help="Show progress."),
) -> None:
    """Load a dataset, check every contract rule and print the row accounting."""
    from .io import save_rejected

    dataset = _load(dataset_dir, progress)
    if rejected_out is not None:
        for path in save_rejected(dataset, rejected_out):
            typer.echo(f"rejected rows written to {path}")


@app.command()
def analyze(
    dataset_dir: Path = typer.Argument(..., help="Directory with one NAME.csv or NAME.parquet per table."),
    out: Path = typer.Option(..., "--out", help="Output directory."),
    as_of: Optional[str] = typer.Option(
        None, "--as-of", help="Moment of analysis (ISO 8601; no offset = Asia/Shanghai). Default: latest time in the data."
    ),
    engine: str = typer.Option(
        "duckdb", "--engine", help="Where the transaction-level steps run: duckdb (default) or spark."
    ),
    spark_master: str = typer.Option(
        "local[2]", "--spark-master", help="Spark master URL for --engine spark: local[N], spark://HOST:7077, yarn."
    ),
    memory_limit: Optional[str] = typer.Option(
        None, "--memory-limit", help="DuckDB memory limit (e.g. 6GB); beyond it DuckDB spills to disk."
    ),
    seed: int = typer.Option(0, help="Seed of the scan statistics' Monte Carlo replicas."),
    progress: bool = typer.Option(True, help="Show progress."),
) -> None:
    """Reconcile, classify every incident, find shared faults, evaluate fixes, match tickets; write the outputs."""
    from .engine import ENGINES, open_engine
    from .engine.load import load_on_engine
    from .io import save_rejected
    from .pipeline import analyze as run_analysis

    if engine not in ENGINES:
        raise typer.BadParameter(f"choose one of {', '.join(ENGINES)}", param_hint="--engine")

    options = {"master": spark_master} if engine == "spark" else {"memory_limit": memory_limit}
    with open_engine(engine, **options) as eng:
        dataset = load_on_engine(eng, dataset_dir, progress=progress)
        typer.echo(dataset.summary())
        result = run_analysis(dataset, engine=eng, as_of=as_of, seed=seed, progress=progress)
        paths = result.write(out)
        paths += save_rejected(dataset, out / "rejected")
    typer.echo("")
    typer.echo(result.summary())
    typer.echo("")
    for path in paths:
        typer.echo(f"wrote {path}")


@app.command()
def report(
    dataset_dir: Path = typer.Argument(..., help="Directory with one NAME.csv or NAME.parquet per table."),
    out: Path = typer.Option(Path("report.html"), "--out", help="The HTML file to write."),
    focus: Optional[str] = typer.Option(None, help="Merchant whose complaints start the story (default: most tickets)."),
    progress: bool = typer.Option(True, help="Show progress."),
) -> None:
    """Run the case-study notebook on a dataset and write a self-contained HTML report."""
    from .report import build_report

    run = build_report(dataset_dir, out, progress=progress, focus=focus)
    typer.echo(repr(run))
    typer.echo(f"wrote {out}")


@app.command()
def causes() -> None:
    """Print the cause taxonomy: code, 中文, English and next steps."""
    from .contract import CAUSES

    for cause in CAUSES.values():
        typer.echo(f"{cause.code:28s} {cause.zh}  {cause.en}")
        for step in cause.next_steps:
            typer.echo(f"{'':28s} - {step}")


@simulate_app.command("case-study")
def simulate_case_study_cmd(
    out_dir: Path = typer.Argument(..., help="Where to write the dataset."),
    truth_dir: Optional[Path] = typer.Option(None, help="Where to write the ground truth (default OUT_DIR/../<name>_truth)."),
    seed: Optional[int] = typer.Option(None, help="Random seed (default: the reference case's)."),
    fmt: str = typer.Option("parquet", "--format", help="parquet or csv."),
    full_pans: bool = typer.Option(False, help="Write full synthetic card numbers instead of masked ones."),
) -> None:
    """Write the reference case: a supermarket and its neighbours on an unstable network link."""
    from .simulate import simulate_case_study

    truth = truth_dir or out_dir.parent / f"{out_dir.name}_truth"
    kwargs = {} if seed is None else {"seed": seed}
    city = simulate_case_study(out_dir, truth, fmt=fmt, mask_pans=not full_pans, **kwargs)
    typer.echo(repr(city))
    typer.echo(f"dataset written to {out_dir}; ground truth to {truth}")


def _is_usage_error(exc: Exception) -> bool:
    """A command-line usage error (typer/click), which knows how to show itself."""
    kinds = [getattr(typer.exceptions, "TyperException", None)]
    try:  # typer < 0.20 raises click's exceptions
        import click

        kinds.append(click.ClickException)
    except ImportError:
        pass
    return any(k is not None and isinstance(exc, k) for k in kinds) and hasattr(exc, "show")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning user errors into one paragraph and exit code 2."""
    try:
        rv = app(args=argv, standalone_mode=False)
    except PosIncidentError as exc:
        _say_error(f"error: {exc}")
        return EXIT_USER_ERROR
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: no traceback for users
        if _is_usage_error(exc):
            exc.show()
            return exc.exit_code
        _say_error(
            f"internal error ({type(exc).__name__}): {exc}. This is a bug in pos-incidents; "
            "please report it with the command you ran. Set POS_INCIDENTS_DEBUG=1 to see the traceback."
        )
        if os.environ.get("POS_INCIDENTS_DEBUG"):
            raise
        return EXIT_INTERNAL_ERROR
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
