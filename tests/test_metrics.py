"""Issue 15: Prometheus metrics. Real nodes on the devnet serve /metrics on a port of their own;
the families and their values agree with what `status` and the node's state say."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tensorage import PROTOCOL_VERSION, __version__
from tensorage.config import settings_from_namespace
from tensorage.events import EventBus
from tensorage.logs import log_events
from tensorage.metrics.names import FAMILIES, of_role

from .conftest import tensorage


def settings_for(root, name: str, **flags):
    return settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(root), "wallet.name": name,
                                    "db_root_path": str(root / "nodes" / name), **flags})


async def until(predicate, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


async def scrape(endpoint: str) -> dict[str, dict[tuple, float]]:
    """GET /metrics over HTTP; {family: {(sample name, sorted labels): value}}."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{endpoint}/metrics") as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"].startswith("text/plain")
            text = await reply.text()
    out: dict[str, dict[tuple, float]] = {}
    for fam in text_string_to_metric_families(text):
        name = fam.name + ("_total" if fam.type == "counter" else "")
        out[name] = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in fam.samples}
    return out


def value(families, family: str, sample: str | None = None, **labels) -> float:
    want = tuple(sorted(labels.items()))
    got = [v for (name, lab), v in families[family].items() if name == (sample or family) and lab == want]
    assert len(got) == 1, (family, labels, families[family])
    return got[0]


def total(families, family: str, sample: str | None = None) -> float:
    return sum(v for (name, _), v in families[family].items() if name == (sample or family))


async def quiesce(node) -> None:
    """Pause every job and wait for those running to end: the state stops moving, so a scrape and
    the state read after it see the same numbers."""
    for job in node.jobs.state():
        if not job.paused:
            node.jobs.pause(job.id)
    await until(lambda: not any(j.running for j in node.jobs.state()), 30, "running jobs to end")


