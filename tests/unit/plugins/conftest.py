# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fixtures for the module tests: run a module in-process, and a fake control plane over real HTTP."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible.module_utils import basic

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core < 2.19

    @contextlib.contextmanager
    def patch_module_args(args=None):
        from unittest import mock

        data = json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}).encode()
        with mock.patch.object(basic, "_ANSIBLE_ARGS", data):
            yield


GOOD_TOKEN = "vt_good-token-0123456789abcdefghijklmnop"
READ_TOKEN = "vt_read-only-token-0123456789abcdefghij"


class ModuleRun:
    """What one module run printed: ``result`` (its JSON) and ``output`` (all of stdout and stderr)."""

    def __init__(self, result, output, exit_code):
        self.result = result
        self.output = output
        self.exit_code = exit_code

    @property
    def failed(self):
        return bool(self.result.get("failed"))

    @property
    def warnings(self):
        """All warnings as one text (ansible-core 2.19 reports structured warnings, older versions strings)."""
        return json.dumps(self.result.get("warnings", []))


@pytest.fixture
def run_module(capsys):
    """``run_module(main, args, check_mode=False, diff=False)`` → :class:`ModuleRun`.

    The module runs in-process exactly as under Ansible: its arguments come through the module
    args, and its result is the JSON it prints before exiting.
    """

    def run(main, args, check_mode=False, diff=False):
        params = dict(args)
        params["_ansible_check_mode"] = check_mode
        params["_ansible_diff"] = diff
        capsys.readouterr()
        with patch_module_args(params):
            with pytest.raises(SystemExit) as exit_info:
                main()
        captured = capsys.readouterr()
        result = json.loads(captured.out)
        return ModuleRun(result, captured.out + captured.err, exit_info.value.code)

    return run


# --- a fake control plane ----------------------------------------------------------------------------

NAME = r"[a-z0-9][a-z0-9-]{0,62}"
CHECKPOINT_PATH = re.compile(r"^/api/v1/checkpoints/(%s)$" % NAME)
INSTANCE_PATH = re.compile(r"^/api/v1/checkpoints/(%s)/instances/(%s)$" % (NAME, NAME))


def b64_key_id(public_key):
    return hashlib.sha256(base64.b64decode(public_key)).hexdigest()[:16]


