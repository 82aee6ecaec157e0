"""describeGlobal (``GET /sobjects``) and describe (``GET /sobjects/{SObject}/describe``) bodies with
the keys and value types a real org (API v59) answers with.
"""

from __future__ import annotations

from typing import Any

from sfsync.emulator.model import FieldDef, ObjectDef, Schema

_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "address": "urn:address",
    "location": "urn:location",
}
# Object-level describe attributes that the shared model does not carry (real values from describes).
_OBJECT_TRAITS: dict[str, dict[str, Any]] = {
    "Account": {"mergeable": True, "feedEnabled": True, "mruEnabled": True},
    "Contact": {"mergeable": True, "feedEnabled": True, "mruEnabled": True},
    "Lead": {"mergeable": True, "feedEnabled": True, "mruEnabled": True},
    "Opportunity": {"feedEnabled": True, "mruEnabled": True},
    "Campaign": {"deepCloneable": True, "mruEnabled": True},
    "CampaignMember": {"undeletable": False},
    "Case": {"feedEnabled": True, "mruEnabled": True},
    "Task": {"mruEnabled": True},
    "User": {"feedEnabled": True, "mruEnabled": True, "undeletable": False},
}
_SCOPES = {
    "Account": [("All accounts", "everything"), ("My accounts", "mine"), ("My team's accounts", "team")],
    "Contact": [("All contacts", "everything"), ("My contacts", "mine"), ("My team's contacts", "team")],
    "Lead": [
        ("All leads", "everything"),
        ("My leads", "mine"),
        ("Queue owned leads", "queue_owned"),
        ("My team's leads", "team"),
        ("User owned leads", "user_owned"),
    ],
    "Opportunity": [
        ("All opportunities", "everything"),
        ("My opportunities", "mine"),
        ("My team's opportunities", "team"),
    ],
    "Campaign": [("All campaigns", "everything"), ("My campaigns", "mine"), ("My team's campaigns", "team")],
    "Case": [
        ("All cases", "everything"),
        ("My cases", "mine"),
        ("Queue owned cases", "queue_owned"),
        ("My team's cases", "team"),
        ("User owned cases", "user_owned"),
    ],
    "Task": [("All activities", "everything"), ("My activities", "mine"), ("Delegated activities", "delegated")],
}


def _version(api_version: str) -> str:
    return api_version if api_version.startswith("v") else f"v{api_version}"


def _soap_type(definition: FieldDef) -> str:
    return _SOAP_TYPES.get(definition.type, "xsd:string")


def _byte_length(definition: FieldDef) -> int:
    if definition.type in ("id", "reference"):
        return 18
    if definition.type in ("int", "double", "currency", "percent", "boolean", "date", "datetime"):
        return 0
    return definition.length * 3


def _length(definition: FieldDef) -> int:
    if definition.type in ("id", "reference"):
        return 18
    if definition.type in ("int", "double", "currency", "percent", "boolean", "date", "datetime"):
        return 0
    return definition.length


def _picklist_values(definition: FieldDef) -> list[dict[str, Any]]:
    return [
        {
            "active": True,
            "defaultValue": value == definition.default_value,
            "label": value,
            "validFor": None,
            "value": value,
        }
        for value in definition.picklist_values
    ]


def _json_default(definition: FieldDef) -> Any:
    if definition.type == "boolean":
        return bool(definition.default_value)
    value = definition.default_value
    return value if isinstance(value, str | int | float) or value is None else str(value)


