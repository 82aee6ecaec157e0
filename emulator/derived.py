"""Fields the org computes on save: names, status flags, copies from related records and auto numbers.

:meth:`DerivedFields.derive` sets them on a row about to be stored (a new dict the caller owns):

- Contact, Lead, User: ``Name`` is ``FirstName LastName`` (null when both are empty);
- CampaignMember: ``HasResponded`` (Status "Responded") and ``FirstRespondedDate`` (the first time);
  on create, ``Type``, ``LeadOrContactId`` and the person's FirstName, LastName, Email and Name;
- Task: ``IsClosed`` (Status "Completed", which sets ``CompletedDateTime`` once), ``IsHighPriority``,
  ``AccountId`` (the WhatId when it is an account);
- Case: ``IsClosed`` (Status "Closed") with ``ClosedDate`` set once and cleared on reopening;
- Opportunity: ``IsClosed`` and ``IsWon`` from the stage.

:meth:`DerivedFields.next_number` hands out an auto-number field's next value (``A-{0000}`` ->
``A-0001``), one counter per object and field, which snapshots keep.
"""

from __future__ import annotations

import re

from sfsync.emulator.model import FieldDef, Row
from sfsync.emulator.tables import Table
from sfsync.emulator.transactions import Transactions, View

_PERSON_NAMED = frozenset({"contact", "lead", "user"})


class DerivedFields:
    """Computes derived fields from the org's clock and the rows readers see; owns the auto-number counters."""

    def __init__(self, transactions: Transactions, view: View) -> None:
        self._transactions = transactions
        self._view = view
        self.counters: dict[tuple[str, str], int] = {}

    def clear(self) -> None:
        """Start every auto number again."""
        self.counters = {}

    def derive(self, table: Table, row: Row, creating: bool) -> None:
        """Set the derived fields of ``row``, a record of ``table`` being created or updated."""
        name = table.obj.name.lower()
        if name in _PERSON_NAMED:
            row["Name"] = " ".join(p for p in (row.get("FirstName"), row.get("LastName")) if p) or None
        elif name == "campaignmember":
            status = row.get("Status")
            row["HasResponded"] = status == "Responded"
            if row["HasResponded"] and row.get("FirstRespondedDate") is None:
                row["FirstRespondedDate"] = self._transactions.now().date()
            if creating:
                person_id = row.get("ContactId") or row.get("LeadId")
                person = self._view.row_by_id(person_id) if person_id else None
                row["Type"] = "Contact" if row.get("ContactId") else "Lead"
                row["LeadOrContactId"] = person_id
                if person is not None:
                    for key in ("FirstName", "LastName", "Email", "Name"):
                        row[key] = person[1].get(key)
        elif name == "task":
            row["IsClosed"] = row.get("Status") == "Completed"
            row["IsHighPriority"] = row.get("Priority") == "High"
            what = row.get("WhatId")
            row["AccountId"] = what if what and what.startswith("001") else None
            if row["IsClosed"] and row.get("CompletedDateTime") is None:
                row["CompletedDateTime"] = self._transactions.now()
        elif name == "case":
            row["IsClosed"] = row.get("Status") == "Closed"
            if row["IsClosed"] and row.get("ClosedDate") is None:
                row["ClosedDate"] = self._transactions.now()
            elif not row["IsClosed"]:
                row["ClosedDate"] = None
        elif name == "opportunity":
            stage = row.get("StageName")
            row["IsClosed"] = stage in ("Closed Won", "Closed Lost")
            row["IsWon"] = stage == "Closed Won"

    def next_number(self, table: Table, definition: FieldDef) -> str:
        """The next value of auto-number field ``definition`` of ``table``'s object."""
        key = (table.obj.name, definition.name)
        start = int(getattr(definition, "auto_number_start", 1))
        number = self.counters.get(key, start - 1) + 1
        self.counters[key] = number
        template = str(getattr(definition, "auto_number", "{0}"))
        match = re.search(r"\{(0+)\}", template)
        if match is None:
            return f"{template}{number}"
        return template[: match.start()] + str(number).zfill(len(match.group(1))) + template[match.end() :]
