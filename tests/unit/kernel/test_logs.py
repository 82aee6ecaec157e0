"""No personal data at INFO: request URLs (a match query's URL holds members' emails) and the record
keys of INFO error-log entries stay out of a process's INFO log; WARNING lines keep the record."""

from __future__ import annotations

import logging

import httpx
import pytest

from sfsync.errors import Category, Level
from sfsync.logs import QUIET_LIBRARIES, configure
from sfsync.ops.errorlog import ErrorLogEntry, log_entry

EMAIL = "ada@example.com"


@pytest.fixture
def restored_levels():
    saved = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_a_request_url_with_an_email_is_not_logged_at_info(caplog, restored_levels) -> None:
    configure(logging.INFO)
    caplog.set_level(logging.INFO)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"records": []}))
    with httpx.Client(transport=transport) as client:
        client.get(
            "https://acme.my.salesforce.com/services/data/v62.0/query", params={"q": f"WHERE Email IN ('{EMAIL}')"}
        )

    assert EMAIL not in caplog.text
    assert all(logging.getLogger(name).getEffectiveLevel() >= logging.WARNING for name in QUIET_LIBRARIES)


def _entry(level: Level) -> ErrorLogEntry:
    return ErrorLogEntry(
        Category.SYNC,
        "LOOKUP_POLICY_SKIP",
        "Contact.LeadSource already has a value; if_empty",
        level,
        mapping="members",
        sobject="Contact",
        field="LeadSource",
        record_key=f"Contact:Email:{EMAIL}",
        salesforce_id="0038d00000ABCdeAAA",
    )


def test_an_info_entry_is_logged_without_its_record_key(caplog) -> None:
    logger = logging.getLogger("sfsync.test.logs")
    caplog.set_level(logging.INFO, logger=logger.name)

    log_entry(logger, _entry(Level.INFO))
    log_entry(logger, _entry(Level.WARNING))

    info, warning = caplog.records
    assert (info.levelno, warning.levelno) == (logging.INFO, logging.WARNING)
    assert EMAIL not in info.getMessage() and "0038d00000ABCdeAAA" not in info.getMessage()
    assert "mapping=members" in info.getMessage() and "LOOKUP_POLICY_SKIP" in info.getMessage()
    assert f"key=Contact:Email:{EMAIL}" in warning.getMessage()
