//! Thin file-system helpers that run `std::fs` calls on the blocking pool
//! (see [`crate::blocking`]), so a fiber reading a file does not hold its
//! worker. Same signatures and errors as `std::fs`; on a plain thread they
//! are `std::fs` itself.

use std::fs::{File, Metadata};
use std::io;
use std::path::Path;

/// `std::fs::read` on the blocking pool.
///
/// ```
/// let rt = spindle::Runtime::new().unwrap();
/// let path = std::env::temp_dir().join(format!("spindle-fs-doc-{}", std::process::id()));
/// rt.block_on(|| {
///     spindle::fs::write(&path, b"hello").unwrap();
///     assert_eq!(spindle::fs::read(&path).unwrap(), b"hello");
///     assert_eq!(spindle::fs::read_to_string(&path).unwrap(), "hello");
///     assert_eq!(spindle::fs::metadata(&path).unwrap().len(), 5);
/// });
/// std::fs::remove_file(&path).unwrap();
/// ```
pub fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    let path = path.as_ref();
    crate::blocking(|| std::fs::read(path))
}

/// `std::fs::read_to_string` on the blocking pool.
pub fn read_to_string(path: impl AsRef<Path>) -> io::Result<String> {
    let path = path.as_ref();
    crate::blocking(|| std::fs::read_to_string(path))
}

/// `std::fs::write` on the blocking pool.
pub fn write(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> io::Result<()> {
    let (path, contents) = (path.as_ref(), contents.as_ref());
    crate::blocking(|| std::fs::write(path, contents))
}

/// `std::fs::metadata` on the blocking pool.
pub fn metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    let path = path.as_ref();
    crate::blocking(|| std::fs::metadata(path))
}

/// `std::fs::File::open` on the blocking pool. Reads and writes on the
/// returned `File` block the caller; wrap them in [`crate::blocking`] too.
pub fn open(path: impl AsRef<Path>) -> io::Result<File> {
    let path = path.as_ref();
    crate::blocking(|| File::open(path))
}