def describe_field(obj: ObjectDef, definition: FieldDef) -> dict[str, Any]:
    """One ``fields[]`` entry (all 57 keys of a v59 describe)."""
    kind = definition.type
    text_area = kind == "textarea"
    long_text = text_area and definition.length > 255
    numeric = kind in ("int", "double", "currency", "percent")
    auto_number = bool(getattr(definition, "auto_number", None))
    polymorphic = kind == "reference" and len(definition.reference_to) > 1
    groupable = not (long_text or kind in ("double", "currency", "percent", "datetime", "multipicklist"))
    return {
        "aggregatable": not long_text and kind != "multipicklist" and kind != "boolean",
        "aiPredictionField": False,
        "autoNumber": auto_number,
        "byteLength": _byte_length(definition),
        "calculated": definition.calculated,
        "calculatedFormula": None,
        "cascadeDelete": False,
        "caseSensitive": definition.case_sensitive,
        "compoundFieldName": getattr(definition, "compound_field_name", None),
        "controllerName": None,
        "createable": definition.createable,
        "custom": definition.custom,
        "defaultValue": _json_default(definition),
        "defaultValueFormula": None,
        "defaultedOnCreate": definition.defaulted_on_create,
        "dependentPicklist": False,
        "deprecatedAndHidden": False,
        "digits": int(getattr(definition, "digits", 0)) if kind == "int" else 0,
        "displayLocationInDecimal": False,
        "encrypted": kind == "encryptedstring",
        "externalId": definition.external_id,
        "extraTypeInfo": getattr(definition, "extra_type_info", None),
        "filterable": definition.filterable and not long_text,
        "filteredLookupInfo": None,
        "formulaTreatNullNumberAsZero": False,
        "groupable": groupable,
        "highScaleNumber": False,
        "htmlFormatted": bool(getattr(definition, "html_formatted", False)),
        "idLookup": definition.id_lookup,
        "inlineHelpText": getattr(definition, "inline_help_text", None),
        "label": definition.label or definition.name,
        "length": _length(definition),
        "mask": None,
        "maskType": None,
        "name": definition.name,
        "nameField": definition.name_field,
        "namePointing": polymorphic,
        "nillable": definition.nillable,
        "permissionable": definition.nillable
        and definition.createable
        and definition.updateable
        and getattr(definition, "extra_type_info", None) != "personname",
        "picklistValues": _picklist_values(definition),
        "polymorphicForeignKey": polymorphic,
        "precision": definition.precision if numeric and kind != "int" else 0,
        "queryByDistance": False,
        "referenceTargetField": None,
        "referenceTo": list(definition.reference_to),
        "relationshipName": definition.relationship_name,
        "relationshipOrder": None,
        "restrictedDelete": False,
        "restrictedPicklist": definition.restricted_picklist,
        "scale": definition.scale if numeric and kind != "int" else 0,
        "searchPrefilterable": kind == "reference"
        and not polymorphic
        and definition.name not in ("MasterRecordId", "CreatedById", "LastModifiedById"),
        "soapType": _soap_type(definition),
        "sortable": definition.sortable and not long_text,
        "type": kind,
        "unique": definition.unique,
        "updateable": definition.updateable,
        "writeRequiresMasterRead": False,
    }


def _urls(obj: ObjectDef, api_version: str) -> dict[str, str]:
    base = f"/services/data/{_version(api_version)}/sobjects/{obj.name}"
    urls = {
        "compactLayouts": f"{base}/describe/compactLayouts",
        "rowTemplate": f"{base}/{{ID}}",
        "approvalLayouts": f"{base}/describe/approvalLayouts",
        "listviews": f"{base}/listviews",
        "describe": f"{base}/describe",
        "quickActions": f"{base}/quickActions",
        "layouts": f"{base}/describe/layouts",
        "sobject": base,
    }
    if obj.name == "CampaignMember":
        for key in ("approvalLayouts", "listviews", "quickActions"):
            urls.pop(key)
    if obj.name == "User":
        urls.pop("approvalLayouts")
        urls.pop("listviews")
        urls["namedLayouts"] = f"{base}/describe/namedLayouts/{{LayoutName}}"
        urls["passwordUtilities"] = f"{base}/{{ID}}/password"
    if obj.name == "Case":
        urls["caseArticleSuggestions"] = f"{base}/suggestedArticles"
        urls["caseRowArticleSuggestions"] = f"{base}/{{ID}}/suggestedArticles"
    return urls


