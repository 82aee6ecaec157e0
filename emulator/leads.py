"""Lead conversion, as SOAP ``convertLead`` does it: a lead becomes an account and a contact.

:func:`convert_lead` runs in one transaction. Without ``account_id`` the account is the given
contact's, or a new one named after the lead's Company; without ``contact_id`` a new contact is
created from the lead's name, title, email, phones, lead source, description, address (Street ->
MailingStreet, ...), email opt-out, owner, and every custom field the contact also has. The lead
is then marked converted (IsConverted, ConvertedDate today, ConvertedAccountId,
ConvertedContactId, Status) and is read-only from then on.

Raises :class:`sfsync.emulator.errors.ApiError`: MALFORMED_ID, NOT_FOUND or ENTITY_IS_DELETED for the
lead, CANNOT_UPDATE_CONVERTED_LEAD when it is already converted, INVALID_CROSS_REFERENCE_KEY
(``ContactId``) for an unknown contact, and what the account and contact saves raise.
"""

from __future__ import annotations

from sfsync.emulator.errors import ApiError
from sfsync.emulator.model import Row
from sfsync.emulator.transactions import View
from sfsync.emulator.writes import RecordWriter, converted_lead

# lead field -> contact field copied to a contact the conversion creates
_CONTACT_FIELDS = {
    "FirstName": "FirstName",
    "LastName": "LastName",
    "Salutation": "Salutation",
    "Title": "Title",
    "Email": "Email",
    "Phone": "Phone",
    "MobilePhone": "MobilePhone",
    "Fax": "Fax",
    "LeadSource": "LeadSource",
    "Description": "Description",
    "Street": "MailingStreet",
    "City": "MailingCity",
    "State": "MailingState",
    "PostalCode": "MailingPostalCode",
    "Country": "MailingCountry",
    "HasOptedOutOfEmail": "HasOptedOutOfEmail",
    "OwnerId": "OwnerId",
}


def convert_lead(
    writer: RecordWriter,
    view: View,
    lead_id: str,
    *,
    contact_id: str | None = None,
    account_id: str | None = None,
    converted_status: str = "Closed - Converted",
    user_id: str | None = None,
) -> tuple[str, str]:
    """Convert a lead: ``(account_id, contact_id)``, creating what is not given."""
    tables, values = writer.tables, writer.values
    with writer.transactions.transaction(user_id=user_id):
        leads = tables.by_name["lead"]
        canonical, lead = tables.live_row(leads, lead_id)
        if lead.get("IsConverted"):
            raise converted_lead()
        if account_id is None and contact_id is not None:
            contact_row = view.get("Contact", contact_id)
            if contact_row is None:
                raise ApiError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["ContactId"])
            account_id = contact_row.get("AccountId")
        if account_id is None:
            account_id = writer.insert(tables.by_name["account"], {"Name": lead.get("Company")}, user_id)
        else:
            account_id = values.reference(tables.by_name["contact"].obj.fields["accountid"], account_id)
        if contact_id is None:
            contacts = tables.by_name["contact"]
            copied: Row = {"AccountId": account_id}
            mapping = dict(_CONTACT_FIELDS)
            for definition in leads.obj.fields.values():
                if definition.custom and contacts.obj.field(definition.name) is not None:
                    mapping[definition.name] = definition.name
            for source, target in mapping.items():
                if lead.get(source) is not None:
                    copied[target] = lead[source]
            contact_id = writer.insert(contacts, copied, user_id)
        else:
            contact_id = values.reference(leads.obj.fields["convertedcontactid"], contact_id)
        writer.apply(
            leads,
            canonical,
            lead,
            {
                "IsConverted": True,
                "ConvertedDate": writer.transactions.now().date(),
                "ConvertedAccountId": account_id,
                "ConvertedContactId": contact_id,
                "Status": converted_status,
            },
            user_id,
        )
        return account_id, contact_id
