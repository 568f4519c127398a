"""The gateway's side of the miners' shard endpoints: place (with the certificate), fetch
(Merkle-checked), delete, re-check (signed replies), renew certificates; and what the gateway
knows of each miner (room, speed, whether it answers).

Every answer is bounded by what was asked (a shard download stops at the shard's size) and
hashed as it arrives; a miner's failure only ever changes that miner's standing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Callable, Optional

from ..chain.port import Metagraph, Neuron
from ..net.client import PeerError, SignedClient
from ..net.objects import (CERTIFICATE_HEADER, CertificateBatch, CertificatesTaken, ShardCheck, ShardChecked,
                           ShardDeleted, ShardStored, ShardSummary)
from ..net.replies import reply_signed_by
from ..proofs.certificates import Certificate
from ..proofs.merkle import HASH_BYTES, check_proof, leaf_count, levels_of, shard_id
from ..storage.streams import HashingFile
from ..storage.wrap import Keystream
from .spool import SpoolError

COOLDOWN_S = 60.0       # a miner that failed a placement is skipped this long
IDLE_TIMEOUT_S = 30.0   # a shard transfer that makes no progress this long is abandoned
ROOM_STALE_S = 30.0     # a miner's room is asked again when the gateway's idea of it is older
UNSERVING_AFTER = 3     # downloads in a row that failed before a miner counts as not serving
CHECK_TIMEOUT_S = 15.0  # a re-check's answer (a few chunks, or the leaf hashes) is due within this


class PlacementError(Exception):
    def __init__(self, kind: str, message: str, landed: bool) -> None:
        super().__init__(message)
        self.kind = kind        # refused | no_room | unreachable | timeout
        self.landed = landed    # the miner may hold it anyway (no answer): delete it later


class FetchError(Exception):
    def __init__(self, kind: str, message: str, leaves: Optional[list[bytes]] = None) -> None:
        super().__init__(message)
        self.kind = kind        # corrupt | missing | refused | unreachable | timeout
        self.leaves = leaves    # corrupt: the leaf hashes of what arrived (to find the chunks that differ)


@dataclass
class CheckVerdict:
    """A re-check's outcome: ``right`` / ``wrong`` come from a reply the miner signed; anything
    else (``inconclusive``: no answer, an unsigned one, a refusal about the request itself) is
    never evidence against the shard."""

    outcome: str  # right | wrong | inconclusive
    detail: str = ""
    chunk: Optional[int] = None            # wrong: the chunk that was
    leaves: Optional[list[bytes]] = None   # right, when asked: the shard's leaf hashes


@dataclass
class MinerStanding:
    axon: Optional[str] = None         # where it was when this was learned: a new address starts afresh
    free_bytes: Optional[int] = None   # last reported room for this gateway's shards
    free_at: float = 0.0               # when it was reported
    failed_at: float = 0.0             # last placement failure
    bytes_per_s: float = 0.0           # download speed, EMA (0: unknown)
    answered_at: float = 0.0           # last window answered (any status)
    silent_since: float = 0.0          # first window it did not answer since it last did (0: answering)
    fetch_failures: int = 0            # downloads in a row that failed (refused, stalled, wrong)


class ShardPeers:
    def __init__(self, client: SignedClient, metagraph: Callable[[], Optional[Metagraph]], self_hotkey: str) -> None:
        self.client = client
        self.metagraph = metagraph
        self.self_hotkey = self_hotkey
        self.standing: dict[str, MinerStanding] = {}

    def of(self, hotkey: str) -> MinerStanding:
        st = self.standing.get(hotkey)
        neuron = self.neuron(hotkey)
        axon = neuron.axon if neuron else None
        if st is None or (axon is not None and st.axon != axon):  # restarted, or moved: judge it afresh
            st = self.standing[hotkey] = MinerStanding(axon=axon)
        return st

    def failed(self, hotkey: str) -> None:
        """It did not take a placement: no new shards for it for a while."""
        self.of(hotkey).failed_at = time.monotonic()

    def note_window(self, hotkey: str, answered: bool) -> None:
        st = self.of(hotkey)
        if answered:
            st.answered_at, st.silent_since = time.time(), 0.0
        elif not st.silent_since:
            st.silent_since = time.time()

    def silent_for(self, hotkey: str) -> float:
        """Seconds since it stopped answering windows (0 when it answers, or nothing is known)."""
        st = self.standing.get(hotkey)
        return time.time() - st.silent_since if st is not None and st.silent_since else 0.0

    def unserving(self, hotkey: str) -> bool:
        """Its last downloads all failed: its shards are no use to a retrieval (moved by repair)."""
        st = self.standing.get(hotkey)
        return st is not None and st.fetch_failures >= UNSERVING_AFTER

    # who ------------------------------------------------------------------------------------
    def miners(self) -> list[Neuron]:
        mg = self.metagraph()
        if mg is None:
            return []
        return [n for n in mg.neurons if n.endpoint and not n.validator_permit and n.hotkey != self.self_hotkey]

    def neuron(self, hotkey: str) -> Optional[Neuron]:
        mg = self.metagraph()
        return mg.by_hotkey(hotkey) if mg else None

    def usable(self, size: int, exclude: set[str] = frozenset()) -> list[Neuron]:
        """Miners a shard of ``size`` bytes may go to now: serving, not failed in the last minute,
        not silent in windows, with room (or room unknown)."""
        now = time.monotonic()
        out = []
        for n in self.miners():
            st = self.of(n.hotkey)
            if n.hotkey in exclude or now - st.failed_at < COOLDOWN_S or st.silent_since:
                continue
            if st.free_bytes is not None and st.free_bytes < size:
                continue
            out.append(n)
        return out

    def stale_room(self, size: int) -> list[Neuron]:
        """Miners whose room the gateway last heard was too small, long enough ago to ask again."""
        now = time.monotonic()
        return [n for n in self.miners() if (st := self.of(n.hotkey)).free_bytes is not None
                and st.free_bytes < size and now - st.free_at > ROOM_STALE_S]

    def by_speed(self, hotkeys: list[str]) -> list[str]:
        """Fastest first; unknown speeds go first so they get measured."""
        return sorted(hotkeys, key=lambda h: self.of(h).bytes_per_s or float("inf"), reverse=True)

    def _room(self, hotkey: str, free: int) -> None:
        st = self.of(hotkey)
        st.free_bytes, st.free_at = free, time.monotonic()

    # place ------------------------------------------------------------------------------------
    async def put(self, miner: Neuron, shard: str, path: Path, size: int, cert: Certificate) -> ShardStored:
        host, port = miner.endpoint  # type: ignore[misc]
        st = self.of(miner.hotkey)
        try:
            reply = await self.client.put_stream(host, port, f"/v1/shards/{shard}?size={size}", miner.hotkey,
                                                 _read_file(path), size, idle_timeout=IDLE_TIMEOUT_S,
                                                 headers={CERTIFICATE_HEADER: cert.entry().hex()})
        except PeerError as exc:
            st.failed_at = time.monotonic()
            raise PlacementError(exc.kind, f"{miner.hotkey[:8]}: {exc}", landed=True) from None
        if reply.status == 200:
            try:
                stored = ShardStored.model_validate_json(reply.body)
            except ValueError:
                st.failed_at = time.monotonic()
                raise PlacementError("refused", f"{miner.hotkey[:8]} answered junk to a shard PUT", landed=True)
            self._room(miner.hotkey, stored.free_bytes)
            return stored
        st.failed_at = time.monotonic()
        if reply.status == 507:
            self._room(miner.hotkey, 0)
            raise PlacementError("no_room", f"{miner.hotkey[:8]} has no room: {reply.error_message}", landed=False)
        raise PlacementError("refused", f"{miner.hotkey[:8]} refused the shard: HTTP {reply.status} "
                                        f"{reply.error_message}", landed=reply.status >= 500)

    async def refresh_room(self, miner: Neuron) -> None:
        """Ask a miner how much room this gateway has left there (deletes free it)."""
        host, port = miner.endpoint  # type: ignore[misc]
        try:
            reply = await self.client.request("GET", host, port, "/v1/shards", miner.hotkey, timeout=5.0)
            if reply.status == 200:
                self._room(miner.hotkey, ShardSummary.model_validate_json(reply.body).free_bytes)
        except (PeerError, ValueError):
            pass

    # fetch ------------------------------------------------------------------------------------
    async def fetch(self, miner: Neuron, shard: str, size: int, dest: Path, unwrap: Optional[Keystream]) -> None:
        """Download a shard into ``dest`` (unwrapped if ``unwrap``), checking its length and Merkle
        id; raises FetchError, and leaves no file behind on failure."""
        if not miner.endpoint:
            raise FetchError("unreachable", f"{miner.hotkey[:8]} serves no endpoint")
        host, port = miner.endpoint
        st = self.of(miner.hotkey)
        started = time.perf_counter()
        try:
            out = HashingFile(dest, transform=unwrap, hash_input=True)
        except OSError as exc:
            raise SpoolError(f"cannot create {dest}: {exc}") from None
        try:
            async with self.client.get_stream(host, port, f"/v1/shards/{shard}", miner.hotkey,
                                              idle_timeout=IDLE_TIMEOUT_S) as resp:
                if resp.status != 200:
                    text = (await resp.content.read(2048)).decode(errors="replace")
                    kind = "missing" if resp.status == 404 else "refused"
                    raise FetchError(kind, f"{miner.hotkey[:8]} answered {resp.status}: {text[:200]}")
                async for chunk in resp.content.iter_chunked(1 << 18):
                    if out.size + len(chunk) > size:
                        raise FetchError("corrupt", f"{miner.hotkey[:8]} sent more than the shard's {size} bytes")
                    try:
                        await out.write(chunk)
                    except OSError as exc:
                        raise SpoolError(f"cannot write {dest}: {exc}") from None
            digest = await out.finish(sync=False)
        except PeerError as exc:
            out.discard()
            st.fetch_failures += 1
            raise FetchError(exc.kind, f"{miner.hotkey[:8]}: {exc}") from None
        except FetchError:
            out.discard()
            st.fetch_failures += 1
            raise
        except BaseException:
            out.discard()
            raise
        if out.size != size or digest != shard:
            dest.unlink(missing_ok=True)
            st.fetch_failures += 1
            raise FetchError("corrupt", f"{miner.hotkey[:8]} sent {out.size} bytes whose id is {digest[:12]}…, not "
                                        f"the shard ({size} bytes, {shard[:12]}…)", leaves=list(out.hasher.leaves))
        st.fetch_failures = 0
        seconds = max(1e-6, time.perf_counter() - started)
        rate = size / seconds
        st.bytes_per_s = rate if st.bytes_per_s == 0 else 0.7 * st.bytes_per_s + 0.3 * rate

    # delete / check / certify --------------------------------------------------------------------
    async def delete(self, miner: Neuron, shard: str) -> str:
        """ok (gone now or already), refused, or unreachable."""
        if not miner.endpoint:
            return "unreachable"
        host, port = miner.endpoint
        try:
            reply = await self.client.request("DELETE", host, port, f"/v1/shards/{shard}", miner.hotkey, timeout=10.0)
        except PeerError:
            return "unreachable"
        if reply.status == 200:
            try:
                self._room(miner.hotkey, ShardDeleted.model_validate_json(reply.body).free_bytes)
            except ValueError:
                pass
        if reply.status in (200, 404):
            return "ok"
        return "refused" if reply.status < 500 else "unreachable"

    async def check(self, miner: Neuron, shard: str, size: int, indices: list[int],
                    leaves: bool = False) -> CheckVerdict:
        """Ask for chunks of a suspect shard (and its leaf hashes); judge only on a reply the miner
        signed. A ``right`` verdict with ``leaves`` carries them, checked against the shard's id."""
        if not miner.endpoint:
            return CheckVerdict("inconclusive", "serves no endpoint")
        host, port = miner.endpoint
        path = f"/v1/shards/{shard}/check"
        try:
            reply = await self.client.request("POST", host, port, path, miner.hotkey, timeout=CHECK_TIMEOUT_S,
                                              max_reply=2 << 20,
                                              body=ShardCheck(chunks=indices, leaves=leaves).model_dump_json().encode())
        except PeerError as exc:
            return CheckVerdict("inconclusive", str(exc))
        if reply.status != 200:  # a refusal about the request (clock, version, rate) or a failure: no evidence
            return CheckVerdict("inconclusive", f"HTTP {reply.status} {reply.error_message}")
        if not reply_signed_by(reply.headers or {}, reply.body, path, reply.nonce, miner.hotkey, self.client_hotkey):
            return CheckVerdict("inconclusive", "the reply is not signed by the miner")
        try:
            answer = ShardChecked.model_validate_json(reply.body)
        except ValueError:
            return CheckVerdict("inconclusive", "the signed reply is malformed")
        if not answer.held:
            return CheckVerdict("wrong", "the miner says it does not hold the shard")
        got: Optional[list[bytes]] = None
        if leaves:
            try:
                raw = base64.b64decode(answer.leaves, validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            got = [raw[o:o + HASH_BYTES] for o in range(0, len(raw), HASH_BYTES)]
            if len(got) != leaf_count(size) or shard_id(levels_of(got)[-1][0], size) != bytes.fromhex(shard):
                return CheckVerdict("wrong", "its leaf hashes do not build the certified root")
        if len(answer.chunks) != len(indices):
            return CheckVerdict("wrong", f"the miner answered {len(answer.chunks)} of {len(indices)} chunks")
        for index, text in zip(indices, answer.chunks):
            try:
                proof = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                return CheckVerdict("wrong", f"chunk {index} is not base64")
            if not check_proof(proof, bytes.fromhex(shard), size, index):
                return CheckVerdict("wrong", f"chunk {index} is missing or does not match the certified root", index)
        return CheckVerdict("right", leaves=got)

    async def legacy(self, miner: Neuron, sha: str) -> Optional[tuple[str, int]]:
        """Where a miner moved a protocol-2 shard: (Merkle id, size); None when it says it has none.
        Raises PeerError when it does not answer."""
        if not miner.endpoint:
            raise PeerError("unreachable", f"{miner.hotkey[:8]} serves no endpoint")
        host, port = miner.endpoint
        reply = await self.client.request("GET", host, port, f"/v1/shards/legacy/{sha}", miner.hotkey, timeout=10.0)
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise PeerError("unreachable", f"HTTP {reply.status} {reply.error_message}")
        try:
            found = ShardStored.model_validate_json(reply.body)
        except ValueError:
            raise PeerError("unreachable", "a malformed answer") from None
        return found.id, found.size

    @property
    def client_hotkey(self) -> str:
        return self.client.signer.ss58_address

    async def certify(self, miner: Neuron, certs: list[Certificate]) -> Optional[CertificatesTaken]:
        """Hand renewed certificates to a miner; None when it did not take them (try again later)."""
        if not miner.endpoint:
            return None
        host, port = miner.endpoint
        body = CertificateBatch(certificates=[c.entry().hex() for c in certs]).model_dump_json().encode()
        try:
            reply = await self.client.request("POST", host, port, "/v1/certificates", miner.hotkey, body=body,
                                              timeout=30.0)
            if reply.status == 200:
                return CertificatesTaken.model_validate_json(reply.body)
        except (PeerError, ValueError):
            pass
        return None


async def _read_file(path: Path, chunk: int = 1 << 20) -> AsyncIterator[bytes]:
    """A spooled shard in 1 MiB reads off the event loop (aiohttp's own file payload reads 64 KiB
    per executor call: 16 times the round trips)."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise SpoolError(f"cannot read the spooled shard {path}: {exc}") from None
    try:
        while True:
            data = await asyncio.to_thread(f.read, chunk)
            if not data:
                return
            yield data
    finally:
        f.close()
