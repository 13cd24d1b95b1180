"""The HTTP server behind ``gankit serve``: the standard library's HTTPServer with a bounded pool.

* Connections are accepted by one thread and handed to a pool of ``workers`` threads. At most
  ``queue`` more wait for a free worker; a connection beyond that is answered at once with
  503 and ``Retry-After: 1`` — a burst cannot grow memory or threads without bound.
* Every response is closed after it is sent (HTTP/1.0), so an idle browser never holds a worker.
  A request (request line, headers and upload) must arrive whole within ``Handler.timeout`` seconds
  of a worker taking it — one deadline, not a timeout per read, so a client that sends a byte now
  and then cannot keep a worker; a stalled upload is a 408, a stalled request line or header is dropped.
* The 503 to a connection beyond the queue is written by the accepting thread without waiting for
  the client; up to ``REJECTERS`` short-lived threads then read what the client sends for at most
  ``REJECT_LINGER`` seconds before closing (so that the close does not reset the connection before
  the 503 is read). Beyond that many at once the connection is closed straight after the 503.
* Stopping (Ctrl-C) closes the listening socket, lets running requests finish for up to
  ``STOP_GRACE`` seconds, then cuts the connections still open (a stalled client, a browser's
  unused pre-connection) so the process ends at once instead of after ``Handler.timeout``.
* Routes are a fixed table: three files of the page and the JSON/PNG API. Nothing is read from
  the disk by request path, so there is no path to traverse.
* Bound to a loopback address (the default; judged from the address actually bound, so
  ``--host 127.1`` or ``localhost`` count), requests must name ``localhost`` or a loopback address
  (127.x.x.x, ::1) in their Host header: a web page elsewhere cannot reach the server by pointing
  its own domain name at 127.0.0.1 (DNS rebinding).
* A bad request is a 4xx with ``{"error": "one line"}``; an exception in a handler is a 500 with a
  one-line message (the traceback goes to the server's stderr, never to the client) and the
  server keeps serving.
"""
from __future__ import annotations

import errno
import io
import ipaddress
import json
import re
import signal
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import resources
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

from ..errors import GankitError, option
from .service import ModelService, run_name
from .validate import MAX_UPLOAD_BYTES, BadRequest, parse_query

