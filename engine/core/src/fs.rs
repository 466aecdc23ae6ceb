//! File-system measures shared by the benchmark, the examples and the tests that hold the
//! engine to its disk budgets.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The bytes allocated on disk to the files under `dir`, recursively: `st_blocks * 512`, what
/// `du` counts, so a hole in a sparse file counts nothing and preallocated space (`fallocate`)
/// counts in full. Directories' own blocks are not counted; symbolic links are not followed
/// (their own blocks count). A file removed while the tree is walked (the engine deletes
/// segments as it compacts) counts as 0; any other error is returned.
pub fn disk_usage(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        total += if meta.is_dir() {
            match disk_usage(&entry.path()) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
                other => other?,
            }
        } else {
            // st_blocks is in 512-byte units whatever the file system's block size.
            meta.blocks() * 512
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn counts_allocated_bytes_of_every_file_below() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        assert_eq!(disk_usage(root).unwrap(), 0);

        std::fs::write(root.join("a"), vec![1u8; 10_000]).unwrap();
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::write(root.join("sub/deeper/b"), vec![2u8; 20_000]).unwrap();
        // A 1 GiB file with nothing written: a hole, no blocks allocated.
        let sparse = std::fs::File::create(root.join("sub/sparse")).unwrap();
        sparse.set_len(1 << 30).unwrap();

        let used = disk_usage(root).unwrap();
        // Whole file-system blocks: at least the bytes written, at most a few blocks more
        // each; the sparse file adds next to nothing.
        assert!(used >= 30_000, "{used}");
        assert!(used < 30_000 + (1 << 20), "{used}");
        assert_eq!(used % 512, 0);
        assert_eq!(
            disk_usage(&root.join("sub")).unwrap(),
            used - disk_usage_of_file(&root.join("a"))
        );
        assert_eq!(
            disk_usage(&root.join("missing")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    fn disk_usage_of_file(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().blocks() * 512
    }
}
