"""The benchmark runner: inspect, plan and apply against the hand-written SQL floor.

    make bench                                   # 100,000 and 1,000,000 rows, 3 runs
    make bench BENCH_ARGS=--quick                # 20,000 rows, 1 run: a smoke test
    .venv/bin/python bench/run.py --sizes 100000 --runs 5 --out bench/out
    .venv/bin/python bench/run.py --sizes 1000000 --runs 0 --profile

For every size it builds (once, cached in --out) a seeded synthetic database
with bench/generate.py, then for each run and each command copies it afresh
and times the command as a whole child process: wall time around the child,
and its peak RSS, ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` read by a
small trampoline process whose only child is the command.
apply runs with ``--yes --no-backup``; one extra apply run with the backup
reports the backup on its own line. The floor (bench/floor.py) runs the same
writes as a hand-written SQL script on its own fresh copy, and after every
floor run its database must hold exactly the rows apply's holds.

``--profile`` adds, at the largest size: cProfile of apply and plan, a
timeline of every SQL statement apply runs (time from its start to the next
statement's start, which includes the Python that consumes its rows), and
EXPLAIN QUERY PLAN of each, written to --out/profile-<size>.txt.
"""

from __future__ import annotations

import argparse
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

COMMANDS = ("apply", "floor", "plan", "inspect")
TARGET_SIZE = 1_000_000
MB = 1024 * 1024


# --------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------


def tool() -> list[str]:
    exe = Path(sys.executable).parent / "atocore-identity"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "atocore_identity"]


# A small trampoline process starts each measured command, waits for it, and
# reports getrusage(RUSAGE_CHILDREN): the peak RSS of that one child. Forking
# the command straight from this (larger) runner would not do: Linux carries
# the forking process's RSS into the child's ru_maxrss across exec.
TRAMPOLINE = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
rc = subprocess.call(sys.argv[2:], stdin=subprocess.DEVNULL,
                     stdout=open(sys.argv[1], "wb"), stderr=subprocess.STDOUT)
wall = time.perf_counter() - t0
kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"wall": wall, "rss_mb": kib / (1048576 if sys.platform == "darwin" else 1024),
                  "rc": rc}))
