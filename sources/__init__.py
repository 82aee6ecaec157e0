"""sfsync sources: the Salesforce poller (Salesforce -> ``salesforce.changes``).

:mod:`sfsync.sources.rules` holds the pure rules (SOQL per object, cursor and lookback window,
de-duplication, change types, deletes); :mod:`sfsync.sources.poller` the thin Kafka/Salesforce loop;
:mod:`sfsync.sources.settings` its settings (``SFSYNC_SOURCE_*``); :mod:`sfsync.sources.metrics` its metrics.
"""
