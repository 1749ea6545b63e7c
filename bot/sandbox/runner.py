"""Run the sandbox: `SandboxServer` in a background thread for tests, demo and benchmarks, and `main`
in the foreground for `fortnox-bot sandbox`.
"""
from __future__ import annotations

import socket
import threading
import time

import uvicorn

from bot.sandbox.app import create_app
from bot.sandbox.world import World


def _config(app) -> uvicorn.Config:
    # quiet and lean: benchmarks send thousands of concurrent requests through one loop
    return uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off",
        backlog=4096, timeout_keep_alive=30, timeout_graceful_shutdown=1,
    )


class SandboxServer:
    """uvicorn on a background thread. Port 0 picks a free port; `url` is known once started."""

    def __init__(self, world: World | None = None, host: str = "127.0.0.1", port: int = 0):
        self._app = create_app(world if world is not None else World())
        self.host, self.port = host, port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def world(self) -> World:
        return self._app.state.world

    @world.setter
    def world(self, world: World) -> None:
        # swap the whole world under a running server (a test suite can share one server)
        self._app.state.world = world

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def auth_url(self) -> str:
        return self.url + "/oauth-v1"

    @property
    def api_url(self) -> str:
        return self.url + "/3"

    def start(self) -> "SandboxServer":
        if self._thread is not None:
            return self
        # bind here, not in uvicorn, so the real port is known before the thread starts
        # proto must say TCP: asyncio only sets TCP_NODELAY on such sockets (else ~40 ms per response)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(_config(self._app))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"fortnox-sandbox:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sandbox did not start on {self.url}")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> "SandboxServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def demo_world() -> World:
    """Three companies for people trying the sandbox by hand (see `main` for what to do with them)."""
    world = World()
    world.add_company(1234567, "Demo AB")
    world.add_user(1234567, 1, "Anna Andersson", "anna@demo.example", sysadmin=True)
    world.add_user(1234567, 2, "Bo Bokförare", "bo@demo.example", sysadmin=False,
                   rights={"bookkeeping", "supplier", "supplierinvoice"})
    world.add_company(2345678, "Liten Handel AB", licences={"kundfaktura", "bokforing"})
    world.add_user(2345678, 1, "Cecilia Carlsson", "cecilia@liten.example", sysadmin=True)
    world.add_company(3456789, "Låst Bygg AB", locked=True)
    world.add_user(3456789, 1, "David Dahl", "david@lastbygg.example", sysadmin=True)
    return world


def main(host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run the sandbox in the foreground until Ctrl-C."""
    world = demo_world()
    base = f"http://{host}:{port}"
    print(f"""Fortnox sandbox on {base}

Point the bot at it:
  FORTNOX_AUTH_URL={base}/oauth-v1
  FORTNOX_API_URL={base}/3
  FORTNOX_CLIENT_ID={world.client_id}
  FORTNOX_CLIENT_SECRET={world.client_secret}

Companies (tenant id: name, users):
  1234567: Demo AB, every licence; user 1 Anna (system administrator), user 2 Bo (bookkeeping rights only)
  2345678: Liten Handel AB, licences kundfaktura + bokforing; user 1 Cecilia (system administrator)
  3456789: Låst Bygg AB, locked: consent returns to the integration with no code

Consent: open a link the bot prints (`fortnox-bot connect TENANT`) and log in with tenant id + user id.
Mint tokens without a browser:
  curl -s -X POST {base}/_sandbox/grants -H 'Content-Type: application/json' \\
       -d '{{"tenant_id": 1234567, "user_id": 1, "scopes": ["companyinformation", "invoice"]}}'
Break things: POST {base}/_sandbox/config {{"outage": "html503"}} ; /_sandbox/advance {{"seconds": 3600}} ;
  /_sandbox/remove_integration {{"tenant_id": 1234567}} ; GET {base}/_sandbox/stats
""", flush=True)
    uvicorn.run(create_app(world), host=host, port=port, log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
