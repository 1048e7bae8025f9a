"""The ``dev8`` command line (typer). Commands are thin: they call the REST API."""
