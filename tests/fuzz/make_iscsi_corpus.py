#!/usr/bin/env python3
"""Writes the seed corpus for iscsi_fuzz into tests/fuzz/corpus/iscsi/: byte streams an
initiator sends (login, SCSI commands with immediate, unsolicited and solicited data, NOP,
Text, task management, Logout), covering discovery and normal sessions, digests and CHAP."""
import os
import struct
import sys

PREFIX = "iqn.2026-11.io.cairn"
INITIATOR = "iqn.2026-11.io.fuzz:init"


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


class Stream:
    def __init__(self):
        self.out = b""
        self.hd = False
        self.dd = False
        self.cmd_sn = 0
        self.itt = 1

    def pdu(self, bhs, data=b""):
        assert len(bhs) == 48
        bhs = bhs[:5] + struct.pack(">I", len(data))[1:] + bhs[8:]
        self.out += bhs
        if self.hd:
            self.out += struct.pack("<I", crc32c(bhs))
        if data:
            padded = data + b"\0" * (-len(data) % 4)
            self.out += padded
            if self.dd:
                self.out += struct.pack("<I", crc32c(padded))

    def login(self, csg, nsg, transit, keys, isid=0x23D000000001):
        text = b"".join(f"{k}={v}".encode() + b"\0" for k, v in keys)
        flags = (0x80 if transit else 0) | (csg << 2) | (nsg if transit else 0)
        bhs = struct.pack(">BBBBB3xQIHHII16x", 0x43, flags, 0, 0, 0,
                          isid << 16, self.itt, 0, 0, self.cmd_sn, 0)
        self.pdu(bhs, text)

    def scsi(self, cdb, edtl, read=False, write=False, data=b"", final=True, immediate=False):
        flags = (0x80 if final else 0) | (0x40 if read else 0) | (0x20 if write else 0)
        cdb = cdb + b"\0" * (16 - len(cdb))
        bhs = struct.pack(">BBH4xQIIII", 0x01 | (0x40 if immediate else 0), flags, 0, 0,
                          self.itt, edtl, self.cmd_sn, 0) + cdb
        self.pdu(bhs, data)
        itt = self.itt
        self.itt += 1
        if not immediate:
            self.cmd_sn += 1
        return itt

    def data_out(self, itt, ttt, data_sn, offset, data, final=True):
        bhs = struct.pack(">BBH4xQII4xI4xII4x", 0x05, 0x80 if final else 0, 0, 0, itt, ttt, 0,
                          data_sn, offset)
        self.pdu(bhs, data)

    def nop(self, data=b"", itt=None, ttt=0xFFFFFFFF, immediate=True):
        itt = self.itt if itt is None else itt
        bhs = struct.pack(">BBH4xQIIII16x", 0x00 | (0x40 if immediate else 0), 0x80, 0, 0, itt,
                          ttt, self.cmd_sn, 0)
        self.pdu(bhs, data)
        self.itt += 1

    def text(self, keys):
        text = b"".join(f"{k}={v}".encode() + b"\0" for k, v in keys)
        bhs = struct.pack(">BBH4xQIIII16x", 0x44, 0x80, 0, 0, self.itt, 0xFFFFFFFF,
                          self.cmd_sn, 0)
        self.pdu(bhs, text)
        self.itt += 1

    def tmf(self, function, ref_itt=0xFFFFFFFF):
        bhs = struct.pack(">BBH4xQIIIII12x", 0x42, 0x80 | function, 0, 0, self.itt, ref_itt,
                          self.cmd_sn, 0, self.cmd_sn)
        self.pdu(bhs)
        self.itt += 1

    def logout(self, reason=0):
        bhs = struct.pack(">BBH4xQIHHII16x", 0x46, 0x80 | reason, 0, 0, self.itt, 0, 0,
                          self.cmd_sn, 0)
        self.pdu(bhs)
        self.itt += 1


OPERATIONAL = [("HeaderDigest", "None"), ("DataDigest", "None"),
               ("MaxRecvDataSegmentLength", "8192"), ("InitialR2T", "No"),
               ("ImmediateData", "Yes"), ("MaxBurstLength", "16384"),
               ("FirstBurstLength", "8192"), ("MaxOutstandingR2T", "2"),
               ("DefaultTime2Wait", "2"), ("DefaultTime2Retain", "0"),
               ("ErrorRecoveryLevel", "0"), ("MaxConnections", "1")]


def normal(volume="fuzz", digests=False, ops=OPERATIONAL):
    s = Stream()
    s.login(0, 1, True, [("InitiatorName", INITIATOR), ("SessionType", "Normal"),
                         ("TargetName", f"{PREFIX}:{volume}"), ("AuthMethod", "None")])
    ops = list(ops)
    if digests:
        ops = [("HeaderDigest", "CRC32C"), ("DataDigest", "CRC32C")] + ops[2:]
    s.login(1, 3, True, ops)
    s.hd = s.dd = digests
    return s


def cdb10(op, lba, blocks):
    return struct.pack(">BBIBHB", op, 0, lba, 0, blocks, 0)


def cdb16(op, lba, blocks):
    return struct.pack(">BBQIBB", op, 0, lba, blocks, 0, 0)


block = bytes(range(256)) * 2
seeds = {}

