#!/usr/bin/python3
"""Crash rule with kill -9 on the real daemon, through several NBD connections.

Writers on several connections write whole 4 KiB blocks while another connection flushes
(NBD multi-conn: a flush on one connection covers writes completed on all of them). At a
random moment the daemon is killed with SIGKILL, restarted on the same data directory, and
every block written is checked against NBD proto.md, "Ordering of messages and writes": take
the last flush whose reply arrived; each block must hold
  - the last write to it answered before that flush was sent, or
  - a write to it that was not yet answered when that flush was sent, or
  - if there is no write of the first kind, its earlier durable content,
and nothing else: each block carries its own identity and generation, so a block that mixes two
writes, or holds another block's data, is caught.

Runs under /usr/bin/python3 (Debian's python3-libnbd). Usage:
  kill9_test.py --cairnd PATH [--rounds N] [--seed S]
The seed is printed; CAIRN_SEED=S replays a run.
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

try:
    import nbd
except ImportError:
    print("SKIPPED: python3-libnbd is not installed (Debian package python3-libnbd)")
    sys.exit(1 if os.environ.get("CI") == "true" else 77)

BLOCK = 4096
BLOCKS = 4096  # a 16 MiB volume
VOLUME = "kill9"


def block_content(block, gen):
    """The 4 KiB a write of generation `gen` puts in `block`: identity header + PRNG fill."""
    rng = random.Random((block << 32) ^ gen)
    body = rng.randbytes(BLOCK - 16)
    return struct.pack("<QQ", block, gen) + body


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, cairnd, data_dir, log):
        self.cairnd, self.data_dir, self.log = cairnd, data_dir, log
        self.port = None
        self.proc = None

    def start(self):
        # Fresh ports on every start: a process killed with SIGKILL can leave its listening
        # sockets open for a while after it is reaped (pending io_uring requests keep them
        # alive until the kernel tears the ring down), so on the old port a probe could reach
        # the dead daemon's listener, which then resets the connection, and the new daemon
        # could fail to bind.
        self.port = free_port()
        admin_port = free_port()
        self.proc = subprocess.Popen(
            [self.cairnd, "--set", f"node.data_dir={self.data_dir}",
             "--set", f"nbd.port={self.port}", "--set", "nbd.address=127.0.0.1",
             "--set", f"admin.port={admin_port}", "--set", "admin.address=127.0.0.1",
             "--set", f"iscsi.port={free_port()}",
             "--demo-volume", f"{VOLUME}:{BLOCKS * BLOCK}"],
            stdout=self.log, stderr=self.log)
        # Ready is the admin API listing the volume: cairnd opens the admin listener last,
        # after recovery and after the NBD listener (tools/node.cc, start_node).
        url = f"http://127.0.0.1:{admin_port}/v1/volumes"
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cairnd exited with {self.proc.returncode} during start-up")
            try:
                with urllib.request.urlopen(url, timeout=1) as reply:
                    names = [v.get("name") for v in json.load(reply)["volumes"]]
                    if VOLUME in names:
                        return
            except (OSError, ValueError, KeyError):
                pass  # not listening yet (urllib's errors are OSErrors), or not yet serving
            time.sleep(0.05)
        raise RuntimeError("cairnd did not become ready within 30 s")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def connect(self):
        h = nbd.NBD()
        h.connect_uri(f"nbd://127.0.0.1:{self.port}/{VOLUME}")
        return h


class History:
    """Every write and flush with sequence numbers from one clock (a lock-protected counter)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.clock = 0
        self.writes = []   # dicts: block, gen, issued, acked (None if never answered)
        self.flushes = []  # (sent, answered)

    def tick(self):
        with self.lock:
            self.clock += 1
            return self.clock


