//! Seeds for the tar fuzzers (the .deb reader, the npm tarball reader): tars made
//! with the `tar` crate, and gzip. Included by path next to `fuzz.rs`.

#![allow(dead_code)]

use std::io::Write;

/// One member of a seed tar: path, type, mode, link target, contents.
pub type Member<'a> = (&'a str, tar::EntryType, u32, Option<&'a str>, &'a [u8]);

/// A GNU tar of `members` (long names become GNU long-name entries).
pub fn tar(members: &[Member<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, mode, link, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        match link {
            Some(l) => b.append_link(&mut h, path, l).expect("link"),
            None => b.append_data(&mut h, path, *data).expect("append"),
        }
    }
    b.into_inner().expect("tar")
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}
