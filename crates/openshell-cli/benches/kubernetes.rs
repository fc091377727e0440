//! `cargo xtask bench kubernetes`: a pod from the kubelet's side, through
//! containerd's CRI plugin (Debian containerd 1.6, runc v2 shim, CNI bridge):
//! RunPodSandbox → CreateContainer → StartContainer → the container has exited
//! (`/probe exit:0`, a static binary), timed from the first request to the
//! ContainerStatus that reports it exited (polled every millisecond), with the
//! runtime handler `openshell` (openshell-runtime, release build) against `runc`
//! on the same node, rounds interleaved. Stopping and removing the pod is not timed.
//!
//! `cargo bench -p openshell-cli --bench kubernetes -- [--rounds N] [--warmup N]`;
//! needs root, containerd, the CNI plugins, runc and gcc with static libc.

use std::time::{Duration, Instant};

#[path = "../../../tests/support/mod.rs"]
mod support;

use support::cri::{CGROUP_PARENT, ContainerState, IMAGE, Node, Spec};

/// Why the bench could not run.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("{flag}: `{value}` is not a positive whole number")]
    Count { flag: String, value: String },
    #[error("unknown argument `{0}`; usage: kubernetes [--rounds N] [--warmup N]")]
    Usage(String),
    #[error("{handler}: {step}: {status}")]
    Cri { handler: &'static str, step: &'static str, status: tonic::Status },
}

fn parse(args: &[String]) -> Result<(usize, usize), BenchError> {
    let (mut rounds, mut warmup) = (20, 2);
    let mut it = args.iter().filter(|a| *a != "--bench");
    while let Some(flag) = it.next() {
        let target = match flag.as_str() {
            "--rounds" => &mut rounds,
            "--warmup" => &mut warmup,
            other => return Err(BenchError::Usage(other.to_owned())),
        };
        let value = it.next().cloned().unwrap_or_default();
        *target = value
            .parse()
            .ok()
            .filter(|n| *n > 0 || flag == "--warmup")
            .ok_or(BenchError::Count { flag: flag.clone(), value })?;
    }
    Ok((rounds, warmup))
}

/// One pod to its container's exit; returns the time it took.
fn pod_to_exit(node: &mut Node, handler: &'static str, round: usize) -> Result<Duration, BenchError> {
    let logs = node.logs(handler);
    let cri = &mut node.cri;
    let fail = |step| move |status| BenchError::Cri { handler, step, status };
    let started = Instant::now();
    let pod = cri
        .run_pod(&format!("bench-{handler}-{round}"), handler, &[], &logs, CGROUP_PARENT)
        .map_err(fail("RunPodSandbox"))?;
    let spec =
        Spec { name: "true", image: IMAGE, command: &["/probe", "exit:0"], annotations: &[], log: "", mounts: &[] };
    let id = cri.create(&pod, &spec).map_err(fail("CreateContainer"))?;
    cri.start(&id).map_err(fail("StartContainer"))?;
    while cri.status(&id).state != ContainerState::ContainerExited as i32 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = started.elapsed();
    cri.stop_pod(&pod);
    cri.remove_pod(&pod);
    Ok(took)
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<(), BenchError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (rounds, warmup) = parse(&args)?;
    let mut node = Node::start();
    const HANDLERS: [&str; 2] = ["runc", "openshell"];
    let mut samples = [Vec::new(), Vec::new()];
    for round in 0..warmup + rounds {
        for (i, handler) in HANDLERS.into_iter().enumerate() {
            let took = pod_to_exit(&mut node, handler, round)?;
            if round >= warmup {
                samples[i].push(took);
            }
        }
    }
    for s in &mut samples {
        s.sort();
    }
    let peer = percentile(&samples[0], 50);
    println!(
        "CRI RunPodSandbox → CreateContainer → StartContainer → exited, {rounds} rounds (+{warmup} warm-up), interleaved"
    );
    println!("| handler | median | p90 | vs runc |");
    println!("|---|---|---|---|");
    for (handler, s) in HANDLERS.iter().zip(&samples) {
        let median = percentile(s, 50);
        println!(
            "| {handler} | {} | {} | {:.2}× |",
            ms(median),
            ms(percentile(s, 90)),
            median.as_secs_f64() / peer.as_secs_f64()
        );
    }
    Ok(())
}
