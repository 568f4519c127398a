"""The contract between tensorage and the installed bittensor SDK.

There is no chain in tests, so the real backend (tensorage/chain/bittensor_backend.py) and the
request signing (tensorage/net/auth.py, net/client.py, net/replies.py) would only break on a real
network. These tests fail instead when the installed SDK changes a member, an argument or a type
they use; each failure names the SDK version. They pin what the code uses, nothing more: when the
backend starts using another member, add it here.

The second half runs ``BittensorChain`` without a network: against a stand-in client built from
the SDK's own types (``BlockInfo``, ``Metagraph``, ``MetagraphNeuron``, ``Balance``,
``ExtrinsicResult``), and against a real ``bt.SyncClient`` whose substrate is an in-memory stand-in
(the SDK's documented ``substrate=`` seam), so the mapping and bounding code runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import threading
import time
import typing
from datetime import datetime, timezone
from typing import Any, Optional

import bittensor as bt
import pytest
from bittensor import settings as bt_settings

from tensorage.chain import bounded
from tensorage.chain.bittensor_backend import BittensorChain
from tensorage.errors import BlockNotYet, ChainError, ChainStalled, ChainUnreachable, NotRegistered

SDK = f"bittensor {bt.__version__}"
ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
BOB = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"


def params(func: Any) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(func).parameters)


def require_params(func: Any, where: str, *names: str, keyword_only: tuple[str, ...] = ()) -> None:
    got = params(func)
    missing = [n for n in (*names, *keyword_only) if n not in got]
    assert not missing, f"{SDK}: {where} no longer takes {missing} (signature now {inspect.signature(func)}); " \
                        f"tensorage's chain backend passes them"
    for name in keyword_only:
        assert got[name].kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD), \
            f"{SDK}: {where}'s {name} cannot be passed by keyword any more"


def returns(func: Any) -> Any:
    """A function's return annotation, resolved in its own module (other annotations of it may
    name types only imported for type checkers, so typing.get_type_hints can fail on them)."""
    ann = inspect.signature(func).return_annotation
    if isinstance(ann, str):
        namespace = {**vars(typing), **getattr(func, "__globals__", {})}
        try:
            ann = eval(ann, namespace)  # noqa: S307 - an annotation of the installed SDK
        except Exception:
            pass
    return ann


def field_types(cls: type) -> dict[str, Any]:
    assert dataclasses.is_dataclass(cls), f"{SDK}: {cls.__name__} is no longer a dataclass"
    return typing.get_type_hints(cls)


def require_fields(cls: type, expected: dict[str, Any]) -> None:
    hints = field_types(cls)
    for name, want in expected.items():
        assert name in hints, f"{SDK}: {cls.__name__} has no field {name!r} any more; tensorage reads it"
        assert hints[name] == want, f"{SDK}: {cls.__name__}.{name} is now {hints[name]}, tensorage expects {want}"


# --- signatures and types ---------------------------------------------------------------------


def test_sync_client_construction_and_members_the_backend_calls():
    require_params(bt.SyncClient, "bt.SyncClient()", "network", keyword_only=("substrate",))
    assert isinstance(inspect.getattr_static(bt.SyncClient, "block"), property), \
        f"{SDK}: SyncClient.block is no longer a property; the backend reads `client.block`"
    require_params(bt.SyncClient.block_info, "SyncClient.block_info", "block")
    require_params(bt.SyncClient.block_time, "SyncClient.block_time")
    require_params(bt.SyncClient.execute, "SyncClient.execute", "intent", "wallet")
    require_params(bt.SyncClient.close, "SyncClient.close")
    client = bt.SyncClient("finney")  # cold: no network I/O until the first call
    try:
        assert callable(getattr(client.subnets, "metagraph", None)), f"{SDK}: SyncClient.subnets.metagraph is gone"
    finally:
        client.close()


def test_the_async_members_behind_the_sync_facade():
    """``SyncClient`` proxies ``Client``: the arguments and return types are the async ones."""
    from bittensor.executor import Executor

    subnets = type(bt.Client("finney").subnets)
    require_params(subnets.metagraph, "client.subnets.metagraph", "netuid", keyword_only=("commitments",))
    assert returns(subnets.metagraph) == Optional[bt.Metagraph], \
        f"{SDK}: subnets.metagraph now returns {returns(subnets.metagraph)}, the backend maps an Optional[bt.Metagraph]"
    assert returns(bt.Client.block_info) == Optional[bt.BlockInfo], \
        f"{SDK}: Client.block_info no longer returns Optional[bt.BlockInfo]"
    assert returns(bt.Client.block) is int, f"{SDK}: Client.block no longer returns int"
    assert returns(bt.Client.block_time) is float, f"{SDK}: Client.block_time no longer returns float"
    require_params(Executor.execute, "Client.execute", "intent", "wallet", keyword_only=("retries",))
    require_params(bt.Client.execute, "Client.execute", "intent", "wallet")
    assert returns(Executor.execute) is bt.ExtrinsicResult and returns(bt.Client.execute) is bt.ExtrinsicResult, \
        f"{SDK}: execute no longer returns bt.ExtrinsicResult (the backend calls raise_for_failure on it)"


def test_block_info_fields():
    require_fields(bt.BlockInfo, {"hash": Optional[str], "timestamp": datetime})


def test_metagraph_fields_the_backend_reads():
    require_fields(bt.Metagraph, {"block": int, "neurons": list[bt.MetagraphNeuron]})
    require_fields(bt.MetagraphNeuron, {
        "uid": int, "hotkey": str, "coldkey": str, "active": bool, "validator_permit": bool, "last_update": int,
        "block_at_registration": int, "rank": float, "trust": float, "consensus": float, "incentive": float,
        "dividends": float, "emission": bt.Balance, "total_stake": bt.Balance, "axon": Optional[str],
    })
    assert hasattr(bt.Balance, "amount"), f"{SDK}: bt.Balance has no .amount; the backend reads stakes with it"


def test_intents_and_results_the_backend_writes_with():
    assert bt.intents.ServeAxon is bt.ServeAxon, f"{SDK}: bt.intents.ServeAxon moved"
    require_params(bt.intents.ServeAxon, "bt.intents.ServeAxon", keyword_only=("netuid", "ip", "port"))
    require_params(bt.SetWeights, "bt.SetWeights", keyword_only=("netuid", "weights"))
    intent = bt.SetWeights(netuid=7, weights={2: 0.25, 1: 0.75})  # the mapping shape the backend passes
    assert (intent.uids, intent.weights) == ([1, 2], [0.75, 0.25]), f"{SDK}: SetWeights reads a mapping differently"
    assert callable(getattr(bt.ExtrinsicResult, "raise_for_failure", None)), \
        f"{SDK}: ExtrinsicResult.raise_for_failure is gone"
    failed = bt.ExtrinsicResult(success=False, message="rate limited")
    with pytest.raises(bt.ChainError):
        failed.raise_for_failure()
    assert issubclass(bt.ChainError, Exception)


def test_the_seam_the_rpc_bound_uses():
    """chain/bounded.py builds the SDK's RpcSubstrate itself and wraps its coroutines."""
    require_params(bt.RpcSubstrate, "bt.RpcSubstrate", "endpoint",
                   keyword_only=("fallback_endpoints", "archive_endpoints"))
    for name in ("resolve_endpoint", "default_fallback_endpoints", "default_archive_endpoints"):
        assert callable(getattr(bt_settings, name, None)), f"{SDK}: bittensor.settings.{name} is gone"
    coroutines = {n for n, f in inspect.getmembers(bt.RpcSubstrate, inspect.iscoroutinefunction)}
    for name in {"connect", "block_number", "get_block", "block_time", "runtime_call"} | bounded.WRITE_METHODS:
        assert name in coroutines, f"{SDK}: RpcSubstrate.{name} is no longer a coroutine; the bound misses it"
    default = getattr(bt.Client("finney"), "_substrate", None)  # private: compared here only
    assert isinstance(default, bt.RpcSubstrate), f"{SDK}: Client keeps its substrate elsewhere; update this test"
    ours = bounded.rpc_substrate("finney")
    assert (ours.endpoint, ours.fallback_endpoints, ours.archive_endpoints) == \
        (default.endpoint, default.fallback_endpoints, default.archive_endpoints), \
        f"{SDK}: bt.Client builds its RpcSubstrate with other endpoints than chain/bounded.py does"
    client = bounded.bounded_client("finney")  # cold, like the SDK's own
    try:
        assert isinstance(client.tensorage_bound, bounded.BoundedSubstrate)
        inner = getattr(getattr(client, "_client", None), "_substrate", None)  # private: checked here only
        assert inner is client.tensorage_bound, f"{SDK}: SyncClient ignores substrate= (or keeps it elsewhere)"
    finally:
        client.close()