async def test_live_devnet_nodes_serve_metrics_that_match_their_status(plotted_devnet):
    from tensorage.engines.run import build_node
    from tensorage.status import node_status

    root = plotted_devnet
    miner_settings = settings_for(root, "miner-0", size_in_gb=0.03, seconds_per_reallocate=3600,
                                  **{"metrics.port": 0})
    validator_settings = settings_for(root, "validator-0", seconds_per_weights=2, **{"metrics.port": 0})
    miner = build_node("miner", miner_settings, EventBus())
    validator = build_node("validator", validator_settings, EventBus())
    # the validator's headless log, as `nohup tensorage validator` writes it (INFO)
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    logger = logging.getLogger("tensorage.test_metrics")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    log_events(validator.bus, "tensorage.test_metrics")
    try:
        await miner.launch()
        await validator.launch()
        await until(lambda: validator.rounds_run >= 2 and validator.last_weights_block is not None, 90,
                    "two windows judged and weights set")
        await quiesce(validator)
        await quiesce(miner)
        async with aiohttp.ClientSession() as session:  # an unsigned challenge: refused, and counted
            host, port = miner.axon.local_endpoint(miner.served.port).rsplit(":", 1)
            async with session.post(f"http://{host}:{port}/v1/challenge", data=b"{}") as reply:
                assert reply.status >= 400
                refusal = (await reply.json())["error"]

        # -- miner ----------------------------------------------------------------------------
        await miner.flush_state()
        status = node_status(miner_settings, miner.hotkey, with_chain=False, live=False)
        assert status["metrics"] == miner.metrics_endpoint
        m = await scrape(status["metrics"])
        assert set(m) <= set(FAMILIES), set(m) - set(FAMILIES)
        assert {f.name for f in of_role("node", "jobs", "miner")} <= set(m)
        assert total(m, "tensorage_miner_plots") == status["plots"]["verified"] == len(miner.plots) > 0
        assert total(m, "tensorage_miner_plot_bytes") == status["plots"]["bytes"]
        disk = str(miner.layout.root)
        assert value(m, "tensorage_miner_disk_up", disk=disk) == 1
        assert value(m, "tensorage_miner_disk_free_bytes", disk=disk) > 0
        served = miner.typed_snapshot().challenges_served
        assert value(m, "tensorage_requests_refused_total", route="/v1/challenge", reason=refusal) == 1
        assert value(m, "tensorage_miner_windows_answered_total", result=refusal) == 1
        assert total(m, "tensorage_miner_windows_answered_total") == served + 1 >= 3
        looked_up = value(m, "tensorage_miner_windows_answered_total", result="looked_up")
        assert value(m, "tensorage_miner_lookup_seconds", "tensorage_miner_lookup_seconds_count") == looked_up
        for job in status["jobs"]:
            assert value(m, "tensorage_job_runs_total", job=job["id"]) == job["runs"]
            assert value(m, "tensorage_job_failures_total", job=job["id"]) == job["failures"]
        assert value(m, "tensorage_chain_up") == 1
        assert value(m, "tensorage_node_info", role="miner", network="devnet", hotkey=miner.hotkey,
                     version=__version__, protocol=str(PROTOCOL_VERSION)) == 1

        # -- validator and its gateway ----------------------------------------------------------
        await validator.flush_state()
        status = node_status(validator_settings, validator.hotkey, with_chain=False, live=False)
        v = await scrape(status["metrics"])
        assert set(v) <= set(FAMILIES), set(v) - set(FAMILIES)
        assert {f.name for f in of_role("node", "jobs", "validator", "gateway")} <= set(v)
        snap = validator.typed_snapshot()
        judged = value(v, "tensorage_validator_windows_total", state="judged")
        assert judged == snap.rounds_run >= 2
        assert value(v, "tensorage_validator_windows_total", state="void") == snap.windows_void == 0
        # one miner: one verdict a judged window
        assert total(v, "tensorage_validator_verdicts_total") == judged
        assert value(v, "tensorage_validator_window_seconds", "tensorage_validator_window_seconds_count") == judged
        assert value(v, "tensorage_validator_weights_block") == status["validator"]["weights"]["block"] \
            == snap.last_weights_block
        assert value(v, "tensorage_validator_weights_set_total", result="ok") >= 1
        uid = str(miner.uid)
        assert value(v, "tensorage_validator_weight", uid=uid) == snap.last_weights[uid]
        assert value(v, "tensorage_validator_miner_score", uid=uid, hotkey=miner.hotkey) == \
            snap.miners[miner.hotkey].score > 0
        assert value(v, "tensorage_validator_miner_proven_bytes", uid=uid, hotkey=miner.hotkey) == \
            status["validator"]["miners"][uid]["proven_bytes"]
        assert value(v, "tensorage_validator_last_window") == snap.last_window
        assert value(v, "tensorage_validator_verifier_queue") == 0  # nothing in flight once the jobs stopped
        assert value(v, "tensorage_gateway_shards", state="lost") == 0
        assert value(v, "tensorage_gateway_repair_queue") == 0
        assert total(v, "tensorage_event_loop_lag_seconds", "tensorage_event_loop_lag_seconds_count") > 0
        sync = next(j for j in status["jobs"] if j["id"] == "sync")
        assert value(v, "tensorage_job_duration_seconds", "tensorage_job_duration_seconds_count", job="sync") == \
            sync["runs"]

        # the headless log: one INFO line a judged window, no line per passing miner
        lines = captured.getvalue().splitlines()
        windows = [ln for ln in lines if re.search(r"window \d+: 1 miners judged, \d passed, \d failed in ", ln)]
        assert len(windows) == judged, lines
        assert not any("uid " in ln and " pass:" in ln for ln in lines), lines
    finally:
        await validator.shutdown()
        await miner.shutdown()
    assert miner.metrics_endpoint is None and validator.metrics_endpoint is None  # the ports are closed


# -- the Grafana dashboard ------------------------------------------------------------------------

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "tensorage.json"
ROWS = {"Miner": "miner", "Validator": "validator", "Gateway": "gateway", "Jobs": "jobs"}


def dashboard_rows() -> dict[str, list[str]]:
    """Row title -> the exprs of the panels under it."""
    dash = json.loads(DASHBOARD.read_text())
    rows: dict[str, list[str]] = {}
    current = None
    for panel in dash["panels"]:
        if panel["type"] == "row":
            current = panel["title"]
            rows[current] = []
            continue
        assert current is not None, f"panel {panel['title']!r} sits above every row"
        assert panel["targets"], panel["title"]
        rows[current] += [t["expr"] for t in panel["targets"]]
    return rows


