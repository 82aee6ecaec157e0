"""The standard objects of the emulated org (Contact, Lead, Account, Opportunity, Campaign,
CampaignMember, Case, Task, User) with the field attributes a real org's describe reports.

:class:`SFField` extends :class:`sfsync.emulator.model.FieldDef` with the few describe attributes the
shared model does not carry (auto-number format, compound field, child relationship name...); every
consumer of the shared model can keep treating it as a plain ``FieldDef``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from sfsync.emulator.model import ChildRelationship, FieldDef, ObjectDef, Schema

MASTER_RECORD_TYPE_ID = "012000000000000AAA"


@dataclass(frozen=True)
class SFField(FieldDef):
    """A field with the describe attributes beyond the shared model."""

    auto_number: str | None = None  # display format, e.g. "{00000000}" or "CA-{0000}"
    auto_number_start: int = 1
    compound_field_name: str | None = None
    extra_type_info: str | None = None
    digits: int = 0
    child_relationship_name: str | None = None  # the parent's name for the list of children
    html_formatted: bool = False
    inline_help_text: str | None = None


def _label_of(name: str) -> str:
    base = name[:-3] if name.endswith("__c") else name
    base = base.replace("_", " ")
    out = []
    for i, char in enumerate(base):
        if i and char.isupper() and base[i - 1].islower():
            out.append(" ")
        out.append(char)
    return "".join(out)


def text(name: str, length: int = 255, label: str = "", **kw: Any) -> SFField:
    return SFField(name=name, type=kw.pop("type", "string"), label=label or _label_of(name), length=length, **kw)


def textarea(name: str, length: int = 32000, label: str = "", **kw: Any) -> SFField:
    extra = "plaintextarea" if length <= 255 else kw.pop("extra_type_info", "plaintextarea")
    sortable = length <= 255
    return SFField(
        name=name,
        type="textarea",
        label=label or _label_of(name),
        length=length,
        extra_type_info=extra,
        sortable=sortable,
        filterable=sortable,
        **kw,
    )


def email(name: str = "Email", length: int = 80, label: str = "", **kw: Any) -> SFField:
    kw.setdefault("id_lookup", True)
    return SFField(name=name, type="email", label=label or _label_of(name), length=length, **kw)


def phone(name: str, label: str = "", **kw: Any) -> SFField:
    return SFField(name=name, type="phone", label=label or _label_of(name), length=40, **kw)


def url(name: str, label: str = "", **kw: Any) -> SFField:
    return SFField(name=name, type="url", label=label or _label_of(name), length=255, **kw)


def picklist(name: str, values: Iterable[str], default: str | None = None, label: str = "", **kw: Any) -> SFField:
    length = kw.pop("length", 255)
    if default is not None:
        kw.setdefault("defaulted_on_create", True)
    return SFField(
        name=name,
        type=kw.pop("type", "picklist"),
        label=label or _label_of(name),
        length=length,
        picklist_values=tuple(values),
        default_value=default,
        **kw,
    )


def boolean(name: str, default: bool = False, label: str = "", **kw: Any) -> SFField:
    kw.setdefault("nillable", False)
    kw.setdefault("defaulted_on_create", True)
    return SFField(name=name, type="boolean", label=label or _label_of(name), default_value=default, **kw)


def number(
    name: str, type_: str = "double", precision: int = 18, scale: int = 0, label: str = "", **kw: Any
) -> SFField:
    if type_ == "int":
        return SFField(name=name, type="int", label=label or _label_of(name), digits=kw.pop("digits", 9), **kw)
    return SFField(name=name, type=type_, label=label or _label_of(name), precision=precision, scale=scale, **kw)


def date(name: str, label: str = "", **kw: Any) -> SFField:
    return SFField(name=name, type="date", label=label or _label_of(name), **kw)


def datetime_(name: str, label: str = "", **kw: Any) -> SFField:
    return SFField(name=name, type="datetime", label=label or _label_of(name), **kw)


def reference(
    name: str, to: Iterable[str], relationship: str | None, label: str = "", child: str | None = None, **kw: Any
) -> SFField:
    return SFField(
        name=name,
        type="reference",
        label=label or (_label_of(name[:-2]) + " ID" if name.endswith("Id") else _label_of(name)),
        length=18,
        reference_to=tuple(to),
        relationship_name=relationship,
        child_relationship_name=child,
        **kw,
    )


def system_fields(label: str) -> list[SFField]:
    """Id, IsDeleted and the audit fields every object has."""
    audit: dict[str, Any] = {"createable": False, "updateable": False, "nillable": False, "defaulted_on_create": True}
    return [
        SFField(
            name="Id",
            type="id",
            label=f"{label} ID",
            length=18,
            nillable=False,
            createable=False,
            updateable=False,
            id_lookup=True,
            defaulted_on_create=True,
        ),
        boolean("IsDeleted", label="Deleted", createable=False, updateable=False),
        datetime_("CreatedDate", label="Created Date", **audit),
        reference("CreatedById", ["User"], "CreatedBy", label="Created By ID", **audit),
        datetime_("LastModifiedDate", label="Last Modified Date", **audit),
        reference("LastModifiedById", ["User"], "LastModifiedBy", label="Last Modified By ID", **audit),
        datetime_("SystemModstamp", label="System Modstamp", **audit),
    ]


def owner(to: tuple[str, ...] = ("User",)) -> SFField:
    return reference("OwnerId", to, "Owner", label="Owner ID", nillable=False, defaulted_on_create=True)


def make_object(
    name: str, key_prefix: str, label: str, plural: str, fields: Iterable[FieldDef], *, custom: bool = False, **kw: Any
) -> ObjectDef:
    obj = ObjectDef(name=name, key_prefix=key_prefix, label=label, label_plural=plural, custom=custom, **kw)
    for definition in fields:
        obj.add(definition)
    obj.record_type_infos = [master_record_type()]
    return obj


def master_record_type(*, only: bool = True) -> dict[str, Any]:
    """The master record type's describe entry; ``only``: the object has no other (active) record type.

    Once an object has record types, the master stays listed but is neither the default nor available.
    """
    return {
        "active": True,
        "available": only,
        "defaultRecordTypeMapping": only,
        "developerName": "Master",
        "master": True,
        "name": "Master",
        "recordTypeId": MASTER_RECORD_TYPE_ID,
    }


LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
SALUTATIONS = ("Mr.", "Ms.", "Mrs.", "Dr.", "Prof.", "Mx.")
INDUSTRIES = (
    "Agriculture",
    "Apparel",
    "Banking",
    "Biotechnology",
    "Chemicals",
    "Communications",
    "Construction",
    "Consulting",
    "Education",
    "Electronics",
    "Energy",
    "Engineering",
    "Entertainment",
    "Environmental",
    "Finance",
    "Food & Beverage",
    "Government",
    "Healthcare",
    "Hospitality",
    "Insurance",
    "Machinery",
    "Manufacturing",
    "Media",
    "Not For Profit",
    "Recreation",
    "Retail",
    "Shipping",
    "Technology",
    "Telecommunications",
    "Transportation",
    "Utilities",
    "Other",
)
LEAD_STATUSES = ("Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted")
OPPORTUNITY_STAGES = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
)
CAMPAIGN_TYPES = (
    "Conference",
    "Webinar",
    "Trade Show",
    "Public Relations",
    "Partners",
    "Referral Program",
    "Advertisement",
    "Banner Ads",
    "Direct Mail",
    "Email",
    "Telemarketing",
    "Other",
)
CAMPAIGN_STATUSES = ("Planned", "In Progress", "Completed", "Aborted")
CAMPAIGN_MEMBER_STATUSES = ("Sent", "Responded")
CASE_STATUSES = ("New", "Working", "Escalated", "Closed")
CASE_ORIGINS = ("Phone", "Email", "Web")
CASE_PRIORITIES = ("High", "Medium", "Low")
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
TASK_PRIORITIES = ("High", "Normal", "Low")


def _person_name() -> list[SFField]:
    return [
        text(
            "LastName", 80, label="Last Name", nillable=False, compound_field_name="Name", extra_type_info="personname"
        ),
        text("FirstName", 40, label="First Name", compound_field_name="Name", extra_type_info="personname"),
        picklist("Salutation", SALUTATIONS, length=40, compound_field_name="Name", extra_type_info="personname"),
        text(
            "Name",
            121,
            label="Full Name",
            nillable=False,
            createable=False,
            updateable=False,
            name_field=True,
            extra_type_info="personname",
        ),
    ]


def _address(prefix: str) -> list[SFField]:
    compound = f"{prefix}Address" if prefix else "Address"
    return [
        textarea(f"{prefix}Street", 255, label=f"{prefix} Street".strip(), compound_field_name=compound),
        text(f"{prefix}City", 40, label=f"{prefix} City".strip(), compound_field_name=compound),
        text(f"{prefix}State", 80, label=f"{prefix} State/Province".strip(), compound_field_name=compound),
        text(f"{prefix}PostalCode", 20, label=f"{prefix} Zip/Postal Code".strip(), compound_field_name=compound),
        text(f"{prefix}Country", 80, label=f"{prefix} Country".strip(), compound_field_name=compound),
    ]


def account() -> ObjectDef:
    return make_object(
        "Account",
        "001",
        "Account",
        "Accounts",
        [
            *system_fields("Account"),
            reference("MasterRecordId", ["Account"], "MasterRecord", createable=False, updateable=False),
            text("Name", 255, label="Account Name", nillable=False, name_field=True),
            picklist(
                "Type",
                (
                    "Prospect",
                    "Customer - Direct",
                    "Customer - Channel",
                    "Channel Partner / Reseller",
                    "Installation Partner",
                    "Technology Partner",
                    "Other",
                ),
                label="Account Type",
            ),
            reference("ParentId", ["Account"], "Parent", label="Parent Account ID", child="ChildAccounts"),
            *_address("Billing"),
            *_address("Shipping"),
            phone("Phone", label="Account Phone"),
            phone("Fax", label="Account Fax"),
            url("Website"),
            picklist("Industry", INDUSTRIES),
            number("AnnualRevenue", "currency", 18, 0, label="Annual Revenue"),
            number("NumberOfEmployees", "int", label="Employees", digits=8),
            textarea("Description", label="Account Description"),
            picklist("AccountSource", LEAD_SOURCES, label="Account Source"),
            owner(),
        ],
    )


def contact() -> ObjectDef:
    return make_object(
        "Contact",
        "003",
        "Contact",
        "Contacts",
        [
            *system_fields("Contact"),
            reference("MasterRecordId", ["Contact"], "MasterRecord", createable=False, updateable=False),
            reference("AccountId", ["Account"], "Account", child="Contacts", cascade_delete=True),
            *_person_name(),
            *_address("Other"),
            *_address("Mailing"),
            phone("Phone", label="Business Phone"),
            phone("Fax", label="Business Fax"),
            phone("MobilePhone", label="Mobile Phone"),
            phone("HomePhone", label="Home Phone"),
            reference("ReportsToId", ["Contact"], "ReportsTo", label="Reports To ID"),
            email(),
            text("Title", 128),
            text("Department", 80),
            picklist("LeadSource", LEAD_SOURCES, label="Lead Source"),
            date("Birthdate"),
            textarea("Description", label="Contact Description"),
            owner(),
            boolean("HasOptedOutOfEmail", label="Email Opt Out"),
            boolean("DoNotCall", label="Do Not Call"),
            date("LastActivityDate", label="Last Activity", createable=False, updateable=False),
            text("EmailBouncedReason", 255, label="Email Bounced Reason", createable=False),
            datetime_("EmailBouncedDate", label="Email Bounced Date", createable=False),
            boolean("IsEmailBounced", label="Is Email Bounced", createable=False, updateable=False),
        ],
    )


def lead() -> ObjectDef:
    return make_object(
        "Lead",
        "00Q",
        "Lead",
        "Leads",
        [
            *system_fields("Lead"),
            reference("MasterRecordId", ["Lead"], "MasterRecord", createable=False, updateable=False),
            *_person_name(),
            text("Title", 128),
            text("Company", 255, nillable=False),
            *_address(""),
            phone("Phone"),
            phone("MobilePhone", label="Mobile Phone"),
            phone("Fax"),
            email(),
            url("Website"),
            textarea("Description"),
            picklist("LeadSource", LEAD_SOURCES, label="Lead Source"),
            picklist("Status", LEAD_STATUSES, default="Open - Not Contacted", nillable=False),
            picklist("Industry", INDUSTRIES),
            picklist("Rating", ("Hot", "Warm", "Cold")),
            number("AnnualRevenue", "currency", 18, 0, label="Annual Revenue"),
            number("NumberOfEmployees", "int", label="Employees", digits=8),
            owner(("Group", "User")),
            boolean("HasOptedOutOfEmail", label="Email Opt Out"),
            boolean("IsConverted", label="Converted", updateable=False),
            date("ConvertedDate", label="Converted Date", createable=False, updateable=False),
            reference(
                "ConvertedAccountId",
                ["Account"],
                "ConvertedAccount",
                label="Converted Account ID",
                createable=False,
                updateable=False,
            ),
            reference(
                "ConvertedContactId",
                ["Contact"],
                "ConvertedContact",
                label="Converted Contact ID",
                createable=False,
                updateable=False,
            ),
            reference(
                "ConvertedOpportunityId",
                ["Opportunity"],
                "ConvertedOpportunity",
                label="Converted Opportunity ID",
                createable=False,
                updateable=False,
            ),
            boolean("IsUnreadByOwner", label="Unread By Owner"),
            date("LastActivityDate", label="Last Activity", createable=False, updateable=False),
            text("EmailBouncedReason", 255, label="Email Bounced Reason", createable=False),
            datetime_("EmailBouncedDate", label="Email Bounced Date", createable=False),
        ],
    )


def opportunity() -> ObjectDef:
    return make_object(
        "Opportunity",
        "006",
        "Opportunity",
        "Opportunities",
        [
            *system_fields("Opportunity"),
            reference("AccountId", ["Account"], "Account", child="Opportunities", cascade_delete=True),
            reference("ContactId", ["Contact"], "Contact", label="Contact ID", child="Opportunities"),
            text("Name", 120, nillable=False, name_field=True),
            textarea("Description"),
            picklist("StageName", OPPORTUNITY_STAGES, label="Stage", nillable=False),
            number("Amount", "currency", 18, 2),
            number("Probability", "percent", 3, 0, label="Probability (%)"),
            date("CloseDate", label="Close Date", nillable=False),
            picklist(
                "Type",
                (
                    "Existing Customer - Upgrade",
                    "Existing Customer - Replacement",
                    "Existing Customer - Downgrade",
                    "New Customer",
                ),
                label="Opportunity Type",
            ),
            text("NextStep", 255, label="Next Step"),
            picklist("LeadSource", LEAD_SOURCES, label="Lead Source"),
            boolean("IsClosed", label="Closed", createable=False, updateable=False),
            boolean("IsWon", label="Won", createable=False, updateable=False),
            reference("CampaignId", ["Campaign"], "Campaign", label="Campaign ID", child="Opportunities"),
            owner(),
        ],
    )


def campaign() -> ObjectDef:
    return make_object(
        "Campaign",
        "701",
        "Campaign",
        "Campaigns",
        [
            *system_fields("Campaign"),
            text("Name", 80, label="Campaign Name", nillable=False, name_field=True),
            reference("ParentId", ["Campaign"], "Parent", label="Parent Campaign ID", child="ChildCampaigns"),
            picklist("Type", CAMPAIGN_TYPES),
            picklist("Status", CAMPAIGN_STATUSES, default="Planned"),
            date("StartDate", label="Start Date"),
            date("EndDate", label="End Date"),
            number("ExpectedRevenue", "currency", 18, 0, label="Expected Revenue in Campaign"),
            number("BudgetedCost", "currency", 18, 0, label="Budgeted Cost in Campaign"),
            number("ActualCost", "currency", 18, 0, label="Actual Cost in Campaign"),
            number("ExpectedResponse", "percent", 10, 2, label="Expected Response (%)"),
            boolean("IsActive", label="Active"),
            textarea("Description"),
            owner(),
        ],
    )


def campaign_member() -> ObjectDef:
    return make_object(
        "CampaignMember",
        "00v",
        "Campaign Member",
        "Campaign Members",
        [
            *system_fields("Campaign Member"),
            reference(
                "CampaignId",
                ["Campaign"],
                "Campaign",
                label="Campaign ID",
                nillable=False,
                updateable=False,
                child="CampaignMembers",
                cascade_delete=True,
            ),
            reference(
                "LeadId",
                ["Lead"],
                "Lead",
                label="Lead ID",
                updateable=False,
                child="CampaignMembers",
                cascade_delete=True,
            ),
            reference(
                "ContactId",
                ["Contact"],
                "Contact",
                label="Contact ID",
                updateable=False,
                child="CampaignMembers",
                cascade_delete=True,
            ),
            picklist("Status", CAMPAIGN_MEMBER_STATUSES, default="Sent", length=40),
            boolean("HasResponded", label="Responded", createable=False, updateable=False),
            date("FirstRespondedDate", label="First Responded Date", createable=False, updateable=False),
            text("Type", 40, createable=False, updateable=False),
            reference(
                "LeadOrContactId",
                ["Contact", "Lead"],
                None,
                label="Contact or Lead ID",
                createable=False,
                updateable=False,
            ),
            text("Name", 121, createable=False, updateable=False),
            text("FirstName", 40, label="First Name", createable=False, updateable=False),
            text("LastName", 80, label="Last Name", createable=False, updateable=False),
            email(createable=False, updateable=False, id_lookup=False),
        ],
        searchable=False,
    )


def case() -> ObjectDef:
    return make_object(
        "Case",
        "500",
        "Case",
        "Cases",
        [
            *system_fields("Case"),
            reference("MasterRecordId", ["Case"], "MasterRecord", createable=False, updateable=False),
            text(
                "CaseNumber",
                30,
                label="Case Number",
                nillable=False,
                createable=False,
                updateable=False,
                id_lookup=True,
                name_field=True,
                defaulted_on_create=True,
                auto_number="{00000000}",
                auto_number_start=1001,
            ),
            reference("ContactId", ["Contact"], "Contact", child="Cases"),
            reference("AccountId", ["Account"], "Account", child="Cases", cascade_delete=True),
            reference("ParentId", ["Case"], "Parent", label="Parent Case ID", child="Cases"),
            text("SuppliedName", 80, label="Web Name"),
            email("SuppliedEmail", label="Web Email", id_lookup=False),
            phone("SuppliedPhone", label="Web Phone"),
            text("SuppliedCompany", 80, label="Web Company"),
            picklist("Type", ("Mechanical", "Electrical", "Electronic", "Structural", "Other"), label="Case Type"),
            picklist("Status", CASE_STATUSES, default="New", length=40),
            picklist(
                "Reason",
                (
                    "Installation",
                    "Equipment Complexity",
                    "Performance",
                    "Breakdown",
                    "Equipment Design",
                    "Feedback",
                    "Other",
                ),
                label="Case Reason",
            ),
            picklist("Origin", CASE_ORIGINS, label="Case Origin", length=40),
            text("Subject", 255),
            picklist("Priority", CASE_PRIORITIES, default="Medium", length=40),
            textarea("Description"),
            boolean("IsClosed", label="Closed", createable=False, updateable=False),
            datetime_("ClosedDate", label="Closed Date", createable=False, updateable=False),
            boolean("IsEscalated", label="Escalated"),
            owner(("Group", "User")),
        ],
    )


def task() -> ObjectDef:
    return make_object(
        "Task",
        "00T",
        "Task",
        "Tasks",
        [
            *system_fields("Activity"),
            reference("WhoId", ["Contact", "Lead"], "Who", label="Name ID", child="Tasks", cascade_delete=True),
            reference(
                "WhatId",
                ["Account", "Opportunity", "Campaign", "Case"],
                "What",
                label="Related To ID",
                child="Tasks",
                cascade_delete=True,
            ),
            text("Subject", 255, type="combobox", picklist_values=("Call", "Send Letter", "Send Quote", "Other")),
            date("ActivityDate", label="Due Date Only"),
            picklist("Status", TASK_STATUSES, default="Not Started", length=40, nillable=False),
            picklist("Priority", TASK_PRIORITIES, default="Normal", length=40, nillable=False),
            boolean("IsHighPriority", label="High Priority", createable=False, updateable=False),
            owner(("Group", "User")),
            textarea("Description", label="Comments"),
            picklist("Type", ("Call", "Email", "Meeting", "Other")),
            picklist(
                "TaskSubtype",
                ("Task", "Email", "List Email", "Cadence", "Call", "LinkedIn"),
                label="Task Subtype",
                updateable=False,
            ),
            boolean("IsClosed", label="Closed", createable=False, updateable=False),
            reference("AccountId", ["Account"], "Account", createable=False, updateable=False),
            datetime_("CompletedDateTime", label="Completed Date/Time", createable=False, updateable=False),
        ],
        searchable=True,
    )


def user() -> ObjectDef:
    fields = [f for f in system_fields("User") if f.name != "IsDeleted"]
    return make_object(
        "User",
        "005",
        "User",
        "Users",
        [
            *fields,
            text("Username", 80, nillable=False, unique=True, id_lookup=True),
            text(
                "LastName",
                80,
                label="Last Name",
                nillable=False,
                compound_field_name="Name",
                extra_type_info="personname",
            ),
            text("FirstName", 40, label="First Name", compound_field_name="Name", extra_type_info="personname"),
            text(
                "Name",
                121,
                label="Full Name",
                nillable=False,
                createable=False,
                updateable=False,
                name_field=True,
                extra_type_info="personname",
            ),
            text("CompanyName", 80, label="Company Name"),
            text("Department", 80),
            text("Title", 80),
            email(length=128, nillable=False, id_lookup=False),
            text("Alias", 8, nillable=False),
            boolean("IsActive", default=True, label="Active"),
            picklist(
                "TimeZoneSidKey",
                ("America/Los_Angeles", "America/New_York", "Europe/London", "Europe/Paris", "GMT", "Asia/Tokyo"),
                label="Time Zone",
                length=40,
                nillable=False,
                default="America/Los_Angeles",
                restricted_picklist=True,
            ),
            picklist(
                "LocaleSidKey",
                ("en_US", "en_GB", "fr_FR", "de_DE", "ja_JP"),
                label="Locale",
                length=40,
                nillable=False,
                default="en_US",
                restricted_picklist=True,
            ),
            picklist(
                "EmailEncodingKey",
                ("UTF-8", "ISO-8859-1"),
                label="Email Encoding",
                length=40,
                nillable=False,
                default="UTF-8",
                restricted_picklist=True,
            ),
            picklist(
                "LanguageLocaleKey",
                ("en_US", "fr", "de", "ja"),
                label="Language",
                length=40,
                nillable=False,
                default="en_US",
                restricted_picklist=True,
            ),
            picklist(
                "UserType",
                ("Standard", "AutomatedProcess", "CloudIntegrationUser"),
                label="User Type",
                length=40,
                createable=False,
                updateable=False,
                default="Standard",
            ),
            datetime_("LastLoginDate", label="Last Login", createable=False, updateable=False),
        ],
        deletable=False,
    )


def record_type() -> ObjectDef:
    """RecordType (key prefix 012): one read-only row per record type an org file declares (not the master)."""
    read_only: dict[str, Any] = {"createable": False, "updateable": False}
    obj = make_object(
        "RecordType",
        "012",
        "Record Type",
        "Record Types",
        [
            *(f for f in system_fields("Record Type") if f.name != "IsDeleted"),
            text("Name", 80, label="Record Type Label", nillable=False, name_field=True, **read_only),
            text("DeveloperName", 80, label="Record Type Name", nillable=False, **read_only),
            text("NamespacePrefix", 15, label="Namespace Prefix", **read_only),
            textarea("Description", 255, **read_only),
            picklist("SobjectType", (), label="SObject Type Name", length=40, nillable=False, **read_only),
            boolean("IsActive", label="Active", **read_only),
        ],
        searchable=False,
    )
    obj.createable = obj.updateable = obj.deletable = False
    return obj


def record_type_field() -> SFField:
    """``RecordTypeId``: the reference field an object has once record types are defined for it."""
    return reference("RecordTypeId", ["RecordType"], "RecordType", label="Record Type ID")


STANDARD_OBJECTS = (account, contact, lead, opportunity, campaign, campaign_member, case, task, user)


def link_children(schema: Schema) -> None:
    """(Re)compute every object's child relationships from the reference fields that point at it."""
    for obj in schema:
        obj.child_relationships = []
    for child in schema:
        for definition in child.fields.values():
            if definition.type != "reference":
                continue
            name = getattr(definition, "child_relationship_name", None)
            if not name:
                continue
            for target in definition.reference_to:
                parent = schema.get(target)
                if parent is not None and parent.child_relationship(name) is None:
                    parent.child_relationships.append(
                        ChildRelationship(
                            relationship_name=name,
                            child_object=child.name,
                            field=definition.name,
                            cascade_delete=definition.cascade_delete,
                        )
                    )


