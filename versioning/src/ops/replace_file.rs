//! Moving a finished file over its target in one step, without ext4's flush on rename.
//!
//! A checkout builds its file under a temporary name and then puts it in place atomically:
//! a reader of the target name sees the old file or the new one, never a part. `rename(2)`
//! over an existing file does that, but on ext4 (its default mount option
//! `auto_da_alloc`) it also allocates and starts writing back every delayed-allocation
//! block of the new file inside the call, a heuristic for programs that replace files
//! without fsync: for a file of 256 MiB on the ext4 of the machine the benchmarks ran on,
//! 0.11-0.20 s, as long as `cp` of the file and more than the checkout's own writes.
//! Exchanging the two names
//! (`renameat2(RENAME_EXCHANGE)`) is as atomic for readers and does not flush (0.1 ms
//! there); the old file, now under the temporary name, is then unlinked (65 ms there, for
//! a 256 MiB file not yet written back; `cp` over an existing file pays its truncation
//! too). The flush buys no durability a
//! checkout promises (without `fsync` a power loss may leave an incomplete file either way,
//! see [`super::checkout_file::CheckoutOptions`]; with it the file is synced before it
//! moves).
//!
//! Only a regular file or a symlink is exchanged (what `rename` would replace); if what
//! came back is a directory after all (replaced between the check and the exchange), it is
//! exchanged back and `rename` decides (it refuses). Where the exchange is not available
//! (another OS, a file system without it), `rename` is used.

use std::io;
use std::path::Path;

/// Puts the file at `tmp` in place of `target` atomically (see the module doc); `tmp` no
/// longer exists afterwards.
pub(crate) fn replace(tmp: &Path, target: &Path) -> io::Result<()> {
    let replaceable = std::fs::symlink_metadata(target)
        .is_ok_and(|m| m.file_type().is_file() || m.file_type().is_symlink());
    if replaceable && exchange(tmp, target).is_ok() {
        let swapped = std::fs::symlink_metadata(tmp)?;
        if swapped.is_dir() {
            exchange(tmp, target)?;
            return std::fs::rename(tmp, target);
        }
        return std::fs::remove_file(tmp);
    }
    std::fs::rename(tmp, target)
}

/// Swaps the names `a` and `b` (both must exist) in one step.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    let a = CString::new(a.as_os_str().as_bytes())?;
    let b = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both paths are NUL-terminated strings that outlive the call; renameat2 only
    // reads them.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// No exchange outside Linux: the caller renames.
#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn replaces_files_and_symlinks_creates_missing_and_refuses_directories() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, target) = (dir.path().join(".t.tmp"), dir.path().join("t"));
        // No target yet: a plain rename.
        std::fs::write(&tmp, b"one").unwrap();
        replace(&tmp, &target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"one");
        assert!(!tmp.exists());
        // An existing file is replaced and the old one is gone.
        std::fs::write(&tmp, b"two").unwrap();
        replace(&tmp, &target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"two");
        assert!(!tmp.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A symlink is replaced by the file (not followed), as rename does.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        std::fs::write(&tmp, b"three").unwrap();
        replace(&tmp, &link).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
        assert_eq!(std::fs::read(&link).unwrap(), b"three");
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"keep");
        assert!(!tmp.exists());
        // A directory is not replaced, and stays where it is.
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(&tmp, b"four").unwrap();
        assert!(replace(&tmp, &sub).is_err());
        assert!(sub.is_dir());
    }
}