def _traits(obj: ObjectDef) -> dict[str, Any]:
    traits: dict[str, Any] = {
        "activateable": False,
        "associateEntityType": None,
        "associateParentEntity": None,
        "createable": obj.createable,
        "custom": obj.custom,
        "customSetting": False,
        "deepCloneable": False,
        "deletable": obj.deletable,
        "deprecatedAndHidden": False,
        "feedEnabled": False,
        "hasSubtypes": False,
        "isInterface": False,
        "isSubtype": False,
        "keyPrefix": obj.key_prefix,
        "label": obj.label or obj.name,
        "labelPlural": obj.label_plural or obj.label or obj.name,
        "layoutable": True,
        "mergeable": False,
        "mruEnabled": obj.custom,
        "name": obj.name,
        "queryable": obj.queryable,
        "replicateable": True,
        "retrieveable": True,
        "searchable": obj.searchable,
        "triggerable": True,
        "undeletable": obj.deletable,
        "updateable": obj.updateable,
    }
    traits.update(_OBJECT_TRAITS.get(obj.name, {}))
    return traits


def global_entry(obj: ObjectDef, api_version: str) -> dict[str, Any]:
    """One describeGlobal ``sobjects[]`` entry."""
    return {**_traits(obj), "urls": _urls(obj, api_version)}


def describe_global(schema: Schema, api_version: str) -> dict[str, Any]:
    """``GET /sobjects``: encoding, maxBatchSize and every object, sorted by name like a real org."""
    return {
        "encoding": "UTF-8",
        "maxBatchSize": 200,
        "sobjects": [global_entry(obj, api_version) for obj in sorted(schema, key=lambda o: o.name)],
    }


def describe_sobject(obj: ObjectDef, api_version: str) -> dict[str, Any]:
    """``GET /sobjects/{SObject}/describe`` (the keys of a v59 describe)."""
    version = _version(api_version)
    traits = _traits(obj)
    record_types = []
    for info in obj.record_type_infos:
        entry = dict(info)
        entry["urls"] = {
            "layout": f"/services/data/{version}/sobjects/{obj.name}/describe/layouts/{entry.get('recordTypeId')}"
        }
        record_types.append(entry)
    children = []
    for child in obj.child_relationships:
        children.append(
            {
                "cascadeDelete": child.cascade_delete,
                "childSObject": child.child_object,
                "deprecatedAndHidden": False,
                "field": child.field,
                "junctionIdListNames": [],
                "junctionReferenceTo": [],
                "relationshipName": child.relationship_name,
                "restrictedDelete": False,
            }
        )
    children.sort(key=lambda c: (c["childSObject"], c["field"]))
    scopes = [{"label": label, "name": name} for label, name in _SCOPES.get(obj.name, [])]
    if obj.custom:
        scopes = [
            {"label": f"All {obj.label_plural.lower()}", "name": "everything"},
            {"label": f"My {obj.label_plural.lower()}", "name": "mine"},
            {"label": "Queue owned records", "name": "queue_owned"},
            {"label": f"My team's {obj.label_plural.lower()}", "name": "team"},
            {"label": "User owned records", "name": "user_owned"},
        ]
    return {
        "actionOverrides": [],
        **{k: traits[k] for k in ("activateable", "associateEntityType", "associateParentEntity")},
        "childRelationships": children,
        "compactLayoutable": True,
        **{k: traits[k] for k in ("createable", "custom", "customSetting", "deepCloneable")},
        "defaultImplementation": None,
        **{k: traits[k] for k in ("deletable", "deprecatedAndHidden")},
        "extendedBy": None,
        "extendsInterfaces": None,
        "feedEnabled": traits["feedEnabled"],
        "fields": [describe_field(obj, definition) for definition in obj.fields.values()],
        **{k: traits[k] for k in ("hasSubtypes",)},
        "implementedBy": None,
        "implementsInterfaces": None,
        **{k: traits[k] for k in ("isInterface", "isSubtype", "keyPrefix", "label", "labelPlural", "layoutable")},
        "listviewable": None,
        "lookupLayoutable": None,
        **{k: traits[k] for k in ("mergeable", "mruEnabled", "name")},
        "namedLayoutInfos": [],
        "networkScopeFieldName": None,
        "queryable": traits["queryable"],
        "recordTypeInfos": record_types,
        **{k: traits[k] for k in ("replicateable", "retrieveable")},
        "searchLayoutable": True,
        "searchable": traits["searchable"],
        "sobjectDescribeOption": "FULL",
        "supportedScopes": scopes,
        **{k: traits[k] for k in ("triggerable", "undeletable", "updateable")},
        "urls": _urls(obj, api_version),
    }
