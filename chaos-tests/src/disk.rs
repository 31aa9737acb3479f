//! A node's data directory on a small ext4 file system of its own, so that writes meet a real full disk.
//!
//! [`SmallDisk::create`] makes a sparse image file, formats it ext4 and loop-mounts it; [`SmallDisk::fill`]
//! writes a ballast file until only a given number of bytes stay available (the disk fills for real: the node
//! gets `ENOSPC` from the kernel, not from its own capacity setting), and [`SmallDisk::free`] deletes the
//! ballast. Dropping it unmounts the file system and deletes the image. Needs root, `mkfs.ext4` and loop
//! devices; [`SmallDisk::unavailable`] says why a machine cannot.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

const BALLAST: &str = "ballast.chaos";

/// A mounted small file system.
pub struct SmallDisk {
    image: PathBuf,
    mount: PathBuf,
}

fn run(program: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
    let out = Command::new(program).args(args).output().with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl SmallDisk {
    /// Why this machine cannot mount small file systems, or `None` if it can.
    pub fn unavailable() -> Option<String> {
        if !nix::unistd::Uid::effective().is_root() {
            return Some("mounting a file system needs root".into());
        }
        if Command::new("mkfs.ext4").arg("-V").output().is_err() {
            return Some("`mkfs.ext4` is not installed (Debian package e2fsprogs)".into());
        }
        if !Path::new("/dev/loop-control").exists() {
            return Some("this machine has no loop devices (/dev/loop-control)".into());
        }
        None
    }

    /// An ext4 file system of `bytes` (sparse image at `image`) mounted on the empty directory `mount`.
    pub fn create(image: &Path, mount: &Path, bytes: u64) -> anyhow::Result<SmallDisk> {
        std::fs::File::create(image)?.set_len(bytes)?;
        run("mkfs.ext4", &["-q".as_ref(), "-F".as_ref(), "-m".as_ref(), "0".as_ref(), image.as_os_str()])?;
        std::fs::create_dir_all(mount)?;
        run("mount", &["-o".as_ref(), "loop".as_ref(), image.as_os_str(), mount.as_os_str()])?;
        Ok(SmallDisk { image: image.to_owned(), mount: mount.to_owned() })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// Bytes available to writers now.
    pub fn available(&self) -> anyhow::Result<u64> {
        let s = nix::sys::statvfs::statvfs(&self.mount)?;
        Ok(s.blocks_available() * s.fragment_size())
    }

    /// Grows the ballast file until at most `leave` bytes stay available.
    pub fn fill(&self, leave: u64) -> anyhow::Result<()> {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(self.mount.join(BALLAST))?;
        let block = vec![0x5a_u8; 1 << 20];
        loop {
            let available = self.available()?;
            if available <= leave {
                break;
            }
            let n = ((available - leave) as usize).min(block.len());
            if let Err(e) = f.write_all(&block[..n]) {
                if e.raw_os_error() == Some(nix::libc::ENOSPC) {
                    break;
                }
                return Err(e.into());
            }
        }
        f.sync_all()?;
        Ok(())
    }

    /// Deletes the ballast: the space it held is available again.
    pub fn free(&self) -> anyhow::Result<()> {
        std::fs::remove_file(self.mount.join(BALLAST)).context("deleting the ballast")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily, in case a process still has files open: the mount goes when they close.
        if let Err(e) = run("umount", &["-l".as_ref(), self.mount.as_os_str()]) {
            eprintln!("could not unmount {}: {e}", self.mount.display());
        }
        let _ = std::fs::remove_file(&self.image);
    }
}
