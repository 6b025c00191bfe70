#!/usr/bin/env python3
"""The ways the panic hook could make an event durable, side by side (issue 22).

Each option writes a 7.8 KB event (what the comparison bench's panic
serializes to) 2,000 times, alone and while a second thread does what the
SDK's sender does to the same directory (create, write, rename, delete
files). Prints median / p99 / max per write in microseconds.

    python3 bench/spool-write/options.py [DIR]

DIR defaults to a fresh directory under the system temp dir; run it on the
file system the spool lives on. Python adds about 1 µs per call to every
option alike: compare the options, not the absolute numbers with Rust's.
"""
import mmap
import os
import sys
import tempfile
import threading
import time

EVENT = b"x" * 7828
N = 2000
SLOT = 8192


def pct(ts):
    ts = sorted(ts)
    at = lambda q: ts[min(len(ts) - 1, int(len(ts) * q))] * 1e6
    return f"{at(0.5):8.0f} {at(0.99):8.0f} {ts[-1] * 1e6:8.0f}"


def file_rename(d, fsync):
    def write(i):
        tmp = os.path.join(d, f".e{i}.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        os.write(fd, EVENT)
        if fsync:
            os.fsync(fd)
        os.close(fd)
        os.rename(tmp, os.path.join(d, f"{i:020}-e.json"))
        if fsync:
            dfd = os.open(d, os.O_RDONLY)
            os.fsync(dfd)
            os.close(dfd)
    return write


def pwrite_segment(d):
    fd = os.open(os.path.join(d, "segment"), os.O_CREAT | os.O_RDWR, 0o600)
    os.write(fd, b"\0" * (SLOT * 512))
    return lambda i: os.pwrite(fd, EVENT, (i % 512) * SLOT)


def mapped_journal(d):
    fd = os.open(os.path.join(d, "journal"), os.O_CREAT | os.O_RDWR, 0o600)
    os.write(fd, b"\0" * (SLOT * 512))
    m = mmap.mmap(fd, SLOT * 512)
    for page in range(0, SLOT * 512, 4096):  # dirty every page once, as init does
        m[page] = 0

    def write(i):
        o = (i % 512) * SLOT
        m[o:o + len(EVENT)] = EVENT
    return write


def churn(d, stop):
    i = 0
    while not stop.is_set():
        tmp = os.path.join(d, f".c{i}.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600)
        os.write(fd, EVENT)
        os.close(fd)
        os.rename(tmp, os.path.join(d, f"c{i}.json"))
        if i >= 20:
            os.unlink(os.path.join(d, f"c{i - 20}.json"))
        i += 1


def run(name, make, base, with_churn):
    d = tempfile.mkdtemp(dir=base)
    write = make(d)
    stop = threading.Event()
    t = threading.Thread(target=churn, args=(d, stop))
    if with_churn:
        t.start()
    ts = []
    for i in range(N):
        start = time.perf_counter()
        write(i)
        ts.append(time.perf_counter() - start)
        time.sleep(0.0002)  # panics come one after another, not in one syscall burst
    stop.set()
    if with_churn:
        t.join()
    print(f"{name:<38} {'yes' if with_churn else 'no':<6} {pct(ts)}")


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else None
    print(f"{'option':<38} {'churn':<6} {'median':>8} {'p99':>8} {'max':>8}  (µs)")
    options = [
        ("file create + write + rename", lambda d: file_rename(d, False)),
        ("same + fsync of file and directory", lambda d: file_rename(d, True)),
        ("pwrite into a preallocated segment", pwrite_segment),
        ("copy into a mapped, dirtied journal", mapped_journal),
    ]
    for with_churn in (False, True):
        for name, make in options:
            run(name, make, base, with_churn)


if __name__ == "__main__":
    main()
