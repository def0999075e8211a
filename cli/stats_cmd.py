"""`kimberley stats`: KP statistics and anomalies over every log this node holds.

Reads one store snapshot twice (once for each origin's US$/ct norm, once for the tables
and checks, see `ledger.stats`) and prints a KP Working Group on Statistics style table
for people, one JSON document with `--json` (carats in hundredths, values in US cents, as
every `--json` here), or CSV with clerk-readable quantities with `--csv`.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.progress import Progress, TaskID
from rich.table import Table

from cli.options import DEFAULT_DATA, DataOption, JsonOption, open_reading
from cli.output import console, emit_json, progress_bar
from ledger.quantities import format_carats, format_usd
from ledger.roster_files import load_roster
from ledger.stats import Anomaly, Report, Row, StatsError, StatsOptions, Totals, compute_stats
from ledger.stats_source import held_entries, held_records


class GroupBy(StrEnum):
    """What a table row stands for."""

    participant = "participant"
    hs = "hs"
    origin = "origin"


class Period(StrEnum):
    """How long a table row's period is."""

    year = "year"
    quarter = "quarter"


_HEADINGS = {"participant": "Participant", "hs": "HS code", "origin": "mining origin"}
_FLOWS = (("production", "parcels"), ("exports", "certificates"), ("imports", "certificates"))


