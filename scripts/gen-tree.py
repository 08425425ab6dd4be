#!/usr/bin/env python3
"""Generates a deterministic tree of many files for benchmarks.

usage: gen-tree.py DIR [FILES] [TOTAL_BYTES] [SEED]
Files are spread over directories of 100; a third of each file's bytes are random
(incompressible), the rest repeat text, like a mix of documents and media.
"""
import os
import random
import sys

def main():
    root = sys.argv[1]
    files = int(sys.argv[2]) if len(sys.argv) > 2 else 50_000
    total = int(sys.argv[3]) if len(sys.argv) > 3 else 1 << 30
    seed = sys.argv[4] if len(sys.argv) > 4 else "20261124"
    rng = random.Random(seed)
    avg = total // files
    text = b"".join(b"line %d of a document that compresses well\n" % i for i in range(4000))
    written = 0
    for i in range(files):
        d = os.path.join(root, "d%04d" % (i // 100))
        if i % 100 == 0:
            os.makedirs(d, exist_ok=True)
        size = rng.randint(avg // 2, avg + avg // 2)
        rnd = rng.randbytes(size // 3)
        body = (rnd + text * (1 + size // len(text)))[:size]
        with open(os.path.join(d, "f%05d.dat" % i), "wb") as f:
            f.write(body)
        written += size
    print(f"generated {files} files, {written / 2**20:.0f} MiB under {root}")

if __name__ == "__main__":
    main()