s = normal()
s.scsi(bytes([0x12, 0, 0, 0, 96, 0]), 96, read=True)            # INQUIRY
s.scsi(bytes([0x12, 1, 0x83, 0, 255, 0]), 255, read=True)        # VPD 0x83
s.scsi(bytes([0x00] * 6), 0)                                     # TEST UNIT READY
s.scsi(bytes([0x25] + [0] * 9), 8, read=True)                    # READ CAPACITY 10
s.scsi(bytes([0x9E, 0x10] + [0] * 8 + [0, 0, 0, 32, 0, 0]), 32, read=True)
s.scsi(bytes([0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]), 256, read=True)  # REPORT LUNS
s.scsi(cdb10(0x2A, 0, 4), 2048, write=True, data=block * 4)      # WRITE 10, immediate
s.scsi(cdb10(0x28, 0, 4), 2048, read=True)                       # READ 10
s.scsi(cdb10(0x28, 0, 4), 1024, read=True)                       # overflow
s.scsi(cdb10(0x28, 0, 1), 4096, read=True)                       # underflow
s.scsi(cdb10(0x35, 0, 0), 0)                                     # SYNCHRONIZE CACHE
s.nop(b"ping")
s.text([("SendTargets", "All")])
s.logout()
seeds["normal_io"] = s.out

s = normal()
itt = s.scsi(cdb10(0x2A, 8, 16), 8192, write=True, data=block * 2, final=False)
s.data_out(itt, 0xFFFFFFFF, 0, 1024, block * 2, final=False)
s.data_out(itt, 0xFFFFFFFF, 1, 2048, block * 12, final=True)     # up to FirstBurstLength
itt = s.scsi(cdb10(0x2A, 64, 64), 32768, write=True, data=block * 4)
s.data_out(itt, 1, 0, 2048, block * 28, final=True)              # the first R2T (TTT 1)
s.data_out(itt, 2, 0, 16384, block * 32, final=True)
s.scsi(cdb16(0x88, 64, 64), 32768, read=True)
s.logout()
seeds["write_r2t"] = s.out

s = normal()
itt = s.scsi(cdb10(0x2A, 0, 8), 4096, write=True, final=True)
s.data_out(itt, 1, 5, 0, block * 8)                              # bad DataSN
s.scsi(cdb10(0x2A, 0, 1), 512, write=True, data=block, immediate=True)
s.cmd_sn += 100
s.scsi(cdb10(0x28, 0, 1), 512, read=True)                        # outside the window
s.cmd_sn -= 100
itt = s.scsi(cdb10(0x2A, 0, 16), 8192, write=True)
s.tmf(1, itt)                                                    # ABORT TASK
s.tmf(2)
s.tmf(4)
s.tmf(5)                                                         # LUN RESET
s.tmf(6)
s.tmf(7)
s.nop(itt=0xFFFFFFFF, ttt=1)
s.pdu(struct.pack(">B47x", 0x1F))                                # unknown opcode
s.pdu(struct.pack(">B47x", 0x10))                                # SNACK
s.logout(2)
seeds["errors_tmf"] = s.out

s = normal(digests=True)
s.scsi(bytes([0x12, 0, 0, 0, 36, 0]), 36, read=True)
s.scsi(cdb10(0x2A, 0, 1), 512, write=True, data=block)
s.scsi(cdb10(0x28, 0, 1), 512, read=True)
s.logout()
seeds["digests"] = s.out

s = Stream()
s.login(0, 1, True, [("InitiatorName", INITIATOR), ("SessionType", "Discovery"),
                     ("AuthMethod", "None")])
s.login(1, 3, True, [("HeaderDigest", "None"), ("DataDigest", "None"),
                     ("MaxRecvDataSegmentLength", "512"), ("MaxBurstLength", "1024")])
s.text([("SendTargets", "All")])
s.text([("SendTargets", f"{PREFIX}:fuzz"), ("X-com.example", "1")])
s.scsi(bytes([0x00] * 6), 0)
s.logout()
seeds["discovery"] = s.out

s = Stream()
s.login(0, 0, False, [("InitiatorName", INITIATOR), ("SessionType", "Normal"),
                      ("TargetName", f"{PREFIX}:chap"), ("AuthMethod", "CHAP,None")])
s.login(0, 0, False, [("CHAP_A", "5")])
s.login(0, 1, True, [("CHAP_N", "user"), ("CHAP_R", "0x" + "00" * 16),
                     ("CHAP_I", "7"), ("CHAP_C", "0b" + "AAECAwQFBgcICQoLDA0ODw==")])
seeds["chap"] = s.out

s = Stream()
s.login(0, 1, True, [("InitiatorName", INITIATOR), ("TargetName", f"{PREFIX}:ro"),
                     ("AuthMethod", "None"), ("Bogus", "x")])
s.login(1, 3, True, [("MaxBurstLength", "abc"), ("HeaderDigest", "MD5"),
                     ("InitialR2T", "Maybe"), ("IFMarker", "No")])
s.scsi(cdb10(0x2A, 0, 1), 4096, write=True, data=block * 8)      # read-only volume
s.scsi(bytes([0x7F, 0, 0, 0, 0, 0, 0, 0x18]), 0)                  # variable-length CDB
seeds["readonly_badkeys"] = s.out

s = Stream()
s.login(0, 1, True, [("InitiatorName", INITIATOR), ("TargetName", f"{PREFIX}:missing")])
seeds["not_found"] = s.out

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "iscsi")
if len(sys.argv) > 1:
    out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print(f"wrote {len(seeds)} seeds to {out}")