def test_http_auth_as_net_auth_uses_it():
    http = bt.http_auth
    require_params(http.sign, "bt.http_auth.sign", "wallet",
                   keyword_only=("method", "path", "body", "receiver_ss58"))
    require_params(http.verify, "bt.http_auth.verify", "headers", "body",
                   keyword_only=("method", "path", "self_hotkey_ss58", "max_age", "allowed_skew", "nonce_store"))
    for name in ("AuthError", "MalformedAuth", "BadSignature", "StaleRequest", "WrongReceiver", "ReplayedRequest"):
        cls = getattr(http, name, None)
        assert isinstance(cls, type) and issubclass(cls, http.AuthError if name != "AuthError" else Exception), \
            f"{SDK}: bt.http_auth.{name} is gone or no longer an AuthError; net/auth.py maps it to a status"
    require_params(http.InMemoryNonceStore, "bt.http_auth.InMemoryNonceStore", keyword_only=("retention",))
    assert isinstance(getattr(http, "NonceStore", None), type), f"{SDK}: bt.http_auth.NonceStore is gone"
    assert {"hotkey_ss58", "nonce_ns"} <= set(field_types(http.Caller)), \
        f"{SDK}: bt.http_auth.Caller lost hotkey_ss58 or nonce_ns"
    require_params(bt.resolve_signer, "bt.resolve_signer", "wallet", keyword_only=("role",))


