"""The benchmark runner: every command of the tool against its floor, in one table.

    make bench                                    # 100,000 and 1,000,000 rows, 3 runs each
    make bench BENCH_ARGS=--quick                 # 100,000 rows, 1 run (fast iteration)
    make bench BENCH_ARGS="--sizes 100000 --runs 5 --out /tmp/bench"
    make bench BENCH_ARGS="--profile"             # also cProfile + statement timings at 1M

For every size it builds (once, cached in --out) a seeded synthetic database
with bench/generate.py. Then, per run, each measurement gets its own fresh
copy of that database (``shutil.copyfile``, then ``fsync``, so no command
pays for writing the copy back; its pages stay in the OS page cache: every
command runs with a warm page cache, nothing is dropped) and runs as a
whole child process through its command line:

=================  ======================================================
plan               ``atocore-identity plan --format json`` (report and companion included)
dry-run floor      ``bench/floor.py --plan-only``: the same decisions, read-only
apply              ``atocore-identity apply --yes --no-backup``
apply floor        ``bench/floor.py``: the same writes as hand-written SQL
backup             ``apply --yes``: ``timings_seconds.backup`` + ``backup_check_wait``
cp                 ``cp`` of the database file then ``sync`` of the copy
inspect            ``atocore-identity inspect``
plan, inspect      again with ``--no-discover`` when the tool has that option
  --no-discover    (discovery of unconfigured columns is not a decision)
revert             ``atocore-identity revert --report APPLY_REPORT --yes --no-backup``
                   on the database the apply run just migrated, when the
                   installed tool has a ``revert`` command; "n/a" otherwise
=================  ======================================================

Wall time is taken around the child. Peak RSS is
``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` read by a small trampoline
process whose only child is the command: the command's own peak, not
inflated by this (larger) runner. Each round runs every measurement once;
the table shows medians over the rounds and ratios of medians.

Checks, every run: the dry-run floor's counts equal plan's (the counts of
plan's JSON report); plan and the dry-run floor leave the database file's
size and mtime unchanged and no journal beside it; the apply floor leaves
exactly the rows apply leaves (a digest of every row of every table).

Output: ONE table on stdout (also ``--out/results.md``) and every sample in
``--out/results-<time>.json``; ``--table-from RESULTS_JSON`` prints a saved
run's table and targets again. Like with like: the dry-run floor discovers
nothing, so the headline plan and inspect ratios are those of ``--no-discover``;
the default runs (with discovery) and discovery's own cost (the difference of
the medians) follow in the same cell. The targets (issue 12): plan
--no-discover <= 1.0x the dry-run floor, apply <= 1.0x the apply floor (its
backup excluded), backup <= 1.0x cp, revert <= 1.5x apply, peak RSS <= 100 MB,
10x the rows <= 10x the time.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import itertools
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import generate  # noqa: E402

# The targets of issue 12. plan is held to the dry-run floor like with like:
# ``plan --no-discover`` (the floor discovers nothing); apply runs without its
# backup, which is held to ``cp`` instead.
RSS_BUDGET_MB = 100.0  # peak RSS of every command of the tool, at every size
PLAN_TARGET = 1.0  # plan --no-discover time / dry-run floor time
APPLY_TARGET = 1.0  # apply --no-backup time / apply floor time
BACKUP_TARGET = 1.0  # backup phase / cp + sync of the same file
REVERT_TARGET = 1.5  # revert time / apply time
SCALING_TARGET = 10.0  # time at 10x the rows / time
MB = 1024 * 1024

# Measurement names in the JSON and their labels in the table.
LABELS = {
    "plan": "plan",
    "plan_floor": "dry-run floor",
    "plan_floor_companion": "dry-run floor + companion",
    "apply": "apply",
    "apply_floor": "apply floor",
    "apply_floor_archive": "apply floor + archive",
    "backup": "backup",
    "cp": "cp",
    "inspect": "inspect",
    "revert": "revert",
    "plan_nd": "plan --no-discover",
    "inspect_nd": "inspect --no-discover",
}
TOOL_COMMANDS = ("plan", "apply", "backup", "inspect", "revert", "plan_nd", "inspect_nd")


# --------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------


def tool() -> list[str]:
    exe = Path(sys.executable).parent / "atocore-identity"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "atocore_identity"]


# A small trampoline process starts each measured command, waits for it, and
# reports getrusage(RUSAGE_CHILDREN): the peak RSS of that one child. Forking
# the command straight from this (larger) runner would not do: Linux carries
# the forking process's RSS into the child's maxrss across exec.
TRAMPOLINE = """
import json, resource, subprocess, sys, time
with open(sys.argv[1], "wb") as out, open(sys.argv[2], "wb") as err:
    t0 = time.perf_counter()
    rc = subprocess.call(sys.argv[3:], stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    wall = time.perf_counter() - t0
kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"wall": wall, "rss_mb": kib / (1048576 if sys.platform == "darwin" else 1024),
                  "rc": rc}))
