"""How sfsync runs Faust apps: the worker, offset commits, table changelogs and recovery.

Several modules here patch the pinned faust-streaming release; each names the upstream issue it works around.
"""