def families_in(expr: str) -> set[str]:
    """The metric families an expr reads (a histogram through its _bucket, _count or _sum series)."""
    found = set()
    for token in re.findall(r"\b(?:tensorage|process)_[a-z0-9_]+", expr):
        base = re.sub(r"_(bucket|count|sum)$", "", token)
        if token != base and base in FAMILIES and FAMILIES[base].kind == "histogram":
            found.add(base)
            continue
        assert token in FAMILIES, f"{token} in {expr!r} is no metric family a node serves"
        assert FAMILIES[token].kind != "histogram", f"{token}: a histogram is read through {token}_bucket"
        found.add(token)
    return found


def test_the_grafana_dashboard_reads_families_that_exist_one_row_per_role():
    rows = dashboard_rows()
    assert list(rows) == list(ROWS)
    used: set[str] = set()
    for title, exprs in rows.items():
        in_row = set()
        for expr in exprs:
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
            in_row |= families_in(expr)
        assert {f.name for f in of_role(ROWS[title])} <= in_row, \
            (title, {f.name for f in of_role(ROWS[title])} - in_row)
        used |= in_row
    assert used == set(FAMILIES), set(FAMILIES) - used  # every family is on the dashboard


def test_the_dashboard_check_catches_a_misspelt_family():
    with pytest.raises(AssertionError, match="no metric family"):
        families_in("rate(tensorage_miner_plotz[5m])")
    with pytest.raises(AssertionError, match="_bucket"):
        families_in("tensorage_miner_lookup_seconds")


# -- the gateway's families over a real manifest ----------------------------------------------------

def test_gateway_metrics_count_the_manifest_and_the_transfers(tmp_path):
    """Objects and shards by state, and the repair queue, are read from the gateway's SQLite (in the
    scrape's thread); transfer bytes and seconds come from its ObjectEvents."""
    from types import SimpleNamespace

    from tensorage.events import ObjectEvent, ShardLost
    from tensorage.metrics import NodeMetrics
    from tensorage.metrics.gateway import GatewayCollector, GatewayEvents
    from tensorage.storage.gateway_db import GatewayStore

    db = GatewayStore(tmp_path / "gateway.sqlite")
    rows = {}
    for oid, size, segments in (("a" * 32, 3_000_000, 2), ("b" * 32, 1_000_000, 1)):
        db.declare(id=oid, client="c", size=size, k=4, n=6, block=1, per_segment=1, segments=segments)
        for seg in range(segments):
            for idx in range(6):
                rows[(oid, seg, idx)] = db.add_shard(object_id=oid, segment=seg, idx=idx, hash=f"{oid}{seg}{idx}",
                                                     wrap="w" * 32, miner=f"m{idx}", size=size // 4)
                db.update_shard(rows[(oid, seg, idx)], state="placed")
        db.commit(oid)
    db.declare(id="c" * 32, client="c", size=5, k=4, n=6, block=1, per_segment=1, segments=1)  # never uploaded
    assert db.suspect(rows[("a" * 32, 0, 1)], "window: chunk 3 wrong")
    assert db.suspect(rows[("a" * 32, 0, 2)], "window: chunk 0 missing")  # the same segment: one to repair
    assert db.mark_lost(rows[("a" * 32, 1, 5)], "3 signed re-checks failed")

    gateway = SimpleNamespace(db=db, active={"d" * 32}, _retrieves=0)
    metrics = NodeMetrics()
    metrics.add(GatewayCollector(gateway), in_thread=True)
    events = GatewayEvents(metrics, "validator")
    bus = EventBus()
    bus.subscribe(events)
    bus.publish(ObjectEvent(action="stored", object_id="a" * 32, client="c", bytes=3_000_000, seconds=1.5,
                            source="validator"))
    bus.publish(ObjectEvent(action="retrieved", object_id="a" * 32, client="c", bytes=3_000_000, seconds=0.5,
                            source="validator"))
    bus.publish(ObjectEvent(action="retrieved", object_id="b" * 32, client="c", bytes=1_000_000, seconds=0.2,
                            source="validator"))
    bus.publish(ObjectEvent(action="stored", object_id="e" * 32, client="c", bytes=7, seconds=1.0,
                            source="another-node"))  # another node's event on a shared bus: not ours
    bus.publish(ShardLost(object_id="a" * 32, segment=1, index=5, miner_hotkey="m5", reason="x", source="validator"))

    fams = {}
    for fam in text_string_to_metric_families(metrics.scrape().decode()):
        name = fam.name + ("_total" if fam.type == "counter" else "")
        fams[name] = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in fam.samples}
    assert value(fams, "tensorage_gateway_objects", state="stored") == 2
    assert value(fams, "tensorage_gateway_objects", state="declared") == 1
    assert value(fams, "tensorage_gateway_object_bytes", state="stored") == 4_000_000
    assert value(fams, "tensorage_gateway_shards", state="healthy") == 18 - 3
    assert value(fams, "tensorage_gateway_shards", state="suspect") == 2
    assert value(fams, "tensorage_gateway_shards", state="lost") == 1
    assert value(fams, "tensorage_gateway_repair_queue") == 2  # segments a/0 and a/1
    assert value(fams, "tensorage_gateway_transfers_in_flight", op="store") == 1
    assert value(fams, "tensorage_gateway_stored_bytes_total") == 3_000_000
    assert value(fams, "tensorage_gateway_retrieved_bytes_total") == 4_000_000
    assert value(fams, "tensorage_gateway_retrieve_seconds", "tensorage_gateway_retrieve_seconds_count") == 2
    assert value(fams, "tensorage_gateway_retrieve_seconds", "tensorage_gateway_retrieve_seconds_sum") == \
        pytest.approx(0.7)
    assert value(fams, "tensorage_gateway_store_seconds", "tensorage_gateway_store_seconds_count") == 1
    assert value(fams, "tensorage_gateway_object_events_total", action="retrieved") == 2
    assert value(fams, "tensorage_gateway_shards_lost_total") == 1
    db.close()


