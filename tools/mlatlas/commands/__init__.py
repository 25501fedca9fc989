"""Subcommands of ``mlatlas``, one module per group."""