"""


def measure(cmd: list[str], work: Path) -> dict[str, Any]:
    """Run ``cmd`` as a child: wall seconds, peak RSS (MB), exit code, stdout."""
    env = dict(os.environ, NO_COLOR="1")
    out, err = work / "stdout.log", work / "stderr.log"
    done = subprocess.run(
        [sys.executable, "-c", TRAMPOLINE, str(out), str(err), *cmd],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: the measuring trampoline failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["stdout"] = out.read_text("utf-8", "replace")
    result["stderr"] = err.read_text("utf-8", "replace")
    return result


def must_succeed(name: str, size: int, m: dict[str, Any], ok: tuple[int, ...] = (0,)) -> None:
    if m["rc"] not in ok:
        raise SystemExit(f"bench: {name} exited {m['rc']} at {size:,} rows:\n{m['stderr'][-2000:]}")


def common_args(db: Path, registry: Path, reports: Path) -> list[str]:
    return ["--db", str(db), "--registry", str(registry), "--report-dir", str(reports)]


def has_command(name: str) -> bool:
    """Whether the installed tool has subcommand ``name`` (its --help exits 0)."""
    done = subprocess.run([*tool(), name, "--help"], capture_output=True, text=True, check=False)
    return done.returncode == 0


def wait_for_cli(tries: int = 10, pause: float = 60.0) -> None:
    """The tool's modules may be mid-refactor in a shared tree: wait until it imports."""
    for attempt in range(tries):
        done = subprocess.run([*tool(), "--help"], capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return
        say(f"the CLI does not start (attempt {attempt + 1}/{tries}); retrying in {pause:g} s")
        say("  " + (done.stderr.strip().splitlines() or ["?"])[-1])
        time.sleep(pause)
    raise SystemExit("bench: atocore-identity does not start; giving up")


# --------------------------------------------------------------------------
# databases
# --------------------------------------------------------------------------


def base_database(out: Path, size: int, seed: int) -> tuple[Path, Path, dict[str, Any]]:
    """The generated database for ``size``, built once and reused while it matches."""
    stem = f"base-{size}-seed{seed}-v{generate.GENERATOR_VERSION}"
    db, registry, meta = out / f"{stem}.db", out / f"{stem}.registry.json", out / f"{stem}.json"
    if db.exists() and registry.exists() and meta.exists():
        return db, registry, json.loads(meta.read_text("utf-8"))
    say(f"generating {size:,} rows (seed {seed}) into {db}")
    t0 = time.perf_counter()
    stats = generate.generate(db, registry, size, seed)
    stats["seconds"] = round(time.perf_counter() - t0, 1)
    stats["bytes"] = db.stat().st_size
    meta.write_text(json.dumps(stats, indent=1) + "\n", "utf-8")
    say(f"  generated in {stats['seconds']} s, {stats['bytes'] / MB:.0f} MB")
    return db, registry, stats


def fresh_copy(base: Path, work: Path) -> tuple[Path, Path]:
    """A new copy of ``base`` in an empty ``work``, fsynced, every other dirty
    page of the machine written back; (db, report dir)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    db = work / "atocore.db"
    shutil.copyfile(base, db)
    _fsync(db)
    # Nothing of an earlier run (its migrated copy, its backup) is still being
    # written back when the clock starts: the fsyncs of the backup and of cp's
    # sync wait only for their own file.
    os.sync()
    return db, work / "reports"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_state(db: Path) -> tuple[int, int, bool]:
    """(size, mtime_ns, a journal or WAL exists beside it)."""
    st = db.stat()
    side = any(Path(str(db) + s).exists() for s in ("-journal", "-wal", "-shm"))
    return st.st_size, st.st_mtime_ns, side


def row_digest(db: Path) -> str:
    """sha256 over every row of every table, in rowid order (copies share rowids)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    h = hashlib.sha256()
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        for table in tables:
            h.update(f"\x00{table}\x00".encode())
            cur = conn.execute(f'SELECT * FROM "{table}" ORDER BY rowid')
            while rows := cur.fetchmany(10_000):
                h.update(repr(rows).encode())
    finally:
        conn.close()
    return h.hexdigest()


def newest_report(reports: Path, kind: str) -> Path:
    found = sorted(reports.glob(f"{kind}-*.json"))
    if not found:
        raise SystemExit(f"bench: {kind} wrote no report in {reports}")
    return found[-1]


# --------------------------------------------------------------------------
# the measurements of one round
# --------------------------------------------------------------------------


def run_plan(
    base: Path, registry: Path, work: Path, size: int, discover: bool
) -> dict[str, dict[str, Any]]:
    """plan (also without discovery, if it has that), and the dry-run floor, each on a
    fresh copy; their counts must agree."""
    out: dict[str, dict[str, Any]] = {}
    for name, extra in (("plan", []), ("plan_nd", ["--no-discover"]))[: 2 if discover else 1]:
        db, reports = fresh_copy(base, work)
        before = file_state(db)
        args = [*common_args(db, registry, reports), "--format", "json", *extra]
        m = measure([*tool(), "plan", *args], work)
        must_succeed(LABELS[name], size, m)
        if file_state(db) != before:
            raise SystemExit(f"bench: {LABELS[name]} changed the database file at {size:,} rows")
        payload = json.loads(m["stdout"])
        m["counts"] = payload["counts"]
        if payload.get("companion"):  # its records, for the floor that writes them too
            with gzip.open(reports / payload["companion"], "rb") as handle:
                m["companion_records"] = sum(1 for line in handle if line.strip())
        out[name] = m

    db, _ = fresh_copy(base, work)
    before = file_state(db)
    floor = [sys.executable, str(HERE / "floor.py"), "--plan-only", str(db), str(registry)]
    m = measure(floor, work)
    must_succeed("floor.py --plan-only", size, m)
    if file_state(db) != before:
        raise SystemExit(f"bench: the dry-run floor changed the database file at {size:,} rows")
    doc = json.loads(m["stdout"])
    m["counts"], m["steps"] = doc["counts"], doc["steps"]
    out["plan_floor"] = m

    # the same floor writing the records of plan's companion (SPEC §4), as
    # plain as it gets: json_object per line, gzip on the one thread, fsync
    db, _ = fresh_copy(base, work)
    before = file_state(db)
    written = work / "floor.rows.jsonl.gz"
    floor = [*floor[:2], "--plan-only", "--companion", str(written), str(db), str(registry)]
    m = measure(floor, work)
    must_succeed("floor.py --plan-only --companion", size, m)
    if file_state(db) != before:
        raise SystemExit(f"bench: the companion floor changed the database file at {size:,} rows")
    doc = json.loads(m["stdout"])
    m["counts"], m["steps"], m["records"] = doc["counts"], doc["steps"], doc["records"]
    out["plan_floor_companion"] = m
    for name in ("plan_nd", "plan"):
        if name in out and out[name].get("companion_records") not in (None, m["records"]):
            raise SystemExit(
                f"bench: {LABELS[name]}'s companion holds {out[name]['companion_records']}"
                f" records, the companion floor's {m['records']}, at {size:,} rows"
            )

    # like with like: every count the floor computes must be plan's
    floor_counts = out["plan_floor"]["counts"]
    for name in ("plan", "plan_nd"):
        if name not in out:
            continue
        tool_counts = out[name]["counts"]
        differ = {
            k: (tool_counts.get(k), v) for k, v in floor_counts.items() if tool_counts.get(k) != v
        }
        if differ:
            raise SystemExit(
                f"bench: the dry-run floor's counts differ from {LABELS[name]}'s at {size:,}"
                f" rows ({LABELS[name]}, floor): {differ}"
            )
    return out


def run_apply(
    base: Path, registry: Path, work: Path, size: int, revert: bool
) -> dict[str, dict[str, Any]]:
    """apply (then revert on its result), and the apply floor; both leave the same rows."""
    out: dict[str, dict[str, Any]] = {}
    db, reports = fresh_copy(base, work)
    args = common_args(db, registry, reports)
    m = measure([*tool(), "apply", *args, "--yes", "--no-backup"], work)
    must_succeed("apply", size, m)
    report = newest_report(reports, "apply")
    doc = json.loads(report.read_text("utf-8"))
    if doc["status"] != "applied":
        raise SystemExit(f"bench: apply status {doc['status']}: {doc.get('error')}")
    m["phases"], m["counts"] = doc.get("timings_seconds", {}), doc["counts"]
    m["digest"] = row_digest(db)
    if doc.get("companion"):  # the archive's records, for the floor that writes them too
        with gzip.open(reports / doc["companion"], "rb") as handle:
            m["archive_records"] = sum(1 for line in handle if line.strip())
    out["apply"] = m
    if revert:
        out["revert"] = run_revert(db, registry, reports, report, work, size)

    db, _ = fresh_copy(base, work)
    m = measure([sys.executable, str(HERE / "floor.py"), str(db), str(registry)], work)
    must_succeed("floor.py", size, m)
    m["steps"] = json.loads(m["stdout"])["steps"]
    m["digest"] = row_digest(db)
    if m["digest"] != out["apply"]["digest"]:
        raise SystemExit(
            f"bench: the apply floor left different rows than apply at {size:,} rows:"
            " it does not make the same writes"
        )
    out["apply_floor"] = m

    # the same floor writing apply's archive first (SPEC §4), as plainly as
    # the companion floor writes plan's companion
    db, _ = fresh_copy(base, work)
    archive = work / "floor-archive.rows.jsonl.gz"
    m = measure(
        [sys.executable, str(HERE / "floor.py"), "--archive", str(archive), str(db), str(registry)],
        work,
    )
    must_succeed("floor.py --archive", size, m)
    doc = json.loads(m["stdout"])
    m["steps"], m["records"], m["digest"] = doc["steps"], doc["records"], row_digest(db)
    if m["digest"] != out["apply"]["digest"]:
        raise SystemExit(f"bench: the archive floor left different rows than apply at {size:,}")
    if out["apply"].get("archive_records") not in (None, m["records"]):
        raise SystemExit(
            f"bench: apply's archive holds {out['apply']['archive_records']} records,"
            f" the archive floor's {m['records']}, at {size:,} rows"
        )
    out["apply_floor_archive"] = m
    return out


# ---- revert: the subcommand is being written; measured when the tool has it ----


def revert_command(db: Path, registry: Path, reports: Path, apply_report: Path) -> list[str]:
    """``revert --report APPLY_REPORT --yes``, without its backup like the apply it undoes."""
    cmd = [*tool(), "revert", *common_args(db, registry, reports), "--report", str(apply_report)]
    cmd.append("--yes")
    help_text = subprocess.run(
        [*tool(), "revert", "--help"], capture_output=True, text=True, check=False
    ).stdout
    if "--no-backup" in help_text:
        cmd.append("--no-backup")
    return cmd


def run_revert(
    db: Path, registry: Path, reports: Path, apply_report: Path, work: Path, size: int
) -> dict[str, Any]:
    m = measure(revert_command(db, registry, reports, apply_report), work)
    must_succeed("revert", size, m)
    found = sorted(reports.glob("revert-*.json"))
    if found:
        doc = json.loads(found[-1].read_text("utf-8"))
        m["status"] = doc.get("status")
        m["phases"] = doc.get("timings_seconds", {})
        # revert's backup, if it took one anyway, is not part of the ratio
        m["wall_without_backup"] = m["wall"] - float(m["phases"].get("backup", 0.0))
    return m


# ---- backup against a plain copy ----------------------------------------------


def run_backup(base: Path, registry: Path, work: Path, size: int) -> dict[str, dict[str, Any]]:
    """cp + sync of the file, then apply with its backup: the backup phase of its
    report plus the wait for the copy's check (``backup_check_wait``)."""
    out: dict[str, dict[str, Any]] = {}
    db, reports = fresh_copy(base, work)
    target = work / "cp-copy.db"
    m = measure(["sh", "-c", 'cp -- "$0" "$1" && sync -- "$1"', str(db), str(target)], work)
    must_succeed("cp", size, m)
    target.unlink()
    out["cp"] = m
    m = measure([*tool(), "apply", *common_args(db, registry, reports), "--yes"], work)
    must_succeed("apply (with backup)", size, m)
    doc = json.loads(newest_report(reports, "apply").read_text("utf-8"))
    phases = doc.get("timings_seconds", {})
    if "backup" not in phases:
        raise SystemExit("bench: apply's report has no timings_seconds.backup")
    m["apply_wall"] = m["wall"]
    m["phases"] = phases
    # The backup's time on apply's path: the copy and its fsync, plus any wait
    # for the copy's quick_check (which runs alongside the archive and writes).
    m["wall"] = float(phases["backup"]) + float(phases.get("backup_check_wait", 0.0))
    m["apply_wall_without_backup"] = m["apply_wall"] - m["wall"]
    out["backup"] = m
    return out


def run_inspect(
    base: Path, registry: Path, work: Path, size: int, discover: bool
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, extra in (("inspect", []), ("inspect_nd", ["--no-discover"]))[: 2 if discover else 1]:
        db, reports = fresh_copy(base, work)
        m = measure([*tool(), "inspect", *common_args(db, registry, reports), *extra], work)
        must_succeed(LABELS[name], size, m)
        out[name] = m
    return out


def has_option(command: str, option: str) -> bool:
    done = subprocess.run([*tool(), command, "--help"], capture_output=True, text=True, check=False)
    return option in done.stdout


def bench_size(out: Path, size: int, runs: int, seed: int) -> dict[str, Any]:
    base, registry, meta = base_database(out, size, seed)
    work = out / f"work-{size}"
    wait_for_cli()
    revert = has_command("revert")
    # discovery of unconfigured columns (SPEC 3) is not a decision: measured apart too
    discover = has_option("plan", "--no-discover") and has_option("inspect", "--no-discover")
    samples: dict[str, list[dict[str, Any]]] = {k: [] for k in LABELS}
    load = [os.getloadavg()[0]]
    for run in range(1, runs + 1):
        got: dict[str, dict[str, Any]] = {}
        got |= run_apply(base, registry, work, size, revert)
        got |= run_plan(base, registry, work, size, discover)
        got |= run_backup(base, registry, work, size)
        got |= run_inspect(base, registry, work, size, discover)
        for name, m in got.items():
            m.pop("stdout", None)
            m.pop("stderr", None)
            samples[name].append(m)
            label = LABELS[name]
            say(f"  {size:>9,} run {run} {label:<14} {m['wall']:7.2f} s {m['rss_mb']:5.0f} MB")
        load.append(os.getloadavg()[0])
    shutil.rmtree(work, ignore_errors=True)
    return {
        "size": size,
        "generated": meta,
        "samples": samples,
        "load_1min": [round(x, 2) for x in load],
        "summary": summarize(samples),
    }


def summarize(samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, runs in samples.items():
        if not runs:
            continue
        out[name] = {
            "median_s": statistics.median(r["wall"] for r in runs),
            "runs_s": [round(r["wall"], 3) for r in runs],
            "peak_rss_mb": max(r["rss_mb"] for r in runs),
        }
    for name in ("apply", "revert", "backup"):
        phases: dict[str, list[float]] = {}
        for r in samples.get(name, []):
            for k, v in r.get("phases", {}).items():
                phases.setdefault(k, []).append(v)
        if phases:
            out[name]["phases_median_s"] = {k: statistics.median(v) for k, v in phases.items()}
    if samples.get("backup"):
        out["backup"]["apply_without_backup_median_s"] = statistics.median(
            r["apply_wall_without_backup"] for r in samples["backup"]
        )
    if samples.get("revert") and all("wall_without_backup" in r for r in samples["revert"]):
        out["revert"]["without_backup_median_s"] = statistics.median(
            r["wall_without_backup"] for r in samples["revert"]
        )
    # like with like first: the dry-run floor does no discovery
    ratios = {
        "plan --no-discover / dry-run floor": ("plan_nd", "plan_floor"),
        "plan / dry-run floor": ("plan", "plan_floor"),
        "plan --no-discover / dry-run floor + companion": ("plan_nd", "plan_floor_companion"),
        "apply / apply floor": ("apply", "apply_floor"),
        "apply / apply floor + archive": ("apply", "apply_floor_archive"),
        "backup / cp": ("backup", "cp"),
        "inspect --no-discover / dry-run floor": ("inspect_nd", "plan_floor"),
        "inspect / dry-run floor": ("inspect", "plan_floor"),
        "revert / apply": ("revert", "apply"),
    }
    out["ratios"] = {
        k: out[a]["median_s"] / out[b]["median_s"]
        for k, (a, b) in ratios.items()
        if a in out and b in out
    }
    # discovery's own cost: the difference of the medians with and without it
    out["discovery_s"] = {
        cmd: out[cmd]["median_s"] - out[nd]["median_s"]
        for cmd, nd in (("plan", "plan_nd"), ("inspect", "inspect_nd"))
        if cmd in out and nd in out
    }
    return out


# --------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------


def _pair(s: dict[str, Any], a: str, b: str) -> str:
    if a not in s or b not in s:
        return "n/a"
    x, y = s[a]["median_s"], s[b]["median_s"]
    return f"{x:.2f} / {y:.2f} s = **{x / y:.2f}×**"


def _rss(s: dict[str, Any]) -> str:
    parts = []
    for name in LABELS:
        if name in s and name != "cp":
            parts.append(f"{LABELS[name]} {s[name]['peak_rss_mb']:.0f}")
    worst = max(s[n]["peak_rss_mb"] for n in TOOL_COMMANDS if n in s)
    verdict = "under" if worst < RSS_BUDGET_MB else "**OVER**"
    return ", ".join(parts) + f"; tool max {worst:.0f} ({verdict} {RSS_BUDGET_MB:.0f})"


def _discovery(s: dict[str, Any], cmd: str, nd: str) -> str:
    if cmd not in s or nd not in s:
        return ""
    return f"discovery +{s[cmd]['median_s'] - s[nd]['median_s']:.2f} s"


def table(doc: dict[str, Any]) -> str:
    """One row per size, then the 10x scaling row.

    The headline of the plan and inspect cells compares like with like: the
    dry-run floor does no discovery of unconfigured columns, so ``--no-discover``
    comes first; the default run (with discovery) and discovery's own cost
    (the difference of the two medians) follow.
    """
    head = [
        "rows (memories + interactions)",
        f"plan --no-discover / dry-run floor (≤ {PLAN_TARGET:g}×); with discovery",
        f"apply / apply floor (≤ {APPLY_TARGET:g}×, backup excluded)",
        "backup / cp",
        "inspect --no-discover (× dry-run floor); with discovery",
        f"revert / apply (≤ {REVERT_TARGET:g}×)",
        f"peak RSS MB, every command (budget {RSS_BUDGET_MB:.0f})",
    ]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|---|---|---|---|"]
    by_size = {r["size"]: r["summary"] for r in doc["results"]}
    for size, s in sorted(by_size.items()):
        floor = s["plan_floor"]["median_s"] if "plan_floor" in s else None
        cells = []
        for name in ("inspect_nd", "inspect"):
            if name in s and floor:
                x = s[name]["median_s"]
                cells.append(f"{x:.2f} s = {x / floor:.2f}×")
        if "inspect_nd" in s and "inspect" in s:
            spent = _discovery(s, "inspect", "inspect_nd")
            inspect = f"**{cells[0]}**; with discovery {cells[1]} ({spent})"
        else:
            inspect = "; ".join(cells) or "n/a"
        if "plan_nd" in s:
            plan = _pair(s, "plan_nd", "plan_floor")
            plan += f"; with discovery {_pair(s, 'plan', 'plan_floor').replace('**', '')}"
            plan += f" ({_discovery(s, 'plan', 'plan_nd')})"
            if "plan_floor_companion" in s:
                both = _pair(s, "plan_nd", "plan_floor_companion").replace("**", "")
                plan += f"; against the floor that also writes the companion {both}"
        else:
            plan = _pair(s, "plan", "plan_floor") + " (with discovery)"
        apply = _pair(s, "apply", "apply_floor")
        if "apply_floor_archive" in s:
            both = _pair(s, "apply", "apply_floor_archive").replace("**", "")
            apply += f"; against the floor that also writes the archive {both}"
        lines.append(
            f"| {size:,} + {size:,} | {plan}"
            f" | {apply} | {_pair(s, 'backup', 'cp')}"
            f" | {inspect} | {_pair(s, 'revert', 'apply')} | {_rss(s)} |"
        )
    sizes = sorted(by_size)
    for small, large in itertools.pairwise(sizes):
        a, b = by_size[small], by_size[large]

        def grow(*names: str, a: dict[str, Any] = a, b: dict[str, Any] = b) -> str:
            cells = []
            for n in names:
                if n in a and n in b:
                    cells.append(f"{LABELS[n]} {b[n]['median_s'] / a[n]['median_s']:.1f}×")
                else:
                    cells.append(f"{LABELS[n]} n/a")
            return ", ".join(cells)

        rss = ", ".join(
            f"{LABELS[n]} {b[n]['peak_rss_mb'] / a[n]['peak_rss_mb']:.2f}×"
            for n in LABELS
            if n in a and n in b and n != "cp"
        )
        lines.append(
            f"| time at {large // small}× the rows ({large:,} / {small:,}; ≤ {SCALING_TARGET:g}×)"
            f" | {grow('plan_nd', 'plan', 'plan_floor')} | {grow('apply', 'apply_floor')}"
            f" | {grow('backup', 'cp')} | {grow('inspect_nd', 'inspect')} | {grow('revert')}"
            f" | RSS growth: {rss} |"
        )
    return "\n".join(lines) + "\n"


def header(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    return (
        f"atocore-identity {m['tool']} from {m['tool_path']}; {m['nproc']} CPUs ({m['cpu']}),"
        f" {m['mem_gb']:.1f} GB RAM, {m['os']}, Python {m['python']}, SQLite {m['sqlite']}.\n"
        f"Medians of {doc['runs']} run(s) per size, every run on a fresh fsynced copy of the"
        " database with a warm OS page cache (the copy's pages were just written; nothing"
        " dropped). Peak RSS: getrusage(RUSAGE_CHILDREN).ru_maxrss of a trampoline whose only"
        " child is the command. apply runs with --no-backup; backup is the backup phase"
        " (timings_seconds.backup) of a separate apply run with its backup, cp is `cp` + `sync`"
        " of the same file. 1-min load average during the runs: "
        + "; ".join(f"{r['size']:,}: {r['load_1min']}" for r in doc["results"])
        + "\n"
    )


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 12's targets, at every size (the scaling ones between sizes)."""
    found: list[dict[str, Any]] = []
    by_size = {r["size"]: r["summary"] for r in doc["results"]}
    for size, s in sorted(by_size.items()):
        r = s["ratios"]
        checks = (
            (
                "plan --no-discover / dry-run floor",
                "plan --no-discover <= {} x dry-run floor",
                PLAN_TARGET,
            ),
            ("plan / dry-run floor", "plan (with discovery) <= {} x dry-run floor", PLAN_TARGET),
            ("apply / apply floor", "apply (no backup) <= {} x apply floor", APPLY_TARGET),
            ("backup / cp", "backup <= {} x cp + sync", BACKUP_TARGET),
            ("revert / apply", "revert <= {} x apply", REVERT_TARGET),
        )
        for key, name, limit in checks:
            if key in r:
                found.append(_target(f"{name.format(f'{limit:g}')} at {size:,}", r[key], limit))
        worst = max(s[c]["peak_rss_mb"] for c in TOOL_COMMANDS if c in s)
        found.append(_target(f"peak RSS <= {RSS_BUDGET_MB:g} MB at {size:,}", worst, RSS_BUDGET_MB))
    sizes = sorted(by_size)
    for small, large in itertools.pairwise(sizes):
        allowed = SCALING_TARGET / 10 * large / small
        for c in TOOL_COMMANDS:
            if c in by_size[small] and c in by_size[large]:
                ratio = by_size[large][c]["median_s"] / by_size[small][c]["median_s"]
                name = f"{LABELS[c]} time {large:,} / {small:,} <= {allowed:g}"
                found.append(_target(name, ratio, allowed))
    return found


def _target(name: str, value: float, limit: float, strict: bool = False) -> dict[str, Any]:
    ok = value < limit if strict else value <= limit
    return {"target": name, "measured": round(value, 3), "met": ok}


# --------------------------------------------------------------------------
# machine
# --------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    mem = 0.0
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 1024 / 1024
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "tool": tool_version(),
        "tool_path": str(tool_path()),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gb": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


EXPORTED: dict[str, str] = {}  # with --commit: the commit whose src/ the tool runs from


def export_src(rev: str, out: Path) -> Path:
    """``git archive`` REV's src/ into --out, and run the tool from it (PYTHONPATH).

    The working tree may be mid-edit (other work in progress): this measures
    a committed state through the same console script and CLI.
    """
    root = HERE.parent
    # named by the last commit that changed src/, the one the numbers belong to
    sha = subprocess.run(
        ["git", "-C", str(root), "log", "-1", "--format=%h", rev, "--", "src"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dest = out / f"src-{sha}"
    if not (dest / "src").is_dir():
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", sha, "src"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    src = dest / "src"
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(src), os.environ.get("PYTHONPATH", "")) if p
    )
    EXPORTED.update(commit=sha, path=str(src))
    return src


def tool_path() -> Path:
    """Where the tool's children import atocore_identity from."""
    done = subprocess.run(
        [sys.executable, "-c", "import atocore_identity as m; print(m.__file__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return Path(done.stdout.strip()).resolve().parent


def tool_version() -> str:
    """The CLI's --version and the commit of the src/ it runs from ("+dirty": local edits)."""
    done = subprocess.run([*tool(), "--version"], capture_output=True, text=True, check=False)
    version = done.stdout.strip().rsplit(" ", 1)[-1] if done.returncode == 0 else "?"
    if EXPORTED:
        return f"{version} (src/ of {EXPORTED['commit']}, exported)"
    root = HERE.parent
    if not tool_path().is_relative_to(root):
        return f"{version} (not this checkout's src/)"
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%h", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return version
    return f"{version} ({commit}{'+dirty' if dirty else ''})"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# --profile: cProfile of the CLI, and every statement of plan's SQL timed
# --------------------------------------------------------------------------


def profile(out: Path, size: int, seed: int) -> Path:
    """cProfile of plan and apply, and bench/statements.py on plan's SQL (read, then write)."""
    import io
    import pstats

    base, registry, _ = base_database(out, size, seed)
    work = out / f"profile-work-{size}"
    text: list[str] = [f"# profile at {size:,} + {size:,} rows\n"]
    for command, extra in (("plan", ["--format", "json"]), ("apply", ["--yes", "--no-backup"])):
        db, reports = fresh_copy(base, work)
        prof = out / f"profile-{command}-{size}.prof"
        cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "atocore_identity"]
        cmd += [command, *common_args(db, registry, reports), *extra]
        m = measure(cmd, work)
        must_succeed(f"cProfile {command}", size, m)
        say(f"  cProfile {command}: {m['wall']:.2f} s")
        for order in ("cumulative", "tottime"):
            buf = io.StringIO()
            pstats.Stats(str(prof), stream=buf).strip_dirs().sort_stats(order).print_stats(30)
            body = buf.getvalue()
            start = body.find("   ncalls")
            text.append(f"\n## cProfile {command}, top 30 by {order} (wall {m['wall']:.2f} s)\n")
            text.append("```\n" + (body[start:] if start >= 0 else body).rstrip() + "\n```\n")
    db, reports = fresh_copy(base, work)
    script = work / "plan.sql"
    m = measure([*tool(), "plan", *common_args(db, registry, reports), "--format", "sql"], work)
    must_succeed("plan --format sql", size, m)
    script.write_text(m["stdout"], "utf-8")
    for label, extra in (("read-only replay", []), ("with the writes", ["--writes"])):
        done = subprocess.run(
            [sys.executable, str(HERE / "statements.py"), str(db), str(script), *extra],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"bench: statements.py failed:\n{done.stderr[-2000:]}")
        text.append(f"\n## plan --format sql, every statement timed ({label})\n\n```\n")
        text.append(done.stdout + "```\n")
    shutil.rmtree(work, ignore_errors=True)
    path = out / f"profile-{size}.txt"
    path.write_text("".join(text), "utf-8")
    return path


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def retable(path: Path) -> int:
    """The table and targets of a saved run, recomputed with this runner's code."""
    doc = json.loads(path.read_text("utf-8"))
    for r in doc["results"]:
        r["summary"] = summarize(r["samples"])
    doc["targets"] = targets(doc)
    say(header(doc))
    print(table(doc), end="")
    for t in doc["targets"]:
        say(f"{'ok  ' if t['met'] else 'MISS'} {t['target']}: {t['measured']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description="Benchmark the tool's commands against the floors")
    ap.add_argument("--sizes", help="comma-separated row counts (default 100000,1000000)")
    ap.add_argument("--runs", type=int, help="runs per size (default 3; the table shows medians)")
    ap.add_argument("--out", type=Path, default=HERE / "out", help="work and result directory")
    ap.add_argument("--seed", type=int, default=generate.DEFAULT_SEED)
    ap.add_argument("--quick", action="store_true", help="100,000 rows, 1 run")
    ap.add_argument("--profile", action="store_true", help="also profile at the largest size")
    ap.add_argument(
        "--commit", metavar="REV", help="run the tool from REV's src/ (git archive), not the tree"
    )
    ap.add_argument(
        "--table-from",
        type=Path,
        metavar="RESULTS_JSON",
        help="measure nothing: print the table and targets of a results-<time>.json again",
    )
    args = ap.parse_args(argv)
    if args.table_from:
        return retable(args.table_from)
    default_sizes = "100000" if args.quick else "100000,1000000"
    sizes = [int(s.replace("_", "")) for s in (args.sizes or default_sizes).split(",")]
    runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.commit:
        say(f"running the tool from {export_src(args.commit, out)}")

    wait_for_cli()
    tool_before = tool_version()
    results = [bench_size(out, size, runs, args.seed) for size in sizes] if runs else []
    if tool_version() != tool_before:
        say(f"WARNING: the tool changed during the run ({tool_before} -> {tool_version()})")
    doc: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "runs": runs,
        "seed": args.seed,
        "command": "bench/run.py " + " ".join(argv),
        "page_cache": "warm: each copy freshly written and fsynced, nothing dropped",
        "rss": "getrusage(RUSAGE_CHILDREN).ru_maxrss of a trampoline with one child",
        "apply_without_backup": "apply runs with --no-backup",
        "results": results,
    }
    if results:
        doc["targets"] = targets(doc)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        (out / f"results-{stamp}.json").write_text(json.dumps(doc, indent=1) + "\n", "utf-8")
        text = table(doc)
        (out / "results.md").write_text(header(doc) + "\n" + text, "utf-8")
        say(header(doc))
        print(text, end="")
        for t in doc["targets"]:
            say(f"{'ok  ' if t['met'] else 'MISS'} {t['target']}: {t['measured']}")
    if args.profile:
        path = profile(out, max(sizes), args.seed)
        say(f"profile written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