ORGANIZATION_TEXT = (
    "Division",
    "Street",
    "City",
    "State",
    "PostalCode",
    "Country",
    "GeocodeAccuracy",
    "Phone",
    "Fax",
    "PrimaryContact",
    "DefaultLocaleSidKey",
    "TimeZoneSidKey",
    "LanguageLocaleKey",
    "DefaultAccountAccess",
    "DefaultContactAccess",
    "DefaultOpportunityAccess",
    "DefaultLeadAccess",
    "DefaultCaseAccess",
    "DefaultCalendarAccess",
    "DefaultPricebookAccess",
    "DefaultCampaignAccess",
    "ComplianceBccEmail",
    "UiSkin",
    "SignupCountryIsoCode",
    "OrganizationType",
    "NamespacePrefix",
    "InstanceName",
    "WebToCaseDefaultOrigin",
)
ORGANIZATION_FLAGS = (
    "ReceivesInfoEmails",
    "ReceivesAdminInfoEmails",
    "PreferencesRequireOpportunityProducts",
    "PreferencesTransactionSecurityPolicy",
    "PreferencesTerminateOldestSession",
    "PreferencesConsentManagementEnabled",
    "PreferencesAutoSelectIndividualOnMerge",
    "PreferencesLightningLoginEnabled",
    "PreferencesOnlyLLPermUserAllowed",
    "UsesStartDateAsFiscalYearName",
    "IsSandbox",
    "IsReadOnly",
)
ORGANIZATION_NUMBERS = (
    "FiscalYearStartMonth",
    "NumKnowledgeService",
    "MonthlyPageViewsUsed",
    "MonthlyPageViewsEntitlement",
)


