"""The ``sfsync`` command line.

Every command reports sfsync's own errors as one clear message and exit status 2 (no traceback);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sfsync import settings as cfg
from sfsync.cli.reporting import reported

if TYPE_CHECKING:
    from sfsync.serde.registry import SchemaRegistry


app = typer.Typer(
    help=(
        "sfsync keeps a product's data in step with Salesforce over Apache Kafka.\n\n"
        "Start here: `sfsync stack up` (a local Kafka + schema registry), then "
        "`sfsync produce --fake 1000` (synthetic community activity)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(help="Run a local single-node Kafka and schema registry.", no_args_is_help=True)
topics_app = typer.Typer(help="Create and list sfsync's Kafka topics.", no_args_is_help=True)
schemas_app = typer.Typer(
    help="Avro contracts: register, check compatibility, generate Python types.", no_args_is_help=True
)
app.add_typer(stack_app, name="stack")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")


def _register_subcommands() -> None:
    from sfsync.cli.mappings import mappings_app
    from sfsync.cli.ops import dlq_app, errors_app
    from sfsync.cli.workspaces import connections_app, workspaces_app

    app.add_typer(mappings_app, name="mappings")
    app.add_typer(dlq_app, name="dlq")
    app.add_typer(errors_app, name="errors")
    app.add_typer(workspaces_app, name="workspaces")
    app.add_typer(connections_app, name="connections")

    from sfsync.cli.inbound import inbound
    from sfsync.cli.poller import poller
    from sfsync.cli.processor import processor
    from sfsync.cli.sink import sink

    app.command("sink")(sink)
    app.command("processor")(processor)
    app.command("inbound")(inbound)
    app.command("poller")(poller)


_register_subcommands()


def _echo(message: str) -> None:
    typer.echo(message, err=True)


# ---------------------------------------------------------------------- stack
@stack_app.command("up")
@reported
def stack_up() -> None:
    """Fetch (first time only) and start Kafka and Apicurio on loopback; wait until both answer."""
    from sfsync.devtools.stack import Stack

    stack = Stack(cfg.load(cfg.StackSettings, "stack"), echo=_echo)
    report = stack.up()
    started = ", ".join(report.started) or "nothing (already running)"
    typer.echo(f"kafka     {report.kafka}")
    typer.echo(f"registry  {report.registry}")
    typer.echo(f"logs      {stack.logs}")
    typer.echo(f"ready in {report.seconds:.1f}s (started: {started}; fetch {report.fetch_seconds:.1f}s)")
    typer.echo(f"export KAFKA_BOOTSTRAP_SERVERS={report.kafka} SCHEMA_REGISTRY_URL={report.registry}")


@stack_app.command("down")
@reported
def stack_down(
    wipe: Annotated[bool, typer.Option(help="Also delete Kafka's data (and so the registry's).")] = False,
) -> None:
    """Stop what `stack up` started (SIGTERM, then SIGKILL after 30 s) and free the ports."""
    from sfsync.devtools.stack import Stack

    stack = Stack(cfg.load(cfg.StackSettings, "stack"), echo=_echo)
    stopped = stack.down(wipe=wipe)
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}" + (" (data wiped)" if wipe else ""))


@stack_app.command("status")
@reported
def stack_status() -> None:
    """Show each service's state, address and log file."""
    from sfsync.devtools.stack import Stack

    stack = Stack(cfg.load(cfg.StackSettings, "stack"))
    running = 0
    for svc in stack.status():
        pid = f" pid {svc.pid}" if svc.pid else ""
        typer.echo(f"{svc.name:<9} {svc.state:<9} {svc.address}{pid}")
        running += svc.state in ("running", "external")
    typer.echo(f"logs      {stack.logs}")
    if running < 2:
        raise typer.Exit(1)


# ---------------------------------------------------------------------- topics
@topics_app.command("ensure")
@reported
def topics_ensure() -> None:
    """Create every sfsync topic that does not exist yet (idempotent)."""
    from sfsync.kafka.admin import ensure_topics
    from sfsync.topics import ALL_TOPICS

    conn = cfg.load(cfg.KafkaConnection, "kafka")
    created = ensure_topics(conn.kafka_client_config(), ALL_TOPICS, conn.topic_prefix)
    typer.echo(f"created: {', '.join(created)}" if created else "all topics exist")


@topics_app.command("list")
@reported
def topics_list() -> None:
    """List sfsync's topics: name, key, and whether each exists."""
    from sfsync.kafka.admin import topic_partition_counts
    from sfsync.topics import ALL_TOPICS

    conn = cfg.load(cfg.KafkaConnection, "kafka")
    existing = topic_partition_counts(conn.kafka_client_config(), timeout_s=10)
    for spec in ALL_TOPICS:
        name = spec.name(conn.topic_prefix)
        parts = existing.get(name, 0)
        state = f"{parts} partition(s)" if parts else "missing"
        typer.echo(f"{name:<28} key={spec.key_doc:<22} {state}")


