"""tensorage: a storage subnet for Bittensor built on Chia proofs of space."""

__version__ = "0.1.0"

# Bumped whenever a message or proof rule changes shape; miners and validators
# of different protocol versions refuse each other with a clear message.
PROTOCOL_VERSION = 3  # 2: shared beacon windows, canonical listings and answers; 3: certified client shards in windows
