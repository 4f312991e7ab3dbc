#!/usr/bin/env python3
"""Reads fio --output-format=json files for the benchmark scripts (benchmarks/peers.sh,
benchmarks/dedup.sh) and writes their markdown tables.

  fio_json.py summary FILE
      One line, tab-separated: iops  MB/s  p99_us  (reads and writes summed; p99 of the
      direction that moved more bytes).
  fio_json.py peers RESULTS_DIR
      The peer-comparison report (markdown) from RESULTS_DIR/*.json, named
      SERVER.CELL.RUN.json, plus RESULTS_DIR/meta.json and RESULTS_DIR/precondition.tsv.

Only the standard library is used, so the python3 first on PATH is enough.
"""

import json
import os
import statistics
import sys


def load_fio(path):
    """fio may print engine messages before the JSON; start at the first '{'."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    start = text.find("{")
    if start < 0:
        raise ValueError(f"{path}: no JSON object")
    return json.loads(text[start:])


def summarize(doc):
    """Returns (iops, mb_per_s, p99_us) over all jobs of one fio run."""
    iops = 0.0
    bw_bytes = 0.0
    best_bytes = -1
    p99_ns = 0.0
    for job in doc["jobs"]:
        for direction in ("read", "write"):
            d = job[direction]
            iops += d["iops"]
            bw_bytes += d["bw_bytes"]
            if d["io_bytes"] > best_bytes and d["io_bytes"] > 0:
                best_bytes = d["io_bytes"]
                pct = d.get("clat_ns", {}).get("percentile", {})
                p99_ns = pct.get("99.000000", 0.0)
    return iops, bw_bytes / 1e6, p99_ns / 1e3


# The matrix, in report order: (cell id, label, is_read).
CELLS = [
    ("4k-randread-qd32", "4K randread QD32", True),
    ("4k-randread-qd1", "4K randread QD1", True),
    ("4k-randread-qd32-2jobs", "4K randread QD32, 2 jobs", True),
    ("1m-read-qd8", "1M read QD8", True),
    ("4k-randwrite-qd32", "4K randwrite QD32", False),
    ("4k-randwrite-qd1", "4K randwrite QD1", False),
    ("1m-write-qd8", "1M write QD8", False),
]

SERVER_LABELS = {
    "cairnd-hot": "cairnd (hot: cache holds the working set)",
    "cairnd-cold": "cairnd (cold: working set >= 4x cache)",
    "qemu-nbd": "qemu-nbd --cache=none --aio=io_uring",
    "nbdkit-file": "nbdkit file (page cache)",
    "nbdkit-null": "nbdkit null (client ceiling)",
}

# Which cairnd instance a peer row is compared with: reads hot against the page cache and
# the ceiling, cold against O_DIRECT (BRIEF, "Measuring honestly"); writes use cairnd-hot.
def cairnd_peer_for(server, is_read):
    if not is_read:
        return "cairnd-hot"
    return "cairnd-cold" if server == "qemu-nbd" else "cairnd-hot"


def collect(results_dir):
    """{(server, cell): [(iops, mbps, p99), ...]} from SERVER.CELL.RUN.json files."""
    runs = {}
    for name in sorted(os.listdir(results_dir)):
        parts = name.split(".")
        if len(parts) != 4 or parts[3] != "json":
            continue
        server, cell = parts[0], parts[1]
        try:
            runs.setdefault((server, cell), []).append(
                summarize(load_fio(os.path.join(results_dir, name))))
        except (ValueError, KeyError) as e:
            print(f"warning: {name}: {e}", file=sys.stderr)
    return runs


def medians(samples):
    return tuple(statistics.median(s[i] for s in samples) for i in range(3))


def fmt_ratio(num, den):
    if not num or not den:
        return "-"
    return f"{num / den:.2f}"


def peers_table(runs, servers):
    out = ["| cell | server | IOPS | MB/s | p99 µs | runs | cairnd/server IOPS "
           "| cairnd/server p99 |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    for cell, label, is_read in CELLS:
        for server in servers:
            samples = runs.get((server, cell))
            if not samples:
                continue
            iops, mbps, p99 = medians(samples)
            ratio_iops = ratio_p99 = "-"
            if not server.startswith("cairnd"):
                ref = cairnd_peer_for(server, is_read)
                ref_samples = runs.get((ref, cell))
                if ref_samples:
                    r_iops, _, r_p99 = medians(ref_samples)
                    tag = " (" + ref.split("-")[1] + ")" if is_read else ""
                    ratio_iops = fmt_ratio(r_iops, iops) + tag
                    ratio_p99 = fmt_ratio(r_p99, p99) + tag
            out.append(f"| {label} | {SERVER_LABELS.get(server, server)} | {iops:,.0f} "
                       f"| {mbps:,.0f} | {p99:,.0f} | {len(samples)} | {ratio_iops} "
                       f"| {ratio_p99} |")
    return out


def overview_table(runs, servers):
    """One row per server, the BRIEF's shape: IOPS for 4K cells, MB/s for 1M cells."""
    head = "| server |"
    rule = "|---|"
    for cell, label, _ in CELLS:
        head += f" {label}{' MB/s' if cell.startswith('1m') else ' IOPS'} |"
        rule += "---:|"
    out = [head, rule]
    for server in servers:
        row = f"| {SERVER_LABELS.get(server, server)} |"
        for cell, _, _ in CELLS:
            samples = runs.get((server, cell))
            if not samples:
                row += " - |"
                continue
            iops, mbps, _ = medians(samples)
            row += f" {mbps:,.0f} |" if cell.startswith("1m") else f" {iops / 1000:,.1f}k |"
        out.append(row)
    return out


