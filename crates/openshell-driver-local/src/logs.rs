//! A sandbox's log files as a stream: the rotated-away older file first, then
//! the current one, followed across rotations.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use openshell_driver::{DriverError, LogStream};

/// A sandbox's log file (and its rotated-away predecessor) as a [`LogStream`].
pub struct FileLog {
    path: PathBuf,
    older: Option<File>,
    file: Option<File>,
}

impl FileLog {
    pub fn open(path: PathBuf) -> Result<FileLog, DriverError> {
        // A log rotates at the policy's size: the older file first.
        let older = File::open(openshell_sandbox::logs::previous(&path)).ok();
        let file = match File::open(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(DriverError::Io { path, source: e }),
        };
        Ok(FileLog { path, older, file })
    }
}

impl LogStream for FileLog {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, DriverError> {
        if let Some(older) = &mut self.older {
            let n = older.read(buf).map_err(DriverError::io(&self.path))?;
            if n > 0 {
                return Ok(n);
            }
            self.older = None;
        }
        if self.file.is_none() {
            self.file = File::open(&self.path).ok();
        }
        let Some(file) = &mut self.file else { return Ok(0) };
        let n = file.read(buf).map_err(DriverError::io(&self.path))?;
        if n == 0 && rotated_away(file, &self.path) {
            // Read to its end: the new file is next.
            self.file = File::open(&self.path).ok();
            return match &mut self.file {
                Some(f) => f.read(buf).map_err(DriverError::io(&self.path)),
                None => Ok(0),
            };
        }
        Ok(n)
    }
}

/// Whether the log at `path` is no longer the file `open` (it was rotated).
fn rotated_away(open: &File, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (open.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) != (b.dev(), b.ino()),
        _ => false,
    }
}
