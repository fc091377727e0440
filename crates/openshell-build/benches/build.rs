//! `cargo xtask bench build`: a full image build from a warm store (every artifact
//! fetched, nothing derived) against the limit — only tar + gzip of the same trees
//! with the same compressor —, a rebuild with everything derived but no cached build
//! (what a changed lockfile costs; every blob read is re-hashed, by a new store
//! handle), and the no-op rebuild.
//!
//! Inputs: `OPENSHELL_BENCH_LOCK` (default `lockfiles/default.lock`) and
//! `OPENSHELL_BENCH_STORE` (a store holding its closure: `openshell fetch LOCK --store DIR`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

use openshell_build::build::{self, BuildProgress};
use openshell_build::lockfile::Lockfile;
use openshell_oci::compress::Compression;
use openshell_oci::{LayerOptions, Origin};
use openshell_store::Store;

struct Quiet;

impl BuildProgress for Quiet {
    fn step(&self, _: &str) {}
}

fn inputs() -> (Lockfile, String, Store) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let lock_path = std::env::var("OPENSHELL_BENCH_LOCK")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("lockfiles/default.lock"));
    let store_dir = std::env::var("OPENSHELL_BENCH_STORE").unwrap_or_else(|_| {
        panic!(
            "set OPENSHELL_BENCH_STORE to a store holding the closure of {} (openshell fetch LOCK --store DIR)",
            lock_path.display()
        )
    });
    let lock = Lockfile::load(&lock_path).unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(&store_dir).unwrap_or_else(|e| panic!("{e}"));
    let name = lock_path.display().to_string();
    build::check_closure(&lock, &name, &store).unwrap_or_else(|e| panic!("{e}"));
    (lock, name, store)
}

/// A fresh store with the lockfile's artifacts hard-linked in: warm, nothing derived.
fn warm_store(lock: &Lockfile, from: &Store) -> (tempfile::TempDir, Store) {
    let dir = tempfile::Builder::new().prefix("openshell-bench-").tempdir_in(from.root()).expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("store");
    for d in lock.digests().expect("digests") {
        std::fs::hard_link(from.blob_path(&d), store.blob_path(&d)).expect("hard link (same filesystem)");
    }
    (dir, store)
}

fn bench(c: &mut Criterion) {
    let (lock, name, main) = inputs();
    let mut g = c.benchmark_group("build");
    // Tens of seconds per build: ten flat samples of one iteration each.
    g.sample_size(10);
    g.sampling_mode(criterion::SamplingMode::Flat);
    g.warm_up_time(Duration::from_millis(1));
    g.measurement_time(Duration::from_secs(1));
    // The same build with each layer compression; each prints its image's compressed size.
    for (bench, compression) in
        [("full_build_warm_store", Compression::Gzip), ("full_build_warm_store_zstd", Compression::Zstd)]
    {
        g.bench_function(bench, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (_dir, store) = warm_store(&lock, &main);
                    let start = Instant::now();
                    let built = build::build(&lock, &name, &store, compression, &Quiet).expect("build");
                    total += start.elapsed();
                    assert!(!built.cached);
                    let size: u64 = built.layers.iter().map(|l| l.size).sum();
                    eprintln!("{bench}: {compression} layers, {size} bytes compressed");
                }
                total
            })
        });
    }
    // The limit: the same trees, only tar + gzip with the same compressor, no store.
    let (_dir, store) = warm_store(&lock, &main);
    let tree = build::assemble(&lock, &store, &Quiet).expect("assemble");
    let mut origins: Vec<Origin> = tree.iter().map(|(_, e, _)| e.origin.clone()).collect();
    origins.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    origins.dedup();
    let plans = openshell_oci::partition(&tree, &origins).expect("partition");
    g.bench_function("limit_tar_gzip_same_bytes", |b| {
        b.iter(|| {
            for plan in &plans {
                let gz = openshell_oci::compress::GzipWriter::new(std::io::sink()).expect("gzip");
                let (_, _) = openshell_oci::write_tar(&store, plan, &LayerOptions::default(), gz).expect("tar");
            }
        })
    });
    // Derived data present, no cached build: each iteration forgets the build.
    let (_dir2, cached) = warm_store(&lock, &main);
    build::build(&lock, &name, &cached, Compression::Gzip, &Quiet).expect("first build");
    g.bench_function("rebuild_derived_warm", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                std::fs::remove_dir_all(cached.root().join("builds")).expect("forget the build");
                let store = Store::open(cached.root()).expect("a new handle");
                let start = Instant::now();
                let built = build::build(&lock, &name, &store, Compression::Gzip, &Quiet).expect("build");
                total += start.elapsed();
                assert!(!built.cached);
            }
            total
        })
    });
    // No-op rebuild: the build cache answers.
    g.bench_function("noop_rebuild", |b| {
        b.iter(|| assert!(build::build(&lock, &name, &cached, Compression::Gzip, &Quiet).expect("rebuild").cached))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