# ---------------------------------------------------------------------- schemas
def _registry() -> SchemaRegistry:
    from sfsync.serde.registry import SchemaRegistry

    return SchemaRegistry.from_settings(cfg.load(cfg.RegistryConnection, "registry"), ride_out_outages=False)


@schemas_app.command("register")
@reported
def schemas_register() -> None:
    """Register each product-facing topic's schema (the four product topics and product.members.inbound)
    under `<topic>-value` with BACKWARD compatibility."""
    from sfsync.serde.schema import load_topic_schema
    from sfsync.topics import CONTRACT_TOPICS

    prefix = cfg.load(cfg.KafkaConnection, "kafka").topic_prefix
    with _registry() as registry:
        for spec in CONTRACT_TOPICS:
            subject = f"{spec.name(prefix)}-value"
            schema = load_topic_schema(spec.base)
            registry.set_compatibility(subject, "BACKWARD")
            schema_id = registry.register(subject, schema.schema_str)
            typer.echo(f"{subject:<32} id {schema_id}  ({len(schema.record_names)} record types)")


@schemas_app.command("check")
@reported
def schemas_check() -> None:
    """Check the working tree's schemas against the registry (BACKWARD); exit 1 on any break."""
    from sfsync.serde.schema import load_topic_schema
    from sfsync.topics import CONTRACT_TOPICS

    prefix = cfg.load(cfg.KafkaConnection, "kafka").topic_prefix
    broken = 0
    with _registry() as registry:
        for spec in CONTRACT_TOPICS:
            subject = f"{spec.name(prefix)}-value"
            ok = registry.is_compatible(subject, load_topic_schema(spec.base).schema_str)
            broken += not ok
            typer.echo(f"{subject:<32} {'compatible' if ok else 'BREAKS BACKWARD COMPATIBILITY'}")
    if broken:
        raise typer.Exit(1)


@schemas_app.command("snapshot")
@reported
def schemas_snapshot() -> None:
    """Record the current topic schemas as the released contract (schemas/released/*.json).

    Tests check every later schema against this snapshot for BACKWARD compatibility, so take a
    snapshot when a schema version ships, and review any change to it like an API change."""
    from sfsync.serde.schema import RELEASED_DIR, load_topic_schema
    from sfsync.topics import CONTRACT_TOPICS

    RELEASED_DIR.mkdir(exist_ok=True)
    for spec in CONTRACT_TOPICS:
        target = RELEASED_DIR / f"{spec.base}.json"
        target.write_text(json.dumps(load_topic_schema(spec.base).schema, indent=2) + "\n")
        typer.echo(f"wrote {target}")


@schemas_app.command("codegen")
@reported
def schemas_codegen(
    check: Annotated[bool, typer.Option(help="Only check that producers/events.py is up to date.")] = False,
) -> None:
    """Regenerate producers/events.py (the typed events) from schemas/*.avsc."""
    from pathlib import Path

    from sfsync import producers
    from sfsync.devtools.codegen import generate

    target = Path(producers.__file__).with_name("events.py")
    source = generate()
    if check:
        if target.read_text() != source:
            typer.echo(f"{target} is out of date: run `sfsync schemas codegen`", err=True)
            raise typer.Exit(1)
        typer.echo("up to date")
        return
    target.write_text(source)
    typer.echo(f"wrote {target}")


# ---------------------------------------------------------------------- produce
@app.command("produce")
@reported
def produce(
    fake: Annotated[int, typer.Option("--fake", help="Number of synthetic community events to publish.")],
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same stream).")] = 7,
    workspace: Annotated[str, typer.Option(help="workspace_id of the events.")] = "ws-demo",
    rate: Annotated[float, typer.Option(help="Events per second; 0 means as fast as possible.")] = 0.0,
) -> None:
    """Publish realistic synthetic activity: members joining and updating profiles, onboarding,
    events published and updated, registrations, cancels, attendance, check-ins, forum posts."""
    import collections
    import time

    from sfsync.kafka.admin import ensure_topics
    from sfsync.producers.fake import CommunitySimulator
    from sfsync.producers.publisher import Publisher
    from sfsync.topics import ALL_TOPICS

    settings = cfg.load(cfg.PublisherSettings, "publisher")
    ensure_topics(settings.kafka_client_config(), ALL_TOPICS, settings.topic_prefix)
    counts: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    with Publisher(settings) as publisher:
        for i, event in enumerate(CommunitySimulator(seed=seed, workspace_id=workspace).stream(fake)):
            publisher.publish(event)
            counts[event.RECORD_NAME] += 1
            if rate > 0:
                delay = started + (i + 1) / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
    elapsed = time.monotonic() - started
    typer.echo(f"published {fake} events in {elapsed:.1f}s ({fake / max(elapsed, 1e-9):,.0f}/s)")
    for name, count in counts.most_common():
        typer.echo(f"  {name:<26} {count}")


