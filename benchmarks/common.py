"""Shared benchmark plumbing: the machine, raw PyNaCl rates, peak RSS, scales in subprocesses.

Every figure is printed next to the raw PyNaCl rate measured in the same run on the
same machine, so results from different machines compare as ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import nacl
from nacl.signing import SigningKey
from rich.console import Console
from rich.progress import Progress, TaskID
from rich.table import Table

#: Message size close to a real parcel.mine payload, so raw and ledger sign the same bytes.
MESSAGE = b"kimberley/entry/v1\n" + bytes(range(256))[:170]


def machine() -> str:
    """One line naming the CPU, cores, OS and versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, PyNaCl {nacl.__version__}"
    )


def raw_sign_rate(seconds: float = 2.0) -> float:
    """Signatures per second of PyNaCl's SigningKey.sign on one core."""
    key = SigningKey.generate()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            key.sign(MESSAGE)
        count += 200
    return count / elapsed


def raw_verify_rate(threads: int = 1, seconds: float = 2.0) -> float:
    """Verifications per second of PyNaCl's VerifyKey.verify over `threads` threads."""
    key = SigningKey.generate()
    signed = key.sign(MESSAGE)
    verify_key = key.verify_key

    def work(_: int) -> int:
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(100):
                verify_key.verify(signed)
            count += 100
        return count

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(work, range(threads)))
    return total / (time.perf_counter() - start)


def raw_verify_cpu_us(seconds: float = 1.0) -> float:
    """CPU microseconds per PyNaCl VerifyKey.verify on one thread: CPU time, not wall time,
    so time the VM gives to other guests does not count (unlike the rates above)."""
    key = SigningKey.generate()
    signed = key.sign(MESSAGE)
    verify_key = key.verify_key
    count, start = 0, time.thread_time()
    while (used := time.thread_time() - start) < seconds:
        for _ in range(100):
            verify_key.verify(signed)
        count += 100
    return used / count * 1e6


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (heap plus mapped LMDB file pages)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _proc_cpu(pid: int, ticks: int) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds of process `pid`, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / ticks, (cutime + cstime) / ticks


