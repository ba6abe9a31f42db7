"""A small legacy database and registry for trying the tool (``demo``).

It holds one example of every case the migration handles: several shadows
of one project, a case-variant canonical row, a project with only shadows,
a non-ASCII alias, each row of the project_state decision table, a
collision, duplicate memories, variant spellings and unregistered names.
"""

from __future__ import annotations

import json
import sqlite3
from importlib import resources
from pathlib import Path

from atocore_identity.errors import BadInput

REGISTRY = {
    "projects": [
        {"id": "p04-gigabit", "aliases": ["p04", "gigabit"], "description": "Gigabit link"},
        {
            "id": "p05-interferometer",
            "aliases": ["p05", "interferometer"],
            "description": "Interferometer alignment rig",
        },
        {"id": "p06-polisher", "aliases": ["p06", "polisher"], "description": "Lens polisher"},
        {"id": "p07-étalon", "aliases": ["p07", "Étalon"], "description": "Étalon test bench"},
        {"id": "atocore", "aliases": ["ato core"], "description": "AtoCore itself"},
    ]
}

PROJECTS = [
    # id, name
    ("prj-p05", "p05-interferometer"),  # canonical
    ("prj-p05-alias", "p05"),  # shadow
    ("prj-p05-word", "interferometer"),  # a second shadow of the same project
    ("prj-p04", "P04-Gigabit"),  # a case variant: it IS the canonical row
    ("prj-p04-alias", "gigabit"),  # shadow
    ("prj-p06-alias", "p06"),  # shadow with no canonical row: renamed into it
    ("prj-p07-alias", "ÉTALON"),  # non-ASCII shadow, no canonical row
    ("prj-atocore", "atocore"),  # canonical, nothing to do
    ("prj-orphan", "orphan-project"),  # unregistered: never touched
]

T1, T2, T3, T4 = (
    "2025-01-10 09:00:00",
    "2025-02-10 09:00:00",
    "2025-03-10 09:00:00",
    "2025-04-10 09:00:00",
)

STATE = [
    # id, project row, category, key, value, status, updated_at
    # one row at the key: a plain rekey
    ("st-01", "prj-p05-alias", "status", "phase", "alignment", "active", T2),
    # two active rows with different values: a collision
    ("st-02", "prj-p05", "decision", "mirror-coating", "protected silver", "active", T2),
    ("st-03", "prj-p05-alias", "decision", "mirror-coating", "enhanced aluminium", "active", T3),
    # active values equal: the canonical row's own wins, the shadow is a duplicate
    ("st-04", "prj-p05", "spec", "wavelength", "632.8 nm", "active", T1),
    ("st-05", "prj-p05-word", "spec", "wavelength", "632.8 nm", "active", T3),
    # the canonical copy is inactive: the active shadow wins, the canonical is history
    ("st-06", "prj-p05", "owner", "lead", "Dana", "superseded", T3),
    ("st-07", "prj-p05-alias", "owner", "lead", "Priya", "active", T2),
    # an inactive canonical copy of an active fact never wins: it is a duplicate
    ("st-08", "prj-p05", "spec", "beam", "collimated", "invalid", T4),
    ("st-09", "prj-p05-word", "spec", "beam", "collimated", "active", T1),
    # no active row: the canonical row's own wins, the shadow is history
    ("st-10", "prj-p05", "budget", "q1", "12k", "superseded", T1),
    ("st-11", "prj-p05-alias", "budget", "q1", "15k", "invalid", T3),
    # no active row and no canonical row: the newest wins
    ("st-12", "prj-p05-alias", "budget", "q2", "8k", "superseded", T1),
    ("st-13", "prj-p05-word", "budget", "q2", "9k", "superseded", T2),
    # rows already canonical at keys no shadow holds: untouched
    ("st-14", "prj-p05", "status", "risk", "low", "active", T1),
    # the case-variant canonical row and its shadow
    ("st-20", "prj-p04", "status", "phase", "bring-up", "active", T2),
    ("st-21", "prj-p04-alias", "status", "phase", "bring-up", "active", T1),
    ("st-22", "prj-p04-alias", "link", "speed", "1 Gb/s", "active", T1),
    # a project that only has a shadow: it is renamed into the canonical row
    ("st-30", "prj-p06-alias", "status", "phase", "polishing", "active", T2),
    ("st-31", "prj-p06-alias", "status", "owner", "Lee", "superseded", T1),
    ("st-40", "prj-p07-alias", "status", "phase", "design", "active", T1),
    # unregistered project: never touched
    ("st-90", "prj-orphan", "status", "phase", "unknown", "active", T1),
]

