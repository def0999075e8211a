"""`kimberley stats`: KP statistics and anomalies over every log this node holds.

Reads one store snapshot twice (once for each origin's US$/ct norm, once for the tables
and checks, see `ledger.stats`) and prints a KP Working Group on Statistics style table
for people, one JSON document with `--json` (carats in hundredths, values in US cents, as
every `--json` here), or CSV with clerk-readable quantities with `--csv`.

When a log is held only in part (`ledger.holding`: a sync refused an entry, or verified a
checkpoint of more entries than it fetched) or not at all, the figures are partial and
every output says so: notes under the tables, a `notes` list and a `logs` list in the JSON
(each log's `held_in_part`, `signed_size` and `refused`), and `note: ` lines on stderr with
`--csv` (stdout stays pure CSV). A
year with no figures and no anomalies is an error (exit 1), as "nothing found" is for the
other commands.
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

from cli.options import DEFAULT_DATA, DataOption, JsonOption, check_as_of, open_reading
from cli.output import console, emit_json, progress_bar
from ledger.quantities import format_carats, format_usd
from ledger.roster_files import load_roster
from ledger.stats import (
    Anomaly,
    Flows,
    Report,
    Row,
    StatsError,
    StatsOptions,
    Totals,
    compute_stats,
)
from ledger.stats_holding import HeldLog
from ledger.stats_source import held_entries, held_logs, held_records
from ledger.words import counted


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
        str | None,
        typer.Option(
            callback=check_as_of, help="Date for overdue imports (default: the latest entry)."
        ),
    ] = None,
    anomalies: Annotated[
        bool, typer.Option("--anomalies", help="Print the anomalies instead of the table.")
    ] = False,
    as_csv: Annotated[
        bool,
        typer.Option(
            "--csv",
            help="Print CSV for spreadsheets (no totals row, so sums are not doubled); "
            "stdout is CSV only. When the figures are partial, lines starting with "
            "'note: ' on stderr say why.",
        ),
    ] = False,
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Production, exports and imports by Participant, period and HS code, and anomalies.

    Counts the entries the custody rules accepted; each entry they refused is listed as a
    refused-entry anomaly. Says which logs are held only in part, and why.
    """
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
        logs = held_logs(node.store, txn, roster)
        records = lambda: _counted(held_records(node.store, txn, roster), bar, task)  # noqa: E731
        report = compute_stats(records, roster, options, logs)
    rows = report.rows(by.value, period.value, year)
    found = report.anomalies_in(year)
    if not rows and not found:
        raise StatsError(_nothing(report, year))
    if as_json:
        emit_json(_document(report, rows, found, by.value, period.value, year))
    elif as_csv:
        out = csv.writer(sys.stdout, lineterminator="\n")
        for note in report.notes():  # on stderr: any CSV reader takes stdout as it is
            sys.stderr.write("note: " + " ".join(note.split()) + "\n")
        if anomalies:
            _anomalies_csv(out, found)
        else:
            _rows_csv(out, rows, by.value)
    else:
        if not anomalies:
            for table in flow_tables(rows, by.value, report, year):
                console.print(table)
        console.print(anomaly_table(found, report))
        for note in report.notes():
            console.print(f"[yellow]partial:[/] {note}", soft_wrap=True)


def _nothing(report: Report, year: int | None) -> str:
    """Why there is nothing to show: no entries that year, and the years there are."""
    span = report.years()
    if span is None:
        return "no entries held here to count"
    first, last = span
    held = f"entries span {first}-{last}" if last != first else f"every entry is from {first}"
    return f"no entries in {year} ({held})"


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


def _log(log: HeldLog, report: Report) -> dict[str, Any]:
    held = log.holding
    refused = None
    if held.refusal is not None:
        refused = {
            "index": held.refusal.index,
            "rule": held.refusal.rule,
            "reason": held.refusal.reason,
            "signed_size": held.signed_at_least,
        }
    return {
        "participant": log.participant,
        "origin": log.origin,
        "entries_held": log.size,
        "held_in_part": log.partial,
        "signed_size": held.signed_at_least,
        "judged": log.judged,
        "refused": refused,
        "exports_not_judged_overdue": report.unjudged.get(log.participant, 0),
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
        "rows": [{by: row.group, "period": row.period} | _flows(row.flows) for row in rows],
        "norms": [
            {
                "origin": n.origin,
                "observations": n.observations,
                "median_usd_per_carat": n.usd_per_carat,
                "mad_log": round(n.mad_log, 4),
            }
            for n in report.norms.values()
        ],
        "totals": _flows(_total(rows)),
        "anomalies": [_anomaly(a) for a in found],
        "partial": report.partial,
        "logs": [_log(log, report) for log in report.logs],
        "not_held": [
            {"participant": code, "exports_not_judged_overdue": report.unjudged.get(code, 0)}
            for code in report.not_held
        ],
        "notes": report.notes(),
    }


