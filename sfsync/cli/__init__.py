"""The ``sfsync`` command line: one module per command group, assembled in :mod:`sfsync.cli.main`."""