MEMORIES = [
    # id, type, content, project, status, updated_at
    ("mem-01", "fact", "The reference arm is 40 cm long.", "p05-interferometer", "active", T1),
    ("mem-02", "fact", "The reference arm is 40 cm long.", "p05", "active", T2),  # duplicate
    ("mem-03", "fact", "Fringe contrast drops above 30 C.", "P05", "active", T1),
    ("mem-04", "fact", "Fringe contrast drops above 30 C.", " interferometer ", "active", T3),
    (
        "mem-05",
        "preference",
        "Use the green laser for alignment.",
        "P05-Interferometer",
        "active",
        T2,
    ),  # a variant spelling of the canonical id
    ("mem-06", "fact", "Old vibration table.", "p05", "superseded", T1),
    ("mem-07", "fact", "Maybe switch to a HeNe source.", "p05", "candidate", T2),
    ("mem-08", "fact", "Link trains at 1 Gb/s.", "gigabit", "active", T1),
    ("mem-09", "fact", "Pad 3 is worn.", "polisher", "active", T2),
    ("mem-10", "fact", "Étalon spacing is 5 mm.", "ÉTALON", "active", T1),
    ("mem-11", "fact", "A note nobody filed.", "scratch", "active", T1),  # unregistered
    ("mem-12", "fact", "A note with no project.", "", "active", T1),
    ("mem-13", "fact", "AtoCore keeps trusted state.", "atocore", "active", T1),
]

INTERACTIONS = [
    ("int-01", "What is the arm length?", "40 cm", "p05"),
    ("int-02", "Status of p05?", "Aligning", "p05-interferometer"),
    ("int-03", "Pad wear?", "Pad 3", "Polisher"),
    ("int-04", "Link speed?", "1 Gb/s", "p04"),
    ("int-05", "Étalon?", "5 mm", "p07"),
    ("int-06", "Unfiled question", "", "scratch"),
]

CONFLICTS = [
    ("cf-01", "p05", "mirror coating disagreement"),
    ("cf-02", "p06-polisher", "pad schedule"),
]


def schema_sql() -> str:
    """AtoCore's reference schema, as shipped inside the package."""
    return resources.files("atocore_identity").joinpath("data/schema.sql").read_text("utf-8")


def write_demo(directory: Path, force: bool = False) -> tuple[Path, Path]:
    """Write ``atocore.db`` and ``registry.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "atocore.db"
    registry = directory / "registry.json"
    for path in (db, registry):
        if path.exists() or path.is_symlink():
            if not force:
                raise BadInput(f"{path} already exists", "pass --force to replace the demo files")
            path.unlink()
    for suffix in ("-journal", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    conn = sqlite3.connect(db)
    try:
        conn.executescript(schema_sql())
        # Real databases carry more than the reference schema: an extra column
        # and an extra project-keyed table (try `--column conflicts.project`).
        conn.execute("ALTER TABLE projects ADD COLUMN owner TEXT DEFAULT ''")
        conn.execute("CREATE TABLE conflicts (id TEXT PRIMARY KEY, project TEXT, summary TEXT)")
        conn.executemany(
            "INSERT INTO projects (id, name, description, created_at, updated_at)"
            " VALUES (?, ?, '', ?, ?)",
            [(pid, name, T1, T1) for pid, name in PROJECTS],
        )
        conn.executemany(
            "INSERT INTO project_state (id, project_id, category, key, value, status,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(i, p, c, k, v, s, T1, u) for i, p, c, k, v, s, u in STATE],
        )
        conn.executemany(
            "INSERT INTO memories (id, memory_type, content, project, status, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(i, t, c, p, s, T1, u) for i, t, c, p, s, u in MEMORIES],
        )
        conn.executemany(
            "INSERT INTO interactions (id, prompt, response, project, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [(*row, T1) for row in INTERACTIONS],
        )
        conn.executemany("INSERT INTO conflicts VALUES (?, ?, ?)", CONFLICTS)
        conn.commit()
    finally:
        conn.close()
    registry.write_text(json.dumps(REGISTRY, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return db, registry
