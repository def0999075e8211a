"""`kimberley audit`: replay every held log with full verification and every custody rule.

The replay (`ledger.audit`) streams: findings are spooled to a temporary file as they are
found, one JSON line each, and rendered when the replay is done (text, `--json` on
stdout, `--html FILE`), so memory does not grow with the logs nor with the findings.
"""

from __future__ import annotations

import html
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.table import Table

from cli.options import DEFAULT_DATA, DataOption, JsonOption, check_as_of, open_reading
from cli.output import CommandFailed, console, os_error_text, progress_bar
from ledger.audit import AuditError, AuditReport, Finding, audit
from ledger.audit_scratch import ScratchError
from ledger.errors import LedgerError
from ledger.roster_files import load_roster
from ledger.words import counted


def audit_command(
    origin: Annotated[
        list[str] | None,
        typer.Option(help="Audit only this log: kp.example/BW, or BW (repeatable; default: all)."),
    ] = None,
    overdue_days: Annotated[
        int, typer.Option(min=0, help="Days after issue an export not imported is overdue.")
    ] = 30,
    as_of: Annotated[
        str | None,
        typer.Option(
            callback=check_as_of,
            help="Day (YYYY-MM-DD) at which exports not imported are counted overdue (default: "
            "the latest entry's); every entry is replayed whatever its date.",
        ),
    ] = None,
    html_file: Annotated[
        Path | None,
        typer.Option("--html", help="Also write a self-contained HTML report to this file."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=0, help="Signature threads (default, or 0: one per core).")
    ] = None,
    scratch: Annotated[
        Path | None,
        typer.Option(help="Where the temporary replay state goes (default: the data directory)."),
    ] = None,
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Replay every held log from index 0: every byte, signature, hash, checkpoint, custody
    rule, and the checks across logs (imports match unvoided exports, each certificate
    imported once, overdue exports). Each finding names the rule, log, entry and values.

    Exit status: 0 when there are no findings, 1 when there are (the report is printed
    either way), 2 when the audit cannot run (the error line says why).
    """
    try:
        findings = _audit(origin, overdue_days, as_of, html_file, threads, scratch, data, as_json)
    except ScratchError as e:
        raise CommandFailed(f"{e} (--scratch DIR)", CANNOT_AUDIT) from e
    except LedgerError as e:
        raise CommandFailed(str(e), CANNOT_AUDIT) from e
    except OSError as e:
        raise CommandFailed(os_error_text(e), CANNOT_AUDIT) from e
    if findings:
        raise typer.Exit(1)


#: The audit's exit status when it cannot run: 1 means findings, as for `diff` or `grep`.
CANNOT_AUDIT = 2


def _audit(
    origin: list[str] | None,
    overdue_days: int,
    as_of: str | None,
    html_file: Path | None,
    threads: int | None,
    scratch: Path | None,
    data: Path,
    as_json: bool,
) -> int:
    """Run the audit and print its report; the number of findings."""
    if html_file is not None and not html_file.parent.is_dir():  # before the long replay
        raise AuditError(f"--html {html_file}: no directory {html_file.parent}")
    if html_file is not None and html_file.is_dir():
        raise AuditError(f"--html {html_file}: is a directory, not a file to write")
    node = open_reading(data)
    roster = load_roster(data)
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:

        def sink(finding: Finding) -> None:
            """Spool one finding as a JSON line."""
            spool.write(json.dumps(finding.to_dict(), sort_keys=True) + "\n")

        with progress_bar("audit", 0, enabled=not as_json) as bar:
            task = bar.add_task("audit", total=None)

            def progress(label: str, done: int, total: int) -> None:
                """Show the log and phase being replayed."""
                bar.update(task, description=label, completed=done, total=total or None)

            report = audit(
                node.store,
                roster,
                origins=origin,
                overdue_days=overdue_days,
                as_of=as_of,
                threads=threads,
                scratch_dir=scratch or data,
                progress=progress,
                sink=sink,
            )
        if html_file is not None:
            with open(html_file, "w", encoding="utf-8") as out:
                write_html(out, report, _spooled(spool), given=as_of is not None)
        if as_json:
            _emit_json(report, _spooled(spool))
        else:
            _print_text(report, _spooled(spool), html_file, given=as_of is not None)
    return report.findings


def _spooled(spool: IO[str]) -> Iterator[dict[str, Any]]:
    """The findings written so far, from the start."""
    spool.seek(0)
    for line in spool:
        yield json.loads(line)


def _summary(report: AuditReport) -> dict[str, Any]:
    return {
        "as_of": report.as_of,
        "overdue_days": report.overdue_days,
        "total": report.findings,
        "by_rule": dict(report.by_rule),
        "logs": [
            {
                "origin": log.origin,
                "size": log.size,
                "replayed": log.replayed,
                "findings": log.findings,
                "intact": log.intact,
            }
            for log in report.logs
        ],
    }


def _emit_json(report: AuditReport, findings: Iterator[dict[str, Any]]) -> None:
    """One JSON document on stdout, the findings written one by one."""
    out = sys.stdout
    out.write('{\n  "findings": [')
    for n, finding in enumerate(findings):
        out.write(("," if n else "") + "\n    " + json.dumps(finding, sort_keys=True))
    out.write("\n  ],\n")
    rest = json.dumps(_summary(report), indent=2, sort_keys=True)
    out.write(rest[2:] + "\n")  # the summary's keys continue the same object


def _where(f: dict[str, Any]) -> str:
    return f"{f['origin']} entry {f['index']}"


def counted_at(report: AuditReport, *, given: bool) -> str:
    """The day overdue exports are counted at, in words (the audit replays every entry
    held whatever its date: the day is only that); `given`: chosen with --as-of, else the
    day of the latest entry held."""
    return report.as_of + ("" if given else " (the latest entry's day)")


def _print_text(
    report: AuditReport,
    findings: Iterator[dict[str, Any]],
    html_file: Path | None,
    *,
    given: bool,
) -> None:
    for f in findings:
        kind = "" if f["kind"] == "violation" else f"({f['kind']}) "
        console.print(f"{_where(f)}  {f['rule']}  {kind}{f['message']}", markup=False)
    table = Table(
        title=f"audit of every entry held; overdue counted at {counted_at(report, given=given)}"
    )
    for column in ("log", "entries", "replayed", "findings", "intact"):
        table.add_column(column, justify="left" if column == "log" else "right")
    for log in report.logs:
        intact = "yes" if log.intact else "no"
        table.add_row(log.origin, str(log.size), str(log.replayed), str(log.findings), intact)
    console.print(table)
    if html_file is not None:
        console.print(f"HTML report written to {html_file}", markup=False)
    if report.findings:
        rules = ", ".join(f"{rule} {n}" for rule, n in report.by_rule)
        console.print(f"{counted(report.findings, 'finding')}: {rules}", markup=False)
    else:
        console.print(
            "no findings: every byte, signature, hash, checkpoint and custody rule checks out"
        )


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
td.n{text-align:right}
tr.integrity td{background:#fde8e8}
tr.unverifiable td{background:#fff7e0}
code{font-size:.9em}
"""


def write_html(
    out: IO[str], report: AuditReport, findings: Iterator[dict[str, Any]], *, given: bool = True
) -> None:
    """A self-contained, readable HTML report; every value from the logs is escaped.
    `given`: the as-of day was chosen (--as-of), not the latest entry's."""
    e = html.escape
    at = counted_at(report, given=given)
    out.write('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">')
    out.write(f"<title>Kimberley audit, overdue counted at {e(report.as_of)}</title>")
    out.write(f"<style>{_STYLE}</style></head><body>\n")
    out.write("<h1>Kimberley Ledger audit of every entry held</h1>\n")
    verdict = counted(report.findings, "finding") if report.findings else "No findings"
    out.write(
        f"<p>{e(verdict)}. Every entry held is replayed; exports not imported "
        f"{counted(report.overdue_days, 'day')} after issue count as overdue, counted at "
        f"{e(at)}.</p>\n"
    )
    out.write("<h2>Logs</h2>\n<table><tr><th>log</th><th>entries</th><th>replayed</th>")
    out.write("<th>findings</th><th>intact</th></tr>\n")
    for log in report.logs:
        out.write(
            f"<tr><td>{e(log.origin)}</td><td class=n>{log.size}</td>"
            f"<td class=n>{log.replayed}</td><td class=n>{log.findings}</td>"
            f"<td>{'yes' if log.intact else 'no'}</td></tr>\n"
        )
    out.write("</table>\n")
    if report.by_rule:
        out.write("<h2>By rule</h2>\n<table><tr><th>rule</th><th>findings</th></tr>\n")
        for rule, n in report.by_rule:
            out.write(f"<tr><td>{e(rule)}</td><td class=n>{n}</td></tr>\n")
        out.write("</table>\n")
    out.write("<h2>Findings</h2>\n<table><tr><th>log</th><th>entry</th><th>rule</th>")
    out.write("<th>kind</th><th>what</th><th>values</th></tr>\n")
    for f in findings:
        values = "<br>".join(
            f"{e(str(k))}: <code>{e(str(v))}</code>" for k, v in f["values"].items()
        )
        out.write(
            f'<tr class="{e(f["kind"])}"><td>{e(f["origin"])}</td>'
            f"<td class=n>{int(f['index'])}</td><td>{e(f['rule'])}</td><td>{e(f['kind'])}</td>"
            f"<td>{e(f['message'])}</td><td>{values}</td></tr>\n"
        )
    out.write("</table>\n</body></html>\n")