def _total(rows: list[Row]) -> Flows:
    return sum((row.flows for row in rows), Flows())


def _flows(flows: Flows) -> dict[str, Any]:
    return {flow: _totals(getattr(flows, flow), count) for flow, count in _FLOWS}


def _per_carat(totals: Totals) -> str:
    vpc = totals.usd_per_carat
    return "" if vpc is None else f"{vpc:.2f}"


def _rows_csv(out: Any, rows: list[Row], by: str) -> None:
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


#: Anomaly values in hundredths of a carat and in US cents, shown in ct and US$ in CSV.
_CARAT_VALUES = frozenset({"carats", "exported", "produced", "imported", "excess"})
_CENT_VALUES = frozenset({"value"})


def _readable(key: str, value: object) -> object:
    """An anomaly value as a clerk reads it: carats and dollars with two decimals."""
    if isinstance(value, int) and key in _CARAT_VALUES:
        return f"{format_carats(value)} ct"
    if isinstance(value, int) and key in _CENT_VALUES:
        return f"US${format_usd(value)}"
    return value


def _anomalies_csv(out: Any, found: list[Anomaly]) -> None:
    out.writerow(
        ["kind", "origin", "index", "certificate", "date", "threshold", "values", "message"]
    )
    for a in found:
        values = "; ".join(f"{k}={_readable(k, v)}" for k, v in a.values.items())
        threshold = "" if a.threshold is None else f"{a.threshold:g}"
        row = [a.kind, a.origin, a.index, a.certificate or "", a.date, threshold, values, a.message]
        out.writerow(row)


def flow_tables(rows: list[Row], by: str, report: Report, year: int | None) -> list[Table]:
    """One table per flow, as the KP tables are laid out; rows without that flow left out."""
    when = f"{year}" if year is not None else "all years"
    cut = [log.participant for log in report.logs if log.partial]
    said = [f"{', '.join(cut)} held only in part"] if cut else []
    said += [f"{', '.join(report.not_held)} not held"] if report.not_held else []
    caption = f"partial figures: {'; '.join(said)} (see the notes below)"
    partial = bool(said)
    tables = []
    for flow, count in _FLOWS:
        table = Table(
            title=f"{flow}, {when} (as of {report.as_of or '-'})",
            caption=caption if partial else None,
        )
        table.add_column(_HEADINGS[by])
        table.add_column("period")
        for heading in ("carats", "US$", "US$/ct", count):
            table.add_column(heading, justify="right")
        for row in rows:
            t: Totals = getattr(row.flows, flow)
            if t.count or t.carats:
                figures = [format_carats(t.carats), format_usd(t.value), _per_carat(t)]
                table.add_row(row.group, row.period, *figures, str(t.count))
        t = getattr(_total(rows), flow)
        table.add_section()
        figures = [format_carats(t.carats), format_usd(t.value), _per_carat(t)]
        table.add_row("total", "", *figures, str(t.count), style="bold")
        tables.append(table)
    return tables


def anomaly_table(found: list[Anomaly], report: Report) -> Table:
    """The anomalies for a person: kind, log, entry, certificate and what is wrong."""
    read = counted(report.entries, "entry", "entries")
    table = Table(title=f"{counted(len(found), 'anomaly', 'anomalies')} in {read}")
    table.add_column("kind", no_wrap=True)
    table.add_column("log", no_wrap=True)
    table.add_column("entry", justify="right")
    table.add_column("certificate", no_wrap=True)
    table.add_column("what (figures and threshold)")
    for a in found:
        code = a.origin.rpartition("/")[2]
        table.add_row(a.kind, code, str(a.index), a.certificate or "", a.message)
    return table