def stats(
    year: Annotated[
        int | None, typer.Option(min=1, max=9999, help="Only this year's figures and anomalies.")
    ] = None,
    by: Annotated[GroupBy, typer.Option(help="Rows by participant, hs code or origin.")] = (
        GroupBy.participant
    ),
    period: Annotated[Period, typer.Option(help="Periods of a year or a quarter.")] = Period.year,
    vpc_threshold: Annotated[
        float, typer.Option(help="Robust z-score of log US$/ct beyond which a price is odd.")
    ] = 3.5,
    revaluation_threshold: Annotated[
        float, typer.Option(help="Factor between a hub's re-export and import US$/ct.")
    ] = 2.0,
    overdue_days: Annotated[
        int, typer.Option(help="Days after issue an unconfirmed export is overdue.")
    ] = 30,
    as_of: Annotated[
        str | None, typer.Option(help="Date for overdue imports (default: the latest entry).")
    ] = None,
    anomalies: Annotated[
        bool, typer.Option("--anomalies", help="Print the anomalies instead of the table.")
    ] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV for spreadsheets.")] = False,
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Production, exports and imports by Participant, period and HS code, and anomalies."""
    if as_json and as_csv:
        raise StatsError("--json and --csv: choose one")
    options = StatsOptions(
        vpc_threshold=vpc_threshold,
        revaluation_threshold=revaluation_threshold,
        overdue_days=overdue_days,
        as_of=as_of,
    )
    node = open_reading(data)
    roster = load_roster(data)
    with node.store.read() as txn, progress_bar("stats", 0, enabled=not (as_json or as_csv)) as bar:
        task = bar.add_task("reading logs", total=2 * held_entries(node.store, txn))
        report = compute_stats(
            lambda: _counted(held_records(node.store, txn), bar, task), roster, options
        )
    rows = report.rows(by.value, period.value, year)
    found = report.anomalies_in(year)
    if as_json:
        emit_json(_document(report, rows, found, by.value, period.value, year))
    elif as_csv and anomalies:
        _anomalies_csv(found)
    elif as_csv:
        _rows_csv(rows, by.value)
    else:
        if not anomalies:
            for table in flow_tables(rows, by.value, report, year):
                console.print(table)
        console.print(anomaly_table(found, report))


def _counted(records: Iterable[Any], bar: Progress, task: TaskID) -> Iterator[Any]:
    """Pass `records` through, advancing the progress bar every thousand."""
    for n, item in enumerate(records, 1):
        if n % 1000 == 0:
            bar.advance(task, 1000)
        yield item


def _totals(totals: Totals, count: str) -> dict[str, Any]:
    return {
        "carats": totals.carats,
        "value": totals.value,
        count: totals.count,
        "usd_per_carat": totals.usd_per_carat,
    }


def _anomaly(a: Anomaly) -> dict[str, Any]:
    return {
        "kind": a.kind,
        "origin": a.origin,
        "index": a.index,
        "certificate": a.certificate,
        "date": a.date,
        "values": dict(a.values),
        "threshold": a.threshold,
        "message": a.message,
    }


def _document(
    report: Report, rows: list[Row], found: list[Anomaly], by: str, period: str, year: int | None
) -> dict[str, Any]:
    options = report.options
    return {
        "as_of": report.as_of,
        "entries": report.entries,
        "year": year,
        "by": by,
        "period": period,
        "thresholds": {
            "vpc_robust_z": options.vpc_threshold,
            "revaluation_factor": options.revaluation_threshold,
            "overdue_days": options.overdue_days,
        },
        "rows": [
            {by: row.group, "period": row.period}
            | {flow: _totals(getattr(row.flows, flow), count) for flow, count in _FLOWS}
            for row in rows
        ],
        "norms": [
            {
                "origin": n.origin,
                "observations": n.observations,
                "median_usd_per_carat": n.usd_per_carat,
                "mad_log": round(n.mad_log, 4),
            }
            for n in report.norms.values()
        ],
        "anomalies": [_anomaly(a) for a in found],
    }


def _per_carat(totals: Totals) -> str:
    vpc = totals.usd_per_carat
    return "" if vpc is None else f"{vpc:.2f}"


def _rows_csv(rows: list[Row], by: str) -> None:
    out = csv.writer(sys.stdout, lineterminator="\n")
    header = [by, "period"]
    for flow, count in _FLOWS:
        header += [f"{flow}_carats", f"{flow}_usd", f"{flow}_usd_per_carat", f"{flow}_{count}"]
    out.writerow(header)
    for row in rows:
        line: list[str | int] = [row.group, row.period]
        for flow, _ in _FLOWS:
            t: Totals = getattr(row.flows, flow)
            line += [format_carats(t.carats), format_usd(t.value), _per_carat(t), t.count]
        out.writerow(line)


def _anomalies_csv(found: list[Anomaly]) -> None:
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(
        ["kind", "origin", "index", "certificate", "date", "threshold", "values", "message"]
    )
    for a in found:
        values = "; ".join(f"{k}={v}" for k, v in a.values.items())
        threshold = "" if a.threshold is None else f"{a.threshold:g}"
        row = [a.kind, a.origin, a.index, a.certificate or "", a.date, threshold, values, a.message]
        out.writerow(row)


def flow_tables(rows: list[Row], by: str, report: Report, year: int | None) -> list[Table]:
    """One table per flow, as the KP tables are laid out; rows without that flow left out."""
    when = f"{year}" if year is not None else "all years"
    tables = []
    for flow, count in _FLOWS:
        table = Table(title=f"{flow}, {when} (as of {report.as_of or '-'})")
        table.add_column(_HEADINGS[by])
        table.add_column("period")
        for heading in ("carats", "US$", "US$/ct", count):
            table.add_column(heading, justify="right")
        for row in rows:
            t: Totals = getattr(row.flows, flow)
            if t.count or t.carats:
                figures = [format_carats(t.carats), format_usd(t.value), _per_carat(t)]
                table.add_row(row.group, row.period, *figures, str(t.count))
        tables.append(table)
    return tables


def anomaly_table(found: list[Anomaly], report: Report) -> Table:
    table = Table(title=f"{len(found)} anomalies in {report.entries} entries")
    table.add_column("kind", no_wrap=True)
    table.add_column("log", no_wrap=True)
    table.add_column("entry", justify="right")
    table.add_column("certificate", no_wrap=True)
    table.add_column("what (figures and threshold)")
    for a in found:
        code = a.origin.rpartition("/")[2]
        table.add_row(a.kind, code, str(a.index), a.certificate or "", a.message)
    return table
