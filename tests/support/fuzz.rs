//! Property-based fuzzing of openshell's parsers with proptest, bounded: each
//! fuzz test re-runs itself in a child process (the same test binary, `--exact`)
//! under `prlimit --as` (a memory ceiling: a parser that allocates what its input
//! claims aborts the child) and a wall-clock deadline (a parser that hangs is
//! killed), and reports the child's output when it fails. Inputs are random bytes
//! and mutations of valid seeds; cases that once failed are kept in the test's
//! `*.proptest-regressions` file next to it and replayed first.
//!
//! Included by path (`#[path = ".../tests/support/fuzz.rs"] mod fuzz;`) from each
//! parser crate's `tests/fuzz.rs`.

#![allow(dead_code)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};

/// Cases per property: the floor.
pub const CASES: u32 = 100_000;

/// The address-space ceiling of a fuzz child (a debug test binary with its
/// threads and allocator arenas fits in a few hundred MiB).
pub const MEMORY_LIMIT: u64 = 2 << 30;

/// How long a fuzz child may run before it counts as hung.
pub const DEADLINE: Duration = Duration::from_secs(600);

const CHILD_ENV: &str = "OPENSHELL_FUZZ_CHILD";

/// Cases per property: [`CASES`], or `OPENSHELL_FUZZ_CASES` for a quicker or a
/// longer local run.
pub fn cases() -> u32 {
    std::env::var("OPENSHELL_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(CASES)
}

/// The proptest configuration of a fuzz property: [`cases`] cases, regressions
/// persisted next to the test's source file.
pub fn config() -> Config {
    Config {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel("proptest-regressions"))),
        // Shrinking a failure must not itself run for hours.
        max_shrink_iters: 10_000,
        ..Config::default()
    }
}

/// Runs `property` on [`CASES`] values of `strategy`; failures (after shrinking)
/// are saved in the regressions file next to `source_file` (pass `file!()`) and
/// replayed first on later runs.
pub fn check<S: Strategy>(source_file: &'static str, strategy: S, property: impl Fn(S::Value)) {
    check_with(source_file, config(), strategy, property);
}

/// [`check`] with another configuration (say why in the caller).
pub fn check_with<S: Strategy>(source_file: &'static str, config: Config, strategy: S, property: impl Fn(S::Value)) {
    let mut runner = TestRunner::new(Config { source_file: Some(source_file), ..config });
    let result = runner.run(&strategy, |value| {
        property(value);
        Ok::<(), TestCaseError>(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Runs `body` (the test `name`'s properties) in a child of this test binary under
/// the memory ceiling and deadline, and fails when the child does; in that child,
/// runs it directly.
pub fn bounded(name: &str, body: impl FnOnce()) {
    let start = Instant::now();
    let Some((ok, output)) = in_child(name, body) else { return };
    assert!(ok, "{name}: the bounded child failed (memory ceiling {MEMORY_LIMIT} bytes):\n{output}");
    eprintln!("{name}: the bounded child passed in {:.1?}", start.elapsed());
}

/// Runs `body` in the bounded child; in the parent, whether the child passed, and
/// its output; `None` in the child itself.
pub fn in_child(name: &str, body: impl FnOnce()) -> Option<(bool, String)> {
    if std::env::var(CHILD_ENV).as_deref() == Ok(name) {
        body();
        return None;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let prlimit = Command::new("prlimit").arg("--version").output();
    assert!(
        prlimit.is_ok_and(|o| o.status.success()),
        "`prlimit` is missing: install the Debian package util-linux (the fuzz tests bound memory with it)"
    );
    let start = Instant::now();
    let mut child = Command::new("prlimit")
        .arg(format!("--as={MEMORY_LIMIT}"))
        .arg("--")
        .arg(&exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the fuzz child");
    let out = drain(&mut child);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name}: still running after {DEADLINE:?} (a hang?)\n{}", out.join());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = out.join();
    Some((status.success() && output.contains("1 passed"), format!("{status}\n{output}")))
}

/// The child's stdout and stderr, read on threads so the pipes never fill.
struct Drained(Vec<std::thread::JoinHandle<String>>);

fn drain(child: &mut std::process::Child) -> Drained {
    let mut handles = Vec::new();
    let pipes: [Option<Box<dyn Read + Send>>; 2] = [
        child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
    ];
    for mut pipe in pipes.into_iter().flatten() {
        handles.push(std::thread::spawn(move || {
            let mut s = String::new();
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            s.push_str(&String::from_utf8_lossy(&bytes));
            s
        }));
    }
    Drained(handles)
}

impl Drained {
    fn join(self) -> String {
        self.0.into_iter().map(|h| h.join().unwrap_or_default()).collect::<Vec<_>>().join("\n")
    }
}

/// One edit of a mutation.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Flip bit `bit` of the byte at the position.
    Flip { at: usize, bit: u8 },
    /// Set the byte at the position.
    Set { at: usize, byte: u8 },
    /// Insert bytes before the position.
    Insert { at: usize, bytes: Vec<u8> },
    /// Remove up to `len` bytes from the position.
    Remove { at: usize, len: usize },
    /// Copy `len` bytes from `from` over the position (repeats structure).
    Copy { from: usize, at: usize, len: usize },
    /// Cut everything from the position on.
    Truncate { at: usize },
}

/// Edits that bias towards small, local changes; positions are taken modulo the
/// input's length when applied.
pub fn edits(max: usize) -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        4 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Set { at, byte }),
        2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        2 => (any::<usize>(), 1usize..64).prop_map(|(at, len)| Edit::Remove { at, len }),
        1 => (any::<usize>(), any::<usize>(), 1usize..600).prop_map(|(from, at, len)| Edit::Copy { from, at, len }),
        1 => any::<usize>().prop_map(|at| Edit::Truncate { at }),
    ];
    prop::collection::vec(edit, 1..=max)
}

/// Applies `edits` to a copy of `seed`.
pub fn mutate(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for e in edits {
        let n = v.len().max(1);
        match e {
            Edit::Flip { at, bit } => {
                if let Some(b) = v.get_mut(at % n) {
                    *b ^= 1 << bit;
                }
            }
            Edit::Set { at, byte } => {
                if let Some(b) = v.get_mut(at % n) {
                    *b = *byte;
                }
            }
            Edit::Insert { at, bytes } => {
                let at = at % (v.len() + 1);
                v.splice(at..at, bytes.iter().copied());
            }
            Edit::Remove { at, len } => {
                let at = at % n;
                let end = (at + len).min(v.len());
                if at < end {
                    v.drain(at..end);
                }
            }
            Edit::Copy { from, at, len } => {
                let (from, at) = (from % n, at % n);
                let len = (*len).min(v.len().saturating_sub(from)).min(v.len().saturating_sub(at));
                let chunk: Vec<u8> = v.get(from..from + len).map(<[u8]>::to_vec).unwrap_or_default();
                if let Some(dst) = v.get_mut(at..at + chunk.len()) {
                    dst.copy_from_slice(&chunk);
                }
            }
            Edit::Truncate { at } => v.truncate(at % n),
        }
    }
    v
}
