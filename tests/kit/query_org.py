"""A small org for the emulator's query engines (``sfsync.emulator.soql``, ``sfsync.emulator.sosl``): a
``RecordSource`` over rows in dicts, its schema, and the rows :func:`build_org` puts in it.

Import these from this module (``from tests.kit.query_org import IDS, NOW, Org, build_org``).
:data:`IDS` maps each row's short name (``c1``, ``a2``...) to its id once :func:`build_org` ran;
:data:`NOW` is the moment date literals (``TODAY``, ``THIS_WEEK``...) are evaluated at.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sfsync.emulator.model import ChildRelationship, FieldDef, ObjectDef, Row, Schema
from sfsync.emulator.soql import normalize_id

__all__ = ["IDS", "NOW", "Org", "build_org", "build_schema", "make_id", "ref", "to18", "utc"]

NOW = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)  # a Wednesday; the week began on Sunday 2026-11-22
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def to18(id15: str) -> str:
    suffix = ""
    for chunk in range(3):
        bits = sum(1 << i for i in range(5) if id15[chunk * 5 + i].isupper())
        suffix += _SUFFIX[bits]
    return id15 + suffix


def make_id(prefix: str, n: int) -> str:
    return to18(f"{prefix}Ab{n:010d}")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)


class Org:
    """A RecordSource over a dict of rows."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.data: dict[str, list[Row]] = {o.name: [] for o in schema}
        self.by_id: dict[str, tuple[ObjectDef, Row]] = {}

    def add(self, sobject: str, **values: Any) -> str:
        obj = self.schema.get(sobject)
        assert obj is not None
        row: Row = {f.name: None for f in obj.fields.values()}
        row["IsDeleted"] = False
        row.update(values)
        self.data[obj.name].append(row)
        self.by_id[normalize_id(row["Id"])] = (obj, row)
        return str(row["Id"])

    def rows(self, sobject: str, *, include_deleted: bool = False) -> Iterable[Row]:
        return [r for r in self.data[sobject] if include_deleted or not r.get("IsDeleted")]

    def row_by_id(self, record_id: str) -> tuple[ObjectDef, Row] | None:
        return self.by_id.get(normalize_id(record_id))


def _obj(name: str, prefix: str, *fields: FieldDef, custom: bool = False) -> ObjectDef:
    obj = ObjectDef(name=name, key_prefix=prefix, label=name, custom=custom)
    obj.add(FieldDef("Id", "id", nillable=False, createable=False, updateable=False))
    obj.add(FieldDef("IsDeleted", "boolean", createable=False, updateable=False))
    obj.add(FieldDef("CreatedDate", "datetime", createable=False, updateable=False))
    for f in fields:
        obj.add(f)
    return obj


def ref(name: str, *to: str, rel: str, custom: bool = False) -> FieldDef:
    return FieldDef(name, "reference", reference_to=to, relationship_name=rel, custom=custom)


