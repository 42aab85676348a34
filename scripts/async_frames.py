#!/usr/bin/env python3
"""The initial frame size of each async function in a Swift binary, largest first.

A Swift async function's frame comes from its task's allocator, and a task keeps the allocator's slabs for
as long as it lives: a connection task holds the frames of the deepest request it served (see
scripts/conn_memory.py). The size is the second word of the function's "async function pointer" symbol
(mangled suffix `Tu`): a 32-bit relative address, then the 32-bit initial context size.

    python scripts/async_frames.py .build/release/flashsale 'APIRoutes|ReservationService|Middleware'
"""
import re
import struct
import subprocess
import sys


def sections(binary):
    out = subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)", line)
        if m and m.group(1) != ".bss":
            found.append((int(m.group(2), 16), int(m.group(3), 16), int(m.group(4), 16)))
    return found


def frames(binary):
    symbols = []
    for line in subprocess.run(["nm", binary], capture_output=True, text=True, check=True).stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].endswith("Tu"):
            symbols.append((int(parts[0], 16), parts[2]))
    data = open(binary, "rb").read()
    spans = sections(binary)
    sized = []
    for address, name in symbols:
        for start, offset, size in spans:
            if start <= address < start + size:
                at = offset + address - start
                sized.append((struct.unpack("<iI", data[at:at + 8])[1], name))
                break
    names = subprocess.run(["swift", "demangle", "--simplified", "--compact"], input="\n".join(n for _, n in sized),
                           capture_output=True, text=True, check=True).stdout.splitlines()
    return sorted(((size, name.replace("async function pointer to ", "")) for (size, _), name in zip(sized, names)),
                  reverse=True)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    pattern = re.compile(sys.argv[2]) if len(sys.argv) > 2 else None
    for size, name in frames(sys.argv[1]):
        if pattern is None or pattern.search(name):
            print("%6d  %s" % (size, name))


if __name__ == "__main__":
    main()