def test_http_auth_round_trip(tmp_path):
    """Sign and verify for real, the way net/client.py and net/auth.py do."""
    from tensorage.chain.wallets import create_wallet

    wallet = create_wallet(tmp_path / "wallets", "contract")
    signer = bt.resolve_signer(wallet, role="hotkey")
    headers = bt.http_auth.sign(signer, method="POST", path="/v1/challenge", body=b"{}", receiver_ss58=ALICE)
    caller = bt.http_auth.verify(headers, b"{}", method="POST", path="/v1/challenge", self_hotkey_ss58=ALICE,
                                 max_age=10.0, allowed_skew=2.0, nonce_store=bt.http_auth.InMemoryNonceStore())
    assert caller.hotkey_ss58 == wallet.hotkey.ss58_address and isinstance(caller.nonce_ns, int)
    with pytest.raises(bt.http_auth.ReplayedRequest):
        store = bt.http_auth.InMemoryNonceStore()
        for _ in range(2):
            bt.http_auth.verify(headers, b"{}", method="POST", path="/v1/challenge", self_hotkey_ss58=ALICE,
                                nonce_store=store)


# --- the backend against a stand-in client made of the SDK's own types ---------------------------


def sdk_neuron(uid: int, hotkey: str, stake_rao: int, axon: Optional[str], permit: bool = False) -> bt.MetagraphNeuron:
    alpha = bt.Balance(stake_rao, 7)
    return bt.MetagraphNeuron(
        uid=uid, hotkey=hotkey, coldkey=hotkey, active=True, validator_permit=permit, last_update=90,
        block_at_registration=3, rank=0.1, trust=0.2, consensus=0.3, incentive=0.4, dividends=0.5, pruning_score=0.0,
        emission=bt.Balance(2_000_000_000, 7), alpha_stake=alpha, tao_stake=bt.Balance(0), total_stake=alpha,
        axon=axon, identity=None, commitment=None)


def sdk_metagraph(block: int) -> bt.Metagraph:
    neurons = [sdk_neuron(0, ALICE, 1_500_000_000_000, None, permit=True), sdk_neuron(1, BOB, 0, "10.0.0.2:8091")]
    return bt.Metagraph(
        netuid=7, mechid=0, name="tensorage", symbol="α", block=block, tempo=360, last_step=0, blocks_since_last_step=0,
        owner_hotkey=ALICE, owner_coldkey=ALICE, network_registered_at=0, num_uids=2, max_uids=256, price=None,
        moving_price=None, identity=None, neurons=neurons, commitments={}, unregistered_commitments={}, raw={})