STATIC = {  # URL path -> (file under gankit/serve/static, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
DRAIN_LIMIT = 4 * MAX_UPLOAD_BYTES   # an oversized upload up to this size is read and dropped, so the
                                     # client sees the 413 instead of a reset connection

REJECT_LINGER = 0.2                  # seconds a rejecting thread reads what the client sends before closing
REJECTERS = 8                        # such threads at once; the accepting thread itself never waits
_DIGITS = re.compile(r"[0-9]{1,18}")  # a Content-Length: ASCII digits (str.isdigit takes "²"), below an exabyte

Response = Tuple[int, str, bytes]    # status, content type, body


class _DeadlineReader(io.RawIOBase):
    """A connection's reads, all before one ``deadline`` (time.monotonic): each read waits at most the
    time left, then TimeoutError. A per-read timeout would let a client keep a worker by sending a
    byte every few seconds."""

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock, self.deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


class Handler(BaseHTTPRequestHandler):
    """One request: route, validate, answer; never lets an exception reach the client."""

    server: "GankitServer"
    protocol_version = "HTTP/1.0"
    default_request_version = "HTTP/1.0"   # answer even a malformed request with a status line and headers
    server_version = "gankit-serve"
    sys_version = ""
    timeout = 30                     # seconds for the whole request to arrive (and for each write of the answer)

    def setup(self) -> None:
        super().setup()
        self.rfile.close()           # the socket file the standard library made; reads go through the deadline
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, time.monotonic() + self.timeout))

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _not_allowed(self) -> None:
        allow = _allow(self.path.partition("?")[0])
        self._send_json(405, {"error": f"method {self.command} is not allowed here; use {allow.replace(', ', ' or ')}"},
                        {"Allow": allow})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

    # ---- routing --------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        path, _, query = self.path.partition("?")
        try:
            self._check_host()
            status, ctype, body = self._route(method, path, query)
            self._send(status, ctype, body, head=method == "HEAD")
        except BadRequest as e:
            self._send_json(e.status, {"error": _one_line(e)}, e.headers)
        except GankitError as e:
            self._send_json(400, {"error": _one_line(e)})
        except Exception as e:  # a bug or an environment failure: log it here, a one-line 500 there
            self.server.log(f"error serving {self.command} {self.path[:200]}:\n{traceback.format_exc()}")
            self._send_json(500, {"error": f"internal error ({type(e).__name__}) serving {path[:100]}; "
                                           "the server's log has the details"})
        finally:
            self.server.count()

    def _route(self, method: str, path: str, query: str) -> Response:
        svc = self.server.service
        if path in STATIC:
            if method not in ("GET", "HEAD"):
                raise BadRequest(f"{path} is read with GET", 405, {"Allow": _allow(path)})
            parse_query(query, {})
            return 200, STATIC[path][1], self.server.static[path]
        api: Dict[str, Tuple[str, Callable[[str], bytes]]] = {
            "/api/info": ("GET", lambda q: _info(svc, q)),
            "/api/sample": ("GET", lambda q: svc.sample(**_rename(parse_query(q, svc.sample_spec())))),
            "/api/walk": ("GET", lambda q: svc.walk(**_rename(parse_query(q, svc.walk_spec())))),
            "/api/mix": ("GET", lambda q: svc.mix(**_rename(parse_query(q, svc.mix_spec())))),
            "/api/translate": ("POST", lambda q: svc.translate(self._body(), **parse_query(q, svc.translate_spec()))),
        }
        if path not in api:
            raise BadRequest(f"no such page: {path[:100]}", 404)
        want, fn = api[path]
        if method != want and not (method == "HEAD" and want == "GET"):
            raise BadRequest(f"{path} takes {want}, not {method}", 405, {"Allow": _allow(path)})
        body = fn(query)
        return 200, "application/json" if path == "/api/info" else "image/png", body

    def _check_host(self) -> None:
        if not self.server.loopback:
            return
        host = (self.headers.get("Host") or "").strip().lower()
        name = host[1:host.index("]")] if host.startswith("[") and "]" in host else host.rsplit(":", 1)[0]
        if not _is_loopback(name):   # localhost or an address literal: never a name an attacker's DNS answers
            raise BadRequest(f"Host {host[:60]!r} is not this machine; open {self.server.url}", 421)

    def _body(self) -> bytes:
        """The request body, at most MAX_UPLOAD_BYTES (413 beyond; 411 without a Content-Length)."""
        if self.headers.get("Transfer-Encoding"):
            raise BadRequest("chunked uploads are not accepted: send a Content-Length", 411)
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise BadRequest("the upload has no Content-Length", 411)
        if not _DIGITS.fullmatch(raw.strip()):
            raise BadRequest(f"Content-Length {raw[:20]!r} is not a byte count")
        size = int(raw)
        try:
            if size > MAX_UPLOAD_BYTES:
                if size <= DRAIN_LIMIT:
                    _drain(self.rfile, size)
                raise BadRequest(f"upload of {size:,} bytes; the limit is {MAX_UPLOAD_BYTES:,} bytes", 413)
            data = self.rfile.read(size)
        except TimeoutError:
            raise BadRequest(f"the upload stalled: its {size:,} bytes did not all arrive within {self.timeout:g} s; "
                             "send it again", 408) from None
        except ConnectionError:
            raise BadRequest("the connection closed during the upload") from None
        if len(data) != size:
            raise BadRequest(f"the upload ended after {len(data):,} of {size:,} bytes")
        return data

    # ---- responses ------------------------------------------------------------------------
    def _send(self, status: int, ctype: str, body: bytes, extra: Optional[dict] = None, head: bool = False) -> None:
        try:
            self.connection.settimeout(self.timeout)   # the reads' deadline may have left it near 0
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Content-Security-Policy", CSP)
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            # The work is done: the worker's slot frees before the client can have the answer, so a
            # client that reads it (by Content-Length) and sends its next request at once finds room.
            self.server.release_slot()
            self.end_headers()
            if not head:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the client went away; nothing to tell it

    def _send_json(self, status: int, obj: dict, extra: Optional[dict] = None) -> None:
        self._send(status, "application/json", json.dumps(obj).encode(), extra, head=self.command == "HEAD")

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """The standard library's own refusals (malformed request line, 414 URI too long, too many
        headers) as one-line JSON like every other error."""
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self._send_json(code, {"error": message or phrase})

    def log_message(self, format: str, *args) -> None:
        if not self.server.quiet:
            self.server.log(f"{self.address_string()} {format % args}")


