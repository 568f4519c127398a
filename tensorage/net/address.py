"""Where a node listens and which address it publishes on chain for validators to reach.

On the devnet (and a local subtensor) everything runs on this machine: bind 127.0.0.1 on any free
port and publish that. On a real network validators connect from the internet: bind every interface
on a fixed port (8091 unless --axon.port) and publish --axon.external_ip, else the bound address when
it is a public one, else this machine's own address when it is public. Behind NAT there is no way to
tell the public address from here (asking a third-party service would make a start depend on it), so
the node refuses to start and says which flag to pass instead of publishing an address nobody reaches.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Callable, Optional

from ..config import Settings
from ..errors import ConfigError

UNSPECIFIED = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class AxonPlan:
    bind_ip: str
    bind_port: int  # 0: any free port
    publish_ip: str
    publish_port: Optional[int]  # None: the port actually bound

    def published(self, bound_port: int) -> tuple[str, int]:
        return self.publish_ip, self.publish_port or bound_port

    def local_endpoint(self, bound_port: int) -> str:
        """How a process on this machine (an attached console) reaches the node."""
        host = "127.0.0.1" if self.bind_ip in UNSPECIFIED else self.bind_ip
        return f"[{host}]:{bound_port}" if ":" in host else f"{host}:{bound_port}"


def route_address() -> Optional[str]:
    """The address this machine's default route leaves from (a UDP connect sends no packet)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never contacted, only routed
            return s.getsockname()[0]
    except OSError:
        return None


def _ip(text: str, flag: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        raise ConfigError(f"{flag} {text!r} is not an IP address: give one like 203.0.113.7") from None


def plan_axon(settings: Settings, probe: Callable[[], Optional[str]] = route_address) -> AxonPlan:
    """The bind and publish addresses for ``settings``; raises ConfigError before anything starts."""
    bind_ip, bind_port = settings.bind_ip, settings.bind_port
    if bind_ip not in UNSPECIFIED:
        _ip(bind_ip, "--axon.ip")
    external = settings.axon.external_ip
    port = settings.axon.external_port
    if settings.is_local_network:
        publish = external or ("127.0.0.1" if bind_ip in UNSPECIFIED else bind_ip)
        return AxonPlan(bind_ip, bind_port, publish, port)
    if external:
        ip = _ip(external, "--axon.external_ip")
        if ip.is_unspecified or ip.is_loopback:
            raise ConfigError(f"--axon.external_ip {external} cannot be reached by validators on "
                              f"{settings.network}: give this machine's public address")
        return AxonPlan(bind_ip, bind_port, external, port)
    if bind_ip not in UNSPECIFIED:
        if _ip(bind_ip, "--axon.ip").is_global:
            return AxonPlan(bind_ip, bind_port, bind_ip, port)
        seen = bind_ip
    else:
        seen = probe()
        if seen and _ip(seen, "address").is_global:
            return AxonPlan(bind_ip, bind_port, seen, port)
    found = f"this machine's address is {seen}, not a public one" if seen else "this machine has no route out"
    raise ConfigError(
        f"cannot tell which address validators on {settings.network} can reach this node at ({found}): "
        f"pass --axon.external_ip <public IP> (and --axon.external_port if the router forwards another port "
        f"to --axon.port {bind_port or 'N'})")