def precondition_table(path):
    out = ["| server | logical bytes | physical bytes written | physical/logical "
           "| BLOCK_STATUS allocated | how physical was measured | check |",
           "|---|---:|---:|---:|---:|---|---|"]
    if not os.path.exists(path):
        return out + ["| (no preconditioning data) | | | | | | |"]
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 5:
                continue
            server, logical, physical, allocated, method = fields
            logical_n = int(logical)
            ratio = "-"
            check = "n/a"
            if physical.lstrip("-").isdigit() and logical_n:
                r = int(physical) / logical_n
                ratio = f"{r:.2f}"
                check = "ok" if r >= 0.9 else "FAIL: data was deduplicated or not stored"
            alloc = "-"
            if allocated.isdigit() and logical_n:
                a = int(allocated) / logical_n
                alloc = f"{100 * a:.1f}%"
                if a < 0.99 and check == "ok":
                    check = "FAIL: BLOCK_STATUS shows holes"
            shown = f"{int(physical):,}" if physical.lstrip("-").isdigit() else physical
            out.append(f"| {SERVER_LABELS.get(server, server)} | {logical_n:,} | {shown} "
                       f"| {ratio} | {alloc} | {method} | {check} |")
    return out


def peak_rss_table(path, meta):
    """cairnd's peak RSS per cell (the largest over the runs) against its configured caches."""
    if not os.path.exists(path):
        return ["(no peak RSS recorded: /proc/PID/status was not readable)"]
    peaks = {}
    order = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 4 or not fields[3].isdigit():
                continue
            key = (fields[0], fields[1])
            if key not in peaks:
                order.append(key)
            peaks[key] = max(peaks.get(key, 0), int(fields[3]) * 1024)
    mib = 1 << 20
    other = int(meta.get("cairnd_map_cache", 0)) + int(meta.get("cairnd_index_cache", 0))
    caches = {"cairnd-hot": int(meta["cairnd_hot_cache"]) + other,
              "cairnd-cold": int(meta["cairnd_cold_cache"]) + other}
    out = ["| server | cell | peak RSS MiB | configured caches MiB | RSS above the caches MiB |",
           "|---|---|---:|---:|---:|"]
    for server, cell in order:
        peak = peaks[(server, cell)]
        cap = caches.get(server, 0)
        out.append(f"| {SERVER_LABELS.get(server, server)} | {cell} | {peak / mib:,.0f} "
                   f"| {cap / mib:,.0f} | {(peak - cap) / mib:,.0f} |")
    return out


def peers_report(results_dir):
    with open(os.path.join(results_dir, "meta.json"), encoding="utf-8") as f:
        meta = json.load(f)
    runs = collect(results_dir)
    servers = [s for s in ["cairnd-hot", "cairnd-cold", "qemu-nbd", "nbdkit-file",
                           "nbdkit-null"] if any(k[0] == s for k in runs)]
    lines = [f"## Peer comparison, {meta['date']}", ""]
    lines += [f"- machine: {meta['machine']}", f"- fio: {meta['fio']} (nbd engine, libnbd), "
              f"{meta['runtime_s']} s cells after {meta['ramp_s']} s ramp, median of "
              f"{meta['runs']} runs, interleaved server by server within each cell, a different "
              "server first in each run",
              f"- export size: {meta['size_bytes']:,} bytes, preconditioned with random data "
              "(`--refill_buffers`), then read once sequentially",
              f"- cairnd: commit {meta['commit']}; hot instance cache.read_bytes="
              f"{meta['cairnd_hot_cache']}, cold instance cache.read_bytes="
              f"{meta['cairnd_cold_cache']}",
              f"- cairnd's store at this commit: {meta['store_note']}"]
    for note in meta.get("notes", []):
        lines.append(f"- NOTE: {note}")
    lines += ["", "### Preconditioning check", ""] + precondition_table(
        os.path.join(results_dir, "precondition.tsv"))
    lines += ["", "### Overview (medians)", ""] + overview_table(runs, servers)
    lines += ["", "### Results (medians)", "",
              "Ratios are cairnd/server: above 1 means cairnd has more IOPS (better) or a "
              "longer p99 (worse). Read cells compare cairnd hot with nbdkit file and the "
              "ceiling, cairnd cold with qemu-nbd; write cells use the hot instance.", ""]
    lines += peers_table(runs, servers)
    lines += ["", "### cairnd's peak RSS per cell", "",
              "VmHWM after each cell, reset between cells (`clear_refs`); the largest of the "
              "runs. Configured caches: cache.read_bytes + cache.map_bytes (one volume) + "
              "cache.index_bytes. A negative last column means the caches were not full.", ""]
    lines += peak_rss_table(os.path.join(results_dir, "peak-rss.tsv"), meta)
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) == 3 and argv[1] == "summary":
        iops, mbps, p99 = summarize(load_fio(argv[2]))
        print(f"{iops:.0f}\t{mbps:.1f}\t{p99:.0f}")
        return 0
    if len(argv) == 3 and argv[1] == "peers":
        sys.stdout.write(peers_report(argv[2]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
