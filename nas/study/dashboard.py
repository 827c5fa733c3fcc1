"""optuna-dashboard on a study's storage, bound to loopback unless exposure is asked for."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna_dashboard

from nas.errors import UserError
from nas.study.locate import StudyRef
from nas.study.storage import mask_url, open_existing, shared_cache


class ThreadedServer(ThreadingMixIn, WSGIServer):
    """One thread per request (the dashboard's page polls while plots load)."""

    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    """No access log on stderr for every poll of the page."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, expose: bool) -> None:
    """Refuses a non-loopback address unless the user said --expose."""
    if not is_loopback(host) and not expose:
        raise UserError(f"--host {host}: not a loopback address; the dashboard has no "
                        f"authentication and can delete studies, so add --expose to serve it "
                        f"there anyway")


def study_url(host: str, port: int, study_id: int | None = None) -> str:
    """http://host:port/dashboard[/studies/ID] (IPv6 addresses bracketed)."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    tail = f"/studies/{study_id}" if study_id is not None else ""
    return f"http://{shown}:{port}/dashboard{tail}"


def bind(ref: StudyRef, host: str, port: int) -> tuple[WSGIServer, int]:
    """The dashboard app on a bound socket, and the study's id in the storage."""
    storage = open_existing(ref.url)
    study_id = storage.get_study_id_from_name(ref.name)
    # through nas's cache: the first read of a study is one bulk read, later ones only what
    # changed (given the bare storage, the dashboard reads every trial on each refresh)
    app = optuna_dashboard.wsgi(shared_cache(storage))
    try:
        server = make_server(host, port, app, server_class=ThreadedServer,
                             handler_class=QuietHandler)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return server, study_id


def serve(ref: StudyRef, host: str, port: int, expose: bool,
          announce: Callable[[str, str], None]) -> None:
    """Bind, announce (url, masked storage), then serve until interrupted."""
    check_host(host, expose)
    server, study_id = bind(ref, host, port)
    announce(study_url(host, server.server_port, study_id), mask_url(ref.url))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


__all__ = ["check_host", "is_loopback", "serve", "study_url"]