# -- a real node process, headless ----------------------------------------------------------------

def test_a_headless_miner_process_logs_json_lines_and_serves_metrics(plotted_devnet, tmp_path):
    """`tensorage miner --logging.format json --logging.file F --metrics.port 0` as pm2 would run it:
    every line it writes is a JSON object, the file gets the same, and its metrics port answers
    with what its node.json says."""
    import json as _json
    import urllib.request

    from .subnet import Subnet, wait_for

    subnet = Subnet(plotted_devnet)
    (subnet.root / "logs").mkdir(exist_ok=True)
    log_file = tmp_path / "logs" / "miner.log"
    state = subnet.db_root("miner-0") / "index" / "node.json"

    def node_json() -> dict:
        try:
            return _json.loads(state.read_text())
        except (OSError, ValueError):
            return {}

    subnet.start_miner("miner-0", 0.03, "--seconds_per_reallocate", "3600", "--logging.format", "json",
                       "--logging.file", str(log_file), "--metrics.port", "0")
    try:
        wait_for(lambda: node_json().get("state") == "running" and node_json().get("metrics"), 60, "miner serving")
        snap = node_json()
        with urllib.request.urlopen(f"http://{snap['metrics']}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        assert sum(s.value for s in fams["tensorage_miner_plots"].samples) == snap["plots_held"] > 0
        (info,) = fams["tensorage_node_info"].samples
        assert info.labels["role"] == "miner" and info.labels["hotkey"] == snap["hotkey"]
        shown = tensorage("status", "--offline", *subnet.common("miner-0"))  # where an operator finds the port
        assert shown.returncode == 0 and f"http://{snap['metrics']}/metrics" in shown.stdout, shown.stdout
    finally:
        subnet.stop_all()
    out = [ln for ln in subnet.log("miner-0").splitlines() if ln.strip()]
    records = [_json.loads(ln) for ln in out]  # every line: stderr and stdout alike
    assert any(r["message"].startswith("[miner] metrics on http://") for r in records), out
    assert all(r["role"] == "miner" and r["node"] == "miner-0" for r in records)
    assert any(r["message"].startswith("devnet: plots are k=18-20") for r in records)  # the notice too
    in_file = [_json.loads(ln) for ln in log_file.read_text().splitlines()]
    # the file has what the log has since logging was set up (the notice is printed before)
    assert [r["message"] for r in in_file] == [r["message"] for r in records if not r["message"].startswith("devnet:")]
