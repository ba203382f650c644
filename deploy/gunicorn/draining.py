"""The API processes' gunicorn worker: uvicorn's, but it drains the connections it keeps
alive when told to stop, instead of cutting them.

When a uvicorn worker stops (a deploy's reload, a scale-down, SIGTERM), it finishes the
requests it holds and closes every idle keep-alive connection at once. The gateway keeps a
pool of such connections and may be sending a request on one at that very moment: the
request meets a closed connection, and nginx does not retry a POST (someone's submit
answered 502 during a reload). This worker instead leaves an idle connection open, answers
the next request that arrives on it with `Connection: close`, and closes it only after
DRAIN_S — longer than the gateway's upstream keepalive_timeout, so nginx has always closed
its idle connections to a stopping worker itself before then, and nothing races.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.workers import UvicornWorker

# Above the gateway's `keepalive_timeout 10s` (deploy/nginx/hoithi.conf.template), below
# gunicorn's graceful_timeout (20 s, deploy/gunicorn/common.py), after which it kills.
DRAIN_S = 15.0


class DrainingHttpToolsProtocol(HttpToolsProtocol):
    drain_s = DRAIN_S
    _draining = False

    def shutdown(self) -> None:
        if self.cycle is None or self.cycle.response_complete:
            # Idle: whatever arrives next is answered, then the connection closes.
            self._draining = True
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(self.drain_s, self.timeout_keep_alive_handler)
        else:
            self.cycle.keep_alive = False

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False


class DrainingUvicornWorker(UvicornWorker):
    # A plain dict, as uvicorn declares it (a ClassVar would not type-check against it).
    CONFIG_KWARGS: dict[str, Any] = {"loop": "auto", "http": DrainingHttpToolsProtocol}  # noqa: RUF012
