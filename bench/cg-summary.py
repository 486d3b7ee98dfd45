#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
"""cg-summary.py - per-call instruction counts from a callgrind output file.

Usage: cg-summary.py CALLGRIND.OUT [FUNCTION ...]

For each function named (substring match on the symbol; default: every
btl/ninja entry point), prints calls, inclusive Ir, Ir per call, self Ir
per call.  Inclusive cost is self cost plus the cost of the calls it
makes (as callgrind records them); a recursive function counts its
recursive calls twice, none of the ones listed here recurses.  Then the
top self-cost functions of the whole run.
"""
import re
import sys
from collections import defaultdict

DEFAULT = [
    "ninja_sendi", "ninja_send", "ninja_prepare_src", "ninja_put",
    "ninja_progress", "mca_btl_ninja_endpoint_recv",
    "mca_btl_ninja_endpoint_upcall", "mca_btl_ninja_progress_io",
    "mca_btl_ninja_endpoint_flush",
]


def parse(path):
    names = {}
    self_ir = defaultdict(int)
    incl_calls = defaultdict(int)     # cost of calls made by fn
    ncalls = defaultdict(int)         # times fn was called
    fn = None
    pending_call = None               # (target, count)

    def name_of(spec):
        m = re.match(r"\((\d+)\)(?:\s+(.*))?$", spec)
        if not m:
            return spec
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), spec)

    cfn = None
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            if line.startswith("fn="):
                fn = name_of(line[3:])
                continue
            if line.startswith("cfn="):
                cfn = name_of(line[4:])
                continue
            if line.startswith("calls="):
                count = int(line[6:].split()[0])
                pending_call = (cfn, count)
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                ir = int(parts[1]) if len(parts) > 1 else 0
                if pending_call:
                    target, count = pending_call
                    incl_calls[fn] += ir
                    ncalls[target] += count
                    pending_call = None
                else:
                    self_ir[fn] += ir
    return self_ir, incl_calls, ncalls


def main():
    import signal
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    self_ir, incl_calls, ncalls = parse(sys.argv[1])
    wanted = sys.argv[2:] or DEFAULT
    total = sum(self_ir.values())
    print(f"{'function':44s} {'calls':>9s} {'incl Ir':>12s} {'Ir/call':>10s} {'self/call':>10s}")
    for w in wanted:
        for fn in sorted(set(self_ir) | set(ncalls)):
            if fn != w and not fn.endswith(":" + w) and fn.split(" ")[0] != w:
                continue
            n = ncalls.get(fn, 0)
            inc = self_ir.get(fn, 0) + incl_calls.get(fn, 0)
            per = inc / n if n else 0
            sper = self_ir.get(fn, 0) / n if n else 0
            print(f"{fn[:44]:44s} {n:9d} {inc:12d} {per:10.0f} {sper:10.0f}")
    print(f"\ntotal Ir {total}; top self cost:")
    for fn, ir in sorted(self_ir.items(), key=lambda x: -x[1])[:12]:
        print(f"  {ir:12d} {100.0 * ir / total:5.1f}%  {fn[:70]}")


if __name__ == "__main__":
    main()