def build_schema() -> Schema:
    schema = Schema()
    schema.add(_obj("User", "005", FieldDef("Name", "string", name_field=True), FieldDef("Email", "email")))
    schema.add(_obj("Group", "00G", FieldDef("Name", "string", name_field=True)))
    account = _obj(
        "Account",
        "001",
        FieldDef("Name", "string", name_field=True),
        FieldDef("Industry", "picklist"),
        FieldDef("AnnualRevenue", "currency"),
        FieldDef("NumberOfEmployees", "int"),
        FieldDef("Phone", "phone"),
        ref("OwnerId", "User", rel="Owner"),
        FieldDef("Rating__c", "picklist", custom=True),
    )
    account.child_relationships.append(ChildRelationship("Contacts", "Contact", "AccountId"))
    schema.add(account)
    contact = _obj(
        "Contact",
        "003",
        FieldDef("FirstName", "string"),
        FieldDef("LastName", "string"),
        FieldDef("Name", "string", name_field=True),
        FieldDef("Email", "email"),
        FieldDef("Phone", "phone"),
        ref("AccountId", "Account", rel="Account"),
        ref("OwnerId", "User", rel="Owner"),
        FieldDef("Birthdate", "date"),
        FieldDef("HasOptedOutOfEmail", "boolean"),
        FieldDef("Description", "textarea"),
        FieldDef("Score__c", "double", custom=True),
        FieldDef("Interests__c", "multipicklist", custom=True),
    )
    contact.child_relationships.append(ChildRelationship("Opportunities", "Opportunity", "ContactId"))
    contact.child_relationships.append(ChildRelationship("CampaignMembers", "CampaignMember", "ContactId"))
    schema.add(contact)
    schema.add(
        _obj(
            "Lead",
            "00Q",
            FieldDef("FirstName", "string"),
            FieldDef("LastName", "string"),
            FieldDef("Name", "string", name_field=True),
            FieldDef("Company", "string"),
            FieldDef("Email", "email"),
            FieldDef("Phone", "phone"),
            FieldDef("Status", "picklist"),
            ref("OwnerId", "User", "Group", rel="Owner"),
        )
    )
    campaign = _obj("Campaign", "701", FieldDef("Name", "string", name_field=True), FieldDef("IsActive", "boolean"))
    campaign.child_relationships.append(ChildRelationship("CampaignMembers", "CampaignMember", "CampaignId"))
    schema.add(campaign)
    schema.add(
        _obj(
            "CampaignMember",
            "00v",
            ref("CampaignId", "Campaign", rel="Campaign"),
            ref("ContactId", "Contact", rel="Contact"),
            ref("LeadId", "Lead", rel="Lead"),
            FieldDef("Status", "picklist"),
        )
    )
    schema.add(
        _obj(
            "Opportunity",
            "006",
            FieldDef("Name", "string", name_field=True),
            FieldDef("Amount", "currency"),
            ref("CampaignId", "Campaign", rel="Campaign"),
            ref("ContactId", "Contact", rel="Contact"),
        )
    )
    whizbang = _obj(
        "Whizbang__c",
        "a00",
        FieldDef("Name", "string", name_field=True),
        FieldDef("Text_Label__c", "string", custom=True),
        ref("ParentWhizbang__c", "Whizbang__c", rel="ParentWhizbang__r", custom=True),
        custom=True,
    )
    whizbang.child_relationships.append(ChildRelationship("Whizbangs__r", "Whizbang__c", "ParentWhizbang__c"))
    schema.add(whizbang)
    schema.add(
        _obj(
            "Task",
            "00T",
            FieldDef("Subject", "string"),
            ref("WhoId", "Contact", "Lead", rel="Who"),
            ref("WhatId", "Account", "Campaign", rel="What"),
        )
    )
    return schema


IDS: dict[str, str] = {}


