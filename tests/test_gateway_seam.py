"""The gateway's seam for proof rounds and scores, without a network: audits are spent once,
judged per miner, and only passed, healthy shard bytes count."""

from __future__ import annotations

import os

import pytest

from tensorage.chain.port import Neuron
from tensorage.config import settings_from_namespace
from tensorage.engines.gateway import Gateway, audit_request, check_audit
from tensorage.net.client import SignedClient
from tensorage.net.objects import AuditAnswer
from tensorage.storage.audits import audit_digest, make_audits
from tensorage.storage.layout import Layout

from .conftest import ALICE, BOB


def neuron(hotkey: str, uid: int) -> Neuron:
    return Neuron(uid=uid, hotkey=hotkey, coldkey=hotkey, active=True, validator_permit=False, last_update=0,
                  block_at_registration=0, rank=0, trust=0, consensus=0, incentive=0, dividends=0, emission=0,
                  total_stake=0, axon=None)


@pytest.fixture
def gateway(tmp_path, wallet):
    settings = settings_from_namespace({"subtensor.network": "devnet", "db_root_path": str(tmp_path / "v"),
                                        "gateway.audits_per_shard": 3, "gateway.miss_limit": 2})
    gw = Gateway(settings, Layout(settings.db_root), wallet.hotkey.ss58_address, SignedClient(wallet), lambda: None)
    yield gw
    gw.close()


def place(gw: Gateway, tmp_path, miner: str, data: bytes, idx: int) -> tuple[int, list]:
    path = tmp_path / f"shard-{miner[:4]}-{idx}"
    path.write_bytes(data)
    gw.db.declare(id=f"{idx:032x}", client="c", size=len(data), k=1, n=2, block=len(data), per_segment=1,
                  segments=1, meta="", expires_at=None)
    row = gw.db.add_shard(object_id=f"{idx:032x}", segment=0, idx=0, hash="ab" * 32, wrap="00" * 16, miner=miner,
                          size=len(data))
    audits = make_audits(path, len(data), 3, length=100)
    gw.db.add_audits(row, audits)
    gw.db.update_shard(row, state="healthy")
    return row, audits


def answer(task, data: bytes) -> AuditAnswer:
    return AuditAnswer(shard=task.shard, digest=audit_digest(data[task.offset:task.offset + task.length],
                                                             task.nonce).hex())


def test_audits_are_spent_once_and_only_passed_healthy_bytes_count(gateway, tmp_path):
    data = os.urandom(5000)
    row, _ = place(gateway, tmp_path, ALICE, data, 1)
    assert gateway.audited_bytes(ALICE) == 0  # never audited: no credit yet
    seen = set()
    for _ in range(3):
        tasks = gateway.due_audits(ALICE, 8)
        assert len(tasks) == 1 and tasks[0].audit_id not in seen
        seen.add(tasks[0].audit_id)
        req = audit_request(tasks)
        assert req.items[0].shard == tasks[0].shard and "expected" not in req.model_dump_json()
        verdict = gateway.record_audits(neuron(ALICE, 1), tasks, [answer(tasks[0], data)])
        assert verdict.result == "pass" and verdict.passed_bytes == 5000
        assert gateway.audited_bytes(ALICE) == 5000
    assert gateway.due_audits(ALICE, 8) == []  # spent: waits for a refill, never asked twice


def test_a_wrong_answer_loses_the_shard_and_its_credit_and_touches_no_other_miner(gateway, tmp_path):
    a, b = os.urandom(4000), os.urandom(4000)
    row_a, _ = place(gateway, tmp_path, ALICE, a, 1)
    row_b, _ = place(gateway, tmp_path, BOB, b, 2)
    for miner, data in ((ALICE, a), (BOB, b)):
        tasks = gateway.due_audits(miner, 8)
        gateway.record_audits(neuron(miner, 1), tasks, [answer(tasks[0], data)])
    tasks = gateway.due_audits(ALICE, 8)
    verdict = gateway.record_audits(neuron(ALICE, 1), tasks, [answer(tasks[0], os.urandom(4000))])
    assert verdict.result == "fail" and verdict.lost == [row_a]
    assert gateway.db.shard(row_a).state == "lost" and gateway.audited_bytes(ALICE) == 0
    assert gateway.db.shard(row_b).state == "healthy" and gateway.audited_bytes(BOB) == 4000


def test_unanswered_audits_lose_a_shard_after_the_miss_limit(gateway, tmp_path):
    data = os.urandom(3000)
    row, _ = place(gateway, tmp_path, ALICE, data, 1)
    v1 = gateway.record_audits(neuron(ALICE, 1), gateway.due_audits(ALICE, 8), None, "timeout")
    assert v1.result == "timeout" and v1.missed == 1 and gateway.db.shard(row).state == "healthy"
    tasks = gateway.due_audits(ALICE, 8)
    gateway.record_audits(neuron(ALICE, 1), tasks, [answer(tasks[0], data)])  # an answer resets the count
    gateway.record_audits(neuron(ALICE, 1), gateway.due_audits(ALICE, 8), None, "unreachable")
    assert gateway.db.shard(row).state == "healthy"
    # spent: a refill (the audit job does it after a checked download) brings one more
    gateway.db.add_audits(row, make_audits(tmp_path / "shard-5Grw-1", 3000, 1, length=100))
    v = gateway.record_audits(neuron(ALICE, 1), gateway.due_audits(ALICE, 8), None, "unreachable")
    assert v.lost == [row] and gateway.db.shard(row).state == "lost"


def test_check_audit_is_exact():
    class T:
        expected = bytes(32)

    assert check_audit(T, "00" * 32)
    assert not check_audit(T, "00" * 31 + "01")
    assert not check_audit(T, None) and not check_audit(T, "zz")
