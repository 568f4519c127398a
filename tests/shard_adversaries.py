"""Miners that cheat on client shards, run as real processes against a real validator gateway:

    python -m tests.shard_adversaries STRATEGY <tensorage miner flags>

Each is the real MinerEngine, honest until a file named ``cheat`` appears in its db root (the test
writes it once its shards are placed, certified and listed); then it does what its strategy says.
None of this lives in the product; docs/proofs.md lists what each tries and what it must end with.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys

from aiohttp import web

from tensorage.config import add_axon_flags, add_common_flags, settings_from_namespace
from tensorage.engines.miner import MinerEngine
from tensorage.engines.run import build_node, main as run_main
from tensorage.net.auth import VALIDATOR
from tensorage.proofs.certificates import Certificate, issue
from tensorage.proofs.listing import Listing
from tensorage.proofs.merkle import CHUNK_BYTES, MerkleBuilder
from tensorage.proofs.plots import hotkey_public_key

CHEAT_FILE = "cheat"
MOOD_FILE = "mood"
EXTRA_FILE = "extra-certs"
JUNK_SHARDS = 20          # junk certificates the arena's extra listers carry
MAX_JUNK = 400            # junk a colluding gateway may certify (tests/test_client_yuma.py)
JUNK_BYTES = 1 << 20


def junk(i: int) -> bytes:
    """Bytes anyone can regenerate: what a colluding gateway certifies for a miner that stores nothing."""
    return i.to_bytes(4, "big") * (JUNK_BYTES // 4)


@functools.lru_cache(maxsize=MAX_JUNK)
def junk_tree(i: int):
    b = MerkleBuilder()
    b.update(junk(i))
    return b.finish()


@functools.lru_cache(maxsize=1)
def junk_ids() -> dict[bytes, int]:
    return {junk_tree(i).id: i for i in range(MAX_JUNK)}


class ShardCheater(MinerEngine):
    def cheating(self) -> bool:
        return (self.layout.root / CHEAT_FILE).exists()

    def own_shards(self) -> list[str]:
        return [c.shard_hex for c in self.shards.store.certificates(0, require_file=False)]

    def listed_certificates(self) -> list[Certificate]:
        """Keeps listing every certificate it was given, whatever it did with the bytes."""
        mg = self.metagraph
        return self.shards.store.certificates(mg.block if mg is not None else 0, require_file=False)


class Deleter(ShardCheater):
    """Deletes every shard it holds and keeps listing their certificates."""

    async def prove_chunks(self, chunks):
        if self.cheating():
            for shard in self.own_shards():
                self.shards.store.path(shard).unlink(missing_ok=True)
        return await super().prove_chunks(chunks)


class Ninety(ShardCheater):
    """Keeps 90 % of each shard's chunks: answers the other tenth with nothing."""

    async def prove_chunks(self, chunks):
        honest = await super().prove_chunks(chunks)
        if not self.cheating():
            return honest
        return [None if _dropped(c.shard, c.index) else p for c, p in zip(chunks, honest)]


def _dropped(shard: bytes, index: int) -> bool:
    """The tenth of the chunks it threw away (fixed per chunk)."""
    return int.from_bytes(shard[:4], "big") % 10 == index % 10


