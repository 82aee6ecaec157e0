"""sfsync sources: the Salesforce poller (Salesforce -> ``salesforce.changes``).

:mod:`sources.core` holds the pure rules (SOQL per object, cursor and lookback window,
de-duplication, change types, deletes); :mod:`sources.poller` the thin Kafka/Salesforce loop;
:mod:`sources.settings` its settings (``SFSYNC_SOURCE_*``); :mod:`sources.metrics` its metrics.
"""
