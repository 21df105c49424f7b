"""Fake Hugging Face Hub on 127.0.0.1 for offline publishing tests.

Implements exactly the endpoints that ``huggingface_hub`` (2.x, read from its ``hf_api.py``, ``_commit_api.py``,
``lfs.py`` and ``file_download.py``) calls for ``create_repo``, ``create_branch``, ``upload_folder`` /
``create_commit`` (README YAML validation, preupload, LFS batch + PUT + verify, NDJSON commit), ``whoami``,
``repo_info`` / ``list_repo_files`` and ``hf_hub_download``; Xet is disabled so LFS is the upload path.

State lives in memory (repos -> branches -> commits -> file snapshots; an LFS object store keyed by sha256).
Every request is recorded with its body and its headers, with the ``Authorization`` value replaced, so tests
can assert that auth was sent and that the token never leaked anywhere else.

Fixtures (re-exported through ``tests/fakes/fixtures.py``): ``fake_hub_server`` (session: one server thread)
and ``fake_hub`` (function: resets state and points ``huggingface_hub`` at the server).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import itertools
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

__all__ = ["FakeHub", "RecordedRequest", "fake_hub", "fake_hub_server"]

USER = "fake-user"
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024  # the Hub stores anything above 10 MB in LFS
# Subset of the .gitattributes the Hub writes into every new repo: these extensions always go to LFS.
GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.onnx", "*.arrow", "*.parquet",
        "*.msgpack", "*.model", "*.pkl", "*.npy", "*.npz", "*.gguf", "*.zip", "*.gz", "*.tar", "*tfevents*",
    )
)  # fmt: skip
_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}

_API_RE = re.compile(r"^/api/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)(?P<rest>/.*)?$")
_LFS_BATCH_RE = re.compile(r"^/(?P<prefix>datasets/|spaces/)?(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$")
_RESOLVE_RE = re.compile(r"^/(?P<prefix>datasets/|spaces/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_UPLOAD_RE = re.compile(r"^/__fake_lfs/upload/(?P<oid>[0-9a-f]{64})/(?P<ticket>[0-9a-f]+)$")
_VERIFY_RE = re.compile(r"^/__fake_lfs/verify/(?P<oid>[0-9a-f]{64})$")


def git_sha1(data: bytes) -> str:
    """Git blob id of ``data`` (what the Hub reports as the oid / ETag of a regular file)."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def _lfs_pointer(data: bytes) -> bytes:
    sha = hashlib.sha256(data).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()


