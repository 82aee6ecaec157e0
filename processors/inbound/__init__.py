"""The inbound processor: ``salesforce.changes`` -> identity, echo and conflict rules -> ``product.*.inbound``.

The pure rules: :mod:`.decide` (what a change means), :mod:`.identity` (what a WriteResult teaches),
:mod:`.echo` (sfsync's own writes read back), :mod:`.mappings`, :mod:`.values`, over the typed records
of :mod:`.state`. Around them: the Faust app (:mod:`.app`), its :mod:`.settings` and :mod:`.metrics`.
"""