def _descendants(pid: int) -> list[int]:
    """Every live process under `pid` (Linux /proc; children of each of its threads)."""
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children = [int(x) for x in f.read().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found


def cpu_split() -> tuple[float, float] | None:
    """CPU seconds used so far by this process (all its threads) and by the processes under
    it (live ones, and those their parents have reaped: a pool's finished workers count in
    its fork server), so a run shows where its work went; None where there is no /proc."""
    own = os.times()
    others = own.children_user + own.children_system
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        for pid in _descendants(os.getpid()):
            try:
                mine, reaped = _proc_cpu(pid, ticks)
            except OSError:  # gone since the listing (read when the work is done)
                continue
            others += mine + reaped
    except (OSError, ValueError):
        return None
    return own.user + own.system, others


class HeapPeak:
    """Peak of RssAnon: the process's own memory, without LMDB's file-backed map pages.

    LMDB reads through mmap, so the pages of the data file a run touches count in RSS as
    RssFile; they are page cache the kernel reclaims, not memory the process holds.
    """

    def __init__(self) -> None:
        self.peak = 0.0

    def sample(self) -> None:
        """Read RssAnon now and keep the maximum."""
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        self.peak = max(self.peak, int(line.split()[1]) / 1024)
        except OSError:
            pass


class Bar:
    """A progress bar's task that samples the heap at every update (see `progress_bar`)."""

    def __init__(self, progress: Progress, task: TaskID, heap: HeapPeak) -> None:
        self._progress, self._task, self._heap = progress, task, heap

    def advance(self, count: int) -> None:
        """`count` more done."""
        self._progress.update(self._task, advance=count)
        self._heap.sample()

    def completed(self, done: int, _total: int = 0) -> None:
        """`done` done in all (a total passed beside it is ignored: the bar keeps its own)."""
        self._progress.update(self._task, completed=done)
        self._heap.sample()

    def stage(self, label: str, done: int, total: int) -> None:
        """`done` of `total` done in the stage `label` (a total of 0: not known)."""
        self._progress.update(self._task, description=label, completed=done, total=total or None)
        self._heap.sample()


@contextmanager
def progress_bar(label: str, total: int | None, heap: HeapPeak) -> Iterator[Bar]:
    """A transient progress bar on stderr for `total` units (None: not known yet)."""
    with Progress(console=Console(stderr=True), transient=True) as progress:
        yield Bar(progress, progress.add_task(label, total=total), heap)


def timed_batches(
    label: str, total: int, batches: Callable[[], Iterable[Sized]], heap: HeapPeak
) -> float:
    """Seconds to draw every batch of `batches()` (called inside the timing) under a progress
    bar of `total` units, advanced by each batch's length."""
    start = time.perf_counter()
    with progress_bar(label, total, heap) as bar:
        for batch in batches():
            bar.advance(len(batch))
    return time.perf_counter() - start


def measured(
    count: int, elapsed: float, raw: tuple[float, float], raw_key: str, heap: HeapPeak
) -> dict[str, Any]:
    """One scale's figures: the rate, the raw rate beside it, their ratio and memory.

    `raw` is the raw rate measured just before and just after the timed run; the ratio is
    taken against their mean, so a raw rate that drifts (this VM's moves by 10-20% within
    minutes at times) counts from both ends, and both readings are reported.
    """
    rate = count / elapsed
    before, after = raw
    mean = (before + after) / 2
    return {
        "count": count,
        "seconds": round(elapsed, 2),
        "rate": round(rate),
        raw_key: round(mean),
        "raw_before": round(before),
        "raw_after": round(after),
        "ratio": round(rate / mean, 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "peak_heap_mib": round(heap.peak, 1),
    }


def report(
    title: str, unit: str, raw_key: str, raw_label: str, results: list[dict[str, Any]]
) -> None:
    """Print the machine and one table row per scale."""
    console = Console(width=120)  # the table on one line even when piped
    console.print(f"machine: {machine()}")
    table = Table(title=title)
    runs = max(len(r.get("runs", [r])) for r in results)
    spread_column = [f"ratios of {runs} runs"] if runs > 1 else []
    columns = [
        unit,
        f"{unit}/s",
        raw_label,
        "before / after",
        "ratio",
        *spread_column,
        "peak RSS MiB",
        "peak heap MiB",
    ]
    for col in columns:
        table.add_column(col, justify="right")
    for r in results:
        ratios = sorted(run["rate"] / run[raw_key] for run in r.get("runs", [r]))
        spread = [f"{ratios[0]:.2f} to {ratios[-1]:.2f}"] if runs > 1 else []
        table.add_row(
            f"{r['count']:,}",
            f"{r['rate']:,}",
            f"{r[raw_key]:,}",
            f"{r['raw_before']:,} / {r['raw_after']:,}",
            f"{r['rate'] / r[raw_key]:.2f}",  # not r["ratio"] (3 places): no double rounding
            *spread,
            f"{r['peak_rss_mib']}",
            f"{r['peak_heap_mib']}",
        )
    console.print(table)
    console.print(
        "raw rate = mean of the readings just before and just after the timed run; "
        "peak heap = RssAnon, the process's own memory; peak RSS adds LMDB's mapped "
        "file pages (page cache the kernel can reclaim)"
    )
    if runs > 1:
        console.print(
            f"{runs} runs per scale, each in a fresh process: the row is the run of median "
            "ratio; the peaks are the highest of all runs"
        )


def scale_parser(doc: str, unit: str) -> argparse.ArgumentParser:
    """The options every benchmark shares: --scale (repeatable) and the internal --one."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--scale", type=int, action="append", help=f"{unit} (repeatable)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    return parser


def add_repeat(parser: argparse.ArgumentParser) -> None:
    """--repeat: timed runs per scale (this VM's speed drifts by 10-60% within minutes)."""
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="timed runs per scale, each in a fresh process; the table shows the median "
        "(default 3)",
    )


#: Times one scale on data built beforehand: (entries, threads, the data's directory).
TimedOnBuilt = Callable[[int, int, Path], dict[str, Any]]


def verify_rate_args(
    doc: str, build: Callable[[Path, int], None], one: TimedOnBuilt
) -> argparse.Namespace | None:
    """Parse the options of a benchmark timed against raw verify on `--threads` threads.

    The internal steps run here and give None: `--build N DIR` writes the data (untimed,
    in its own process), `--one N --data DIR` times one run on it and prints its figures
    as JSON. Otherwise the arguments come back for the parent, which runs each scale.
    """
    parser = scale_parser(doc, "entries")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--build", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    add_repeat(parser)
    args = parser.parse_args()
    if args.build:
        build(Path(args.build[1]), int(args.build[0]))
        return None
    if args.one:
        print(json.dumps(one(args.one, args.threads, args.data)))
        return None
    return args


def verify_rate_main(
    doc: str,
    script: str,
    title: str,
    build: Callable[[Path, int], None],
    one: TimedOnBuilt,
) -> None:
    """The main of a benchmark of entries timed against raw verify on `--threads` threads:
    the internal steps of `verify_rate_args`, else each scale built once and timed
    `--repeat` times, each run in its own process, and the table, `title` formatted with
    the thread count."""
    args = verify_rate_args(doc, build, one)
    if args is not None:
        run_and_report(script, args, "threads", title, "entries", "verify", built=True)


def sign_rate_main(
    doc: str,
    script: str,
    unit: str,
    title: str,
    one: Callable[[int, int], dict[str, Any]],
    option: str = "batch",
    default: int = 1000,
    option_help: str | None = "records per durable commit (one checkpoint each)",
) -> None:
    """The main of a benchmark timed against raw sign on one core, with one whole-number
    `--option` (by default `--batch`, records per durable commit): `--one N` times one scale
    here, `one(N, option)`, and prints its figures as JSON; otherwise each scale runs in its
    own process and the table is printed, `title` formatted with the option's value."""
    parser = scale_parser(doc, unit)
    parser.add_argument(f"--{option}", type=int, default=default, help=option_help)
    add_repeat(parser)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, getattr(args, option))))
        return
    run_and_report(script, args, option, title, unit, "sign")


