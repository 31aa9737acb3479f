#!/usr/bin/env python3
"""A seeded, synthetic home directory for backup benchmarks, and its day-2 changes.

    homedir.py gen DIR [--scale S] [--seed N]      write the day-1 tree into DIR (must not exist)
    homedir.py mutate DIR [--seed N]               apply the day-2 changes in place; prints what changed (JSON)
    homedir.py manifest DIR OUT.json               record every entry: kind, size, SHA-256, mode, mtime, target
    homedir.py verify DIR MANIFEST.json            compare a tree (a restore) with a manifest; exit 1 on any
                                                   difference in names, kinds, contents, modes, file mtimes or
                                                   symlink targets

Scale 1 is about 2.2 GiB in about 13,000 files and 1,400 directories. The same scale and seed give the same bytes, names, modes and
mtimes on every machine (Python's Mersenne Twister is specified; no hashing of str objects is involved).
What a home directory holds and why it is here:
  - source trees and notes: many small text files (compressible, mostly unchanged between days)
  - dot-directories of configuration: tiny files, deep paths
  - documents: text with embedded incompressible parts, 50 KiB to 6 MiB (edited in the middle on day 2)
  - photos and music: incompressible, 1 to 12 MiB
  - a few large files (a VM image with zero runs, an archive), 120 to 256 MiB, one changed by an insert
  - drafts that share a long run of bytes at shifted offsets (content-defined chunking finds it)
  - duplicated files and a duplicated project; symlinks (to files, to directories, dangling); hard links;
    empty files and directories; odd names (spaces, unicode, a newline, bytes that are not UTF-8, 200 bytes long)
Only the standard library is used.
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import stat
import sys

KIB, MIB = 1 << 10, 1 << 20
DAY1 = 1_650_000_000  # mtimes of day 1 spread over the two years before this
DAY2 = 1_720_000_000  # every day-2 change gets an mtime on this day

WORDS = (
    "the of and to in is it for on with as at by from this that are be or an not have was but all can "
    "backup storage chunk node cluster shard stripe restore snapshot tenant generation repair scrub quorum "
    "report meeting budget draft review notes plan todo fix build test release invoice travel photo music "
    "return value error result config option parse write read open close buffer index table query update"
).split()


def rand_bytes(rng, n):
    return rng.randbytes(n)


def text(rng, n, pool):
    """About n bytes of line-oriented text drawn from a pool of lines (compresses about 3-4x)."""
    out, size = [], 0
    while size < n:
        line = pool[rng.randrange(len(pool))]
        out.append(line)
        size += len(line)
    return "".join(out).encode()[:n]


def line_pool(rng):
    pool = []
    for _ in range(4000):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 14)))
        indent = "    " * rng.randint(0, 3)
        pool.append(f"{indent}{words}{rng.choice(['', ';', ',', ':', ' {', ' }'])}\n")
    return pool


def document(rng, n, pool):
    """Text with incompressible runs (embedded images, compressed streams), about half and half."""
    out, size = [], 0
    while size < n:
        part = rng.randint(8 * KIB, 256 * KIB)
        out.append(rand_bytes(rng, part) if rng.random() < 0.5 else text(rng, part, pool))
        size += part
    return b"".join(out)[:n]


def log_uniform(rng, lo, hi):
    return int(lo * (hi / lo) ** rng.random())


class Writer:
    def __init__(self, root, rng):
        self.root, self.rng, self.files, self.bytes = root, rng, 0, 0

    def write(self, rel, data, mode=0o644):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        t = DAY1 - self.rng.randrange(2 * 365 * 86400)
        os.utime(path, ns=(t * 10**9, t * 10**9 + self.rng.randrange(10**9)))
        self.files += 1
        self.bytes += len(data)


def name(rng, ext=""):
    stem = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 10)))
    return stem + ext


def gen(root, scale, seed):
    if os.path.exists(root) and os.listdir(root):
        sys.exit(f"{root} exists and is not empty")
    os.makedirs(root, exist_ok=True)
    rng = random.Random(seed)
    pool = line_pool(rng)
    w = Writer(root, rng)
    n = lambda x: max(1, int(x * scale))  # noqa: E731

    # Source trees and notes.
    for p in range(n(24)):
        project = f"src/{name(rng)}"
        dirs = [""]
        for _ in range(rng.randint(10, 60)):
            dirs.append(os.path.join(rng.choice(dirs), name(rng)))
        for _ in range(rng.randint(100, 700)):
            depth = rng.choice(dirs)
            ext = rng.choice([".rs", ".py", ".c", ".h", ".md", ".txt", ".json"])
            rel = os.path.join(project, depth, name(rng, ext))
            w.write(rel, text(rng, log_uniform(rng, 200, 60 * KIB), pool), 0o755 if ext == ".py" and rng.random() < 0.3 else 0o644)
    topics = [name(rng) for _ in range(n(40))]
    for _ in range(n(400)):
        w.write(f"notes/{rng.choice(topics)}/{name(rng, '.md')}", text(rng, log_uniform(rng, 100, 20 * KIB), pool))
    # Configuration.
    apps = [os.path.join(".config", name(rng), *([name(rng)] if rng.random() < 0.5 else [])) for _ in range(n(250))]
    for _ in range(n(2500)):
        rel = os.path.join(rng.choice(apps), name(rng, rng.choice([".toml", ".json", ".ini"])))
        w.write(rel, text(rng, log_uniform(rng, 20, 4 * KIB), pool), 0o600 if rng.random() < 0.2 else 0o644)
    # Documents.
    folders = [name(rng) for _ in range(n(30))]
    for _ in range(n(300)):
        w.write(f"Documents/{rng.choice(folders)}/{name(rng, rng.choice(['.pdf', '.docx', '.odt']))}", document(rng, log_uniform(rng, 50 * KIB, 6 * MIB), pool))
    # Photos and music.
    for _ in range(n(140)):
        w.write(f"Pictures/{2015 + rng.randrange(10)}/{name(rng, '.jpg')}", rand_bytes(rng, log_uniform(rng, 1 * MIB, 12 * MIB)))
    albums = [name(rng) for _ in range(n(12))]
    for _ in range(n(70)):
        w.write(f"Music/{rng.choice(albums)}/{name(rng, '.flac')}", rand_bytes(rng, log_uniform(rng, 3 * MIB, 10 * MIB)))
    # Large files: a VM image with zero runs, an archive.
    image = bytearray()
    while len(image) < n(256) * MIB:
        run = rng.randint(1, 8) * MIB
        image += bytes(run) if rng.random() < 0.3 else rand_bytes(rng, run)
    w.write("vm/disk.img", bytes(image))
    w.write("Downloads/dataset.tar", rand_bytes(rng, n(200) * MIB))
    # Drafts sharing a long run at shifted offsets.
    shared = rand_bytes(rng, n(6) * MIB)
    for i in range(n(20)):
        w.write(f"Documents/drafts/thesis-v{i}.bin", rand_bytes(rng, rng.randint(1, 400 * KIB)) + shared + text(rng, rng.randint(1, 300 * KIB), pool))
    # Duplicates: some photos copied to Downloads, one project copied whole.
    pictures = sorted(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(root, "Pictures")) for f in fs)
    for src in rng.sample(pictures, max(1, len(pictures) // 10)):
        dst = os.path.join(root, "Downloads", "copy of " + os.path.basename(src))
        shutil.copy2(src, dst)
    projects = sorted(os.listdir(os.path.join(root, "src")))
    shutil.copytree(os.path.join(root, "src", projects[0]), os.path.join(root, "backup-old", projects[0]), symlinks=True)
    # Symlinks, hard links, empty entries, odd names.
    files = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
    for i in range(n(150)):
        os.makedirs(os.path.join(root, "links"), exist_ok=True)
        target = os.path.join("..", rng.choice(files)) if i % 10 else f"../missing-{i}"
        os.symlink(target, os.path.join(root, "links", f"link-{i}"))
    os.symlink("../Pictures", os.path.join(root, "links", "pictures-dir"))
    for i in range(n(5)):
        os.link(os.path.join(root, rng.choice(files)), os.path.join(root, "links", f"hard-{i}"))
    for i in range(n(40)):
        os.makedirs(os.path.join(root, "empty-dirs", f"e{i}", "inner"))
        w.write(f"empty-files/zero-{i}", b"")
    for odd in ["with space.txt", "ünïcödé-ファイル.txt", "new\nline.txt", "-leading-dash", "x" * 200, "tab\tname"]:
        w.write(f"odd/{odd}", text(rng, 300, pool))
    odd = os.path.join(os.fsencode(root), b"odd", b"not-utf8-\xff\xfe.txt")
    with open(odd, "wb") as f:
        f.write(b"bytes in the name are not UTF-8\n")
    os.utime(odd, ns=(DAY1 * 10**9, DAY1 * 10**9))
    return {"files": w.files, "bytes_written": w.bytes}


def mutate(root, seed):
    """Day 2: edits in the middle, appends, inserts that shift offsets, new, deleted and renamed files."""
    rng = random.Random(seed + 1)
    pool = line_pool(rng)
    changed = {"edited": 0, "appended": 0, "inserted": 0, "new_files": 0, "deleted": 0, "renamed": 0, "new_bytes": 0}
    files = sorted(
        os.path.relpath(os.path.join(d, f), root)
        for d, _, fs in os.walk(root)
        for f in fs
        if not os.path.islink(os.path.join(d, f)) and os.stat(os.path.join(d, f)).st_nlink == 1
    )
    by = lambda prefix: [f for f in files if f.startswith(prefix)]  # noqa: E731

    def touch(rel):
        t = DAY2 + rng.randrange(86400)
        os.utime(os.path.join(root, rel), ns=(t * 10**9, t * 10**9 + rng.randrange(10**9)))

    docs = by("Documents/") + by("src/")
    for rel in rng.sample(docs, max(1, len(docs) // 20)):  # edits in the middle
        path = os.path.join(root, rel)
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.seek(size // 2)
            f.write(b"an edit in the middle")
        touch(rel)
        changed["edited"] += 1
        changed["new_bytes"] += 21
    for rel in rng.sample(by("notes/"), max(1, len(by("notes/")) // 10)):  # appends
        extra = text(rng, rng.randint(200, 8 * KIB), pool)
        with open(os.path.join(root, rel), "ab") as f:
            f.write(extra)
        touch(rel)
        changed["appended"] += 1
        changed["new_bytes"] += len(extra)
    for rel in ["vm/disk.img"] + rng.sample(by("Documents/"), 3):  # inserts that shift the rest of the file
        path = os.path.join(root, rel)
        with open(path, "rb") as f:
            data = f.read()
        extra = rand_bytes(rng, rng.randint(1, 4 * KIB))
        at = len(data) // 3
        with open(path, "wb") as f:
            f.write(data[:at] + extra + data[at:])
        touch(rel)
        changed["inserted"] += 1
        changed["new_bytes"] += len(extra)
    def new_file(directory, ext, data):
        rel = f"{directory}/{name(rng, ext)}"
        os.makedirs(os.path.join(root, directory), exist_ok=True)
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
        touch(rel)
        changed["new_files"] += 1
        changed["new_bytes"] += len(data)

    for _ in range(max(1, len(by("Pictures/")) // 10)):  # new photos and notes
        new_file("Pictures/new", ".jpg", rand_bytes(rng, log_uniform(rng, 1 * MIB, 12 * MIB)))
    for _ in range(max(1, len(by("notes/")) // 4)):
        new_file("notes/new", ".md", text(rng, log_uniform(rng, 100, 20 * KIB), pool))
    candidates = [f for f in files if os.path.exists(os.path.join(root, f))]
    for rel in rng.sample(candidates, max(1, len(candidates) // 50)):  # deleted
        os.remove(os.path.join(root, rel))
        changed["deleted"] += 1
    candidates = [f for f in candidates if os.path.exists(os.path.join(root, f))]
    for rel in rng.sample(candidates, max(1, len(candidates) // 100)):  # renamed in place
        src = os.path.join(root, rel)
        os.rename(src, src + ".renamed")
        changed["renamed"] += 1
    projects = sorted(os.listdir(os.path.join(root, "src")))
    os.rename(os.path.join(root, "src", projects[-1]), os.path.join(root, "src", projects[-1] + "-moved"))
    return changed


def manifest(root):
    out = {}
    broot = os.fsencode(root)
    for d, dirs, fs in os.walk(broot):
        for entry in dirs + fs:
            path = os.path.join(d, entry)
            rel = os.path.relpath(path, broot).decode("utf-8", "surrogateescape")
            st = os.lstat(path)
            rec = {"mode": stat.S_IMODE(st.st_mode)}
            if stat.S_ISLNK(st.st_mode):
                rec.update(kind="symlink", target=os.readlink(path).decode("utf-8", "surrogateescape"))
                rec.pop("mode")  # Linux ignores a symlink's own mode
            elif stat.S_ISDIR(st.st_mode):
                rec["kind"] = "dir"
            else:
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    while block := f.read(MIB):
                        h.update(block)
                rec.update(kind="file", size=st.st_size, sha256=h.hexdigest(), mtime_ns=st.st_mtime_ns)
            out[rel] = rec
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("dir")
    g.add_argument("--scale", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=42)
    m = sub.add_parser("mutate")
    m.add_argument("dir")
    m.add_argument("--seed", type=int, default=42)
    mf = sub.add_parser("manifest")
    mf.add_argument("dir")
    mf.add_argument("out")
    v = sub.add_parser("verify")
    v.add_argument("dir")
    v.add_argument("manifest")
    a = ap.parse_args()
    if a.cmd == "gen":
        print(json.dumps(gen(a.dir, a.scale, a.seed)))
    elif a.cmd == "mutate":
        print(json.dumps(mutate(a.dir, a.seed)))
    elif a.cmd == "manifest":
        with open(a.out, "w") as f:
            json.dump(manifest(a.dir), f)
    else:
        with open(a.manifest) as f:
            expected = json.load(f)
        actual = manifest(a.dir)
        problems = [f"missing: {p!r}" for p in sorted(expected.keys() - actual.keys())]
        problems += [f"unexpected: {p!r}" for p in sorted(actual.keys() - expected.keys())]
        problems += [f"differs: {p!r}: expected {expected[p]}, found {actual[p]}" for p in sorted(expected.keys() & actual.keys()) if expected[p] != actual[p]]
        for p in problems[:20]:
            print(p)
        print(f"{len(expected)} entries expected, {len(problems)} differences")
        sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
