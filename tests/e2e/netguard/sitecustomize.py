"""Loaded by every Python process of the end-to-end test: records and blocks non-loopback network use.

The brief's promise is "a full run makes no outbound connection attempt"; this proves it for
every subprocess DVC starts, not just the test process.
"""

import json
import os
import socket

_LOG = os.environ.get("DEFECTOPS_NET_LOG")
_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "", None, socket.gethostname()}


def _record(kind, target):
    if _LOG:
        with open(_LOG, "a") as fh:
            fh.write(json.dumps({"pid": os.getpid(), "kind": kind, "target": repr(target)}) + "\n")


def _is_local(address):
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0] if isinstance(address, tuple) and address else address
    return host in _LOCAL_NAMES or str(host).startswith("127.")


_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo


def connect(self, address):
    if not _is_local(address):
        _record("connect", address)
        raise OSError(f"network blocked by the defectops offline test: {address!r}")
    return _connect(self, address)


def connect_ex(self, address):
    if not _is_local(address):
        _record("connect_ex", address)
        return 111
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if not _is_local((name,)):
        _record("dns", name)
        raise socket.gaierror(f"DNS blocked by the defectops offline test: {name}")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