class StandInClient:
    """The members of ``bt.SyncClient`` the backend uses, answering with the SDK's own types."""

    def __init__(self, head: int = 100, fail: Optional[Exception] = None, result: Optional[bt.ExtrinsicResult] = None):
        self.head = head
        self.fail = fail
        self.result = bt.ExtrinsicResult(success=True) if result is None else result
        self.executed: list[tuple[Any, Any, dict]] = []
        self.closed = False
        self.metagraph_calls: list[tuple] = []
        outer = self

        class Subnets:
            def metagraph(self, netuid: int, block: Optional[int] = None, *, commitments: bool = True):
                outer._maybe_fail()
                outer.metagraph_calls.append((netuid, commitments))
                return sdk_metagraph(outer.head) if netuid == 7 else None

        self.subnets = Subnets()

    def _maybe_fail(self) -> None:
        if self.fail is not None:
            raise self.fail

    @property
    def block(self) -> int:
        self._maybe_fail()
        return self.head

    def block_info(self, block=None) -> Optional[bt.BlockInfo]:
        self._maybe_fail()
        if block > self.head:
            return None
        return bt.BlockInfo(number=block, hash="0x" + f"{block:064x}",
                            timestamp=datetime.fromtimestamp(1_700_000_000 + 12 * block, timezone.utc),
                            explorer_url=None, header={}, extrinsics=[])

    def block_time(self) -> float:
        self._maybe_fail()
        return 12.0

    def execute(self, intent, wallet, **kwargs) -> bt.ExtrinsicResult:
        self._maybe_fail()
        self.executed.append((intent, wallet, kwargs))
        return self.result

    def close(self) -> None:
        self.closed = True


def test_metagraph_mapping_from_real_sdk_types():
    chain = BittensorChain("finney", 7, client_factory=StandInClient)
    mg = chain.metagraph()
    alice, bob = mg.by_uid(0), mg.by_uid(1)
    assert mg.block == 100 and mg.netuid == 7 and len(mg.neurons) == 2
    assert alice.total_stake == pytest.approx(1500.0), "a Balance stake must not read as 0"
    assert alice.emission == pytest.approx(2.0) and alice.validator_permit and alice.endpoint is None
    assert (alice.rank, alice.trust, alice.consensus, alice.incentive, alice.dividends) == (0.1, 0.2, 0.3, 0.4, 0.5)
    assert bob.endpoint == ("10.0.0.2", 8091) and bob.total_stake == 0.0
    assert chain._local.client.metagraph_calls == [(7, False)]  # commitments are never read: not fetched
    with pytest.raises(ChainError, match="--netuid"):
        BittensorChain("finney", 99, client_factory=StandInClient).metagraph()


def test_blocks_from_real_block_info():
    chain = BittensorChain("finney", 7, client_factory=StandInClient)
    assert chain.block() == 100
    assert chain.block_hash(42) == (42).to_bytes(32, "big")
    assert chain.block_timestamp(42) == 1_700_000_000 + 12 * 42
    assert chain.block_time() == 12.0
    with pytest.raises(BlockNotYet):
        chain.block_hash(101)


def test_writes_use_the_intents_and_raise_on_a_failed_extrinsic(tmp_path):
    chain = BittensorChain("finney", 7, client_factory=StandInClient)
    wallet = object()
    chain.serve(wallet, "10.0.0.1", 8091)
    intent, used_wallet, _ = chain._local.client.executed[-1]
    assert isinstance(intent, bt.ServeAxon) and (intent.netuid, intent.ip, intent.port) == (7, "10.0.0.1", 8091)
    assert used_wallet is wallet
    assert chain.set_weights(wallet, {1: 3.0, 0: 1.0}) == 100
    intent, _, kwargs = chain._local.client.executed[-1]
    assert isinstance(intent, bt.SetWeights) and intent.uids == [0, 1] and intent.weights == [1.0, 3.0]
    assert kwargs.get("retries", 0) >= 1
    with pytest.raises(NotRegistered):
        chain.set_weights(wallet, {5: 1.0})
    refused = BittensorChain("finney", 7, client_factory=lambda: StandInClient(
        result=bt.ExtrinsicResult(success=False, message="served too often")))
    with pytest.raises(ChainError, match="served too often") as caught:
        refused.serve(wallet, "10.0.0.1", 8091)
    assert not isinstance(caught.value, ChainUnreachable)  # the chain answered: a refusal, not an outage


