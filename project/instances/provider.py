"""A simulated cloud provider, so the example runs offline.

It behaves like a real API in the ways that matter to a job: creating a server takes an
idempotency token (as AWS's ClientToken does), booting takes time, and bad input is
refused with an error.
"""

import ipaddress
import re
import time

from django.apps import apps
from django.conf import settings
from django.utils import timezone

HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
ADDRESS_POOL = ipaddress.IPv4Address("100.64.0.0")


class ProviderError(Exception):
    """The provider refused a request."""


def _servers():
    return apps.get_model("instances", "ProviderServer").objects


def create_server(name: str, *, client_token: str) -> str:
    """Create a server (or return the one this token already created); returns its id."""
    if not HOSTNAME.match(name):
        raise ProviderError(
            f"invalid server name {name!r}: use lowercase letters, digits and hyphens"
        )
    server, _ = _servers().get_or_create(client_token=client_token, defaults={"name": name})
    return server.provider_id


def wait_until_ready(provider_id: str) -> None:
    """Block until the server has booted (PROVIDER_BOOT_SECONDS after it was created)."""
    server = _servers().get(pk=_pk(provider_id))
    ready_at = server.created_at.timestamp() + settings.PROVIDER_BOOT_SECONDS
    time.sleep(max(0.0, ready_at - timezone.now().timestamp()))


def attach_ip(provider_id: str) -> str:
    """Attach a public address; asking again returns the same one."""
    server = _servers().get(pk=_pk(provider_id))
    if not server.ip_address:
        server.ip_address = str(ADDRESS_POOL + server.pk)
        server.save(update_fields=["ip_address"])
    return server.ip_address


def answers_at(provider_id: str, ip_address: str) -> bool:
    """Whether the server has booted and answers at `ip_address`, as a ping would say."""
    server = _servers().filter(pk=_pk(provider_id)).first() if provider_id else None
    if server is None or server.ip_address != ip_address:
        return False
    return server.created_at.timestamp() + settings.PROVIDER_BOOT_SECONDS <= time.time()


def _pk(provider_id: str) -> int:
    return int(provider_id.removeprefix("srv-"))