class WrongShard(ShardCheater):
    """Answers each sampled chunk with a chunk (and its path) of another shard it holds."""

    async def prove_chunks(self, chunks):
        if not self.cheating():
            return await super().prove_chunks(chunks)
        mine = sorted({bytes.fromhex(s) for s in self.own_shards()})
        swapped = []
        for c in chunks:
            others = [s for s in mine if s != c.shard]
            if not others:
                swapped.append(c)
                continue
            other = others[0]
            size = next(x.size for x in self.shards.store.certificates(0, require_file=False) if x.shard == other)
            swapped.append(type(c)(shard=other, size=size, index=min(c.index, (size - 1) // CHUNK_BYTES),
                                   gateway=c.gateway))
        return await super().prove_chunks(swapped)


class ChunkReplayer(ShardCheater):
    """Answers its first window while cheating honestly, keeps those chunks, deletes the shards and
    answers every later window with the chunks it kept."""

    kept: list = []

    async def prove_chunks(self, chunks):
        if not self.cheating():
            return await super().prove_chunks(chunks)
        if not self.kept:
            self.kept = await super().prove_chunks(chunks)
            for shard in self.own_shards():
                self.shards.store.path(shard).unlink(missing_ok=True)
        return [self.kept[i % len(self.kept)] if self.kept else None for i in range(len(chunks))]


class Refuser(ShardCheater):
    """Stores and proves its shards, but answers retrievals with 500s (or stalls half of them)."""

    turns = 0

    async def refuse(self, request: web.Request) -> web.StreamResponse:
        if not self.cheating():
            return await self._honest_get(request)
        self.turns += 1
        if self.turns % 2:
            await asyncio.sleep(40)  # past the gateway's idle timeout
        return web.json_response({"error": "internal", "message": "not today"}, status=500)


class ExtraLister(ShardCheater):
    """Lists, next to its real shards, the certificates in ``extra-certs`` (hex, one a line) and
    answers their chunks from junk it regenerates: certificates that expired, were forged, or were
    signed by a hotkey without a validator permit. The test makes them; they must count for nothing."""

    def extra(self) -> list[Certificate]:
        path = self.layout.root / EXTRA_FILE
        if not self.cheating() or not path.exists():
            return []
        return [Certificate.from_hex(line) for line in path.read_text().split()]

    def current_listing(self):  # built afresh each time: what it lists changes when it starts cheating
        return Listing.from_plots(self.listed_plots(), self.listed_certificates())

    def listed_certificates(self) -> list[Certificate]:
        return super().listed_certificates() + self.extra()

    async def prove_chunks(self, chunks):
        ids = await asyncio.to_thread(junk_ids) if self.cheating() else {}
        honest = iter(await super().prove_chunks([c for c in chunks if c.shard not in ids]))
        out = []
        for c in chunks:
            if c.shard in ids:
                i = ids[c.shard]
                out.append(junk(i)[c.index * CHUNK_BYTES:(c.index + 1) * CHUNK_BYTES] + b"".join(junk_tree(i).path(c.index)))
            else:
                out.append(next(honest))
        return out


def junk_certificate(signer, miner_hotkey: str, i: int, expiry: int) -> Certificate:
    return issue(signer, hotkey_public_key(miner_hotkey), junk_tree(i).id, JUNK_BYTES, expiry)


class Moody(ShardCheater):
    """Honest, except while ``mood`` in its db root says how to refuse every window and re-check
    the way a version rollout (426) or a validator's clock skew (401 stale) would."""

    MOODS = {"426": (426, "protocol", "validator speaks another protocol: upgrade the older side"),
             "stale": (401, "stale", "the request is too old or from the future: check the clock (NTP)")}

    def mood(self):
        path = self.layout.root / MOOD_FILE
        return self.MOODS.get(path.read_text().strip()) if path.exists() else None

    async def moody(self, request: web.Request, honest) -> web.StreamResponse:
        mood = self.mood()
        if mood is None:
            return await honest(request)
        status, code, message = mood
        return web.json_response({"error": code, "message": message}, status=status)


STRATEGIES = {"deleter": Deleter, "ninety": Ninety, "wrong_shard": WrongShard, "chunk_replayer": ChunkReplayer,
              "refuser": Refuser, "expired": ExtraLister, "forged": ExtraLister, "no_permit": ExtraLister,
              "colluder": ExtraLister, "moody": Moody}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.shard_adversaries")
    p.add_argument("strategy", choices=sorted(STRATEGIES))
    add_common_flags(p)
    add_axon_flags(p)
    args = p.parse_args(argv)
    settings = settings_from_namespace({k: v for k, v in vars(args).items() if k != "strategy"})
    cls = STRATEGIES[args.strategy]

    def factory(role, settings, bus, source=None):
        node = build_node("miner", settings, bus, source=args.strategy)
        node.__class__ = cls  # same state, cheating methods
        if cls is Refuser:  # the shard routes are registered from the shard service at start
            node._honest_get = node.shards.handle_get
            refuse = node.refuse
            refuse.__func__.__tensorage_access__ = VALIDATOR  # type: ignore[attr-defined]
            refuse.__func__.__tensorage_streamed__ = False  # type: ignore[attr-defined]
            node.shards.handle_get = refuse
        if cls is Moody:  # windows and re-checks answered in its mood
            for owner, name in ((node, "handle_challenge"), (node.shards, "handle_check")):
                honest = getattr(owner, name)

                async def handler(request, honest=honest):
                    return await node.moody(request, honest)

                handler.__tensorage_access__ = VALIDATOR  # type: ignore[attr-defined]
                handler.__tensorage_streamed__ = False  # type: ignore[attr-defined]
                setattr(owner, name, handler)
        return node

    return run_main("miner", settings, events_jsonl=False, node_factory=factory)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
