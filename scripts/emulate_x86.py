#!/usr/bin/env python3
"""Run one x86-64 function of a dumped process image under Bochs (the `bochscpu` package).

Used by the tests of code paths this machine's CPU cannot run (the AVX-512 micro-kernels):
the test process writes its memory image and the call to make, this script emulates the
call on a CPU with AVX-512 and writes back the memory ranges the call may change.

Usage: emulate_x86.py DUMP OUT, or emulate_x86.py --probe (exit 0 when the emulator
imports, 3 otherwise).

DUMP (little-endian): u64 entry address, u64 first argument (rdi), u64 segment count,
then per segment u64 address, u64 length, u64 write-back flag, and its bytes. Pages are
mapped at their own addresses; a segment's bytes overlay the page they fall in.
OUT: the write-back segments' bytes after the call, in order.

Exit status 0 when the function returned; 2 with a message when it faulted; 3 when the
`bochscpu` package cannot be imported (the tests probe for that first, and skip).
"""

import ctypes
import os
import struct
import subprocess
import sys
import tempfile

PAGE = 4096

# Shim for wheels built against glibc 2.38 or newer (C23 names of two libc functions)
# where the system's glibc is older.
SHIM = r"""
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
unsigned long long __isoc23_strtoull(const char *s, char **e, int b) {
    return strtoull(s, e, b);
}
int __isoc23_sscanf(const char *s, const char *f, ...) {
    va_list a;
    va_start(a, f);
    int r = vsscanf(s, f, a);
    va_end(a);
    return r;
}
"""


def import_bochscpu():
    try:
        import bochscpu  # noqa: F401
    except ImportError as e:
        if "__isoc23" not in str(e):
            raise
        d = tempfile.mkdtemp(prefix="lf_emu_")
        src, lib = os.path.join(d, "shim.c"), os.path.join(d, "shim.so")
        with open(src, "w") as f:
            f.write(SHIM)
        subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", lib, src], check=True)
        ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
    import bochscpu
    import bochscpu.cpu
    import bochscpu.memory

    return bochscpu


def read_dump(path):
    with open(path, "rb") as f:
        data = f.read()
    entry, arg, count = struct.unpack_from("<QQQ", data, 0)
    off = 24
    segments = []
    for _ in range(count):
        addr, length, writeback = struct.unpack_from("<QQQ", data, off)
        off += 24
        segments.append((addr, data[off : off + length], bool(writeback)))
        off += length
    return entry, arg, segments


def main():
    try:
        bochscpu = import_bochscpu()
    except Exception as e:  # the package or a compiler for its shim is missing
        print(f"bochscpu not importable: {e}", file=sys.stderr)
        return 3
    if sys.argv[1] == "--probe":
        return 0
    dump, out = sys.argv[1], sys.argv[2]
    entry, arg, segments = read_dump(dump)

    # The image, page by page (segments overlay the pages they fall in).
    pages = {}
    for addr, data, _ in segments:
        pos = 0
        while pos < len(data):
            a = addr + pos
            base = a & ~(PAGE - 1)
            n = min(PAGE - (a - base), len(data) - pos)
            page = pages.setdefault(base, bytearray(PAGE))
            page[a - base : a - base + n] = data[pos : pos + n]
            pos += n
    # A stack, and a return address on a page holding `hlt` (a fault in user mode: the
    # emulation stops there).
    top = max(pages) + 64 * PAGE
    stack_base = top
    for i in range(16):
        pages[stack_base + i * PAGE] = bytearray(PAGE)
    sentinel = stack_base + 16 * PAGE
    pages[sentinel] = bytearray(b"\xf4" * PAGE)
    rsp = sentinel - 64 - 8  # rsp + 8 16-byte aligned at the entry, as after a call
    ret = struct.pack("<Q", sentinel)
    stack_page = rsp & ~(PAGE - 1)
    pages[stack_page][rsp - stack_page : rsp - stack_page + 8] = ret

    # Guest physical pages assigned in order; host pages filled when first touched.
    pt = bochscpu.memory.PageMapLevel4Table()
    by_gpa = {}
    gpa = 0x1000_0000
    for base in sorted(pages):
        pt.insert(base, gpa, 1)  # writable (and executable)
        by_gpa[gpa] = pages[base]
        gpa += PAGE
    pml4 = 0x10_0000
    for hva, g in pt.commit(pml4):
        bochscpu.memory.page_insert(g, hva)

    def missing_page(g):
        g &= ~(PAGE - 1)
        if g not in by_gpa:
            raise RuntimeError(f"access to unmapped guest page {g:#x}")
        hva = bochscpu.memory.allocate_host_page()
        bochscpu.memory.page_insert(g, hva)
        bochscpu.memory.phy_write(g, list(by_gpa[g]))

    sess = bochscpu.Session()
    sess.missing_page_handler = missing_page
    state = bochscpu.State()
    bochscpu.cpu.set_long_mode(state)
    state.cr3 = pml4
    # OSFXSR, OSXMMEXCPT, OSXSAVE; XCR0: x87, SSE, AVX, opmask, the upper halves of
    # zmm0-15 and zmm16-31.
    state.cr4 = state.cr4 | (1 << 9) | (1 << 10) | (1 << 18)
    state.xcr0 = 0xE7
    state.mxcsr = 0x1F80
    state.fpcw = 0x37F
    state.rip = entry
    state.rdi = arg
    state.rsp = rsp
    cs = bochscpu.Segment()
    cs.present, cs.selector, cs.base, cs.limit, cs.attr = True, 0x33, 0, 0xFFFFFFFF, 0x22FB
    ds = bochscpu.Segment()
    ds.present, ds.selector, ds.base, ds.limit, ds.attr = True, 0x2B, 0, 0xFFFFFFFF, 0xCF3
    state.cs = cs
    state.ds = state.ss = state.es = state.fs = state.gs = ds
    sess.cpu.state = state

    faults = []

    def exception(s, cpu_id, vector, error_code):
        faults.append((vector, error_code, s.cpu.rip))
        s.stop()

    hook = bochscpu.Hook()
    hook.exception = exception
    sess.run([hook])
    rip = sess.cpu.rip
    # `hlt` at CPL 3 raises #GP (13); Bochs reports the address at or just past it.
    if not faults or faults[0][0] != 13 or rip not in (sentinel, sentinel + 1):
        print(
            f"the call did not return: stopped at {rip:#x} with {faults} "
            f"(entry {entry:#x}, return address {sentinel:#x})",
            file=sys.stderr,
        )
        return 2
    with open(out, "wb") as f:
        for addr, data, writeback in segments:
            if writeback:
                f.write(bytes(bochscpu.memory.virt_read(pml4, addr, len(data))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
