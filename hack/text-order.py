#!/usr/bin/env python3
"""Writes the daemon's symbol order (hack/daemon.order) from a profiling run.

Why: the daemon's resident memory is mostly pages of its own code, and the kernel maps code in
64 KiB windows around each page it faults in ("fault-around"). With the linker's default layout
the code a daemon runs is scattered through about 20 MB of text, so those windows bring in
megabytes of code that never runs. Listing the functions a daemon runs first makes them one
dense stretch of text.

Input: the profiling build (every function on a page of its own), the page lists a profiling run
of it wrote (hack/text-profile.c: per daemon process, the pages of its text that were touched,
with fault-around turned off), and the release binary whose names the order uses.
Output: one symbol per line, for lld's --symbol-ordering-file (build.rs). A function not named
(new code, or a renamed one) keeps its default place, so a stale list costs memory, never
correctness.
"""
import bisect
import re
import subprocess
import sys


def text_segment(binary):
    out = subprocess.run(["readelf", "-lW", binary], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LOAD" and "E" in f[6:-1]:
            return int(f[1], 16), int(f[2], 16), int(f[4], 16)  # offset, vaddr, filesz
    raise SystemExit("no executable LOAD segment")


def nm(binary, *args):
    out = subprocess.run(["nm", *args, "-S", "--defined-only", binary], check=True,
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) == 4 and f[2] in "tTW" and int(f[1], 16):
            yield int(f[0], 16), int(f[1], 16), f[3]


def functions(binary):
    return list(nm(binary, "-n"))


HASHES = re.compile(r"17h[0-9a-f]{16}E|\.llvm\.[0-9]+$")


def groups(binary):
    """The functions by name without hashes (which a build with other flags changes), each
    group in symbol-table order, with sizes."""
    out = {}
    for _, size, name in nm(binary, "-p"):
        out.setdefault(HASHES.sub("", name), []).append((name, size))
    return out


def rename(profiled, release):
    """Each profiled function's name in the release binary: within a group of the same
    unhashed name, equal sizes first, then the rest in symbol-table order."""
    rel = groups(release)
    out = {}
    for key, mine in groups(profiled).items():
        theirs = list(rel.get(key, []))
        left = []
        for name, size in mine:
            i = next((i for i, (_, s) in enumerate(theirs) if s == size), None)
            if i is None:
                left.append(name)
            else:
                out[name] = theirs.pop(i)[0]
        for name, (other, _) in zip(left, theirs):
            out[name] = other
    return out


def text_map(binary):
    """What [`touched`] needs of a binary, read once."""
    off, vaddr, _ = text_segment(binary)
    funcs = functions(binary)
    return off, vaddr, funcs, [a for a, _, _ in funcs]


def touched(text, pages_file):
    """The functions (of `text`, a [`text_map`]) on the pages a daemon touched (a pages file
    of hack/text-profile.c: file page numbers), each with its address."""
    off, vaddr, funcs, starts = text
    out = {}
    with open(pages_file) as fh:
        pages = sorted(vaddr + (int(x) * 4096 - off) for x in fh if x.strip())
    for page in pages:
        i = max(bisect.bisect_right(starts, page) - 1, 0)
        while i < len(funcs) and funcs[i][0] < page + 4096:
            a, size, name = funcs[i]
            if a + size > page:
                out.setdefault(name, a)
            i += 1
    return out


def read_order(path):
    with open(path) as fh:
        return [line.strip() for line in fh if line.strip()]


def write_order(path, names):
    with open(path, "w") as fh:
        for n in names:
            fh.write(f"{n}\n")


def refine(release, order_file, pages_files):
    """Second pass, on a release binary linked with `order_file`: the functions on pages a run
    of it touched go first (those already listed keep their relative order, then those the
    first pass missed: names the profiling build spelled otherwise), then the rest of the list.
    So the code of the run's daemon is one stretch, with no 64 KiB fault-around window opened
    outside it for a function the first pass did not name."""
    listed = read_order(order_file)
    rank = {n: i for i, n in enumerate(listed)}
    text = text_map(release)
    ran = {}
    for p in pages_files:
        for name, a in touched(text, p).items():
            ran.setdefault(name, a)
    hot = sorted((n for n in ran if n in rank), key=rank.get)
    missed = sorted((n for n in ran if n not in rank), key=ran.get)
    rest = [n for n in listed if n not in ran]
    write_order(order_file, hot + missed + rest)
    sizes = {name: size for _, size, name in text[2]}
    kib = lambda ns: sum(sizes.get(n, 0) for n in ns) / 1024
    print(f"{len(hot)} listed functions ran ({kib(hot):.0f} KiB), {len(missed)} unlisted ones on "
          f"their pages ({kib(missed):.0f} KiB) added, {len(rest)} listed ones after them; "
          f"{order_file} rewritten")


def remap(release, order_file):
    """The list's names that the release binary no longer has (a code change renumbers the
    `.llvm.N` suffixes of a whole codegen unit's local functions), replaced by the binary's
    first function of the same unhashed name not listed yet. Make release after it."""
    rel = groups(release)
    have = {n for members in rel.values() for n, _ in members}
    listed = read_order(order_file)
    taken = set(listed) & have
    out, fixed, lost = [], 0, 0
    for name in listed:
        if name in have:
            out.append(name)
            continue
        pick = next((n for n, _ in rel.get(HASHES.sub("", name), []) if n not in taken), None)
        if pick:
            taken.add(pick)
            out.append(pick)
            fixed += 1
        else:
            lost += 1
    write_order(order_file, out)
    print(f"{order_file}: {fixed} names renamed to {release}'s, {lost} not found, "
          f"{len(out)} listed")


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--remap":
        remap(sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) >= 4 and sys.argv[1] == "--refine":
        refine(sys.argv[2], sys.argv[3], sys.argv[4:])
        return
    if len(sys.argv) < 5:
        raise SystemExit("usage: text-order.py PROFILED-BINARY RELEASE-BINARY OUT PAGES-FILE...\n"
                         "       text-order.py --refine RELEASE-BINARY ORDER PAGES-FILE...\n"
                         "       text-order.py --remap RELEASE-BINARY ORDER")
    profiled, release, out, pages_files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    # How many of the profiled daemons ran each function: the code every daemon runs goes
    # first, so that one daemon's hot code is one stretch even when others ran more.
    text = text_map(profiled)
    daemons = {}
    first = {}
    for p in pages_files:
        for name, a in touched(text, p).items():
            daemons[name] = daemons.get(name, 0) + 1
            first.setdefault(name, a)
    ran = sorted(daemons, key=lambda n: (-daemons[n], first[n]))
    # Under the release binary's names.
    names = list(dict.fromkeys(r for r in map(rename(profiled, release).get, ran) if r))
    write_order(out, names)
    sizes = {name: size for _, size, name in functions(release)}
    size = sum(sizes.get(n, 0) for n in names)
    print(f"{len(pages_files)} daemons ran {len(ran)} functions; {len(names)} found in "
          f"{release}, {size / 2**20:.1f} MiB, written to {out}")


main()
