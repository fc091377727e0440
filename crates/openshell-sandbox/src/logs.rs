//! A sandbox's logs (its output, its proxy's audit lines) on the host, bounded:
//! what a sandbox prints must not fill the host's disk. Each log rotates at the
//! policy's `resources.logs`: when the file reaches that size it becomes
//! `NAME.1` (replacing the previous one) and a new file starts, so a log never
//! takes more than twice the size, and the newest lines are always kept.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The rotated (older) file of the log at `path`.
pub fn previous(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".1");
    path.with_file_name(name)
}

/// An append-only file that rotates at `max` bytes.
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    max: u64,
    file: File,
    len: u64,
}

impl RotatingLog {
    /// Opens (appends to) the log at `path`; `max` is at least one byte.
    pub fn open(path: &Path, max: u64) -> io::Result<RotatingLog> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(RotatingLog { path: path.to_owned(), max: max.max(1), file, len })
    }

    fn rotate(&mut self) -> io::Result<()> {
        std::fs::rename(&self.path, previous(&self.path))?;
        self.file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.len = 0;
        Ok(())
    }
}

impl Write for RotatingLog {
    /// Writes what fits before the size is reached (rotating first when the file
    /// is full): a file never grows past `max`.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.len >= self.max {
            self.rotate()?;
        }
        let room = usize::try_from(self.max - self.len).unwrap_or(usize::MAX);
        let n = self.file.write(&buf[..buf.len().min(room)])?;
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_rotates_at_its_size_and_keeps_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("output.log");
        let mut log = RotatingLog::open(&path, 100).expect("open");
        for i in 0..50 {
            log.write_all(format!("line {i:04}\n").as_bytes()).expect("write");
        }
        let (now, before) = (std::fs::read_to_string(&path).expect("log"), std::fs::read_to_string(previous(&path)));
        let before = before.expect("rotated");
        assert!(now.len() <= 100 && before.len() <= 100, "{} and {} bytes", now.len(), before.len());
        assert!(now.ends_with("line 0049\n"), "the newest line is kept: {now:?}");
        assert_eq!(format!("{before}{now}").lines().last(), Some("line 0049"));
        // Reopened, it goes on from its size.
        drop(log);
        let mut log = RotatingLog::open(&path, 100).expect("reopen");
        log.write_all(&[b'x'; 250]).expect("a write larger than the size");
        assert!(std::fs::metadata(&path).expect("log").len() <= 100);
        assert!(std::fs::metadata(previous(&path)).expect("rotated").len() <= 100);
    }
}
