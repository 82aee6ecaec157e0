"""Every process refuses to start on a mapping file that breaks the rules (``sfsync.mapping.require_valid``):
the processor, the inbound processor, the sink and the poller, each run as its command in a child
process with the broken file in ``SFSYNC_MAPPING_FILE``, exit 2 with every problem on one screen
and no traceback, before touching Kafka or Salesforce (neither answers here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kit.mappings import write_mappings

BROKEN = """\
mappings:
  - name: members
    entity: member
    target: Contact
    match: [{field: Email, from: member.email}]
    fields:
      - {sf: Email, from: member.email}
      - {sf: Title, expr: "source.member.title +"}
      - {sf: Department, constant: A}
      - {sf: LeadSource, constant: B}
      - {sf: Description, constant: C}
      - {sf: AssistantName, constant: D}
      - {sf: Salutation, constant: E}
      - {sf: Languages__c, constant: F}
"""
"""A CEL expression that does not compile and six constants: both found without an org."""

NOWHERE = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",  # discard port: nothing answers
    "SCHEMA_REGISTRY_URL": "http://127.0.0.1:9",
    "SALESFORCE_AUTH_FLOW": "access_token",
    "SALESFORCE_ACCESS_TOKEN": "00Dx0000000000!token",
    "SALESFORCE_INSTANCE_URL": "https://org.example.invalid",
}


@pytest.mark.parametrize("command", ["processor", "inbound", "sink", "poller"])
def test_a_process_refuses_to_start_on_a_broken_mapping_listing_every_problem(command: str, tmp_path: Path) -> None:
    env = {**os.environ, **NOWHERE, "SFSYNC_MAPPING_FILE": str(write_mappings(tmp_path, BROKEN))}
    done = subprocess.run(
        [sys.executable, "-m", "sfsync.cli.main", command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == f"error: invalid mapping file {tmp_path / 'mappings.yaml'} (2 problem(s)):"
    assert len(lines) == 3  # one screen: the problems and nothing else
    assert any("members.Title: expression does not compile" in line for line in lines[1:])
    assert any(line.endswith("members: 6 constants; at most 5 per mapping") for line in lines[1:])
