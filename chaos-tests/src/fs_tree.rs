//! Test file trees: a seeded generator covering every kind of entry, and a manifest that compares trees
//! byte for byte and by metadata (mode, owner, nanosecond mtime, link targets, hard-link grouping, holes).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use rand::{Rng, SeedableRng};

/// What the manifest records about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `f` file, `d` directory, `l` symlink, `p` fifo.
    pub kind: char,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time in nanoseconds.
    pub mtime_ns: i64,
    /// Size (files).
    pub size: u64,
    /// BLAKE3 of the contents (files).
    pub hash: Option<[u8; 32]>,
    /// Link target (symlinks).
    pub link: Option<Vec<u8>>,
    /// Index of the hard-link group (first path of the inode, for files with more than one link).
    pub link_group: Option<Vec<u8>>,
}

/// Paths (relative, raw bytes) to entries.
pub type Manifest = BTreeMap<Vec<u8>, Entry>;

fn hash_file(path: &Path) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update_reader(File::open(path).expect("open for hashing")).expect("read for hashing");
    *h.finalize().as_bytes()
}

/// Records every entry below `root`.
pub fn manifest(root: &Path) -> Manifest {
    let mut out = Manifest::new();
    let mut first_path_of_inode: BTreeMap<(u64, u64), Vec<u8>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&dir).expect("read_dir").map(|e| e.expect("entry").path()).collect();
        names.sort();
        for path in names {
            let m = std::fs::symlink_metadata(&path).expect("lstat");
            let rel = path.strip_prefix(root).expect("below root").as_os_str().as_bytes().to_vec();
            let ft = m.file_type();
            let kind = if ft.is_dir() {
                'd'
            } else if ft.is_symlink() {
                'l'
            } else if ft.is_file() {
                'f'
            } else {
                'p'
            };
            if kind == 'd' {
                stack.push(path.clone());
            }
            let link_group = (kind == 'f' && m.nlink() > 1)
                .then(|| first_path_of_inode.entry((m.dev(), m.ino())).or_insert_with(|| rel.clone()).clone());
            out.insert(
                rel,
                Entry {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                    size: if kind == 'f' { m.len() } else { 0 },
                    hash: (kind == 'f').then(|| hash_file(&path)),
                    link: (kind == 'l').then(|| std::fs::read_link(&path).expect("readlink").as_os_str().as_bytes().to_vec()),
                    link_group,
                },
            );
        }
    }
    out
}

/// Differences between two manifests (empty when equal).
pub fn differences(expected: &Manifest, actual: &Manifest) -> Vec<String> {
    let mut out = Vec::new();
    for (path, e) in expected {
        let shown = String::from_utf8_lossy(path);
        match actual.get(path) {
            None => out.push(format!("missing: {shown}")),
            Some(a) if a != e => out.push(format!("differs: {shown}: expected {e:?}, got {a:?}")),
            _ => {}
        }
    }
    out.extend(actual.keys().filter(|p| !expected.contains_key(*p)).map(|p| format!("unexpected: {}", String::from_utf8_lossy(p))));
    out
}

fn set_mtime(path: &Path, ns: i64) {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    let ts = TimeSpec::new(ns / 1_000_000_000, ns % 1_000_000_000);
    utimensat(nix::fcntl::AT_FDCWD, path, &ts, &ts, UtimensatFlags::NoFollowSymlink).expect("utimensat");
}

/// Where a restore of `source` lands below `target`: snapshots keep absolute paths.
pub fn restored(target: &Path, source: &Path) -> std::path::PathBuf {
    target.join(source.strip_prefix("/").expect("absolute source"))
}

/// Options for [`generate`].
pub struct TreeSpec {
    /// Size of the sparse file (its data is a few small islands).
    pub sparse_bytes: u64,
    /// Random files of up to this many bytes.
    pub max_file_bytes: usize,
    /// How many random files.
    pub files: usize,
}

