"""What the gateway vouches for, and only the gateway.

nginx stamps every request it forwards with the moment it arrived (`X-Request-Start`)
and the address it came from (`X-Real-IP`). Deadlines and the duration tie-break are
judged on the first, login and sign-up throttles count by the second. Anyone who reaches
a service port without the gateway could send the same headers, so a service believes
them only on a request that also carries the gateway key (`X-Gateway-Key`), a secret the
gateway and the services share; without it a request is judged on the service's own
clock and the TCP peer's address.

Why a shared key rather than a signed stamp or a list of trusted proxy addresses: stock
nginx cannot compute a per-request HMAC, and on one machine (`make run`) or in a pod
network every caller has the same kind of address as the gateway. The key travels only
between the gateway and the services, on the private network the Kubernetes
NetworkPolicies (deploy/k8s/network-policies.yaml) keep to those two.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

KEY_HEADER = "x-gateway-key"
# docker-compose.yml's default, so that `docker compose up` works without a .env; an
# API refuses to start with it (or with none) when APP_ENV=production.
DEVELOPMENT_KEY = "development-gateway-key"


class GatewayKeyMissing(RuntimeError):
    """Production without a real gateway key: deadlines would be judged on each
    service's clock and every participant would share one throttle address."""


@dataclass(frozen=True, slots=True)
class Gateway:
    """The gateway's key, if this deployment has one."""

    key: bytes | None

    @classmethod
    def from_key(cls, key: str | None) -> Gateway:
        return cls(key.strip().encode() if key and key.strip() else None)

    def vouches_for(self, headers: Mapping[str, str]) -> bool:
        if self.key is None:
            return False
        offered = headers.get(KEY_HEADER)
        return offered is not None and hmac.compare_digest(offered.encode("utf-8", "replace"), self.key)

    def arrival(self, headers: Mapping[str, str], now: datetime) -> datetime:
        """When the request reached the gateway (`X-Request-Start: t=<epoch seconds>`),
        so that time spent queueing inside never costs a participant; `now` when the
        gateway did not vouch for the stamp or it cannot be read."""
        stamp = headers.get("x-request-start")
        if not stamp or not self.vouches_for(headers):
            return now
        try:
            return datetime.fromtimestamp(float(stamp.removeprefix("t=")), UTC)
        except (ValueError, OverflowError, OSError):
            return now

    def client_address(self, headers: Mapping[str, str], peer: str | None) -> str | None:
        """The client's IP address: the gateway's `X-Real-IP` when it vouches for it,
        else the TCP peer. None when neither is an address."""
        candidates = (headers.get("x-real-ip"), peer) if self.vouches_for(headers) else (peer,)
        for candidate in candidates:
            if candidate is None:
                continue
            try:
                return str(ipaddress.ip_address(candidate.strip()))
            except ValueError:
                continue
        return None

    def require_for_production(self) -> None:
        if self.key is None or self.key == DEVELOPMENT_KEY.encode():
            raise GatewayKeyMissing(
                "APP_ENV=production needs GATEWAY_KEY (or GATEWAY_KEY_FILE) set to the gateway's own secret"
            )


def read_key(value: str | None, file: Path) -> str | None:
    """The key from the environment, else from its file (written by `keygen`)."""
    if value and value.strip():
        return value.strip()
    try:
        return file.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def generate_gateway_key(folder: Path) -> Path:
    """Write `gateway.key` (0600) unless it exists."""
    path = folder / "gateway.key"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32) + "\n", encoding="ascii")
    return path
