"""A repair interrupted by a restart (storage/gateway_db.py doom_unfinished_repairs, called when the
gateway starts): the replacement shards it was still placing go to the GC, and nothing else moves.
The shards they were to replace stay sources, so the object is as retrievable as before the restart."""

from __future__ import annotations

import itertools

from tensorage.chain.port import Metagraph
from tensorage.storage.gateway_db import GatewayStore

from .shard_world import World, add_validator, make_gateway

OBJECT_STATES = ("stored", "damaged", "storing", "failed", "deleting", "declared")
SHARD_STATES = ("placing", "placed", "healthy", "suspect", "lost", "doomed")
REASON = "repair interrupted by a restart"


def fill(db: GatewayStore) -> dict[tuple[str, str], int]:
    """One object per state, one shard per state in each: (object state, shard state) -> row id."""
    rows = {}
    counter = itertools.count()
    for o in OBJECT_STATES:
        oid = f"{o:x<32}"[:32]
        db.declare(id=oid, client="client", size=1000, k=2, n=6, block=4096, per_segment=1, segments=1)
        db.set_state(oid, o)
        for s in SHARD_STATES:
            i = next(counter)
            row = db.add_shard(object_id=oid, segment=0, idx=i % 6, hash=f"{i:064x}", wrap=f"{i:032x}",
                               miner=f"miner-{i % 3}", size=500)
            db.update_shard(row, state=s, reason=f"was {s}")
            rows[(o, s)] = row
    return rows


def states(db: GatewayStore, rows: dict) -> dict:
    return {key: (db.shard(row).state, db.shard(row).reason) for key, row in rows.items()}


def test_only_the_placing_and_placed_shards_of_live_objects_are_doomed(tmp_path):
    db = GatewayStore(tmp_path / "gateway.sqlite")
    try:
        rows = fill(db)
        before = states(db, rows)
        health = db.health([f"{o:x<32}"[:32] for o in ("stored", "damaged")])
        assert db.doom_unfinished_repairs() == 4  # stored and damaged objects, placing and placed shards
        after = states(db, rows)
        for (o, s), was in before.items():
            if o in ("stored", "damaged") and s in ("placing", "placed"):
                assert after[(o, s)] == ("doomed", REASON), (o, s)
            else:
                assert after[(o, s)] == was, (o, s)  # an object still storing is the upload's own business
        assert db.health(list(health)) == health  # the shards they were to replace still count
        assert db.doom_unfinished_repairs() == 0  # a second start finds nothing more
        assert {r.id for r in db.doomed()} == {row for (o, s), row in rows.items()
                                               if s == "doomed" or (o in ("stored", "damaged")
                                                                    and s in ("placing", "placed"))}
    finally:
        db.close()


async def test_a_gateway_restart_dooms_the_repair_it_interrupted(tmp_path):
    world = World(root=tmp_path, mg=Metagraph(netuid=7, block=100, neurons=[]))
    add_validator(world, "gw", 0, 1000.0)
    gw = make_gateway(world, "gw")  # first start: an empty manifest
    path = gw.db.path
    gw.db.close()
    db = GatewayStore(path)
    rows = fill(db)  # what the process left when it was killed mid-repair (and mid-upload)
    db.close()
    try:
        gw = make_gateway(world, "gw")  # the restart
        after = states(gw.db, rows)
        assert after[("stored", "placed")] == after[("stored", "placing")] == ("doomed", REASON)
        assert after[("stored", "healthy")] == ("healthy", "was healthy")
        assert after[("stored", "suspect")] == ("suspect", "was suspect")  # still a source until replaced
        storing = f"{'storing':x<32}"[:32]
        assert gw.db.get(storing).state == "failed"  # the interrupted upload: its own rule
        assert all(gw.db.shard(rows[("storing", s)]).state == "doomed" for s in SHARD_STATES)
        gw.db.close()
    finally:
        await world.close()
