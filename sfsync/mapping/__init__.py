"""Mappings: which product fields go to which Salesforce fields, and how (docs/mappings.md).

A mapping file is YAML validated by pydantic (:class:`MappingFile`; JSON Schema from
:func:`json_schema`). One mapping = one product entity to one Salesforce object. Each field takes
its value from a product field (``from``, a dotted path into the event payload), a ``constant`` or
a CEL ``expr`` (variables ``source``: the event payload, ``event``: its envelope ``type``,
``event_id``, ``occurred_at``, ``workspace_id``).

Checking happens in two phases, each reporting every problem at once:

1. :func:`load_mappings` / :func:`parse_mappings`: YAML, ``${variable}`` substitution and the
   pydantic shape, with line numbers; raises :class:`MappingError`.
2. :func:`validate_mappings`: the one rule set every process runs at start (:func:`require_valid`
   raises on a problem): the structural and constant rules, the product fields named by ``from``
   (against the Avro schemas in ``schemas/``) and CEL expressions; with the org's describes
   (:func:`gather_describes`; :func:`validate_against_describe`) the org rules too. Returns the
   problems as strings.

:func:`evaluate_fields` is the pure outbound rule: one product event in, the Salesforce field
values of one mapping out; :func:`evaluate_inbound` the inbound one. Every process that maps reads
the same setting (:class:`MappingSettings`: ``SFSYNC_MAPPING_FILE``, ``SFSYNC_MAPPING_VARS``) and
loads the file with :func:`load_configured_mappings`. Nothing here talks to Kafka or Salesforce.

This module is the public surface; the submodules hold one concern each:

- :mod:`~sfsync.mapping.model`: the pydantic model of a mapping file;
- :mod:`~sfsync.mapping.loading`: YAML, line numbers, the default mapping, the JSON Schema;
- :mod:`~sfsync.mapping.variables`: ``${variable}`` substitution, variables given as settings;
- :mod:`~sfsync.mapping.settings`: the mapping setting every process reads;
- :mod:`~sfsync.mapping.library`: the mapping files workspaces run, compiled once per distinct variables;
- :mod:`~sfsync.mapping.products`: the product's event types and field types (Avro);
- :mod:`~sfsync.mapping.cel`: CEL functions and running expressions;
- :mod:`~sfsync.mapping.values`: values as Salesforce's REST API takes them;
- :mod:`~sfsync.mapping.evaluate`: a mapping evaluated on one event, both directions;
- :mod:`~sfsync.mapping.validate`: a file checked against an org's describe and the product;
- :mod:`~sfsync.mapping.errors`: :class:`MappingError`, :class:`MappingEvaluationError`.
"""

from sfsync.mapping.cel import run_cel
from sfsync.mapping.errors import MappingError, MappingEvaluationError
from sfsync.mapping.evaluate import (
    ParentLookup,
    evaluate_fields,
    evaluate_inbound,
    evaluate_outbound,
    match_values,
    passes_outbound_filter,
)
from sfsync.mapping.library import MappingLibrary
from sfsync.mapping.loading import DEFAULT_MAPPING_FILE, json_schema, load_mappings, parse_mappings
from sfsync.mapping.model import (
    DeletePolicy,
    FieldMap,
    InboundLink,
    InboundOptions,
    Mapping,
    MappingFile,
    MappingIndex,
    MatchKey,
    ParentRef,
)
from sfsync.mapping.settings import MappingSettings, load_configured_mappings, load_mapping_settings
from sfsync.mapping.validate import (
    Describe,
    describes_needed_for_reads,
    gather_describes,
    objects_to_describe,
    require_valid,
    validate_against_describe,
    validate_mappings,
    validate_reads,
)
from sfsync.mapping.values import to_salesforce_value

__all__ = [
    "DEFAULT_MAPPING_FILE",
    "DeletePolicy",
    "Describe",
    "FieldMap",
    "InboundLink",
    "InboundOptions",
    "Mapping",
    "MappingError",
    "MappingEvaluationError",
    "MappingFile",
    "MappingIndex",
    "MappingLibrary",
    "MappingSettings",
    "MatchKey",
    "ParentLookup",
    "ParentRef",
    "describes_needed_for_reads",
    "evaluate_fields",
    "evaluate_inbound",
    "evaluate_outbound",
    "gather_describes",
    "json_schema",
    "load_configured_mappings",
    "load_mapping_settings",
    "load_mappings",
    "match_values",
    "objects_to_describe",
    "parse_mappings",
    "passes_outbound_filter",
    "require_valid",
    "run_cel",
    "to_salesforce_value",
    "validate_against_describe",
    "validate_mappings",
    "validate_reads",
]