/// Creates a tree with every entry kind below `root`; returns its manifest.
pub fn generate(root: &Path, seed: u64, spec: &TreeSpec) -> Manifest {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    std::fs::create_dir_all(root).expect("root");
    let w = |p: &Path, data: &[u8]| File::create(p).and_then(|mut f| f.write_all(data)).expect("write");
    // Names: unicode, not UTF-8 at all, spaces and a newline.
    let odd_names: [&[u8]; 6] = [
        b"caf\xc3\xa9.txt",
        "日本語のファイル".as_bytes(),
        "crab 🦀.rs".as_bytes(),
        b"raw-\xff\xfe-bytes",
        b"with\nnewline",
        b" leading space",
    ];
    for (i, name) in odd_names.iter().enumerate() {
        w(&root.join(OsStr::from_bytes(name)), format!("odd name {i}\n").as_bytes());
    }
    // Empty file, empty directory, deep nesting.
    w(&root.join("empty"), b"");
    std::fs::create_dir(root.join("empty-dir")).expect("mkdir");
    let mut deep = root.join("deep");
    for level in 0..40 {
        deep = deep.join(format!("level-{level}"));
    }
    std::fs::create_dir_all(&deep).expect("deep");
    w(&deep.join("bottom.txt"), b"at the bottom\n");
    // Random files of varied sizes.
    std::fs::create_dir(root.join("files")).expect("mkdir");
    for i in 0..spec.files {
        let len = rng.random_range(0..=spec.max_file_bytes);
        let mut data = vec![0u8; len];
        rng.fill(&mut data[..]);
        w(&root.join("files").join(format!("f{i:03}.bin")), &data);
    }
    // A sparse file with a few islands of data.
    let sparse = root.join("sparse.img");
    let f = File::create(&sparse).expect("sparse");
    f.set_len(spec.sparse_bytes).expect("set_len");
    use std::os::unix::fs::FileExt;
    for off in [0, spec.sparse_bytes / 3, spec.sparse_bytes.saturating_sub(4096)].into_iter().filter(|off| off + 4096 <= spec.sparse_bytes)
    {
        f.write_all_at(&[0xab; 4096], off).expect("island");
    }
    drop(f);
    // Links.
    symlink("files/f000.bin", root.join("relative-link")).expect("symlink");
    symlink("/nonexistent/target", root.join("dangling-link")).expect("symlink");
    w(&root.join("hard-a"), b"shared by three names\n");
    std::fs::hard_link(root.join("hard-a"), root.join("hard-b")).expect("link");
    std::fs::hard_link(root.join("hard-a"), root.join("files").join("hard-c")).expect("link");
    nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o640)).expect("mkfifo");
    // Modes and owners.
    std::fs::set_permissions(root.join("empty"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::set_permissions(root.join("files/f001.bin"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(root.join("empty-dir"), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::set_permissions(root.join(OsStr::from_bytes(odd_names[0])), std::fs::Permissions::from_mode(0o444)).expect("chmod");
    if nix::unistd::geteuid().is_root() {
        let owner = (nix::unistd::Uid::from_raw(1234), nix::unistd::Gid::from_raw(5678));
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &root.join("files/f002.bin"),
            Some(owner.0),
            Some(owner.1),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .expect("chown");
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &root.join("relative-link"),
            Some(owner.0),
            Some(owner.1),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .expect("lchown");
    }
    // Times last (children before parents, so directory times stick), with nanoseconds.
    let mut all: Vec<_> = manifest(root).into_keys().collect();
    all.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for (i, rel) in all.iter().enumerate() {
        set_mtime(&root.join(OsStr::from_bytes(rel)), 1_600_000_000_000_000_000 + i as i64 * 86_400_123_456_789);
    }
    manifest(root)
}

/// Bytes a file actually occupies on disk (to check that holes stayed holes).
pub fn allocated_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).expect("stat").blocks() * 512
}
