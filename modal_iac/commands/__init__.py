"""The command groups of the CLI, one module each (cli.py is the entry point)."""
