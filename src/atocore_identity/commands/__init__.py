"""One module per subcommand: the function that runs it, its JSON payload and its view.

Each module has ``run(...) -> Outcome``; the outcome carries the report
payload it wrote, its ``exit_code``, and ``view(outcome)`` turns it into a
``render.Doc``. ``base`` holds what they all share. No Click here, no SQL and
no rules: those live in the core modules beneath.
"""
