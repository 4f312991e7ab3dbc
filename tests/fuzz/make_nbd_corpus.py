#!/usr/bin/env python3
"""Writes the seed corpus for nbd_fuzz into tests/fuzz/corpus/nbd/: byte streams a client
sends (client flags, options, requests), covering every option and command."""
import os
import struct
import sys

OPT_MAGIC = b"IHAVEOPT"
REQ_MAGIC = 0x25609513


def opt(code, payload=b""):
    return OPT_MAGIC + struct.pack(">II", code, len(payload)) + payload


def name(s):
    return struct.pack(">I", len(s)) + s.encode()


def go(export, infos=(3,), code=7):
    return opt(code, name(export) + struct.pack(">H", len(infos)) +
               b"".join(struct.pack(">H", i) for i in infos))


def meta(code, export, queries):
    return opt(code, name(export) + struct.pack(">I", len(queries)) +
               b"".join(name(q) for q in queries))


def req(cmd, offset=0, length=0, flags=0, cookie=1, payload=b""):
    return struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, cookie, offset, length) + payload


READ, WRITE, DISC, FLUSH, TRIM, CACHE, ZERO, STATUS = range(8)
FLAGS = struct.pack(">I", 3)
data = bytes(range(256)) * 16

seeds = {
    "go_simple": FLAGS + go("fuzz") + req(WRITE, 0, 4096, payload=data) + req(READ, 0, 4096) +
    req(FLUSH) + req(TRIM, 4096, 8192) + req(ZERO, 8192, 4096, 2) + req(CACHE, 0, 65536) +
    req(DISC),
    "structured": FLAGS + opt(8) + meta(10, "fuzz", ["base:allocation"]) +
    go("fuzz", (3, 1, 2)) + req(WRITE, 4096, 4096, 1, payload=data) + req(STATUS, 0, 65536) +
    req(STATUS, 0, 65536, 8) + req(READ, 0, 16384) + req(READ, 0, 16384, 4) +
    req(ZERO, 0, 4096, 16) + req(DISC),
    "export_name": struct.pack(">I", 1) + opt(1, b"fuzz") + req(READ, 0, 4096) + req(DISC),
    "negotiation": FLAGS + opt(3) + go("ro", (0, 1, 2, 3), 6) + meta(9, "fuzz", []) +
    meta(9, "fuzz", ["base:"]) + opt(99, b"xyz") + opt(5) + opt(8, b"bad") + opt(2),
    "read_only": FLAGS + go("ro") + req(WRITE, 0, 4096, payload=data) + req(TRIM, 0, 4096) +
    req(READ, 0, 4096) + req(DISC),
    "small_blocks": FLAGS + opt(8) + go("small", ()) + req(READ, 512, 512) +
    req(WRITE, 512, 1536, payload=data[:1536]) + req(READ, 0, 16384) + req(DISC),
    "bad_requests": FLAGS + go("fuzz") + req(99, 0, 4096) + req(READ, 1 << 40, 4096) +
    req(WRITE, 0, 16, 8, payload=data[:16]) + req(STATUS, 0, 4096) + b"\x00" * 28,
    "default_export": FLAGS + go("", ()) + req(READ, 0, 4096),
}

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus",
                                                         "nbd")
os.makedirs(out, exist_ok=True)
for seed_name, blob in seeds.items():
    with open(os.path.join(out, seed_name), "wb") as f:
        f.write(blob)
print(f"wrote {len(seeds)} seeds to {out}")