"""


def measure(cmd: list[str], log: Path) -> dict[str, Any]:
    """Run ``cmd`` as a child: wall seconds, peak RSS (MB) and exit code."""
    env = dict(os.environ, NO_COLOR="1")
    done = subprocess.run(
        [sys.executable, "-c", TRAMPOLINE, str(log), *cmd],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: the measuring trampoline failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def command_line(command: str, db: Path, registry: Path, reports: Path) -> list[str]:
    common = ["--db", str(db), "--registry", str(registry), "--report-dir", str(reports)]
    if command == "floor":
        return [sys.executable, str(HERE / "floor.py"), str(db), str(registry)]
    if command == "apply":
        return [*tool(), "apply", *common, "--yes", "--no-backup"]
    if command == "apply+backup":
        return [*tool(), "apply", *common, "--yes"]
    return [*tool(), command, *common]


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
                for row in rows:
                    h.update(repr(row).encode())
    finally:
        conn.close()
    return h.hexdigest()


def apply_report(reports: Path) -> dict[str, Any]:
    found = sorted(reports.glob("apply-*.json"))
    if not found:
        raise SystemExit(f"bench: apply wrote no report in {reports}")
    doc: dict[str, Any] = json.loads(found[-1].read_text("utf-8"))
    return doc


# --------------------------------------------------------------------------
# one size
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
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    db = work / "atocore.db"
    shutil.copyfile(base, db)
    # Flush the copy to disk before timing: otherwise the first fsync of the
    # timed command (apply's or the floor's COMMIT) pays for writing it back.
    fd = os.open(db, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return db, work / "reports"


def bench_size(out: Path, size: int, runs: int, seed: int) -> dict[str, Any]:
    base, registry, meta = base_database(out, size, seed)
    work = out / f"work-{size}"
    samples: dict[str, list[dict[str, Any]]] = {c: [] for c in COMMANDS}
    reference: str | None = None
    load = [os.getloadavg()[0]]
    for run in range(1, runs + 1):
        for command in COMMANDS:
            db, reports = fresh_copy(base, work)
            m = measure(command_line(command, db, registry, reports), work / "stderr.log")
            if m["rc"] != 0:
                tail = (work / "stderr.log").read_text("utf-8", "replace")[-2000:]
                raise SystemExit(f"bench: {command} exited {m['rc']} at {size:,} rows:\n{tail}")
            if command == "apply":
                doc = apply_report(reports)
                if doc["status"] != "applied":
                    raise SystemExit(f"bench: apply status {doc['status']}: {doc.get('error')}")
                m["phases"] = doc["timings_seconds"]
                m["counts"] = doc["counts"]
            if command in ("apply", "floor"):
                digest = row_digest(db)
                reference = reference or digest
                if digest != reference:
                    raise SystemExit(
                        f"bench: {command} run {run} at {size:,} rows left different rows than"
                        " the first apply: the floor does not perform the same writes"
                    )
                m["digest"] = digest[:16]
            samples[command].append(m)
            say(f"  {size:>9,} run {run} {command:<8} {m['wall']:8.2f} s {m['rss_mb']:7.1f} MB")
        load.append(os.getloadavg()[0])

    backup: dict[str, Any] | None = None
    if runs:
        db, reports = fresh_copy(base, work)
        m = measure(command_line("apply+backup", db, registry, reports), work / "stderr.log")
        if m["rc"] != 0:
            raise SystemExit(f"bench: apply with backup exited {m['rc']}")
        doc = apply_report(reports)
        backup = {
            "wall": m["wall"],
            "rss_mb": m["rss_mb"],
            "backup_seconds": doc["timings_seconds"].get("backup"),
            "backup_bytes": doc["backup"]["bytes"],
        }
        say(
            f"  {size:>9,} apply with backup {m['wall']:.2f} s, backup {backup['backup_seconds']} s"
        )
    shutil.rmtree(work, ignore_errors=True)
    return {
        "size": size,
        "generated": meta,
        "samples": samples,
        "backup": backup,
        "load_1min": [round(x, 2) for x in load],
        "summary": summarize(samples),
    }


def summarize(samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for command, runs in samples.items():
        if not runs:
            continue
        out[command] = {
            "median_s": statistics.median(r["wall"] for r in runs),
            "runs_s": [round(r["wall"], 3) for r in runs],
            "peak_rss_mb": max(r["rss_mb"] for r in runs),
        }
    if "floor" in out:
        floor = out["floor"]["median_s"]
        for command in ("apply", "plan", "inspect"):
            if command in out:
                out[command]["x_floor"] = out[command]["median_s"] / floor
    phases: dict[str, list[float]] = {}
    for r in samples.get("apply", []):
        for k, v in r.get("phases", {}).items():
            phases.setdefault(k, []).append(v)
    out["apply_phases_median_s"] = {k: statistics.median(v) for k, v in phases.items()}
    return out


# --------------------------------------------------------------------------
# targets and the table
# --------------------------------------------------------------------------


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    by_size = {r["size"]: r["summary"] for r in results if r["summary"]}
    big = by_size.get(TARGET_SIZE)
    if big and "floor" in big:
        found.append(_target("apply <= 2.0 x floor at 1M", big["apply"]["x_floor"], 2.0, "x"))
        for c in ("plan", "inspect"):
            found.append(_target(f"{c} <= 1.0 x floor at 1M", big[c]["x_floor"], 1.0, "x"))
    for size, s in sorted(by_size.items()):
        worst = max(s[c]["peak_rss_mb"] for c in COMMANDS if c in s)
        found.append(_target(f"peak RSS < 150 MB at {size:,}", worst, 150.0, " MB", strict=True))
    sizes = sorted(by_size)
    for small, large in itertools.pairwise(sizes):
        allowed = 1.2 * large / small
        for c in ("apply", "plan", "inspect", "floor"):
            if c in by_size[small] and c in by_size[large]:
                ratio = by_size[large][c]["median_s"] / by_size[small][c]["median_s"]
                found.append(
                    _target(f"{c} time {large:,} / {small:,} <= {allowed:g}", ratio, allowed, "x")
                )
    return found


def _target(
    name: str, value: float, limit: float, unit: str, strict: bool = False
) -> dict[str, Any]:
    ok = value < limit if strict else value <= limit
    return {"target": name, "measured": f"{value:.2f}{unit}", "met": ok}


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['mem_gb']:.1f} GB RAM, {m['os']},"
        f" Python {m['python']}, SQLite {m['sqlite']}. atocore-identity {m['tool']}."
        f" Runs per command: {doc['runs']}.",
        "",
        "| rows (memories + interactions) | command | median wall (s) | runs (s) | x floor"
        " | peak RSS (MB) |",
        "|---:|---|---:|---|---:|---:|",
    ]
    for r in doc["results"]:
        s = r["summary"]
        for c in COMMANDS:
            if c not in s:
                continue
            x = f"{s[c]['x_floor']:.2f}" if "x_floor" in s[c] else "1.00"
            runs = ", ".join(f"{v:.2f}" for v in s[c]["runs_s"])
            lines.append(
                f"| {r['size']:,} + {r['size']:,} | {c} | {s[c]['median_s']:.2f} | {runs} | {x}"
                f" | {s[c]['peak_rss_mb']:.0f} |"
            )
        b = r["backup"]
        if b:
            lines.append(
                f"| {r['size']:,} + {r['size']:,} | apply's backup (own run) |"
                f" {b['backup_seconds']:.2f} | total {b['wall']:.2f} | | {b['rss_mb']:.0f} |"
            )
    lines += ["", "apply phases (median s, from the apply report's timings_seconds):", ""]
    for r in doc["results"]:
        ph = r["summary"].get("apply_phases_median_s", {})
        text = ", ".join(f"{k} {v:.2f}" for k, v in ph.items())
        lines.append(f"- {r['size']:,}: {text}; 1-min load avg during runs {r['load_1min']}")
    lines += ["", "| target | measured | met |", "|---|---:|---|"]
    for t in doc["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'NO'} |")
    return "\n".join(lines) + "\n"


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
        "tool": _tool_version(),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gb": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


def _tool_version() -> str:
    """The version and the last commit that touched src/, "+dirty" if src/ has local changes."""
    from atocore_identity import __version__

    root = HERE.parent
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
        return __version__
    return f"{__version__} ({commit}{'+dirty' if dirty else ''})"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# --profile
# --------------------------------------------------------------------------


def profile(out: Path, size: int, seed: int) -> Path:
    """cProfile of apply and plan, apply's statement timeline, EXPLAIN QUERY PLAN."""
    import pstats

    base, registry, _ = base_database(out, size, seed)
    work = out / f"profile-work-{size}"
    text: list[str] = [f"# profile at {size:,} + {size:,} rows\n"]
    for command in ("apply", "plan"):
        db, reports = fresh_copy(base, work)
        prof = out / f"profile-{command}-{size}.prof"
        cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "atocore_identity"]
        cmd += command_line(command, db, registry, reports)[1:]
        m = measure(cmd, work / "stderr.log")
        say(f"  cProfile {command}: {m['wall']:.2f} s, rc {m['rc']}")
        for order in ("tottime", "cumulative"):
            text.append(f"\n## cProfile {command}, top 25 by {order} (wall {m['wall']:.2f} s)\n")
            text.append(_pstats(pstats, prof, order))
    db, _ = fresh_copy(base, work)
    pristine = work / "pristine.db"
    shutil.copyfile(base, pristine)
    trace = subprocess.run(
        [
            sys.executable,
            str(HERE / "run.py"),
            "--_timeline",
            str(db),
            str(pristine),
            str(registry),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, NO_COLOR="1"),
    )
    if trace.returncode != 0:
        raise SystemExit(f"bench: timeline failed:\n{trace.stderr[-2000:]}")
    text.append(trace.stdout)
    shutil.rmtree(work, ignore_errors=True)
    path = out / f"profile-{size}.txt"
    path.write_text("".join(text), "utf-8")
    return path


