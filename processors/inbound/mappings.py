"""Which mapping reads a Salesforce record back to the product (pure, no Kafka).

Only mappings of the ``member`` entity alone feed ``product.members.inbound``
(:func:`member_mappings`). A record's mapping is the one that wrote it (named by its WriteResults),
else the first enabled member mapping targeting its object (:func:`inbound_mapping`); a record of
an object no member mapping targets has none, and nothing of it flows back.
"""

from __future__ import annotations

from sfsync.mapping import Mapping, MappingFile

__all__ = ["inbound_mapping", "member_mappings"]


def member_mappings(mappings: MappingFile) -> list[Mapping]:
    """The enabled mappings that feed ``product.members.inbound``: those of the member entity alone."""
    return [m for m in mappings.enabled() if m.entities == ["member"]]


def inbound_mapping(mappings: MappingFile, sobject: str, name: str | None = None) -> Mapping | None:
    """The member mapping named ``name`` (the one that wrote the record), else the first that targets ``sobject``."""
    candidates = member_mappings(mappings)
    if name:
        found = next((m for m in candidates if m.name == name), None)
        if found is not None:
            return found
    return next((m for m in candidates if m.target.lower() == sobject.lower()), None)
