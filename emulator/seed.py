"""The org's own records, written without the API's validation: its users, its Organization row and one
RecordType row per record type of the schema.

These exist in every org before any API call and are read-only through the API (users aside). They
take the org's clock for their system fields and the integration user as creator. The users an org
starts with are remembered, so :meth:`OrgSeed.reseed` puts them back after the store was emptied.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sfsync.emulator import ids
from sfsync.emulator.model import Row
from sfsync.emulator.standard import ORGANIZATION_FLAGS
from sfsync.emulator.tables import Tables
from sfsync.emulator.transactions import Transactions


class OrgSeed:
    """Writes the org's users, Organization and RecordType rows; remembers the users it was given."""

    def __init__(self, tables: Tables, transactions: Transactions, *, org_id: str, integration_user_id: str) -> None:
        self._tables = tables
        self._transactions = transactions
        self.org_id = org_id
        self.integration_user_id = integration_user_id
        self._initial_users: list[Row] = []

    def reseed(self, org_name: str | None) -> None:
        """Write every user given so far, the Organization row and the RecordType rows again (the store has
        just been emptied)."""
        for values in list(self._initial_users):
            self.put_user(values)
        self.put_organization(org_name)
        self.put_record_types()

    def put_user(self, values: Mapping[str, Any]) -> str:
        """Create or overwrite a User row (``values`` by field name, with its ``Id``); its canonical id.
        Unknown fields are ignored; ``Name`` is ``FirstName LastName``."""
        with self._tables.lock:
            table = self._tables.by_name["user"]
            user_id = ids.normalize(values["Id"])
            now = self._transactions.stamp(user_id)
            row = dict(table.live.get(user_id) or table.template)
            row.update({k: v for k, v in values.items() if table.obj.field(k) is not None})
            row.update(
                Id=user_id,
                CreatedDate=row.get("CreatedDate") or now,
                LastModifiedDate=now,
                SystemModstamp=now,
                CreatedById=row.get("CreatedById") or self.integration_user_id,
                LastModifiedById=self.integration_user_id,
            )
            row["Name"] = " ".join(p for p in (row.get("FirstName"), row.get("LastName")) if p)
            self._tables.put(table, row)
            self._initial_users = [u for u in self._initial_users if u["Id"] != user_id] + [dict(row)]
            return user_id

    def put_organization(self, name: str | None) -> None:
        """The one Organization row (Id = org id; ``name`` None: "Emulated Org"), read-only through the API,
        as in a real org."""
        table = self._tables.find("organization")
        if table is None:
            return
        with self._tables.lock:
            now = self._transactions.stamp(self.org_id)
            row = dict(table.template)
            row.update(
                Id=self.org_id,
                Name=name or "Emulated Org",
                Country="US",
                PrimaryContact="Integration User",
                DefaultLocaleSidKey="en_US",
                TimeZoneSidKey="GMT",
                LanguageLocaleKey="en_US",
                UiSkin="Theme3",
                SignupCountryIsoCode="US",
                OrganizationType="Developer Edition",
                InstanceName="EMU1",
                WebToCaseDefaultOrigin="Web",
                FiscalYearStartMonth=1,
                NumKnowledgeService=0,
                MonthlyPageViewsUsed=0,
                MonthlyPageViewsEntitlement=0,
                TrialExpirationDate=now + dt.timedelta(days=30),
                Address={
                    "city": None,
                    "country": "US",
                    "geocodeAccuracy": None,
                    "latitude": None,
                    "longitude": None,
                    "postalCode": None,
                    "state": None,
                    "street": None,
                },
                DefaultAccountAccess="Edit",
                DefaultContactAccess="ControlledByParent",
                DefaultOpportunityAccess="Edit",
                DefaultLeadAccess="ReadEditTransfer",
                DefaultCaseAccess="ReadEditTransfer",
                DefaultCalendarAccess="HideDetailsInsert",
                DefaultPricebookAccess="ReadSelect",
                DefaultCampaignAccess="All",
                CreatedDate=now,
                LastModifiedDate=now,
                SystemModstamp=now,
                CreatedById=self.integration_user_id,
                LastModifiedById=self.integration_user_id,
            )
            for flag in ORGANIZATION_FLAGS:
                if row.get(flag) is None:
                    row[flag] = False
            self._tables.put(table, row)

    def put_record_types(self) -> None:
        """One read-only RecordType row per record type of the schema (the master has none, as in a real org)."""
        table = self._tables.find("recordtype")
        if table is None:
            return
        with self._tables.lock:
            for obj in self._tables.schema:
                for info in obj.record_type_infos:
                    if info.get("master"):
                        continue
                    record_id = ids.normalize(str(info["recordTypeId"]))
                    now = self._transactions.stamp(record_id)
                    row = dict(table.template)
                    row.update(
                        Id=record_id,
                        Name=info["name"],
                        DeveloperName=info["developerName"],
                        SobjectType=obj.name,
                        IsActive=bool(info["active"]),
                        CreatedDate=now,
                        LastModifiedDate=now,
                        SystemModstamp=now,
                        CreatedById=self.integration_user_id,
                        LastModifiedById=self.integration_user_id,
                    )
                    self._tables.put(table, row)
