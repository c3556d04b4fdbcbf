"""A Hugging Face Hub stand-in on 127.0.0.1 for the zoo tests: the file-resolve endpoint only.

``HEAD`` and ``GET /{repo_id}/resolve/{revision}/{filename}`` answer the way huggingface_hub (2.x) expects
(read from ``file_download.get_hf_file_metadata`` and ``utils._http.hf_raise_for_status``):

- ``X-Repo-Commit``: the commit the revision resolved to (a download without it is refused);
- ``ETag`` and ``X-Linked-Etag``: the file's sha256 in quotes, as the hub sends for LFS files (the client
  names the cache blob after it); ``X-Linked-Size`` and ``Content-Length``: its size;
- ``Accept-Ranges: bytes``; a ``Range: bytes=N-`` GET gets ``206`` with ``Content-Range``, which is how
  the client resumes after a dropped connection;
- errors: 404 with ``X-Error-Code`` ``RepoNotFound`` / ``RevisionNotFound`` / ``EntryNotFound``.

Tests add files per commit, move branches, make GETs drop the connection after some bytes, and
read the request log.  Files are served from disk, so 100 MB checkpoints cost no memory.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<file>.+)$")
_RANGE = re.compile(r"^bytes=(?P<start>\d+)-(?P<end>\d*)$")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None


@dataclass(frozen=True)
class _Served:
    commit: str
    path: Path
    sha256: str
    size: int


@dataclass
class _Repo:
    commits: dict[str, dict[str, _Served]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)


class FakeHub:
    """Serve repositories of files over HTTP; use as a context manager (``with FakeHub() as hub``)."""

    def __init__(self) -> None:
        self._repos: dict[str, _Repo] = {}
        self._lock = threading.Lock()
        self._drop_after: int | None = None
        self._drops_left = 0
        self.requests: list[Request] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # -- content -------------------------------------------------------------------------------------

    def commit(self, repo: str, files: dict[str, Path], branch: str = "main") -> str:
        """Add a commit serving ``files`` (name in repo -> local file, served in place, so keep it
        unchanged), move ``branch`` to it, and return its 40-hex hash."""
        state = self._repos.setdefault(repo, _Repo())
        hashes = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
        commit = hashlib.sha1(f"{repo}:{len(state.commits)}:{sorted(hashes.items())}".encode()).hexdigest()
        state.commits[commit] = {
            name: _Served(commit, path, hashes[name], path.stat().st_size) for name, path in files.items()
        }
        state.refs[branch] = commit
        return commit

    def drop_gets_after(self, nbytes: int, times: int = 1) -> None:
        """The next ``times`` file GETs send at most ``nbytes`` of their body, then close the connection."""
        with self._lock:
            self._drop_after, self._drops_left = nbytes, times

    def _take_drop(self) -> int | None:
        with self._lock:
            if self._drops_left == 0:
                return None
            self._drops_left -= 1
            return self._drop_after

    def _resolve(self, repo: str, revision: str, name: str) -> _Served | tuple[int, str, str | None]:
        """The file to serve, or (status, X-Error-Code, X-Repo-Commit) for an error."""
        state = self._repos.get(repo)
        if state is None:
            return 404, "RepoNotFound", None
        commit = state.refs.get(revision, revision)
        files = state.commits.get(commit)
        if files is None:
            return 404, "RevisionNotFound", None
        served = files.get(name)
        if served is None:
            return 404, "EntryNotFound", commit
        return served

    # -- server --------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> FakeHub:
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), _handler(self))
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]  # the same port again after stop() / start()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects of the hub

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (quiet test output)
            pass

        def do_HEAD(self) -> None:  # noqa: N802  (http.server's naming)
            self._answer(body=False)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            byte_range = self.headers.get("Range")
            hub.requests.append(Request(self.command, self.path, byte_range))
            match = _RESOLVE.match(self.path.split("?", 1)[0])
            if match is None:
                self._error(404, "RepoNotFound", None, body)
                return
            served = hub._resolve(match["repo"], unquote(match["revision"]), unquote(match["file"]))
            if isinstance(served, tuple):
                self._error(*served, body=body)
                return
            start, end = 0, served.size - 1
            ranged = byte_range is not None and (m := _RANGE.match(byte_range)) is not None
            if ranged:
                start, end = int(m["start"]), int(m["end"] or served.size - 1)
                if start >= served.size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{served.size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            self.send_response(206 if ranged else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("X-Repo-Commit", served.commit)
            self.send_header("ETag", f'"{served.sha256}"')
            self.send_header("X-Linked-Etag", f'"{served.sha256}"')
            self.send_header("X-Linked-Size", str(served.size))
            self.send_header("Content-Length", str(end - start + 1))
            if ranged:
                self.send_header("Content-Range", f"bytes {start}-{end}/{served.size}")
            self.end_headers()
            if body:
                self._send_file(served.path, start, end - start + 1, hub._take_drop())

        def _send_file(self, path: Path, start: int, length: int, drop_after: int | None) -> None:
            limit = length if drop_after is None else min(drop_after, length)
            with path.open("rb") as stream:
                stream.seek(start)
                while limit > 0:
                    chunk = stream.read(min(_CHUNK, limit))
                    self.wfile.write(chunk)
                    limit -= len(chunk)
            if drop_after is not None:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

        def _error(self, status: int, code: str, commit: str | None, body: bool) -> None:
            payload = f'{{"error": "{code}"}}'.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", code)
            if commit is not None:
                self.send_header("X-Repo-Commit", commit)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if body:
                self.wfile.write(payload)

    return Handler