# ---------------------------------------------------------------------- emulator
@app.command("emulator")
@reported
def emulator(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 18443,
    tls: Annotated[bool, typer.Option("--tls", help="Serve HTTPS with a generated self-signed certificate.")] = False,
    org: Annotated[Path | None, typer.Option(help="Org file (YAML): custom objects, fields, users.")] = None,
    faults: Annotated[
        str | None,
        typer.Option(
            help='Fault injection, e.g. "503=0.05,lock=0.02,commit504=0.01,expire_every=60s" '
            "(every kind: sfsync.emulator.faults)."
        ),
    ] = None,
    client_secret: Annotated[
        str | None,
        typer.Option(
            envvar="SFSYNC_EMULATOR_CLIENT_SECRET",
            show_envvar=True,
            help="The connected app's consumer secret (client id sfsync-local), so that workers started apart "
            "can log in (client credentials). Give it in the environment: a command line is visible to "
            "every user of the machine. Default: a random one nobody outside learns. With --orgs: every "
            "org's connected app has this secret (each its own client id).",
        ),
    ] = None,
    orgs: Annotated[
        int,
        typer.Option(
            min=1,
            max=2000,
            help="Serve this many orgs, each its own org (org id, users, connected app, limits, faults, data) "
            "on its own port, --port, --port + 1... (--port 0: any free ports); every org gets --org and "
            "--faults. Each org's URL, org id, client id and username are printed.",
        ),
    ] = 1,
    credentials_file: Annotated[
        Path | None,
        typer.Option(
            help="With --orgs: also write every org's credentials (consumer secrets included) to this JSON "
            "file, readable by its owner only, for clients started apart."
        ),
    ] = None,
    rotate_refresh_tokens: Annotated[
        bool,
        typer.Option(
            "--rotate-refresh-tokens",
            help="With --orgs: the connected apps rotate refresh tokens (each refresh returns a new one and "
            "retires the old); each org's admin API (/__admin/connected-app) changes it too.",
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="With --orgs: the seed of the orgs' ids and client ids.")] = 0,
) -> None:
    """Serve a local Salesforce org (REST API, OAuth, Bulk 2.0) -- or several -- for tests, the demo and
    benchmarks."""
    from sfsync.emulator.faults import Faults, FaultSpecError
    from sfsync.emulator.server import run_forever, run_orgs_forever
    from sfsync.errors import ConfigError

    try:
        Faults.parse(faults)
    except FaultSpecError as exc:
        raise ConfigError("emulator", [f"--faults: {exc}"]) from None
    if org is not None and not org.exists():
        raise ConfigError("emulator", [f"--org: {org} does not exist"])
    if client_secret is not None and not client_secret.strip():
        raise ConfigError("emulator", ["--client-secret / SFSYNC_EMULATOR_CLIENT_SECRET: empty"])
    if orgs == 1 and (credentials_file is not None or rotate_refresh_tokens):
        raise ConfigError("emulator", ["--credentials-file and --rotate-refresh-tokens go with --orgs N"])
    if orgs == 1:
        run_forever(port, tls=tls, org_file=org, faults=faults, client_secret=client_secret)
        return
    if port and port + orgs - 1 > 65535:
        raise ConfigError("emulator", [f"--port {port} + --orgs {orgs} goes past port 65535"])
    try:
        run_orgs_forever(
            orgs,
            port,
            tls=tls,
            org_file=org,
            faults=faults,
            client_secret=client_secret,
            rotate_refresh_tokens=rotate_refresh_tokens,
            seed=seed,
            credentials_file=credentials_file,
        )
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
            raise
        raise ConfigError("emulator", [f"--port/--orgs: a port of {port}..{port + orgs - 1}: {exc.strerror}"]) from None


# ---------------------------------------------------------------------- demo
@app.command("demo")
@reported
def demo(
    events: Annotated[
        int, typer.Option(min=100, max=1_000_000, help="Community events to stream (plus 4 bad on purpose).")
    ] = 3000,
    pace: Annotated[str, typer.Option(help="Events per second, or 'fast' (as fast as Kafka takes them).")] = "50",
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="After the report, leave everything up until Ctrl-C.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Random seed of the community (same seed, same stream).")] = 7,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the closing report as JSON to this file.")
    ] = None,
) -> None:
    """The whole pipeline on one machine, both ways: Kafka, registry, emulated org, processors, sink
    and poller; a day of community activity (a few records bad on purpose) while sales reps edit
    Contacts and Campaigns; a live view, then a report in figures. Ctrl-C stops everything it started."""
    from sfsync.devtools.demo import DemoOptions, run_demo
    from sfsync.devtools.demo_scenario import parse_pace
    from sfsync.errors import ConfigError

    try:
        rate = parse_pace(pace)
    except ValueError as exc:
        raise ConfigError("demo", [str(exc)]) from None
    code = run_demo(
        DemoOptions(events=events, pace=rate, keep_running=keep_running, seed=seed, json_path=json_out),
        echo=typer.echo,
    )
    if code:
        raise typer.Exit(code)


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover - `python -m sfsync.cli.main`
    main()
