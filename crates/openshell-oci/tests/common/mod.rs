//! Shared helpers: a sample tree, and a raw reader for the tars we write.
#![allow(dead_code)]

use std::io::Read;

use openshell_oci::compress::{Compression, LayerDecoder};
use openshell_oci::{ContentRef, Entry, LayerInfo, OnConflict, Origin, Tree};
use openshell_store::Store;

pub const LONG_TARGET_LEN: usize = 150;

/// A 200-byte path.
pub fn long_path() -> String {
    let mut p = String::from("usr/lib/claude/");
    while p.len() < 196 {
        p.push_str("deep/");
    }
    p.truncate(196);
    let p = p.trim_end_matches('/').to_owned();
    let p = format!("{p}{}", "x".repeat(200 - p.len()));
    assert_eq!(p.len(), 200);
    p
}

/// A 150-byte symlink target.
pub fn long_target() -> String {
    let t = format!("../../{}", "t".repeat(LONG_TARGET_LEN - 6));
    assert_eq!(t.len(), LONG_TARGET_LEN);
    t
}

/// The entries of the sample tree, in a fixed order. Blob content is stored in `store`.
pub fn sample_entries(store: &Store) -> Vec<(String, Entry)> {
    let debian = Origin::new("debian");
    let node = Origin::new("node");
    let claude = Origin::new("claude");
    let generated = Origin::new("generated");
    let node_bin: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let node_digest = store.insert_bytes(&node_bin).expect("store node");
    let big: Vec<u8> = (0..70_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let big_digest = store.insert_bytes(&big).expect("store claude");
    vec![
        ("etc".into(), Entry::dir(0o755, &debian)),
        ("etc/passwd".into(), Entry::file(0o644, ContentRef::bytes(&b"root:x:0:0::/root:/bin/sh\n"[..]), &debian)),
        ("tmp".into(), Entry::dir(0o1777, &debian)),
        ("usr/bin/sudo".into(), Entry::file(0o4755, ContentRef::bytes(&b"sudo"[..]), &debian)),
        ("usr/bin/wall".into(), Entry::file(0o2755, ContentRef::bytes(&b"wall"[..]), &debian).with_owner(0, 5)),
        ("usr/bin/sh".into(), Entry::symlink("dash", &debian)),
        ("usr/bin/dash".into(), Entry::file(0o755, ContentRef::bytes(&b"dash"[..]), &debian)),
        ("bin".into(), Entry::symlink("usr/bin", &debian)),
        (
            "usr/lib/node/bin/node".into(),
            Entry::file(0o755, ContentRef::blob(node_digest, node_bin.len() as u64), &node),
        ),
        (
            "usr/lib/claude/bin/claude.exe".into(),
            Entry::file(0o755, ContentRef::Blob { digest: big_digest, offset: 4, len: 100_000 }, &claude),
        ),
        // Declared as the link, but sorts before the file: it must be written as the file.
        ("usr/lib/claude/a-claude".into(), Entry::hardlink("usr/lib/claude/bin/claude.exe", &claude)),
        ("usr/lib/claude/zz-claude".into(), Entry::hardlink("usr/lib/claude/bin/claude.exe", &claude)),
        (long_path(), Entry::file(0o644, ContentRef::bytes(&b"long"[..]), &claude)),
        ("usr/lib/claude/long-link".into(), Entry::symlink(long_target(), &claude)),
        ("home/sandbox".into(), Entry::dir(0o750, &generated).with_owner(1000, 1000)),
        (
            "home/sandbox/.profile".into(),
            Entry::file(0o600, ContentRef::bytes(&b"export A=1\n"[..]), &generated).with_owner(1000, 1000),
        ),
        ("etc/openshell/policy.yaml".into(), Entry::file(0o644, ContentRef::bytes(&b"version: 1\n"[..]), &generated)),
    ]
}

pub fn origins() -> Vec<Origin> {
    ["debian", "node", "claude", "generated"].into_iter().map(Origin::new).collect()
}

/// The sample tree, inserting entries forwards or backwards.
pub fn sample_tree(store: &Store, reversed: bool) -> Tree {
    let mut entries = sample_entries(store);
    if reversed {
        entries.reverse();
    }
    let mut tree = Tree::new(OnConflict::Error);
    for (p, e) in entries {
        tree.insert(&p, e).expect("insert");
    }
    tree
}

/// Decompressed bytes of a stored layer (gzip or zstd, by its media type).
pub fn layer_tar(store: &Store, layer: &LayerInfo) -> Vec<u8> {
    let blob = std::io::BufReader::new(store.open_verified(&layer.digest).expect("blob"));
    let compression = Compression::of_media_type(layer.media_type).expect("a compressed layer");
    let mut out = Vec::new();
    LayerDecoder::new(compression, blob).expect("decoder").read_to_end(&mut out).expect("decompress");
    out
}

/// One raw header block and what precedes it.
#[derive(Debug, Clone)]
pub struct RawEntry {
    /// The full path (from a pax record when present).
    pub path: String,
    pub typeflag: u8,
    pub header: [u8; 512],
    /// The pax records of the `x` header before it, in order.
    pub pax: Vec<(String, String)>,
    pub pax_header: Option<[u8; 512]>,
    pub data: Vec<u8>,
}

fn octal(field: &[u8]) -> u64 {
    let s = std::str::from_utf8(field).expect("octal field").trim_end_matches('\0').trim();
    u64::from_str_radix(s, 8).expect("octal")
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8(field[..end].to_vec()).expect("utf8")
}

impl RawEntry {
    pub fn mode(&self) -> u64 {
        octal(&self.header[100..108])
    }
    pub fn uid(&self) -> u64 {
        octal(&self.header[108..116])
    }
    pub fn gid(&self) -> u64 {
        octal(&self.header[116..124])
    }
    pub fn size(&self) -> u64 {
        octal(&self.header[124..136])
    }
    pub fn mtime(&self) -> u64 {
        octal(&self.header[136..148])
    }
    pub fn linkname(&self) -> String {
        self.pax
            .iter()
            .find(|(k, _)| k == "linkpath")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| cstr(&self.header[157..257]))
    }
    pub fn uname(&self) -> String {
        cstr(&self.header[265..297])
    }
    pub fn gname(&self) -> String {
        cstr(&self.header[297..329])
    }
}

