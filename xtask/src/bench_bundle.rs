//! `cargo xtask bench bundle [--rounds N]`: `openshell bundle verify` against
//! `sha256sum` of the same file, in the same run, and against `openssl dgst -sha256`
//! (which uses the CPU's SHA instructions, as the sha2 crate does; coreutils'
//! sha256sum does not). The bundle is the default
//! image's: its lockfile's closure, the image, its SBOM and the release binaries,
//! made from the store `$OPENSHELL_BENCH_STORE` (else `target/bench-store`, fetched
//! first). Both read the file from the page cache (each runs once before timing);
//! verify also checks the signature, every header, the padding and the end.
//! Reported: median wall time, throughput, the ratio, peak RSS; and the time
//! `bundle create` took.

use std::path::PathBuf;
use std::process::Command;

use crate::bench_push::{BenchError, Samples, measure, require};
use crate::{cargo, root};

fn rounds(args: &[String]) -> Result<usize, BenchError> {
    match args {
        [] => Ok(5),
        [flag, n] if flag == "--rounds" => n
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| BenchError::Usage("bundle: --rounds needs a positive number".into())),
        _ => Err(BenchError::Usage(format!("bundle takes only --rounds N, not {args:?}"))),
    }
}

pub fn bench_bundle(args: &[String]) -> Result<(), BenchError> {
    let rounds = rounds(args)?;
    require("sha256sum", "coreutils")?;
    require("openssl", "openssl")?;
    let build = ["build", "--release", "--locked", "-p", "openshell-cli", "-p", "openshell-runtime"];
    crate::run(&cargo(), &build)?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let bin = target.join("release/openshell");
    let store = std::env::var_os("OPENSHELL_BENCH_STORE")
        .map_or_else(|| target.join("bench-store"), PathBuf::from)
        .display()
        .to_string();
    let lock = root().join("lockfiles/default.lock").display().to_string();
    let fetch = [bin.display().to_string(), "fetch".into(), lock.clone(), "--store".into(), store.clone()];
    let fetch: Vec<&str> = fetch.iter().map(String::as_str).collect();
    crate::run(fetch[0], &fetch[1..])?;
    let dir = target.join("bench-bundle");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|source| BenchError::Io { path: dir.clone(), source })?;
    let key = dir.join("key");
    measure(Command::new(&bin).args(["key", "generate", "-o"]).arg(&key))?;
    let bundle = dir.join("default.bundle");
    let (created, _) = measure(
        Command::new(&bin)
            .args(["bundle", "create", &lock, "--store", &store, "--key"])
            .arg(&key)
            .arg("-o")
            .arg(&bundle),
    )?;
    let size = std::fs::metadata(&bundle).map_err(|source| BenchError::Io { path: bundle.clone(), source })?.len();
    let trust = dir.join("key.pub");
    let verify = || measure(Command::new(&bin).args(["bundle", "verify"]).arg(&bundle).arg("--trust").arg(&trust));
    let sum = || measure(Command::new("sha256sum").arg(&bundle));
    let dgst = || measure(Command::new("openssl").args(["dgst", "-sha256"]).arg(&bundle));
    verify()?;
    sum()?;
    dgst()?;
    let (mut ours, mut peer, mut ssl) = (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..rounds {
        ours.add(verify()?);
        peer.add(sum()?);
        ssl.add(dgst()?);
    }
    let mb = size as f64 / 1e6;
    println!(
        "bundle of lockfiles/default.lock: {mb:.0} MB, created in {:.1} s; {rounds} rounds, median",
        created.as_secs_f64()
    );
    println!("| | time | throughput | peak RSS | verify / this |");
    println!("|---|---|---|---|---|");
    let ours_t = ours.median();
    for (what, s) in [("bundle verify", &ours), ("sha256sum", &peer), ("openssl dgst -sha256", &ssl)] {
        let t = s.median();
        println!(
            "| {what} | {t:.2} s | {:.0} MB/s | {} MiB | {:.2}× the time |",
            mb / t,
            s.peak_kib / 1024,
            ours_t / t
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