@dataclass
class RecordedRequest:
    """One HTTP request as the fake Hub saw it (``Authorization`` value replaced by ``<redacted>``)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    auth: str  # "valid", "invalid" or "none"


@dataclass
class _File:
    data: bytes
    lfs: bool


@dataclass
class _Commit:
    oid: str
    message: str
    parent: str | None
    files: dict[str, _File]
    date: str


@dataclass
class _Repo:
    repo_id: str
    repo_type: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, _Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> _Commit | None:
        oid = self.branches.get(revision, revision)
        return self.commits.get(oid)


class _HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class FakeHub:
    """In-memory Hub state plus the HTTP server serving it."""

    def __init__(self) -> None:
        self.token = "hf_fake_" + secrets.token_hex(12)
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        self._counter = itertools.count()
        self.reset()

    # ----------------------------------------------------------------- test-facing helpers
    def reset(self) -> None:
        """Forget all repos, LFS objects and recorded requests (called before every test)."""
        with self._lock:
            self.repos: dict[tuple[str, str], _Repo] = {}
            self.lfs_objects: dict[str, bytes] = {}
            self._upload_tickets: dict[str, str] = {}
            self.requests: list[RecordedRequest] = []

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """Files of ``repo_id`` at ``revision`` as ``{path: bytes}`` (LFS files resolved to their content)."""
        commit = self._get_repo(repo_type, repo_id).resolve(revision)
        if commit is None:
            raise KeyError(f"no revision {revision!r} in {repo_type} {repo_id}")
        return {path: f.data for path, f in commit.files.items()}

    def lfs_paths(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> set[str]:
        """Paths stored through LFS at ``revision``."""
        commit = self._get_repo(repo_type, repo_id).resolve(revision)
        return {path for path, f in commit.files.items() if f.lfs}

    def commits(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> list[str]:
        """Commit messages of ``revision``'s history, newest first."""
        repo = self._get_repo(repo_type, repo_id)
        out, commit = [], repo.resolve(revision)
        while commit is not None:
            out.append(commit.message)
            commit = repo.commits.get(commit.parent) if commit.parent else None
        return out

    def is_private(self, repo_id: str, repo_type: str = "model") -> bool:
        return self._get_repo(repo_type, repo_id).private

    # ----------------------------------------------------------------- internals
    def _get_repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise _HttpError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def _repo_url(self, repo: _Repo) -> str:
        return f"{self.url}/{_PREFIX[repo.repo_type]}{repo.repo_id}"

    def _new_commit(self, repo: _Repo, branch: str, message: str, files: dict[str, _File]) -> _Commit:
        parent = repo.branches.get(branch)
        seed = f"{repo.repo_id}|{parent}|{message}|{next(self._counter)}|" + "|".join(
            f"{p}:{git_sha1(f.data)}" for p, f in sorted(files.items())
        )
        commit = _Commit(
            oid=hashlib.sha1(seed.encode()).hexdigest(),
            message=message,
            parent=parent,
            files=files,
            date=datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        )
        repo.commits[commit.oid] = commit
        repo.branches[branch] = commit.oid
        return commit

    def _is_lfs(self, commit: _Commit | None, path: str, size: int, sample: bytes) -> bool:
        if size > LFS_SIZE_THRESHOLD or b"\x00" in sample:
            return True
        attributes = commit.files.get(".gitattributes") if commit else None
        if attributes is None:
            return False
        name = path.rsplit("/", 1)[-1]
        for line in attributes.data.decode("utf-8", "replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and "filter=lfs" in parts[1:] and fnmatch.fnmatchcase(name, parts[0]):
                return True
        return False


def _check_model_index(model_index) -> list[str]:
    """Structural checks the Hub applies to ``model-index`` (subset): returns error messages."""
    errors = []
    if not isinstance(model_index, list):
        return ["model-index must be a list"]
    for entry in model_index:
        if not isinstance(entry, dict) or "name" not in entry or not isinstance(entry.get("results"), list):
            errors.append("model-index entries need a name and a results list")
            continue
        for result in entry["results"]:
            if not isinstance(result.get("task"), dict) or "type" not in result["task"]:
                errors.append("model-index result needs task.type")
            dataset = result.get("dataset")
            if not isinstance(dataset, dict) or "type" not in dataset or "name" not in dataset:
                errors.append("model-index result needs dataset.type and dataset.name")
            for metric in result.get("metrics") or []:
                if "type" not in metric or "value" not in metric:
                    errors.append("model-index metric needs type and value")
    return errors


def _make_handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real Hub; every response sets Content-Length

        def log_message(self, format, *args):  # noqa: A002 - silence stderr access logs
            pass

        # ------------------------------------------------------------- plumbing
        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, body=b"", headers: dict | None = None, head_only: bool = False) -> None:
            if not isinstance(body, bytes):
                body = json.dumps(body).encode()
                headers = {"Content-Type": "application/json", **(headers or {})}
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head_only:
                self.wfile.write(body)

        def _handle(self, method: str) -> None:
            split = urlsplit(self.path)
            body = self._read_body() if method in ("POST", "PUT") else b""
            auth_header = self.headers.get("Authorization")
            auth = "none" if auth_header is None else ("valid" if auth_header == f"Bearer {hub.token}" else "invalid")
            headers = {k: ("<redacted>" if k.lower() == "authorization" else v) for k, v in self.headers.items()}
            with hub._lock:
                hub.requests.append(RecordedRequest(method, split.path, parse_qs(split.query), headers, body, auth))
            try:
                with hub._lock:
                    status, payload, extra = self._route(method, split.path, parse_qs(split.query), body, auth)
            except _HttpError as err:
                extra = {"X-Error-Message": err.message, **err.headers}
                if err.code:
                    extra["X-Error-Code"] = err.code
                status, payload = err.status, {"error": err.message}
            except Exception as err:  # pragma: no cover - a bug in the fake: surface it to the client
                status, payload, extra = 500, {"error": f"fake hub crashed: {err!r}"}, {}
            self._send(status, payload, extra, head_only=method == "HEAD")

        def do_GET(self):  # noqa: N802
            self._handle("GET")

        def do_HEAD(self):  # noqa: N802
            self._handle("HEAD")

        def do_POST(self):  # noqa: N802
            self._handle("POST")

        def do_PUT(self):  # noqa: N802
            self._handle("PUT")

        # ------------------------------------------------------------- routing
        def _route(self, method, path, query, body, auth):
            if auth == "invalid":
                raise _HttpError(401, "Invalid credentials in Authorization header")
            if path == "/api/whoami-v2" and method == "GET":
                return self._whoami(auth)
            if path == "/api/repos/create" and method == "POST":
                return self._create_repo(json.loads(body), auth)
            if path == "/api/validate-yaml" and method == "POST":
                return self._validate_yaml(json.loads(body))
            if m := _UPLOAD_RE.match(path):
                return self._lfs_put(m["oid"], m["ticket"], body)
            if m := _VERIFY_RE.match(path):
                if m["oid"] not in hub.lfs_objects:
                    raise _HttpError(404, "LFS object not uploaded")
                return 200, {"success": True}, {}
            if m := _LFS_BATCH_RE.match(path):
                repo_type = {"datasets/": "dataset", "spaces/": "space"}.get(m["prefix"] or "", "model")
                return self._lfs_batch(self._writable(repo_type, m["repo"], auth), json.loads(body))
            if (m := _RESOLVE_RE.match(path)) and method in ("GET", "HEAD"):
                repo_type = {"datasets/": "dataset", "spaces/": "space"}.get(m["prefix"] or "", "model")
                return self._resolve(self._readable(repo_type, m["repo"], auth), unquote(m["rev"]), unquote(m["path"]))
            if m := _API_RE.match(path):
                return self._repo_api(method, m["type"][:-1], m["repo"], m["rest"] or "", query, body, auth)
            raise _HttpError(404, f"fake hub: no route for {method} {path}")

        def _readable(self, repo_type: str, repo_id: str, auth: str) -> _Repo:
            repo = hub._get_repo(repo_type, repo_id)
            if repo.private and auth != "valid":
                raise _HttpError(401, f"Repository {repo_id} not found", "RepoNotFound")
            return repo

        def _writable(self, repo_type: str, repo_id: str, auth: str) -> _Repo:
            if auth != "valid":
                raise _HttpError(401, "You must be authenticated to write to a repository")
            return hub._get_repo(repo_type, repo_id)

        # ------------------------------------------------------------- endpoints
        def _whoami(self, auth):
            if auth != "valid":
                raise _HttpError(401, "Invalid user token")
            info = {"type": "user", "name": USER, "fullname": "Fake User", "orgs": []}
            info["auth"] = {"type": "access_token", "accessToken": {"displayName": "fake", "role": "write"}}
            return 200, info, {}

        def _create_repo(self, payload, auth):
            if auth != "valid":
                raise _HttpError(401, "You must be authenticated to create a repository")
            repo_type = payload.get("type") or "model"
            repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
            existing = hub.repos.get((repo_type, repo_id))
            if existing is not None:
                return 409, {"error": f"You already created this {repo_type} repo", "url": hub._repo_url(existing)}, {}
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            repo = _Repo(repo_id=repo_id, repo_type=repo_type, private=private)
            hub._new_commit(repo, "main", "initial commit", {".gitattributes": _File(GITATTRIBUTES.encode(), False)})
            hub.repos[(repo_type, repo_id)] = repo
            return 200, {"url": hub._repo_url(repo), "name": repo_id, "id": repo_id}, {}

        def _validate_yaml(self, payload):
            match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", payload.get("content", ""), re.DOTALL)
            if match is None:
                return 200, {"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]}, {}
            try:
                metadata = yaml.safe_load(match.group(1))
            except yaml.YAMLError as err:
                return 400, {"errors": [{"message": f"invalid YAML: {err}"}]}, {}
            errors = [] if isinstance(metadata, dict) else ["metadata must be a mapping"]
            if isinstance(metadata, dict) and "model-index" in metadata:
                errors += _check_model_index(metadata["model-index"])
            if errors:
                return 400, {"errors": [{"message": e} for e in errors]}, {}
            return 200, {"errors": [], "warnings": []}, {}

        def _lfs_batch(self, repo, payload):
            if payload.get("operation") != "upload":
                raise _HttpError(400, "only uploads are supported by the fake hub")
            objects = []
            for obj in payload["objects"]:
                oid, size = obj["oid"], obj["size"]
                if oid in hub.lfs_objects:  # already stored: no actions, the client skips the upload
                    objects.append({"oid": oid, "size": size})
                    continue
                ticket = secrets.token_hex(8)  # stands in for a pre-signed S3 URL
                hub._upload_tickets[oid] = ticket
                actions = {
                    "upload": {"href": f"{hub.url}/__fake_lfs/upload/{oid}/{ticket}"},
                    "verify": {"href": f"{hub.url}/__fake_lfs/verify/{oid}"},
                }
                objects.append({"oid": oid, "size": size, "authenticated": True, "actions": actions})
            return 200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"}

        def _lfs_put(self, oid, ticket, body):
            if hub._upload_tickets.get(oid) != ticket:
                raise _HttpError(403, "invalid or expired upload URL")
            if hashlib.sha256(body).hexdigest() != oid:
                raise _HttpError(400, "uploaded content does not match the announced sha256")
            hub.lfs_objects[oid] = body
            del hub._upload_tickets[oid]
            return 200, b"", {"ETag": f'"{oid[:32]}"'}

        def _resolve(self, repo, revision, path):
            commit = repo.resolve(revision)
            if commit is None:
                raise _HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            entry = commit.files.get(path)
            headers = {"X-Repo-Commit": commit.oid}
            if entry is None:  # the commit header lets the client cache the file's absence
                raise _HttpError(404, f"Entry not found: {path}", "EntryNotFound", headers)
            if entry.lfs:
                sha = hashlib.sha256(entry.data).hexdigest()
                headers.update({"ETag": f'"{git_sha1(_lfs_pointer(entry.data))}"', "X-Linked-Etag": f'"{sha}"'})
                headers["X-Linked-Size"] = str(len(entry.data))
            else:
                headers["ETag"] = f'"{git_sha1(entry.data)}"'
            headers["Content-Type"] = "application/octet-stream"
            return 200, entry.data, headers

        def _repo_api(self, method, repo_type, repo_id, rest, query, body, auth):
            if method == "GET" and (rest == "" or rest.startswith("/revision/")):
                repo = self._readable(repo_type, repo_id, auth)
                revision = unquote(rest[len("/revision/") :]) if rest else "main"
                return self._info(repo, revision)
            if method == "GET" and rest.startswith("/tree/"):
                repo = self._readable(repo_type, repo_id, auth)
                rev, _, sub = rest[len("/tree/") :].partition("/")
                recursive = query.get("recursive", ["False"])[0].lower() in ("1", "true")
                return self._tree(repo, unquote(rev), unquote(sub), recursive)
            if method == "POST" and rest.startswith("/preupload/"):
                repo = self._writable(repo_type, repo_id, auth)
                return self._preupload(repo, unquote(rest[len("/preupload/") :]), json.loads(body))
            if method == "POST" and rest.startswith("/commit/"):
                repo = self._writable(repo_type, repo_id, auth)
                return self._commit(repo, unquote(rest[len("/commit/") :]), body)
            if method == "POST" and rest.startswith("/branch/"):
                repo = self._writable(repo_type, repo_id, auth)
                return self._branch(repo, unquote(rest[len("/branch/") :]), json.loads(body or b"{}"))
            raise _HttpError(404, f"fake hub: no route for {method} {repo_type} api {rest}")

        def _commit_or_404(self, repo, revision):
            commit = repo.resolve(revision)
            if commit is None:
                raise _HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            return commit

        def _info(self, repo, revision):
            commit = self._commit_or_404(repo, revision)
            info = {
                "id": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": commit.oid,
                "private": repo.private,
                "lastModified": commit.date,
                "siblings": [{"rfilename": p} for p in sorted(commit.files)],
                "tags": [],
            }
            return 200, info, {}

        def _tree(self, repo, revision, sub, recursive):
            commit = self._commit_or_404(repo, revision)
            prefix = f"{sub.strip('/')}/" if sub.strip("/") else ""
            entries, folders = [], set()
            for path in sorted(commit.files):
                if not path.startswith(prefix):
                    continue
                rel = path[len(prefix) :]
                parts = rel.split("/")
                for depth in range(1, len(parts)):  # the real Hub also lists the folders on the way
                    if recursive or depth == 1:
                        folders.add(prefix + "/".join(parts[:depth]))
                if not recursive and len(parts) > 1:
                    continue
                entry = commit.files[path]
                item = {"type": "file", "path": path, "size": len(entry.data), "oid": git_sha1(entry.data)}
                if entry.lfs:
                    pointer = _lfs_pointer(entry.data)
                    item["oid"] = git_sha1(pointer)
                    sha = hashlib.sha256(entry.data).hexdigest()
                    item["lfs"] = {"oid": sha, "size": len(entry.data), "pointerSize": len(pointer)}
                entries.append(item)
            if prefix and not entries and not folders:
                raise _HttpError(404, f"Entry not found: {sub}", "EntryNotFound")
            dirs = [{"type": "directory", "path": f, "oid": hashlib.sha1(f.encode()).hexdigest()} for f in folders]
            return 200, sorted(dirs, key=lambda d: d["path"]) + entries, {}

        def _preupload(self, repo, revision, payload):
            commit = self._commit_or_404(repo, revision)
            files = []
            for item in payload["files"]:
                sample = base64.b64decode(item["sample"])
                lfs = hub._is_lfs(commit, item["path"], item["size"], sample)
                existing = commit.files.get(item["path"])
                oid = None
                if existing is not None:  # lets the client drop unchanged files from the commit
                    oid = hashlib.sha256(existing.data).hexdigest() if existing.lfs else git_sha1(existing.data)
                mode = "lfs" if lfs else "regular"
                files.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
            return 200, {"files": files, "commitOid": commit.oid}, {}

        def _commit(self, repo, revision, body):
            if revision not in repo.branches:
                raise _HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            if not lines or lines[0].get("key") != "header":
                raise _HttpError(400, "commit payload must start with a header line")
            header = lines[0]["value"]
            files = dict(repo.commits[repo.branches[revision]].files)
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                if key == "file":
                    if value.get("encoding") != "base64":
                        raise _HttpError(400, "only base64 file contents are supported")
                    files[value["path"]] = _File(base64.b64decode(value["content"]), False)
                elif key == "lfsFile":
                    data = hub.lfs_objects.get(value["oid"])
                    if data is None:
                        raise _HttpError(422, f"LFS object {value['oid']} was never uploaded")
                    files[value["path"]] = _File(data, True)
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise _HttpError(404, "A file with this name doesn't exist", "EntryNotFound")
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {p: f for p, f in files.items() if not p.startswith(folder)}
                else:
                    raise _HttpError(400, f"unsupported commit operation {key!r}")
            commit = hub._new_commit(repo, revision, header.get("summary", ""), files)
            url = f"{hub._repo_url(repo)}/commit/{commit.oid}"
            return 200, {"success": True, "commitOid": commit.oid, "commitUrl": url}, {}

        def _branch(self, repo, branch, payload):
            if branch in repo.branches:
                raise _HttpError(409, f"Reference already exists: {branch}")
            start = self._commit_or_404(repo, payload.get("startingPoint") or "main")
            repo.branches[branch] = start.oid
            return 200, {}, {}

    return Handler


@pytest.fixture(scope="session")
def fake_hub_server():
    """One fake Hub server thread for the whole session (state is reset per test by ``fake_hub``)."""
    hub = FakeHub()
    yield hub
    hub.close()


@pytest.fixture
def fake_hub(fake_hub_server, monkeypatch, tmp_path):
    """A clean fake Hub with ``huggingface_hub`` pointed at it.

    ``tests/conftest.py`` sets ``HF_HUB_OFFLINE=1`` for the whole suite, and ``huggingface_hub`` copies its env
    vars into ``huggingface_hub.constants`` at import time, so both the env and the constants are patched:
    offline mode off, ``ENDPOINT`` and the resolve-URL template on the fake, Xet off (LFS upload path), and the
    token file / cache in ``tmp_path`` so a developer's real login is never picked up. ``HF_TOKEN`` is unset:
    tests pass ``fake_hub.token`` explicitly or set the env var themselves.
    """
    from huggingface_hub import constants, hf_api

    hub = fake_hub_server
    hub.reset()
    for name, value in {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {"127.0.0.1"})
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf_home" / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    # Module-level helpers (``huggingface_hub.whoami``, ``create_repo``...) use an HfApi built at import time.
    monkeypatch.setattr(hf_api.api, "endpoint", hub.url)
    yield hub