STOP_GRACE = 2.0   # seconds running requests get to finish when the server stops


class GankitServer(HTTPServer):
    """HTTPServer whose requests run on a pool of ``workers`` threads with at most ``queue``
    waiting; beyond that a connection gets 503 at once. ``service`` answers the API."""

    allow_reuse_address = True
    request_queue_size = 128  # the kernel's listen backlog, before connections reach the pool

    def __init__(self, address: Tuple[str, int], service: ModelService, workers: int = 4, queue: int = 32,
                 quiet: bool = False):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        # Everything server_close uses exists before binding: a failed bind calls server_close
        # from inside HTTPServer.__init__, and make_server turns the OSError into one line.
        self.service, self.workers, self.queue, self.quiet = service, workers, queue, quiet
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gankit-serve")
        self._lock = threading.Lock()
        self._pending = 0
        self._slot = threading.local()   # .held: this worker thread's request still counts in _pending
        self._open: set = set()          # connections a worker is handling now
        self._rejecters = threading.BoundedSemaphore(REJECTERS)
        self.served = self.rejected = 0
        self.static = {path: resources.files(__package__).joinpath("static", name).read_bytes()
                       for path, (name, _) in STATIC.items()}
        super().__init__(address, Handler)
        # judged from the address bound, not the --host text: "127.1" and "localhost" bind 127.0.0.1
        self.loopback = _is_loopback(self.server_address[0])

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def process_request(self, request, client_address) -> None:
        with self._lock:
            busy = self._pending >= self.workers + self.queue
            if not busy:
                self._pending += 1
        if busy:
            self._reject(request)
            return
        try:
            self.pool.submit(self._work, request, client_address)
        except RuntimeError:  # the pool is shutting down
            with self._lock:
                self._pending -= 1
            self.shutdown_request(request)

    def release_slot(self) -> None:
        """Free the calling worker's slot (once): when its answer is about to be sent, or at the latest
        when the connection ends."""
        if getattr(self._slot, "held", False):
            self._slot.held = False
            with self._lock:
                self._pending -= 1

    def _work(self, request, client_address) -> None:
        self._slot.held = True
        with self._lock:
            self._open.add(request)
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            # Before the socket closes: a client may read the close as the end of the answer and send
            # its next request at once, which must not meet a busy server.
            self.release_slot()
            with self._lock:
                self._open.discard(request)
            self.shutdown_request(request)

    def _reject(self, request) -> None:
        """503 to a connection beyond the queue. The accepting thread never waits on the client: a
        short-lived thread (at most REJECTERS at once) answers and lingers; beyond that the answer is
        written here without waiting and the connection closed."""
        with self._lock:
            self.rejected += 1
        if self._rejecters.acquire(blocking=False):
            try:
                threading.Thread(target=self._answer_busy, args=(request, REJECT_LINGER), daemon=True,
                                 name="gankit-serve-503").start()
                return
            except RuntimeError:  # no thread to be had
                self._rejecters.release()
        self._answer_busy(request, 0.0)

    def _answer_busy(self, request, linger: float) -> None:
        """Write the 503 without blocking (what the client already sent is read first), end our side,
        then read what the client sends for up to ``linger`` seconds, so that closing a socket with
        unread data does not reset the connection before the client has read the 503."""
        body = json.dumps({"error": f"busy: {self.workers} requests are being served and {self.queue} are "
                                    "waiting; retry in a moment"}).encode()
        try:
            request.setblocking(False)
            try:
                while request.recv(65536):
                    pass
            except OSError:  # nothing (more) has arrived
                pass
            request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            request.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + linger
            while (left := deadline - time.monotonic()) > 0:   # until the client closes, or linger ends
                request.settimeout(left)
                if not request.recv(65536):
                    break
        except OSError:
            pass
        finally:
            self.shutdown_request(request)
            if linger:
                self._rejecters.release()

    def handle_error(self, request, client_address) -> None:
        self.log(f"error with {client_address}:\n{traceback.format_exc()}")

    def count(self) -> None:
        with self._lock:
            self.served += 1

    def log(self, line: str) -> None:
        print(f"gankit serve: {line}", file=sys.stderr, flush=True)

    def server_close(self, grace: float | None = None) -> None:
        """Stop: no new connections, queued ones dropped, running ones given ``grace`` seconds
        (default ``STOP_GRACE``) to finish; then connections still open are cut, which ends their
        workers' reads at once, and the workers are joined."""
        super().server_close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + (STOP_GRACE if grace is None else grace)
        while time.monotonic() < deadline:
            with self._lock:
                if not self._open:
                    break
            time.sleep(0.02)
        with self._lock:
            stalled = list(self._open)
        for request in stalled:
            try:
                request.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.pool.shutdown(wait=True)


