"""Byte mutations shared by the readers' fuzz tests (test_aedat, test_fuzz_all, test_nmnist,
test_prophesee)."""

from __future__ import annotations


def mutate(data: bytes, ops) -> bytes:
    """Apply (flip | truncate | insert | overwrite a header number) operations in order:
    ``("flip", pos, mask)``, ``("truncate", pos)``, ``("insert", pos, bytes)``,
    ``("number", pos, width, value)`` (positions taken modulo the current length)."""
    buf = bytearray(data)
    for op in ops:
        if not buf:
            break
        if op[0] == "flip":
            buf[op[1] % len(buf)] ^= op[2]
        elif op[0] == "truncate":
            del buf[op[1] % len(buf):]
        elif op[0] == "insert":
            i = op[1] % (len(buf) + 1)
            buf[i:i] = op[2]
        else:
            _, pos, width, value = op
            pos = pos % len(buf)
            raw = (value % (1 << (8 * width))).to_bytes(width, "little")
            buf[pos : pos + width] = raw[: max(0, len(buf) - pos)]
    return bytes(buf)


def mutate_small(data: bytes, ops) -> bytes:
    """``(kind, pos, value)`` operations: ``flip`` xors the byte at ``pos`` with ``value``,
    ``cut`` truncates at ``pos``, ``insert`` puts ``1 + pos % 7`` copies of byte ``value`` at
    ``pos`` (positions modulo the current length)."""
    buf = bytearray(data)
    for op, pos, val in ops:
        if not buf:
            break
        if op == "flip":
            buf[pos % len(buf)] ^= val
        elif op == "cut":
            del buf[pos % len(buf):]
        else:
            buf[pos % (len(buf) + 1) : pos % (len(buf) + 1)] = bytes([val]) * (1 + pos % 7)
    return bytes(buf)
