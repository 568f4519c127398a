"""The validator's client gateway: HTTP for clients, placement, retrieval, repair, certificates
(docs/design.md#client-data). :class:`Gateway` composes them."""

from .service import Gateway

__all__ = ["Gateway"]
