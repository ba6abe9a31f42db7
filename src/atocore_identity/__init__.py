"""atocore-identity: move AtoCore's legacy alias-keyed rows to their canonical project.

The package is layered so the file tree reads as the architecture:

- ``registry``   loads and validates the project registry (identity rules, §2)
- ``database``   opens SQLite safely, introspects tables, quotes SQL (``backup`` backs up)
- ``planner``    the one core: builds the plan from ``statements`` (its SQL) in named steps
- ``workers``    read-only jobs in worker processes beside a command (``discovery``, ``rekeys``)
- ``resolutions`` operator decisions for collisions, and their staleness check
- ``applier``    runs a plan in one transaction with its safety rails
- ``verifier``   the postcondition checklist
- ``reports``    JSON reports, written atomically (``companion``: the gzip row detail)
- ``render``     text / markdown / json rendering of results
- ``commands``   what each subcommand does, on top of the core
- ``options`` and ``cli``  Click parsing only
"""

__version__ = "0.1.0"
