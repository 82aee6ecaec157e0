"""``pip install sfsync`` (no extras) in a fresh virtualenv is the product SDK, and it publishes.

Builds the checkout into a new virtualenv exactly as a product engineer would (the package index
for the dependencies, nothing of this test run's environment), then publishes a typed event with
``from sfsync.producers import Publisher`` to the real broker and reads it back.
"""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

from sfsync.serde.codec import AvroDecoder

from .helpers import consume_all, make_topics

ROOT = Path(__file__).resolve().parents[2]
PIPELINE_ONLY = ("faust-streaming", "uvicorn", "starlette", "faker", "aiokafka", "prometheus-client")

PUBLISH = """
import json, sys
from sfsync.producers import Publisher, events as ev

with Publisher() as pub:
    pub.publish(ev.EventRegistration(
        workspace_id="acme",
        member=ev.MemberRef(member_id="u-42", email="ada@example.com"),
        event=ev.EventRef(id="evt-7", title="Kafka meetup"),
    ))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("faust", "uvicorn", "starlette", "faker"))))
"""


def test_the_sdk_installs_without_the_pipeline_packages_and_publishes_an_event(tmp_path, services, prefix, registry):
    env_dir = tmp_path / "sdk-venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "sfsync" in installed
    assert installed.isdisjoint(PIPELINE_ONLY), installed & set(PIPELINE_ONLY)

    make_topics(services, prefix)
    env = {
        "PATH": f"{env_dir / 'bin'}:/usr/bin:/bin",
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap,
        "SCHEMA_REGISTRY_URL": services.registry,
        "SFSYNC_TOPIC_PREFIX": prefix,
    }
    published = subprocess.run(
        [str(python), "-c", PUBLISH], capture_output=True, text=True, timeout=120, check=False, env=env, cwd=tmp_path
    )
    assert published.returncode == 0, published.stderr[-3000:]
    assert json.loads(published.stdout.strip().splitlines()[-1]) == []

    [message] = consume_all(services.bootstrap, [f"{prefix}product.attendance"], 1)
    name, value = AvroDecoder(registry).decode(message.value())
    assert (name, value["member"]["email"], value["event"]["title"]) == (
        "EventRegistration",
        "ada@example.com",
        "Kafka meetup",
    )