/// Parses a tar we wrote: ustar headers with optional `x` headers; panics on
/// anything else (GNU long names, global headers).
pub fn raw_entries(tar: &[u8]) -> Vec<RawEntry> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut pax: Vec<(String, String)> = Vec::new();
    let mut pax_header = None;
    loop {
        let block: [u8; 512] = tar[pos..pos + 512].try_into().expect("block");
        if block.iter().all(|&b| b == 0) {
            let next: &[u8] = &tar[pos + 512..pos + 1024];
            assert!(next.iter().all(|&b| b == 0), "one zero block without a second");
            assert_eq!(pos + 1024, tar.len(), "bytes after the end-of-archive marker");
            return out;
        }
        assert_eq!(&block[257..263], b"ustar\0", "magic");
        assert_eq!(&block[263..265], b"00", "version");
        // Checksum.
        let mut sum: u64 = 0;
        for (i, &b) in block.iter().enumerate() {
            sum += if (148..156).contains(&i) { u64::from(b' ') } else { u64::from(b) };
        }
        assert_eq!(octal(&block[148..155]), sum, "checksum");
        assert_eq!(block[155], b' ');
        let size = octal(&block[124..136]) as usize;
        let typeflag = block[156];
        let data_start = pos + 512;
        let data = tar[data_start..data_start + size].to_vec();
        pos = data_start + size.div_ceil(512) * 512;
        match typeflag {
            b'x' => {
                assert!(pax.is_empty(), "two pax headers in a row");
                let mut rest = &data[..];
                while !rest.is_empty() {
                    let sp = rest.iter().position(|&b| b == b' ').expect("pax length");
                    let len: usize = std::str::from_utf8(&rest[..sp]).expect("len").parse().expect("len");
                    let rec = std::str::from_utf8(&rest[sp + 1..len - 1]).expect("record");
                    assert_eq!(rest[len - 1], b'\n');
                    let (k, v) = rec.split_once('=').expect("key=value");
                    pax.push((k.to_owned(), v.to_owned()));
                    rest = &rest[len..];
                }
                pax_header = Some(block);
            }
            b'0' | b'1' | b'2' | b'5' => {
                let path = pax.iter().find(|(k, _)| k == "path").map(|(_, v)| v.clone()).unwrap_or_else(|| {
                    assert_eq!(block[345], 0, "ustar prefix field used");
                    cstr(&block[..100])
                });
                out.push(RawEntry {
                    path,
                    typeflag,
                    header: block,
                    pax: std::mem::take(&mut pax),
                    pax_header: pax_header.take(),
                    data,
                });
            }
            other => panic!("unexpected tar type flag {:?}", other as char),
        }
    }
}
