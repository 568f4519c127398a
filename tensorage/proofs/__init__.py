"""Proofs of space (Chia plots bound to a miner hotkey) and client-shard audits.

Every chiapos call lives in :mod:`tensorage.proofs.chia`, so the backend can change
with a protocol version without touching the engines.
"""
