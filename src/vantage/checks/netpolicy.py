"""Which target addresses a check may connect to, and the options that carry that policy.

Checkpoints exist to watch internal networks, so loopback and RFC 1918 space are allowed; what is
blocked by default are the addresses a hostile or mistaken monitor could use to reach the host's
own control surfaces: link-local space (which holds the cloud metadata services), the few cloud
metadata / wire-server addresses outside it, "this network" and multicast. An operator can
re-allow any part of it with ``allow_networks``; an allow entry always wins over a block entry.

The checks resolve a name once, vet every address with :func:`vet_addresses` and then connect to
the vetted address itself, so a second resolution can never swap in another address (DNS
rebinding).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from vantage import __version__
from vantage.checks.credentials import CredentialStore

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_BLOCKED_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),  # IPv4 link-local, incl. 169.254.169.254 metadata
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
    ipaddress.ip_network("168.63.129.16/32"),  # Azure wire server
    ipaddress.ip_network("0.0.0.0/8"),  # "this network"
    ipaddress.ip_network("224.0.0.0/4"),  # IPv4 multicast
    ipaddress.ip_network("ff00::/8"),  # IPv6 multicast
)

ALLOW_HINT = "the checkpoint's allow_networks setting"
#: Addresses whose verdict :class:`CheckOptions` remembers at most.
MAX_VERDICTS = 4096

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class CheckOptions:
    """Site-wide settings of the agent that every check run honours.

    ``credentials`` holds the checkpoint's named secrets (``VANTAGE_CREDENTIALS_FILE``); checks
    that log in look up their spec's ``credential`` there, and :func:`run_check` redacts every
    secret from the result.
    """

    allow_networks: tuple[IPNetwork, ...] = ()
    blocked_networks: tuple[IPNetwork, ...] = DEFAULT_BLOCKED_NETWORKS
    ca_bundle: str | None = None
    user_agent: str = f"vantage-checkpoint/{__version__}"
    credentials: CredentialStore = field(default_factory=CredentialStore.empty)
    #: :func:`blocked_by`'s verdicts so far (the policy never changes; a monitor's address is
    #: vetted on every run)
    _verdicts: dict[IPAddress, IPNetwork | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )


class BlockedAddressError(Exception):
    """A target address is in a blocked network and not explicitly allowed."""

    def __init__(self, address: IPAddress, network: IPNetwork) -> None:
        super().__init__(
            f"target address {address} is in blocked range {network}; allow it explicitly with {ALLOW_HINT}"
        )
        self.address = address
        self.network = network


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse CIDR strings (``10.0.0.0/8``, ``fd00::/8``, a bare address) into networks.

    Raises ``ValueError`` naming the bad entry; host bits set are an error, not silently masked.
    """
    out: list[IPNetwork] = []
    for value in values:
        text = value.strip()
        if not text:
            continue
        try:
            out.append(ipaddress.ip_network(text, strict=True))
        except ValueError as exc:
            raise ValueError(f"invalid network {text!r}: {exc}") from None
    return tuple(out)


def _forms(address: IPAddress) -> list[IPAddress]:
    """The address plus any IPv4 address it embeds (IPv4-mapped, NAT64), all of which are vetted."""
    forms: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
            forms = [address]
        if address.ipv4_mapped is not None:
            forms.append(address.ipv4_mapped)
        elif address in _NAT64:
            forms.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return forms


def blocked_by(address: IPAddress, options: CheckOptions) -> IPNetwork | None:
    """The blocked network ``address`` falls in, or ``None`` when it may be contacted."""
    verdicts = options._verdicts
    try:
        return verdicts[address]
    except KeyError:
        pass
    if len(verdicts) >= MAX_VERDICTS:
        verdicts.clear()
    verdicts[address] = network = _blocked_by(address, options)
    return network


def _blocked_by(address: IPAddress, options: CheckOptions) -> IPNetwork | None:
    for form in _forms(address):
        if any(form.version == net.version and form in net for net in options.allow_networks):
            return None
    for form in _forms(address):
        for net in options.blocked_networks:
            if form.version == net.version and form in net:
                return net
    return None


def vet_addresses(addresses: Iterable[IPAddress], options: CheckOptions) -> None:
    """Raise :class:`BlockedAddressError` if any of ``addresses`` is blocked.

    A name that resolves to a mix of allowed and blocked addresses is refused as a whole: a
    partly hostile answer is not something to connect to.
    """
    for address in addresses:
        network = blocked_by(address, options)
        if network is not None:
            raise BlockedAddressError(address, network)
