#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (tests/fuzz/corpus/<target>/seed-*).

Seeds are valid messages of every kind (and a few near-misses), so the fuzzers start deep
in the parsers instead of having to discover the magic numbers. Layouts: the header
comment of each fuzz_*.c. Re-run after changing a wire format; libFuzzer adds its own
findings to a separate directory (scripts/ci-sanitizers.sh), never here.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(bytes(data))


# ---- fuzz_bootstrap: mode, p1, p2, stream -------------------------------------------------
HELLO, AUTH, AUTH_OK, REJECT, READY, ABORT, ALLGATHER, BCAST, BARRIER = range(1, 10)


def hdr(t, n):
    return b"RDXB" + struct.pack(">HHI", 1, t, n)


def auth(rank, size):
    return struct.pack(">II", rank, size) + bytes(range(32)) + bytes(32)


def bootstrap():
    t = "fuzz_bootstrap"
    write(t, "pure-auth", b"\x00\x01\x80" + auth(1, 2))          # size 2, MAC fixed
    write(t, "pure-hdr", b"\x00\x07\x00" + hdr(ALLGATHER, 64))
    # root: p1 = 0 (size 2), p2 bit0 = fix the MAC, bit1 = EOF, bits 2.. = ranks taken
    write(t, "root-accept", b"\x01\x00\x01" + hdr(AUTH, 72) + auth(1, 2))
    write(t, "root-accept-trailing", b"\x01\x02\x01" + hdr(AUTH, 72) + auth(3, 4) + b"xyz")
    write(t, "root-dup-rank", b"\x01\x00\x05" + hdr(AUTH, 72) + auth(1, 2))
    write(t, "root-bad-size", b"\x01\x00\x01" + hdr(AUTH, 72) + auth(1, 9))
    write(t, "root-bad-mac", b"\x01\x00\x00" + hdr(AUTH, 72) + auth(1, 2))
    write(t, "root-partial", b"\x01\x00\x00" + hdr(AUTH, 72) + auth(1, 2)[:20])
    write(t, "root-partial-eof", b"\x01\x00\x02" + hdr(AUTH, 72)[:7])
    write(t, "root-garbage", b"\x01\x00\x00GET / HTTP/1.1\r\n\r\n")
    write(t, "root-huge-len", b"\x01\x00\x00" + hdr(AUTH, 0xFFFFFFFF))
    # collective: p1 bit0 = root, p2 bits 0-1 = type, bit2 = EOF, bits 3.. = length / 9
    write(t, "xfer-allgather", b"\x02\x00" + bytes([(2 << 3) | 1]) + hdr(ALLGATHER, 18)
          + bytes(range(18)))
    write(t, "xfer-ready", b"\x02\x00\x00" + hdr(READY, 0))
    write(t, "xfer-barrier-root", b"\x02\x01" + bytes([(0 << 3) | 3]) + hdr(BARRIER, 0))
    write(t, "xfer-abort", b"\x02\x00\x01" + hdr(ABORT, 4 + 11) + struct.pack(">I", 6)
          + b"rank 2 died")
    write(t, "xfer-bcast-lenfield", b"\x02\x00\x82" + hdr(BCAST, 300) + bytes(300))
    write(t, "xfer-short-eof", b"\x02\x00\x05" + hdr(BCAST, 20)[:9])
    # client: p1 = rank/size, p2 bit0 = fix the root's proof
    ok = hdr(HELLO, 32) + bytes(range(100, 132)) + hdr(AUTH_OK, 32) + bytes(32)
    write(t, "client-ok", b"\x03\x00\x01" + ok)
    write(t, "client-ok-trailing", b"\x03\x09\x01" + ok + hdr(READY, 0))
    write(t, "client-reject", b"\x03\x00\x00" + hdr(HELLO, 32) + bytes(32) + hdr(REJECT, 21)
          + b"rank already connect\x07")
    write(t, "client-bad-proof", b"\x03\x00\x00" + ok)
    write(t, "client-empty", b"\x03\x00\x00")
    # watchdog: p1 bit0 = root (then bits 4.. pick the peer), bits 1-3 = size; p2 bit0 = EOF
    abort = hdr(ABORT, 4 + 18) + struct.pack(">I", 7) + b"rank 3: peer 1 ..."
    write(t, "watch-abort", b"\x04\x00\x00" + abort)
    write(t, "watch-abort-root", b"\x04\x13\x01" + abort + b"junk")
    write(t, "watch-other", b"\x04\x00\x00" + hdr(ALLGATHER, 8) + bytes(8))
    write(t, "watch-close", b"\x04\x00\x01")
    write(t, "watch-partial-close", b"\x04\x00\x01" + abort[:20])


def ucx():
    t = "fuzz_ucx_wire"
    # config: size-1, rank, slots, slot bytes (be16), head flag, head
    cfg = bytes([1, 0, 8]) + struct.pack(">H", 256) + b"\x00\x00"

    def data(seq_off, length, tag=7):
        raw = struct.pack("<IIQQQ", 1, length, 0, tag, 0) + bytes(16)
        return bytes([0, 1]) + raw + bytes([1, seq_off, 0])

    ctl = bytes([1, 1, 1]) + struct.pack("<IIQ", 1, 0x55584452, 3) + bytes(16) + b"\x00"
    honest = b"".join(bytes([5, k]) for k in (0, 0, 0, 1, 2, 0, 1, 1, 2, 0) * 3)
    write(t, "data-inline", cfg + data(1, 16))
    write(t, "data-slot", cfg + data(1, 200))
    write(t, "data-window-edge", cfg + data(8, 0) + data(9, 4))
    write(t, "ctl", cfg + ctl)
    write(t, "honest", cfg + honest)
    write(t, "mixed", cfg + honest + data(1, 40) + ctl + bytes([2, 0] + [0] * 20)
          + bytes([3, 1, 0, 0, 0, 1]) + bytes([4, 0, 41, 1]))
    write(t, "huge-head", bytes([3, 1, 4]) + struct.pack(">H", 64) + b"\x01"
          + struct.pack(">Q", 2**64 - 7) + honest)


def verbs():
    t = "fuzz_verbs_wire"
    # imm stream: start counter just below a 31-bit wrap, steps of 1 and of 2^31 - 1
    start = struct.pack(">Q", (2**31 - 3) << 1)
    write(t, "imm-wrap", bytes([0]) + start + bytes([3, 0, 1, 0, 1, 1])
          + b"\x01" + struct.pack(">I", 2**31 - 1) + b"\x00")
    write(t, "imm-any", bytes([1]) + struct.pack(">QI", 2**64 - 2, 5))
    write(t, "wire-ok", bytes([2, 2, 6, 3, 1, 1, 1, 2, 0]))
    write(t, "wire-flip", bytes([2, 2, 6, 3, 1, 1, 1, 2, 1, 0, 3]))
    write(t, "layout", bytes([3, 0, 11, 0, 8, 0]) + struct.pack(">I", 256 << 10) + b"\x00"
          + struct.pack(">H", 64))
    write(t, "layout-shrink", bytes([3, 0, 200, 0, 66, 0]) + struct.pack(">I", 64 << 20)
          + b"\x00" + struct.pack(">H", 8))


if __name__ == "__main__":
    bootstrap()
    ucx()
    verbs()