class FakeControlPlane:
    """The REST contract's checkpoint and instance endpoints (docs/control-plane.md), in memory.

    ``requests`` records every request as ``(method, path, body, authorization header)``.
    ``before_put_instance`` (a callable) runs before an enrollment is processed (to simulate
    races). Paths below ``/redirect`` answer 302 to ``/elsewhere``.
    """

    GOOD_TOKEN = GOOD_TOKEN  # scopes: enroll (and so read)
    READ_TOKEN = READ_TOKEN  # scope: read

    def __init__(self):
        self.checkpoints = {}
        self.credentials = {}  # checkpoint -> declared credential names (sorted)
        self.requests = []
        self.lock = threading.Lock()
        self.before_put_instance = None
        self.fail_with = None  # (status, body) answered to every request when set
        self.server = None
        self.thread = None

    scheme = "http"

    @property
    def url(self):
        host, port = self.server.server_address[:2]
        return "%s://%s:%d" % (self.scheme, host, port)

    def writes(self):
        return [r for r in self.requests if r[0] != "GET"]

    def add_instance(self, cp, inst, public_key):
        self.checkpoints.setdefault(cp, {})[inst] = dict(public_key=public_key, keyid=b64_key_id(public_key), enrolled_at=time.time())

    # request handling (called with the lock held)
    def handle(self, method, path, body, authorization):
        self.requests.append((method, path, body, authorization))
        if path.startswith("/redirect"):
            return 302, {"error": "moved"}, {"Location": self.url + "/elsewhere" + path[len("/redirect"):]}
        if self.fail_with is not None:
            return self.fail_with[0], self.fail_with[1], {}
        if authorization not in ("Bearer " + GOOD_TOKEN, "Bearer " + READ_TOKEN):
            return 401, {"error": "invalid token"}, {"WWW-Authenticate": "Bearer"}
        if method != "GET" and authorization != "Bearer " + GOOD_TOKEN:
            return 403, {"error": "this token lacks the enroll scope"}, {}
        match = CHECKPOINT_PATH.match(path)
        if match:
            return self.checkpoint(method, match.group(1), body)
        match = INSTANCE_PATH.match(path)
        if match:
            return self.instance(method, match.group(1), match.group(2), body)
        return 404, {"error": "not found"}, {}

    def checkpoint_json(self, cp):
        instances = self.checkpoints[cp]
        return {
            "name": cp,
            "description": "",
            "labels": {},
            "credentials": list(self.credentials.get(cp, [])),
            "state": "unavailable",
            "instances": [
                dict(name=name, public_key=i["public_key"], keyid=i["keyid"], enrolled_at=i["enrolled_at"], connected=False, last_heartbeat=None)
                for name, i in sorted(instances.items())
            ],
        }

    def checkpoint(self, method, cp, body=None):
        if method == "GET":
            if cp not in self.checkpoints:
                return 404, {"error": "unknown checkpoint %r" % cp, "field": "checkpoint"}, {}
            return 200, self.checkpoint_json(cp), {}
        if method == "PUT":
            created = cp not in self.checkpoints
            self.checkpoints.setdefault(cp, {})
            changed = created
            if isinstance(body, dict) and "credentials" in body:
                names = sorted(set(body["credentials"]))
                changed = changed or names != self.credentials.get(cp, [])
                self.credentials[cp] = names
            return (201 if created else 200), dict(self.checkpoint_json(cp), changed=changed), {}
        return 405, {"error": "method not allowed"}, {}

    def instance(self, method, cp, inst, body):
        if cp not in self.checkpoints:
            return 404, {"error": "unknown checkpoint %r" % cp, "field": "checkpoint"}, {}
        instances = self.checkpoints[cp]
        if method == "DELETE":
            if inst not in instances:
                return 404, {"error": "instance %s/%s is not enrolled" % (cp, inst), "field": "instance"}, {}
            del instances[inst]
            return 200, {"deleted": True, "checkpoint": cp, "instance": inst}, {}
        if method != "PUT":
            return 405, {"error": "method not allowed"}, {}
        if self.before_put_instance is not None:
            self.before_put_instance(self)
        if not isinstance(body, dict) or not isinstance(body.get("public_key"), str):
            return 422, {"error": "public_key is required", "field": "public_key"}, {}
        public_key = body["public_key"]
        current = instances.get(inst)
        if current is None:
            self.add_instance(cp, inst, public_key)
            status, changed = 201, True
        elif current["public_key"] == public_key:
            status, changed = 200, False
        elif not body.get("replace"):
            return 409, {
                "error": "instance %s/%s is enrolled with another key (keyid %s); send replace: true to replace it" % (cp, inst, current["keyid"]),
                "field": "public_key",
            }, {}
        else:
            self.add_instance(cp, inst, public_key)
            status, changed = 200, True
        i = instances[inst]
        return status, dict(checkpoint=cp, instance=inst, public_key=i["public_key"], keyid=i["keyid"], enrolled_at=i["enrolled_at"], changed=changed), {}

    def start(self, ssl_context=None):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = "(invalid json)"
                with fake.lock:
                    status, answer, headers = fake.handle(self.command, self.path, body, self.headers.get("Authorization"))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_DELETE = do_POST = _serve

            def log_message(self, *args):  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if ssl_context is not None:
            self.server.socket = ssl_context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def control_plane():
    fake = FakeControlPlane().start()
    try:
        yield fake
    finally:
        fake.stop()


def _tls_files(directory):
    """A CA certificate file and a server certificate chain + key for 127.0.0.1, made with cryptography."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vantage test CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    chain = directory / "server.pem"
    chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = directory / "server.key"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(ca_file), str(chain), str(key_file)


@pytest.fixture
def tls_control_plane(tmp_path):
    """The fake control plane over HTTPS; ``ca_path`` is the CA that signed its certificate."""
    import ssl

    ca_file, chain, key_file = _tls_files(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key_file)
    fake = FakeControlPlane().start(ssl_context=context)
    fake.ca_path = ca_file
    try:
        yield fake
    finally:
        fake.stop()