def organization() -> ObjectDef:
    """The org itself: one read-only row whose Id is the org id (key prefix 00D)."""
    read_only: dict[str, Any] = {"createable": False, "updateable": False}
    obj = make_object(
        "Organization",
        "00D",
        "Organization",
        "Organizations",
        [
            *(f for f in system_fields("Organization") if f.name != "IsDeleted"),
            text("Name", 80, nillable=False, name_field=True, **read_only),
            *(text(name, 255, **read_only) for name in ORGANIZATION_TEXT),
            *(boolean(name, **read_only) for name in ORGANIZATION_FLAGS),
            *(number(name, "int", 9, 0, **read_only) for name in ORGANIZATION_NUMBERS),
            number("Latitude", "double", 18, 15, **read_only),
            number("Longitude", "double", 18, 15, **read_only),
            SFField(
                name="Address",
                type="address",
                label="Address",
                createable=False,
                updateable=False,
                filterable=False,
                sortable=False,
            ),
            datetime_("TrialExpirationDate", **read_only),
        ],
    )
    obj.createable = obj.updateable = obj.deletable = False
    return obj


def list_sobject_types(schema: Schema) -> None:
    """(Re)fill the values of ``RecordType.SobjectType`` (a picklist of every object) from ``schema``."""
    obj = schema.get("RecordType")
    definition = obj.field("SobjectType") if obj is not None else None
    if obj is not None and isinstance(definition, SFField):
        obj.add(replace(definition, picklist_values=tuple(sorted(o.name for o in schema))))


def standard_schema() -> Schema:
    """A fresh schema with the standard objects and their child relationships."""
    schema = Schema()
    for build in (*STANDARD_OBJECTS, organization, record_type):
        schema.add(build())
    link_children(schema)
    list_sobject_types(schema)
    return schema
