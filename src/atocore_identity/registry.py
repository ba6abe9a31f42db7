"""The project registry: loading, validation and the identity fold (SPEC §2).

A registry maps every folded alias and folded canonical id to its project.
It must exist and parse; an empty or missing registry is an error, because an
empty registry makes every database look clean.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atocore_identity.database import read_regular_file
from atocore_identity.errors import RegistryError


def fold(name: str) -> str:
    """The one comparison key for project names: strip, then Unicode lower.

    SQLite's lower() and LIKE fold ASCII only, so names are never matched
    with them; every comparison goes through this function. (Discovery's SQL
    prefilter uses lower(trim()) on all-ASCII values only, where it is exact:
    ``survey.NameShape``.)
    """
    return name.strip().lower()


@dataclass(frozen=True)
class Project:
    """One registered project: its canonical id and its aliases as written."""

    id: str
    aliases: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class Registry:
    """A validated registry and the lookups derived from it."""

    path: Path
    sha256: str
    projects: tuple[Project, ...]
    # folded alias -> canonical id (never contains a folded canonical id)
    alias_to_id: dict[str, str]
    # folded canonical id -> canonical id
    folded_ids: dict[str, str]

    def classify(self, raw: str) -> tuple[str, str] | None:
        """Say what a raw name is: ("canonical"|"variant"|"alias", canonical id).

        None means the name is unregistered and must be left alone.
        """
        key = fold(raw)
        canonical = self.folded_ids.get(key)
        if canonical is not None:
            return ("canonical" if raw == canonical else "variant", canonical)
        canonical = self.alias_to_id.get(key)
        if canonical is not None:
            return ("alias", canonical)
        return None

    def alias_map_digest(self) -> str:
        """A hash of the alias map, part of every plan fingerprint."""
        items = sorted(self.alias_to_id.items()) + sorted(
            ("=" + k, v) for k, v in self.folded_ids.items()
        )
        return hashlib.sha256(json.dumps(items, ensure_ascii=False).encode()).hexdigest()


def _fail(path: Path, what: str) -> RegistryError:
    return RegistryError(
        f"registry {path}: {what}",
        "fix the registry file (see docs/decisions.md for the rules) and run again",
    )


def _name(path: Path, where: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, f"{where} must be a non-empty string, got {json.dumps(value)}")
    if value != value.strip():
        raise _fail(path, f"{where} {json.dumps(value)} has leading or trailing white space")
    return value


def load_registry(path: Path) -> Registry:
    """Read and validate a registry file; raise RegistryError naming what is wrong."""
    # Not a plain read: a FIFO would block it forever (read_regular_file).
    raw_bytes = read_regular_file(
        path,
        "registry",
        expected="a JSON file",
        error=RegistryError,
        hint="check the --registry path",
        missing_hint="pass --registry or set ATOCORE_PROJECT_REGISTRY_PATH",
    )
    entries = _project_entries(path, raw_bytes)
    projects, owner = _projects(path, entries)
    _claim_aliases(path, projects, owner)
    alias_to_id = {k: v for k, (v, kind) in owner.items() if kind == "alias"}
    folded_ids = {k: v for k, (v, kind) in owner.items() if kind == "id"}
    return Registry(
        path=path,
        sha256=hashlib.sha256(raw_bytes).hexdigest(),
        projects=tuple(projects),
        alias_to_id=alias_to_id,
        folded_ids=folded_ids,
    )


def _project_entries(path: Path, raw_bytes: bytes) -> list[Any]:
    """The file's non-empty ``projects`` list, entries not yet checked."""
    try:
        doc = json.loads(raw_bytes.decode("utf-8"))
    except UnicodeDecodeError:
        raise _fail(path, "is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise _fail(
            path, f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("projects"), list):
        raise _fail(path, 'must be a JSON object with a "projects" list')
    entries: list[Any] = doc["projects"]
    if not entries:
        raise _fail(
            path, '"projects" is empty: an empty registry would make every database look clean'
        )
    return entries


# folded name -> (project id, "id"|"alias"): who claimed a name first, and how
_Owners = dict[str, tuple[str, str]]


def _projects(path: Path, entries: list[Any]) -> tuple[list[Project], _Owners]:
    """Each entry as a Project, and the folded ids claimed; two ids that fold
    alike are an error."""
    projects: list[Project] = []
    owner: _Owners = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _fail(path, f"project #{index + 1} must be a JSON object")
        pid = _name(path, f"project #{index + 1} id", entry.get("id"))
        aliases_raw = entry.get("aliases", [])
        if not isinstance(aliases_raw, list):
            raise _fail(path, f"project {pid!r}: aliases must be a list")
        aliases = tuple(_name(path, f"project {pid!r} alias", a) for a in aliases_raw)
        description = entry.get("description", "")
        projects.append(Project(pid, aliases, description if isinstance(description, str) else ""))
        folded_id = fold(pid)
        if folded_id in owner:
            other, kind = owner[folded_id]
            raise _fail(
                path,
                f"project {pid!r}: id {pid!r} is already claimed as the {kind} of "
                f"project {other!r}",
            )
        owner[folded_id] = (pid, "id")
    return projects, owner


def _claim_aliases(path: Path, projects: list[Project], owner: _Owners) -> None:
    """Add every folded alias to ``owner``, after all ids: an alias may not be
    another project's id or alias."""
    for project in projects:
        for alias in project.aliases:
            key = fold(alias)
            claimed = owner.get(key)
            if claimed is None:
                owner[key] = (project.id, "alias")
            elif claimed[0] == project.id:
                continue  # an alias spelled like its own id, or repeated: harmless
            elif claimed[1] == "id":
                raise _fail(
                    path,
                    f"project {project.id!r}: alias {alias!r} is the id of project {claimed[0]!r}",
                )
            else:
                raise _fail(
                    path,
                    f"project {project.id!r}: alias {alias!r} is also an alias of "
                    f"project {claimed[0]!r}",
                )
