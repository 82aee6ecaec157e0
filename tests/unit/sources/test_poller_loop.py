"""One object's poll loop against a MockTransport org: query-cursor pages committed every
``page_size`` rows with the checkpoint in the same transaction, the delete log, reconciliation,
the governor's reserve, and the poller's settings and metrics."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from sfsync.errors import ConfigError, Level, RetriableError
from sfsync.salesforce import BudgetTracker, SalesforceClient, SalesforceSettings
from sfsync.salesforce.errors import classify
from sfsync.salesforce.governor import BudgetPausedError, Governor
from sfsync.sources import rules as core
from sfsync.sources.metrics import SourceMetrics
from sfsync.sources.poller import ObjectPoller, partition_for
from sfsync.sources.settings import SourceSettings, load_source_settings
from tests.kit.polling import WindowedOrg, ms, rid, row

INSTANCE = "https://org.example.test"
NOW = dt.datetime(2026, 11, 25, 12, 10, tzinfo=dt.UTC)


class FakeTransactions:
    """Stands for the transactional producer: keeps each committed transaction."""

    def __init__(self) -> None:
        self.committed: list[list[tuple[str, bytes, bytes, int | None]]] = []

    def commit(self, records: list[tuple[str, bytes, bytes, int | None]]) -> None:
        self.committed.append(records)

    def close(self) -> None:
        pass


class Org:
    """queryAll with a cursor of ``batch`` rows a page, getDeleted; records every request."""

    def __init__(self, rows: list[dict[str, Any]], batch: int = 2, deleted: list[dict[str, Any]] | None = None) -> None:
        self.rows = rows
        self.batch = batch
        self.deleted = deleted or []
        self.requests: list[httpx.Request] = []
        self.usage = "api-usage=10/1000"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        headers = {"Sforce-Limit-Info": self.usage}
        path = request.url.path
        if path.endswith("/queryAll") or "/queryAll/" in path:
            query = parse_qs(urlparse(str(request.url)).query).get("q", [""])[0]
            start = int(path.rsplit("-", 1)[1]) if "/queryAll/" in path else 0
            rows = [{"Id": r["Id"]} for r in self.rows] if query.startswith("SELECT Id FROM") else self.rows
            page = rows[start : start + self.batch]
            body: dict[str, Any] = {"totalSize": len(rows), "done": start + self.batch >= len(rows), "records": page}
            if not body["done"]:
                body["nextRecordsUrl"] = f"/services/data/v62.0/queryAll/01gCURSOR-{start + self.batch}"
            return httpx.Response(200, json=body, headers=headers)
        if path.endswith("/deleted/"):
            return httpx.Response(
                200,
                json={
                    "deletedRecords": self.deleted,
                    "earliestDateAvailable": "2026-11-20T00:00:00.000+0000",
                    "latestDateCovered": "2026-11-25T12:10:00.000+0000",
                },
                headers=headers,
            )
        return httpx.Response(404, json=[{"errorCode": "NOT_FOUND", "message": path}])


def make(
    org: Org | WindowedOrg, checkpoint: core.Checkpoint | None = None, governor_sleep: Any = None, **overrides: Any
) -> tuple:
    settings = SourceSettings(**{"page_size": 3, "lookback_s": 5, "delete_log_interval_s": 0, **overrides})
    sf = SalesforceSettings(auth_flow="access_token", access_token="00Dx!t", instance_url=INSTANCE)
    budget = BudgetTracker()
    client = SalesforceClient(sf, transport=httpx.MockTransport(org), budget=budget)
    kwargs = {"sleep": governor_sleep} if governor_sleep is not None else {}
    governor = Governor(budget, reserve_ratio=0.1, pause_s=60, clock=lambda: NOW, **kwargs)
    tx = FakeTransactions()
    poller = ObjectPoller(
        core.ObjectPlan("Contact", ("FirstName",)),
        checkpoint or core.Checkpoint("Contact"),
        settings=settings,
        client=client,
        governor=governor,
        transactions=tx,  # type: ignore[arg-type]
        encode=lambda change: orjson.dumps(change),
        metrics=SourceMetrics(CollectorRegistry()),
        checkpoint_partition=partition_for("Contact", settings.checkpoint_partitions),
        clock=lambda: NOW,
    )
    return poller, tx, client


async def test_pages_commit_changes_with_their_checkpoint() -> None:
    rows = [row(rid(n), ms(1), FirstName=f"F{n}") for n in range(7)]  # one stamp, across cursor pages of 2
    org = Org(rows, batch=2)
    poller, tx, client = make(org)
    async with client:
        produced = await poller.poll_once()
    assert produced == 7
    topics = ("salesforce.changes", "sfsync.poller.checkpoints")
    per_topic = [[sum(r[0] == t for r in transaction) for t in topics] for transaction in tx.committed]
    assert [c for c, _ in per_topic] == [3, 3, 1]  # a transaction per page of 3 rows
    assert all(k >= 2 for _, k in per_topic)  # with the checkpoint (main record + touched known-id buckets)
    for transaction in tx.committed:
        topic, key, _, _ = transaction[-1]
        assert topic == "sfsync.poller.checkpoints" and key == b"Contact"
        assert {r[3] for r in transaction if r[0] == topic} == {partition_for("Contact", 6)}
    emitted = [orjson.loads(v)["id"] for t in tx.committed for (topic, _, v, _) in t if topic == "salesforce.changes"]
    assert emitted == [rid(n) for n in range(7)]
    latest = {r[1].decode(): r[2] for t in tx.committed for r in t if r[0] == "sfsync.poller.checkpoints"}
    last = core.Checkpoint.from_records("Contact", latest)
    assert last is not None and last.cursor_ms == ms(1) and len(last.seen) == 7
    assert last.known == {rid(n) for n in range(7)}
    assert poller.checkpoint == last
    queries = [r for r in org.requests if r.url.path.endswith("/queryAll")]
    assert len(queries) == 1 and "WHERE" not in parse_qs(urlparse(str(queries[0].url)).query)["q"][0]

    async with SalesforceClient(client.settings, transport=httpx.MockTransport(org)) as again:
        poller.client = again
        assert await poller.poll_once() == 0  # the window re-read is absorbed
    assert len(tx.committed) == 3  # nothing changed: no transaction
    second = [r for r in org.requests if r.url.path.endswith("/queryAll")][-1]
    assert "SystemModstamp >= 2026-11-25T11:59:56.000Z" in parse_qs(urlparse(str(second.url)).query)["q"][0]


async def test_an_idle_poll_after_a_burst_costs_one_query_call_once_the_orgs_date_covers_it() -> None:
    org = WindowedOrg(ms(100))
    for n in range(2500):  # two query pages of 2,000
        org.put(row(rid(n), ms(99) + n % 1000))
    poller, tx, client = make(org, page_size=1000, lookback_s=10, query_batch_size=2000)
    costs, commits = [], []
    async with client:
        assert await poller.poll_once() == 2500
        for _ in range(5):
            org.advance(5)
            calls, committed = org.calls, len(tx.committed)
            assert await poller.poll_once() == 0
            costs.append(org.calls - calls)
            commits.append(len(tx.committed) - committed)
    assert costs == [2, 2, 2, 1, 1]
    assert commits == [1, 1, 1, 0, 0]  # the covered time moves with the re-read polls only
    covered = (
        poller.checkpoint.covered_ms
    )  # the org's Date at the last poll that read rows, less 1 s and the round trip
    assert covered is not None and ms(113) < covered <= ms(114)


async def test_delete_log_and_reconciliation_emit_deletes_once() -> None:
    checkpoint = core.Checkpoint(
        "Contact",
        ms(1),
        seen={(rid(3), ms(1))},
        known={rid(1), rid(2), rid(3)},
        delete_log_ms=core.to_ms(NOW - dt.timedelta(minutes=5)),
        reconciled_ms=core.to_ms(NOW - dt.timedelta(hours=2)),
    )
    org = Org([row(rid(3), ms(1))], deleted=[{"id": rid(1), "deletedDate": "2026-11-25T12:07:00.000+0000"}])
    poller, tx, client = make(org, checkpoint, delete_log_interval_s=60, reconcile_interval_s=1)
    async with client:
        assert await poller.poll_once() == 2
    changes = [orjson.loads(v) for t in tx.committed for (topic, _, v, _) in t if topic == "salesforce.changes"]
    assert [(c["id"], c["change_type"]) for c in changes] == [(rid(1), "DELETE"), (rid(2), "DELETE")]
    assert changes[0]["system_modstamp"] == core.to_ms(dt.datetime(2026, 11, 25, 12, 7, tzinfo=dt.UTC))
    assert poller.checkpoint.known == {rid(3)}
    assert poller.checkpoint.delete_log_ms == core.to_ms(dt.datetime(2026, 11, 25, 12, 10, tzinfo=dt.UTC))
    assert any(r.url.path.endswith("/sobjects/Contact/deleted/") for r in org.requests)


async def test_a_delete_log_that_lost_entries_triggers_a_reconciliation() -> None:
    checkpoint = core.Checkpoint(
        "Contact",
        ms(1),
        seen={(rid(3), ms(1))},
        known={rid(2), rid(3)},
        delete_log_ms=core.to_ms(NOW - dt.timedelta(days=20)),  # before earliestDateAvailable
        reconciled_ms=core.to_ms(NOW - dt.timedelta(seconds=10)),  # not due by the interval
    )
    org = Org([row(rid(3), ms(1))])
    poller, tx, client = make(org, checkpoint, delete_log_interval_s=60, reconcile_interval_s=3600)
    async with client:
        assert await poller.poll_once() == 1
    changes = [orjson.loads(v) for t in tx.committed for (topic, _, v, _) in t if topic == "salesforce.changes"]
    assert [(c["id"], c["change_type"]) for c in changes] == [(rid(2), "DELETE")]
    assert poller.checkpoint.reconciled_ms == core.to_ms(NOW)


async def test_the_governor_reserve_stops_polls_before_the_budget_is_spent() -> None:
    org = Org([row(rid(1), ms(1))])
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    poller, tx, client = make(org, governor_sleep=sleep)
    poller.governor.budget.observe("api-usage=950/1000")  # the 10 % reserve is reached
    async with client:
        with pytest.raises(BudgetPausedError) as paused:
            await poller.poll_once()
    assert org.requests == [] and tx.committed == []
    assert waits == [] and paused.value.retry_after == 60  # the pause is the loop's to wait, not the poll's


async def test_a_failed_poll_is_a_warning_once_per_streak_and_an_error_once_the_outage_outlasts_the_timeout() -> None:
    poller, _, client = make(Org([]), retry_timeout_s=300)
    await client.aclose()
    unavailable = classify(503, "SERVER_UNAVAILABLE", "maintenance")
    timeout = classify(0, "TIMEOUT", "ReadTimeout talking to Salesforce")
    assert isinstance(unavailable, RetriableError) and isinstance(timeout, RetriableError)

    first = poller.failed(unavailable, 1000.0)
    assert first is not None and (first.level, first.code) == (Level.WARNING, "SERVER_UNAVAILABLE")
    assert first.details["retrying"] == "next poll" and first.sobject == "Contact"
    assert poller.failed(unavailable, 1100.0) is None  # the same streak: not on every poll
    changed = poller.failed(timeout, 1200.0)
    assert changed is not None and changed.code == "TIMEOUT" and changed.level is Level.WARNING
    outage = poller.failed(timeout, 1300.0)  # 300 s since the streak began
    assert outage is not None and outage.level is Level.ERROR and outage.code == "TIMEOUT"
    assert "failed for 300s" in outage.message and outage.details["failing_for_s"] == "300"
    assert poller.failed(unavailable, 5000.0) is None  # once per outage

    poller.recovered()
    again = poller.failed(unavailable, 6000.0)
    assert again is not None and again.level is Level.WARNING  # a new streak, a new clock
    assert poller.failed(unavailable, 6299.0) is None


def test_settings_report_every_problem_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFSYNC_SOURCE_POLL_INTERVAL_S", "5")
    monkeypatch.setenv("SFSYNC_SOURCE_MAX_IDLE_INTERVAL_S", "60")
    monkeypatch.setenv("SFSYNC_SOURCE_OBJECTS", '["Contact", "Lead"]')
    settings = load_source_settings()
    assert settings.poll_interval_s == 5 and settings.objects == ["Contact", "Lead"]
    monkeypatch.setenv("SFSYNC_SOURCE_PAGE_SIZE", "0")
    monkeypatch.setenv("SFSYNC_SOURCE_LOOKBACK_S", "-1")
    monkeypatch.setenv("SFSYNC_SOURCE_MAX_SEEN", "1")
    with pytest.raises(ConfigError) as caught:
        load_source_settings()
    text = str(caught.value)
    assert "page_size" in text and "lookback_s" in text and "max_seen" in text


def test_metrics_are_served() -> None:
    metrics = SourceMetrics(CollectorRegistry())
    metrics.api_call("/services/data/v62.0/queryAll/01gABC-200")
    metrics.changes.labels(sobject="Contact", change_type="UPDATE").inc(3)
    server = metrics.serve(0, "127.0.0.1")
    try:
        text = httpx.get(f"http://127.0.0.1:{server.port}/metrics").text
    finally:
        server.stop()
    assert 'sfsync_poller_changes_total{change_type="UPDATE",sobject="Contact"} 3.0' in text
    assert "sfsync_salesforce_api_calls_total" in text
    assert "sfsync_poller_cursor_lag_seconds" in text


def test_objects_spread_over_checkpoint_partitions_stably() -> None:
    assert partition_for("Contact", 6) == partition_for("contact", 6)
    assert {partition_for(o, 6) for o in ("Contact", "Lead", "Account", "Campaign", "Case")} != {0}
