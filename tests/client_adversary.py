"""A miner that is also a client (docs/design.md#client-data), run as a real process:

    python -m tests.client_adversary <tensorage miner flags>

It stores, through its own client wallet, data it can regenerate from a seed; then it deletes
the shards it holds (keeping their Merkle trees) and answers window chunks and the gateway's
re-checks by regenerating them: it knows the seed, the client key, the salt and the code, and
the test even tells it which object, segment and erasure index each of its shards is
(``regen.json`` in its db root). What it cannot know is the gateway's wrap keystream, so every
chunk it regenerates fails the certified root.

Until ``regen.json`` exists it is an honest miner. None of this lives in the product.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import tempfile
from pathlib import Path

from tensorage.client.pipeline import StoreSource
from tensorage.config import add_axon_flags, add_common_flags, settings_from_namespace
from tensorage.engines.miner import MinerEngine
from tensorage.engines.run import build_node, main as run_main
from tensorage.proofs.merkle import CHUNK_BYTES, ShardTree

REGEN_FILE = "regen.json"


def seeded_bytes(seed: bytes, size: int) -> bytes:
    return hashlib.shake_256(seed).digest(size) if size else b""


def regenerate_shard(seed: bytes, size: int, key: bytes, salt: bytes, k: int, n: int, per_segment: int,
                     segment: int, idx: int) -> bytes:
    """The unwrapped shard ``idx`` of ``segment``: all a client (and its miner) can compute."""
    with tempfile.NamedTemporaryFile() as f:
        f.write(seeded_bytes(seed, size))
        f.flush()
        source = StoreSource(Path(f.name), key, k, n, salt=salt)
        body = b"".join(source.batches())
    layout = source.layout
    first = segment * per_segment
    last = min(layout.stripes, first + per_segment)
    w, b = layout.stripe_wire, layout.block
    return b"".join(body[s * w + idx * b: s * w + (idx + 1) * b] for s in range(first, last))


class ClientMiner(MinerEngine):
    def _regen(self) -> dict[str, bytes]:
        path = self.layout.root / REGEN_FILE
        if not path.exists():
            return {}
        spec = json.loads(path.read_text())
        cache = getattr(self, "_regen_cache", None)
        if cache is None or cache[0] != spec:
            shards = {sid: regenerate_shard(bytes.fromhex(s["seed"]), s["size"], bytes.fromhex(s["key"]),
                                            bytes.fromhex(s["salt"]), s["k"], s["n"], s["per_segment"],
                                            s["segment"], s["idx"]) for sid, s in spec.items()}
            cache = self._regen_cache = (spec, shards)
        return cache[1]

    def _regen_proof(self, shard_id: str, index: int):
        data = self._regen()[shard_id]
        tree = ShardTree.decode(self.shards.store.tree_path(shard_id).read_bytes())  # the tree it kept
        return data[index * CHUNK_BYTES:(index + 1) * CHUNK_BYTES] + b"".join(tree.path(index))

    def listed_certificates(self):
        """It keeps listing the certificates of the shards it deleted."""
        mg = self.metagraph
        return self.shards.store.certificates(mg.block if mg is not None else 0, require_file=False)

    async def prove_chunks(self, chunks):
        regen = await asyncio.to_thread(self._regen)
        honest = await super().prove_chunks([c for c in chunks if c.shard.hex() not in regen])
        out, it = [], iter(honest)
        for c in chunks:
            out.append(await asyncio.to_thread(self._regen_proof, c.shard.hex(), c.index) if c.shard.hex() in regen
                       else next(it))
        return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.client_adversary")
    add_common_flags(p)
    add_axon_flags(p)
    settings = settings_from_namespace(vars(p.parse_args(argv)))

    def factory(role, settings, bus, source=None):
        node = build_node("miner", settings, bus, source="client-miner")
        node.__class__ = ClientMiner
        honest = node.shards.prove

        async def prove(validator, shard_id, indices, leaves=False):  # the shard routes ask the engine
            regen = await asyncio.to_thread(node._regen)
            if shard_id not in regen:
                return await honest(validator, shard_id, indices, leaves)
            return [await asyncio.to_thread(node._regen_proof, shard_id, i) for i in indices], None

        node.shards.prove = prove
        return node

    return run_main("miner", settings, events_jsonl=False, node_factory=factory)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