def make_server(service: ModelService, host: str = "127.0.0.1", port: int = 8000, workers: int = 4,
                queue: int = 32, quiet: bool = False) -> GankitServer:
    """A bound, not yet serving server (port 0: any free port; ``server.url`` says which).
    Run it with ``serve_forever()``; stop it with ``shutdown()`` then ``server_close()``."""
    _check_settings(port, workers, queue)
    try:
        return GankitServer((host, port), service, workers=workers, queue=queue, quiet=quiet)
    except OSError as e:
        if isinstance(e, socket.gaierror) or e.errno == errno.EADDRNOTAVAIL:   # the host, not the port
            raise GankitError(f"{option('--host', host)}: cannot listen there ({e.strerror or e}); give an address "
                              f"of this machine ({option('--host', '127.0.0.1')}, or "
                              f"{option('--host', '0.0.0.0')} for every one)") from None
        raise GankitError(f"{option('--host', host)} {option('--port', port)}: cannot listen there "
                          f"({e.strerror or e}); "
                          f"choose another port ({option('--port', 0)} picks a free one)") from None


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, workers: int = 4,
          which: str = "latest", queue: int = 32, quiet: bool = False) -> None:
    """Load the run's model once and serve its page until Ctrl-C (see ``docs/serve.md``)."""
    from ..api import load

    _check_settings(port, workers, queue)   # before the model is loaded
    model = load(run_dir, which=which)
    server = make_server(ModelService(model, run_name(run_dir)), host, port, workers, queue, quiet)
    print(f"gankit serve: {run_name(run_dir)} ({model.cfg.loss.objective}, step {model.step}) at {server.url}",
          flush=True)
    if not server.loopback:
        print(f"gankit serve: warning: listening on {server.server_address[0]}: other machines on the network "
              "can open this page",
              file=sys.stderr, flush=True)
    print("gankit serve: Ctrl-C stops it", flush=True)
    # SIGTERM (a service manager, `kill`) stops it as gracefully as Ctrl-C
    previous = (signal.signal(signal.SIGTERM, _interrupt)
                if threading.current_thread() is threading.main_thread() else None)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\ngankit serve: stopping", flush=True)
    finally:
        server.server_close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


UPLOAD_PATHS = {"/api/translate"}   # the one route that takes POST; every other route is GET (and HEAD)


def _allow(path: str) -> str:
    """A 405's Allow header for ``path`` (RFC 9110 §15.5.6); an unknown path: every method served."""
    if path in UPLOAD_PATHS:
        return "POST"
    return "GET, HEAD" if path in STATIC or path.startswith("/api/") else "GET, HEAD, POST"


def _info(service: ModelService, query: str) -> bytes:
    parse_query(query, {})  # takes no parameters
    return json.dumps(service.info()).encode()


def _check_settings(port: int, workers: int, queue: int) -> None:
    if workers < 1:
        raise GankitError(f"{option('--workers', workers)}: must be at least 1")
    if queue < 0:
        raise GankitError(f"{option('--queue', queue)}: must be 0 or more")
    if not 0 <= port <= 65535:
        raise GankitError(f"{option('--port', port)}: must be in 0..65535 (0 = any free port)")


def _rename(params: dict) -> dict:
    """Query names -> keyword arguments (``class`` is a Python keyword)."""
    if "class" in params:
        params["label"] = params.pop("class")
    return params


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _drain(stream, size: int) -> None:
    while size > 0:
        chunk = stream.read(min(size, 1 << 16))
        if not chunk:
            return
        size -= len(chunk)


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:500] if text else type(e).__name__