def build_org() -> Org:
    org = Org(build_schema())
    i = iter(range(1, 1000))

    def add(key: str, sobject: str, prefix: str, **values: Any) -> None:
        IDS[key] = org.add(sobject, Id=make_id(prefix, next(i)), **values)

    add("u1", "User", "005", Name="Uma User", Email="uma@example.com")
    add("u2", "User", "005", Name="Victor User", Email="victor@example.com")
    add("g1", "Group", "00G", Name="Queue One")
    add(
        "a1",
        "Account",
        "001",
        Name="Acme",
        Industry="Tech",
        AnnualRevenue=500.0,
        NumberOfEmployees=50,
        OwnerId=IDS["u1"],
        Phone="(415) 555-0100",
        CreatedDate=utc(2026, 1, 1),
    )
    add(
        "a2",
        "Account",
        "001",
        Name="Globex",
        Industry="Energy",
        AnnualRevenue=100.0,
        NumberOfEmployees=10,
        OwnerId=IDS["u2"],
        CreatedDate=utc(2026, 2, 1),
    )
    add(
        "a3",
        "Account",
        "001",
        Name="Initech",
        Industry="Tech",
        AnnualRevenue=None,
        NumberOfEmployees=5,
        CreatedDate=utc(2026, 3, 1),
    )
    add("a4", "Account", "001", Name="Umbrella", Industry=None, CreatedDate=utc(2026, 4, 1))
    add("a5", "Account", "001", Name="hooli", Industry="Tech", AnnualRevenue=250.0, CreatedDate=utc(2026, 5, 1))
    add("a6", "Account", "001", Name="Stark", Industry="Energy", AnnualRevenue=50.0, CreatedDate=utc(2026, 6, 1))
    add("a7", "Account", "001", Name="Deleted Co", IsDeleted=True, CreatedDate=utc(2026, 7, 1))
    add(
        "c1",
        "Contact",
        "003",
        FirstName="Ann",
        LastName="Alpha",
        Name="Ann Alpha",
        Email="ann@example.com",
        AccountId=IDS["a1"],
        OwnerId=IDS["u1"],
        Birthdate=dt.date(1990, 5, 1),
        CreatedDate=utc(2026, 11, 25, 9),
        Interests__c="golf;tennis",
        Phone="(555) 123-4567",
        HasOptedOutOfEmail=False,
        Score__c=1.5,
    )
    add(
        "c2",
        "Contact",
        "003",
        FirstName="Bob",
        LastName="Beta",
        Name="Bob Beta",
        Email="bob@example.com",
        AccountId=IDS["a1"],
        CreatedDate=utc(2026, 11, 24, 23, 30),
        Interests__c="tennis",
        HasOptedOutOfEmail=True,
        Birthdate=dt.date(2026, 11, 24),
        Score__c=-2,
    )
    add(
        "c3",
        "Contact",
        "003",
        FirstName="carol",
        LastName="Gamma",
        Name="carol Gamma",
        Email="Carol@Example.com",
        CreatedDate=utc(2026, 11, 18, 12),
        Description='O\'Brien said "hi" \\ bye',
        HasOptedOutOfEmail=False,
        Birthdate=dt.date(2026, 11, 26),
        Score__c=3,
    )
    add(
        "c4",
        "Contact",
        "003",
        FirstName="Dan",
        LastName="Delta",
        Name="Dan Delta",
        AccountId=IDS["a2"],
        CreatedDate=utc(2026, 10, 10),
        Interests__c="chess;golf",
        HasOptedOutOfEmail=False,
    )
    add(
        "c5",
        "Contact",
        "003",
        FirstName="Eve",
        LastName="Epsilon",
        Name="Eve Epsilon",
        Email="eve@example.com",
        AccountId=IDS["a3"],
        CreatedDate=utc(2025, 6, 1),
        HasOptedOutOfEmail=False,
        Description="50% off_now",
    )
    add(
        "c6",
        "Contact",
        "003",
        FirstName="Zed",
        LastName="Zeta",
        Name="Zed Zeta",
        Email="zed@example.com",
        AccountId=IDS["a1"],
        CreatedDate=utc(2026, 11, 20),
        IsDeleted=True,
    )
    add(
        "l1",
        "Lead",
        "00Q",
        FirstName="Liam",
        LastName="Lead",
        Name="Liam Lead",
        Company="LeadCo",
        Email="liam@example.com",
        OwnerId=IDS["u1"],
        Status="Open",
        Phone="+1 (555) 987-6543",
    )
    add(
        "l2",
        "Lead",
        "00Q",
        FirstName="Queue",
        LastName="Owned",
        Name="Queue Owned",
        Company="QueueCo",
        OwnerId=IDS["g1"],
        Status="Working",
    )
    add("cp1", "Campaign", "701", Name="Spring", IsActive=True)
    add("cp2", "Campaign", "701", Name="Fall", IsActive=False)
    add("m1", "CampaignMember", "00v", CampaignId=IDS["cp1"], ContactId=IDS["c1"], Status="Sent")
    add("m2", "CampaignMember", "00v", CampaignId=IDS["cp1"], ContactId=IDS["c3"], Status="Responded")
    add("m3", "CampaignMember", "00v", CampaignId=IDS["cp2"], ContactId=IDS["c2"], Status="Sent")
    add("m4", "CampaignMember", "00v", CampaignId=IDS["cp1"], LeadId=IDS["l1"], Status="Sent")
    add(
        "o1",
        "Opportunity",
        "006",
        Name="Illusional Opportunity",
        Amount=300.0,
        CampaignId=IDS["cp1"],
        ContactId=IDS["c4"],
    )
    add(
        "o2",
        "Opportunity",
        "006",
        Name="Espionage Opportunity",
        Amount=100.0,
        CampaignId=IDS["cp2"],
        ContactId=IDS["c5"],
    )
    add("o3", "Opportunity", "006", Name="Third", Amount=400.0, ContactId=IDS["c5"])
    add("w1", "Whizbang__c", "a00", Name="Parent Whizbang", Text_Label__c="Hello")
    add("w2", "Whizbang__c", "a00", Name="Child Whizbang", Text_Label__c="Hi there!", ParentWhizbang__c=IDS["w1"])
    add("t1", "Task", "00T", Subject="Call", WhoId=IDS["c1"], WhatId=IDS["a1"])
    add("t2", "Task", "00T", Subject="Email", WhoId=IDS["l1"])
    add("t3", "Task", "00T", Subject="Plan", WhatId=IDS["cp1"])
    return org
