from collections.abc import Iterator

import pytest

from tests.gateway.servers import EchoServer, Gateway, echo_services, running_gateway


@pytest.fixture(scope="session")
def services() -> Iterator[dict[str, EchoServer]]:
    """Four stand-ins for the services, each answering with its own name."""
    with echo_services() as servers:
        yield servers


@pytest.fixture(scope="session")
def gateway(services: dict[str, EchoServer]) -> Iterator[Gateway]:
    """The gateway exactly as rendered from the template, in front of the stand-ins."""
    with running_gateway({name: server.address for name, server in services.items()}) as running:
        yield running
