"""`sfsync emulator` as a user starts it: a separate process that serves, and clear errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from sfsync.cli.main import app
from sfsync.emulator.server import free_port


def test_the_command_serves_the_org_until_stopped() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sfsync.cli.main", "emulator", "--port", str(port), "--faults", "latency=1ms"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/services/data/", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert response.status_code == 200
        assert response.json()[-1]["url"].startswith("/services/data/v")
        token = httpx.post(f"http://127.0.0.1:{port}/__admin/session", json={}).json()["access_token"]
        limits = httpx.get(
            f"http://127.0.0.1:{port}/services/data/v62.0/limits", headers={"Authorization": f"Bearer {token}"}
        )
        assert limits.headers["Sforce-Limit-Info"].startswith("api-usage=1/")
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    assert f"127.0.0.1:{port}" in out.decode()


def test_a_bad_fault_spec_is_one_clear_error() -> None:
    result = CliRunner().invoke(app, ["emulator", "--faults", "503=often"])
    assert result.exit_code == 2
    assert "invalid emulator settings" in result.output
    assert "503=often" in result.output


def test_workers_started_apart_log_in_with_the_secret_given_in_the_environment() -> None:
    port = free_port()
    secret = "s3cret-for-this-test-only"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sfsync.cli.main", "emulator", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "SFSYNC_EMULATOR_CLIENT_SECRET": secret},
    )
    token_url = f"http://127.0.0.1:{port}/services/oauth2/token"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/services/data/", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline
                time.sleep(0.1)
        grant = {"grant_type": "client_credentials", "client_id": "sfsync-local"}
        accepted = httpx.post(token_url, data={**grant, "client_secret": secret})
        refused = httpx.post(token_url, data={**grant, "client_secret": "not-it"})
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["access_token"]
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_client"
    assert secret not in (out + err).decode()


def test_an_empty_client_secret_is_one_clear_error() -> None:
    with socket.socket() as taken:  # unchecked, the command would go on to serve: let it fail fast then
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["emulator", "--port", str(port)], env={"SFSYNC_EMULATOR_CLIENT_SECRET": " "})
    assert result.exit_code == 2
    assert "SFSYNC_EMULATOR_CLIENT_SECRET: empty" in result.output


def test_the_command_serves_several_orgs_each_with_its_own_credentials(tmp_path: Path) -> None:
    credentials = tmp_path / "orgs.json"
    env = {k: v for k, v in os.environ.items() if k != "SFSYNC_EMULATOR_CLIENT_SECRET"}
    command = [sys.executable, "-m", "sfsync.cli.main", "emulator", "--orgs", "3", "--port", "0"]
    proc = subprocess.Popen(
        [*command, "--credentials-file", str(credentials)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        printed = [proc.stdout.readline().decode() for _ in range(4)]
        orgs = json.loads(credentials.read_text())
        urls = [org["instance_url"] for org in orgs]
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{urls[2]}/services/data/", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        grant = {"grant_type": "client_credentials"}
        own = {**grant, "client_id": orgs[2]["client_id"], "client_secret": orgs[2]["client_secret"]}
        other = {**grant, "client_id": orgs[1]["client_id"], "client_secret": orgs[1]["client_secret"]}
        accepted = httpx.post(f"{urls[2]}/services/oauth2/token", data=own)
        refused = httpx.post(f"{urls[2]}/services/oauth2/token", data=other)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    everything = "".join(printed) + (out + err).decode()
    for org, url in zip(orgs, urls, strict=True):
        assert f"at {url} " in everything and org["client_id"] in everything and org["org_id"] in everything
        assert org["client_secret"] not in everything
    assert len(set(urls)) == 3 and len({org["client_id"] for org in orgs}) == 3
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert accepted.status_code == 200 and accepted.json()["instance_url"] == urls[2]
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_client_id"
