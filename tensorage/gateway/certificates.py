"""The gateway's certificates: signed at placement, renewed while the object lives.

A certificate (proofs/certificates.py) is this gateway's signed word that a miner holds a
shard, until an expiry block; every validator checks window chunks against it and credits it
under this gateway's stake bound. The ``certify`` job renews the certificates of live objects'
shards before they run out (``cert_renew_blocks`` left), and re-issues one whose miner served
more of the shard to retrievals than its certificate says. Objects removed, and shards replaced,
are not renewed: their certificates expire and stop counting on their own.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..net.objects import MAX_CERTIFICATES
from ..proofs.certificates import Certificate, issue
from ..proofs.plots import hotkey_public_key

if TYPE_CHECKING:
    from .service import Gateway


def certificate(gw: "Gateway", miner: str, shard: str, size: int, served: int = 0) -> Certificate:
    """A new certificate for a shard on ``miner``, counting from now for ``cert_lifetime_blocks``."""
    return issue(gw.signer, hotkey_public_key(miner), bytes.fromhex(shard), size,
                 gw.head_block() + gw.profile.cert_lifetime_blocks, served)


async def renew(gw: "Gateway") -> str:
    head = gw.head_block()
    if head <= 0:
        return "no block known yet"
    due = gw.db.certify_due(head + gw.profile.cert_renew_blocks)
    if not due:
        return "no certificate due"
    by_miner: dict[str, list] = {}
    for row in due:
        by_miner.setdefault(row.miner, []).append(row)
    taken = refused = 0
    for miner, rows in by_miner.items():
        neuron = gw.peers.neuron(miner)
        if neuron is None:
            continue  # left the subnet: repair moves its shards
        for i in range(0, len(rows), MAX_CERTIFICATES):
            batch = rows[i:i + MAX_CERTIFICATES]
            new_period = [r.cert_expiry < head + gw.profile.cert_renew_blocks for r in batch]
            certs = await asyncio.to_thread(lambda: [certificate(gw, miner, r.hash, r.size, min(r.served, r.size))
                                                     for r in batch])
            reply = await gw.peers.certify(neuron, certs)
            if reply is None:
                refused += len(batch)
                continue
            unknown = set(reply.unknown)
            gw.db.certified([(r.id, c.expiry, c.served, fresh) for r, c, fresh in zip(batch, certs, new_period)
                             if r.hash not in unknown])
            for r in batch:
                if r.hash in unknown:
                    gw.suspect(r, "its miner says it does not hold it (certificate renewal)")
            taken += len(batch) - len(unknown)
    return f"{taken} certificates renewed" + (f", {refused} to retry" if refused else "")