def run_and_report(
    script: str,
    args: argparse.Namespace,
    option: str,
    title: str,
    unit: str,
    raw: Literal["sign", "verify"],
    *,
    built: bool = False,
) -> None:
    """Run each of `args.scale` (default 100k and 1M) `args.repeat` times, each run in its
    own process, passing `--option` on (and, when `built`, the data built once per scale),
    and print the table: `title` formatted with the option's value, the rates beside
    the raw PyNaCl `raw` rate ("sign" or "verify")."""
    value = getattr(args, option)
    results = run_scales(
        script,
        args.scale or [100_000, 1_000_000],
        [f"--{option}", str(value)],
        repeat=args.repeat,
        built=built,
    )
    report(title.format(value), unit, f"raw_{raw}", f"raw {raw}/s", results)


def run_scales(
    script: str, scales: list[int], extra: list[str], *, repeat: int = 1, built: bool = False
) -> list[dict[str, Any]]:
    """Run `script --one N` per scale, `repeat` times, each in a fresh process (honest peak
    RSS, no warm worker pool), and collect the JSON each prints: one result per scale, the
    run of median ratio (see `median_run`) when there are several.

    With `built`, `script --build N DIR` first writes each scale's data, untimed, in its
    own process, and every run of that scale is timed on it (`--data DIR`). A relative
    $BENCH_DIR is taken from here: the timed runs start in the script's checkout.
    """
    env = dict(os.environ)
    if env.get("BENCH_DIR"):
        env["BENCH_DIR"] = os.path.abspath(env["BENCH_DIR"])
    results = []
    for n in scales:
        with tempfile.TemporaryDirectory(dir=env.get("BENCH_DIR")) as tmp:
            more = []
            if built:
                data = str(Path(tmp).resolve() / "data")
                subprocess.run(
                    [sys.executable, script, "--build", str(n), data], check=True, env=env
                )
                more = ["--data", data]
            runs = [_run_one(script, n, [*extra, *more], env) for _ in range(max(1, repeat))]
        results.append(median_run(runs) if len(runs) > 1 else runs[0])
    return results


def _run_one(script: str, n: int, extra: list[str], env: dict[str, str]) -> dict[str, Any]:
    """One timed run of `script --one N`, through `benchmarks.run_one` (see there), from the
    checkout that holds `script`."""
    path = Path(script).resolve()
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.run_one", path.stem, "--one", str(n), *extra],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        cwd=path.parent.parent,
        env=env,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median ratio, with every run under "runs" and the peaks the highest of all:
    a figure one drift of the VM's speed cannot carry (an even count takes the lower one)."""
    ordered = sorted(runs, key=lambda r: float(r["ratio"]))
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["runs"] = runs
    for peak in ("peak_rss_mib", "peak_heap_mib"):
        row[peak] = max(r[peak] for r in runs)
    return row