def writer(node, hist, rng_seed, stop, gen_base):
    rng = random.Random(rng_seed)
    try:
        h = node.connect()
    except nbd.Error:
        return
    n = 0
    while not stop.is_set():
        block = rng.randrange(BLOCKS // 8) if rng.random() < 0.7 else rng.randrange(BLOCKS)
        gen = gen_base + n
        n += 1
        w = {"block": block, "gen": gen, "issued": hist.tick(), "acked": None}
        with hist.lock:
            hist.writes.append(w)
        try:
            fua = nbd.CMD_FLAG_FUA if rng.random() < 0.05 else 0
            h.pwrite(block_content(block, gen), block * BLOCK, fua)
        except nbd.Error:
            return
        w["acked"] = hist.tick()


def flusher(node, hist, stop):
    try:
        h = node.connect()
    except nbd.Error:
        return
    while not stop.is_set():
        time.sleep(0.02)
        sent = hist.tick()
        try:
            h.flush()
        except nbd.Error:
            return
        answered = hist.tick()
        with hist.lock:
            hist.flushes.append((sent, answered))


def allowed_contents(hist, baseline, killed_at):
    """Per block: the set of generations (or baseline) the recovered block may hold."""
    completed = [f for f in hist.flushes if f[1] < killed_at]
    flush_sent = max((f[0] for f in completed), default=0)
    by_block = {}
    for w in hist.writes:
        by_block.setdefault(w["block"], []).append(w)
    allowed = {}
    for block, ws in by_block.items():
        before = [w for w in ws if w["acked"] is not None and w["acked"] < flush_sent]
        pending = [w for w in ws if w["acked"] is None or w["acked"] > flush_sent]
        ok = {w["gen"] for w in pending}
        # Of the writes answered before the flush was sent, any one not definitely superseded
        # by another that was issued after it was answered may be the last.
        for w in before:
            if not any(o["issued"] > w["acked"] for o in before):
                ok.add(w["gen"])
        if not before:
            ok.add(baseline.get(block, 0))
        allowed[block] = ok
    return allowed, flush_sent, len(completed)


def read_generation(h, block):
    data = h.pread(BLOCK, block * BLOCK)
    if data == bytes(BLOCK):
        return 0, None
    got_block, gen = struct.unpack_from("<QQ", data)
    if got_block != block or data != block_content(block, gen):
        return None, f"block {block} holds torn or foreign data (header block={got_block} gen={gen})"
    return gen, None


def run_round(node, baseline, round_no, rng, gen_base):
    hist = History()
    stop = threading.Event()
    threads = [threading.Thread(target=writer,
                                args=(node, hist, rng.randrange(1 << 30), stop,
                                      gen_base + i * 10_000_000))
               for i in range(3)]
    threads.append(threading.Thread(target=flusher, args=(node, hist, stop)))
    for t in threads:
        t.start()
    time.sleep(rng.uniform(0.8, 2.0))
    killed_at = hist.tick()
    node.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    allowed, flush_sent, flushes = allowed_contents(hist, baseline, killed_at)
    acked = sum(1 for w in hist.writes if w["acked"] is not None)
    print(f"round {round_no}: {len(hist.writes)} writes ({acked} answered), {flushes} flushes "
          f"answered before SIGKILL; checking {len(allowed)} blocks")
    node.start()
    h = node.connect()
    failures = []
    for block, ok in sorted(allowed.items()):
        gen, err = read_generation(h, block)
        if err:
            failures.append(err)
        elif gen not in ok:
            failures.append(f"block {block}: recovered generation {gen}, allowed {sorted(ok)[:6]}")
        else:
            baseline[block] = gen
    h.shutdown()
    return failures, acked


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cairnd", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=int(os.environ.get("CAIRN_SEED", "0")) or None)
    args = ap.parse_args()
    seed = args.seed or random.randrange(1, 1 << 31)
    print(f"kill9_test: seed {seed} (replay with CAIRN_SEED={seed})")
    rng = random.Random(seed)
    work = tempfile.mkdtemp(prefix="cairn-kill9-")
    log_path = os.path.join(work, "cairnd.log")
    ok = False
    with open(log_path, "w") as log:
        node = Node(args.cairnd, os.path.join(work, "data"), log)
        try:
            node.start()
            baseline = {}
            total_acked = 0
            for r in range(1, args.rounds + 1):
                failures, acked = run_round(node, baseline, r, rng, r * 100_000_000)
                total_acked += acked
                if failures:
                    print(f"FAIL round {r} (seed {seed}): {len(failures)} blocks violate the "
                          "crash rule:")
                    for f in failures[:20]:
                        print("  " + f)
                    break
            else:
                if total_acked == 0:
                    print("FAIL: no write was answered; the test proved nothing")
                else:
                    ok = True
        except (nbd.Error, RuntimeError) as e:
            print(f"FAIL (seed {seed}): {e}")
        finally:
            node.stop()
    if not ok:
        with open(log_path) as f:
            tail = f.read()[-4000:]
        print("cairnd log tail:\n" + tail)
    shutil.rmtree(work, ignore_errors=True)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
