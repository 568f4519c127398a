"""Shard certificates: a gateway's signed word that a miner holds a shard (protocol 3).

At placement the gateway signs, with its hotkey, ``CERT_DOMAIN | shard id | size | miner key |
gateway key | expiry block | served bytes``. The shard id is the Merkle id of the wrapped bytes
(:mod:`tensorage.proofs.merkle`), so every validator can check a window's chunks against it
without the data or the gateway's database. The miner lists its certificates next to its plots;
a certificate binds the miner's key, so it cannot be borrowed, and it expires, so a gateway that
stops renewing (the object was removed, or the gateway left) stops paying for it.

``served`` is the gateway's receipt for serving: the bytes of this shard the miner delivered to
retrievals in the certificate's period, at most the shard's size (docs/proofs.md: serving pays).

A listing entry omits the miner key (it is the listing's owner): 152 bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

from .merkle import MAX_SHARD_BYTES

CERT_DOMAIN = b"tensorage/cert/v1"
KEY_BYTES = 32
SIGNATURE_BYTES = 64
SS58_FORMAT = 42
_BODY = struct.Struct(">32sQ32sQQ")          # shard, size, gateway key, expiry, served
ENTRY_BYTES = _BODY.size + SIGNATURE_BYTES  # 152


class CertificateError(ValueError):
    """A certificate that is malformed, forged, or for another miner or shard."""


@dataclass(frozen=True)
class Certificate:
    shard: bytes        # the shard's Merkle id
    size: int
    gateway: bytes      # the signing gateway's public key
    expiry: int         # last block at which it counts
    served: int         # bytes served to retrievals in its period (<= size)
    signature: bytes

    @property
    def shard_hex(self) -> str:
        return self.shard.hex()

    @property
    def gateway_hotkey(self) -> str:
        return ss58_of(self.gateway)

    def entry(self) -> bytes:
        """Its bytes in a listing (the miner's key is implied)."""
        return _BODY.pack(self.shard, self.size, self.gateway, self.expiry, self.served) + self.signature

    def message(self, miner_key: bytes) -> bytes:
        return signed_message(miner_key, self.shard, self.size, self.gateway, self.expiry, self.served)

    def valid_for(self, miner_key: bytes) -> bool:
        """The gateway's signature over this certificate for that miner (sr25519)."""
        return _verify(self.entry(), miner_key)

    def counts_at(self, block: int) -> bool:
        return block <= self.expiry

    @classmethod
    def from_entry(cls, entry: bytes) -> "Certificate":
        if len(entry) != ENTRY_BYTES:
            raise CertificateError(f"a certificate is {ENTRY_BYTES} bytes, not {len(entry)}")
        shard, size, gateway, expiry, served = _BODY.unpack_from(entry)
        cert = cls(shard=shard, size=size, gateway=gateway, expiry=expiry, served=served,
                   signature=bytes(entry[_BODY.size:]))
        if not 0 < size <= MAX_SHARD_BYTES:
            raise CertificateError(f"certificate for shard {shard.hex()[:16]}… claims {size} bytes (1..{MAX_SHARD_BYTES})")
        if served > size:
            raise CertificateError(f"certificate for shard {shard.hex()[:16]}… says {served} bytes served, more than "
                                   f"its {size}")
        return cert

    @classmethod
    def from_hex(cls, text: str) -> "Certificate":
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise CertificateError("a certificate is hex") from None
        return cls.from_entry(raw)


def signed_message(miner_key: bytes, shard: bytes, size: int, gateway: bytes, expiry: int, served: int) -> bytes:
    return CERT_DOMAIN + struct.pack(">32sQ32s32sQQ", shard, size, miner_key, gateway, expiry, served)


def issue(signer, miner_key: bytes, shard: bytes, size: int, expiry: int, served: int = 0) -> Certificate:
    """Sign a certificate with a gateway's hotkey signer (``bittensor.resolve_signer``; sr25519)."""
    from .plots import hotkey_public_key

    gateway = hotkey_public_key(signer.ss58_address)
    served = min(served, size)
    signature = bytes(signer.sign(signed_message(miner_key, shard, size, gateway, expiry, served)))
    return Certificate(shard=shard, size=size, gateway=gateway, expiry=expiry, served=served, signature=signature)


@lru_cache(maxsize=1 << 16)
def ss58_of(key: bytes) -> str:
    from bittensor.sp_core import ss58_encode

    return ss58_encode(key, SS58_FORMAT)


@lru_cache(maxsize=1 << 16)
def _verify(entry: bytes, miner_key: bytes) -> bool:
    """Cached by the entry's bytes: a listing re-fetched after a change re-checks only new ones."""
    from bittensor.sp_core import CRYPTO_SR25519, verify_signature

    cert = Certificate.from_entry(entry)
    try:
        return bool(verify_signature(cert.message(miner_key), cert.signature, ss58_of(cert.gateway), CRYPTO_SR25519))
    except (ValueError, TypeError):
        return False