def test_sdk_failures_become_port_errors():
    down = BittensorChain("finney", 7, client_factory=lambda: StandInClient(fail=bt.RpcConnectionError("refused")))
    with pytest.raises(ChainUnreachable, match="refused"):
        down.metagraph()
    stalled = BittensorChain("finney", 7, client_factory=lambda: StandInClient(fail=TimeoutError("slow")))
    with pytest.raises(ChainStalled):
        stalled.block()


def test_each_thread_has_its_own_client_and_close_closes_them_all():
    made: list[StandInClient] = []

    def factory() -> StandInClient:
        made.append(StandInClient())
        return made[-1]

    chain = BittensorChain("finney", 7, client_factory=factory)
    barrier = threading.Barrier(4)
    seen: dict[int, int] = {}

    def work() -> None:
        barrier.wait()
        chain.block()
        for block in range(20):
            chain.block_hash(block)
        seen[threading.get_ident()] = id(chain._local.client)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 4 and len(set(seen.values())) == 4
    assert len(chain._infos) == 20  # the shared cache stayed whole
    chain.close()
    assert all(c.closed for c in made)
    with pytest.raises(ChainError, match="closed"):
        chain.block()


# --- a real SyncClient over an in-memory substrate: the SDK's own code runs, bounded ----------------


class StandInSubstrate:
    """The ``bt.Substrate`` reads the backend's calls reach, in memory; ``stall`` makes them hang."""

    def __init__(self) -> None:
        self.token_symbols: dict[int, str] = {}
        self.stall = False

    def balance(self, rao: int, netuid: int = 0) -> bt.Balance:
        return bt.Balance(rao, netuid)

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def _maybe_stall(self) -> None:
        if self.stall:
            await asyncio.sleep(3600)

    async def block_number(self) -> int:
        await self._maybe_stall()
        return 50

    async def block_time(self) -> float:
        return 12.0

    async def get_block(self, block_number=None, block_hash=None) -> Optional[dict]:
        await self._maybe_stall()
        if block_number is not None and block_number > 50:
            return None
        stamp = {"call": {"call_module": "Timestamp", "call_function": "set",
                          "call_args": [{"name": "now", "value": 1_700_000_000_000 + 12_000 * block_number}]}}
        return {"header": {"number": block_number, "hash": "0x" + f"{block_number:064x}"}, "extrinsics": [stamp]}

    def __getattr__(self, name: str):
        async def absent(*args, **kwargs):
            raise bt.ChainError(f"{name} is not in the stand-in substrate")

        return absent


def test_a_real_sync_client_reads_blocks_through_the_bound():
    substrate = StandInSubstrate()
    chain = BittensorChain("finney", 7, client_factory=lambda: bt.SyncClient(
        "finney", substrate=bounded.BoundedSubstrate(substrate, read_s=0.3, write_s=0.3)))
    try:
        assert chain.block() == 50
        assert chain.block_hash(7) == (7).to_bytes(32, "big")
        assert chain.block_timestamp(7) == pytest.approx(1_700_000_000 + 84)
        substrate.stall = True
        started = time.monotonic()
        with pytest.raises(ChainStalled, match="block_number"):
            chain.block()
        assert time.monotonic() - started < 3.0, "a stalled RPC must end at its bound"
        substrate.stall = False
        assert chain.block() == 50  # a fresh client after the stall
    finally:
        chain.close()


def test_a_whole_call_is_bounded_not_only_each_rpc(monkeypatch):
    """Several slow RPCs in one port call: each is within its own bound, the call is not."""
    from tensorage.chain import bittensor_backend

    class Slow(StandInSubstrate):
        async def block_number(self) -> int:
            await asyncio.sleep(0.25)
            return 50

        async def get_block(self, block_number=None, block_hash=None):
            await asyncio.sleep(0.25)
            return await super().get_block(block_number, block_hash)

    def factory():
        substrate = bounded.BoundedSubstrate(Slow(), read_s=5.0, write_s=5.0)
        client = bt.SyncClient("finney", substrate=substrate)
        client.tensorage_bound = substrate
        return client

    monkeypatch.setattr(bittensor_backend, "READ_CALL_S", 0.4)
    chain = BittensorChain("finney", 7, client_factory=factory)
    try:
        assert chain.block() == 50  # one slow RPC fits the call's bound
        started = time.monotonic()
        with pytest.raises(ChainStalled):
            chain._call("two slow reads", lambda c: (c.block, c.block_info(3)))
        assert time.monotonic() - started < 1.0
    finally:
        chain.close()
