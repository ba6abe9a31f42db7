"""Entry point for ``python -m atocore_identity``."""

from atocore_identity.cli import main

if __name__ == "__main__":
    main()