def _pstats(pstats: Any, prof: Path, order: str) -> str:
    import io

    buf = io.StringIO()
    stats = pstats.Stats(str(prof), stream=buf)
    stats.strip_dirs().sort_stats(order).print_stats(25)
    body = buf.getvalue()
    start = body.find("   ncalls")
    return "```\n" + (body[start:] if start >= 0 else body).rstrip() + "\n```\n"


def timeline(db: Path, pristine: Path, registry_path: Path) -> None:
    """Run apply in-process with a timestamped trace; then EXPLAIN every statement."""
    import atocore_identity.applier as applier
    from atocore_identity.planner import build_plan, write_statements
    from atocore_identity.registry import load_registry
    from atocore_identity.targets import resolve_targets

    marks: list[tuple[float, str]] = []
    real_open = applier.open_database

    def traced_open(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_open(*args, **kwargs)
        conn.set_trace_callback(lambda sql: marks.append((time.perf_counter(), sql)))
        return conn

    applier.open_database = traced_open  # type: ignore[assignment]
    registry = load_registry(registry_path)
    reports = db.parent / "timeline-reports"
    t0 = time.perf_counter()
    result = applier.run_apply(db, registry, applier.ApplyOptions(reports, backup=False))
    end = time.perf_counter()
    applier.open_database = real_open  # type: ignore[assignment]
    print(f"\n## apply statement timeline ({result.status}, {end - t0:.2f} s in-process)\n")
    print("Seconds from each statement's start to the next one's (its rows' Python included).\n")
    spans = []
    for i, (t, sql) in enumerate(marks):
        nxt = marks[i + 1][0] if i + 1 < len(marks) else end
        spans.append((nxt - t, i, sql))
    print("```")
    for dt, i, sql in sorted(spans, reverse=True)[:20]:
        print(f"{dt:8.3f} s  #{i:<3} {' '.join(sql.split())[:150]}")
    print(f"({len(marks)} statements in all)")
    print("```")

    # EXPLAIN QUERY PLAN on a read-only connection to an unmigrated copy,
    # replaying the planning statements in order so each sees its TEMP tables.
    from atocore_identity.database import open_database

    print("\n## EXPLAIN QUERY PLAN of the planning and write statements\n")
    print("Seconds: the statement alone, its rows fetched and dropped, on a read-only replay.\n")
    conn = open_database(pristine, readonly=True)
    targets, missing = resolve_targets(conn, [])
    log: list[str] = []
    conn.set_trace_callback(log.append)
    plan = build_plan(conn, registry, targets, missing)
    conn.set_trace_callback(None)
    conn.close()
    writes = write_statements(plan)
    conn = open_database(pristine, readonly=True)
    print("```")
    for sql in [*log, "-- the writes (not run)", *writes]:
        flat = " ".join(sql.split())
        if sql.startswith("--") or flat.upper().startswith(("PRAGMA", "DROP")):
            if sql.startswith("--"):
                print(sql)
            continue
        is_write = sql in writes
        try:
            eqp = conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
        except sqlite3.Error as exc:
            eqp = [(0, 0, 0, f"(no plan: {exc})")]
        t = time.perf_counter()
        if not is_write:
            cur = conn.execute(sql)
            while cur.fetchmany(10_000):
                pass
        dt = time.perf_counter() - t
        head = f"{dt:7.3f} s" if not is_write else "  write  "
        print(f"{head} {flat[:140]}")
        for row in eqp:
            print(f"            {row[3]}")
    print("```")
    conn.close()


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_timeline"]:
        timeline(Path(argv[1]), Path(argv[2]), Path(argv[3]))
        return 0
    ap = argparse.ArgumentParser(description="Benchmark inspect/plan/apply against the floor")
    ap.add_argument("--sizes", help="comma-separated row counts (default 100000,1000000)")
    ap.add_argument("--runs", type=int, help="timed runs per command and size (default 3)")
    ap.add_argument("--out", type=Path, default=HERE / "out", help="work and result directory")
    ap.add_argument("--seed", type=int, default=generate.DEFAULT_SEED)
    ap.add_argument("--quick", action="store_true", help="20,000 rows, 1 run: a smoke test")
    ap.add_argument("--profile", action="store_true", help="also profile at the largest size")
    args = ap.parse_args(argv)
    default_sizes = "20000" if args.quick else "100000,1000000"
    sizes = [int(s.replace("_", "")) for s in (args.sizes or default_sizes).split(",")]
    runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    tool_before = _tool_version()
    results = [bench_size(out, size, runs, args.seed) for size in sizes]
    if _tool_version() != tool_before:
        say(f"WARNING: the tool changed during the run ({tool_before} -> {_tool_version()})")
    doc = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "runs": runs,
        "seed": args.seed,
        "command": "make bench BENCH_ARGS='" + " ".join(argv) + "'",
        "results": results,
    }
    doc["targets"] = targets(results) if runs else []
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (out / f"results-{stamp}.json").write_text(json.dumps(doc, indent=1) + "\n", "utf-8")
    table = markdown(doc) if runs else ""
    (out / "results.md").write_text(table, "utf-8")
    print(table, end="")
    if args.profile:
        path = profile(out, max(sizes), args.seed)
        say(f"profile written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
