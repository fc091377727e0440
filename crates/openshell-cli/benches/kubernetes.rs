//! `cargo xtask bench kubernetes`: a pod from the kubelet's side, through
//! containerd's CRI plugin (Debian containerd 1.6, runc v2 shim, CNI bridge):
//! RunPodSandbox → CreateContainer → StartContainer → the container has exited
//! (`/probe exit:0`, a static binary), timed from the first request to the
//! ContainerStatus that reports it exited (polled every millisecond), with the
//! runtime handler `openshell` (openshell-runtime, release build) against `runc`
//! on the same node, rounds interleaved. Stopping and removing the pod is not timed.
//!
//! And the standby hand-out at the node: the Kubernetes driver hands a create's job
//! to an idle pod started ahead (`run.openshell.init: idle`) by exec, so its cost
//! on the node is one ExecSync of the job (`/probe exit:0`) in that pod, timed
//! against the same ExecSync in a running runc container.
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
    #[error("{handler}: the hand-out's ExecSync exited {code}")]
    Handout { handler: &'static str, code: i32 },
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

/// A pod with one running container, for the exec hand-out; (pod, container).
fn warm_pod(node: &mut Node, handler: &'static str) -> Result<(support::cri::Pod, String), BenchError> {
    let logs = node.logs(handler);
    let fail = |step| move |status| BenchError::Cri { handler, step, status };
    let (annotations, command): (&[(&str, &str)], &[&str]) = match handler {
        "openshell" => (&[("run.openshell.init", "idle")], &["openshell-idle"]),
        _ => (&[], &["/probe", "serve"]),
    };
    let pod = node
        .cri
        .run_pod(&format!("warm-{handler}"), handler, annotations, &logs, CGROUP_PARENT)
        .map_err(fail("RunPodSandbox"))?;
    let spec = Spec { name: "warm", image: IMAGE, command, annotations: &[], log: "", mounts: &[] };
    let id = node.cri.create(&pod, &spec).map_err(fail("CreateContainer"))?;
    node.cri.start(&id).map_err(fail("StartContainer"))?;
    Ok((pod, id))
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
    // The hand-out: an ExecSync of the job in a pod started ahead.
    let warm: Vec<_> = HANDLERS.iter().map(|h| warm_pod(&mut node, h)).collect::<Result<_, _>>()?;
    let mut handouts = [Vec::new(), Vec::new()];
    for round in 0..warmup + rounds {
        for (i, (_, id)) in warm.iter().enumerate() {
            let started = Instant::now();
            let (code, _, _) = node.cri.exec_sync(id, &["/probe", "exit:0"]);
            let took = started.elapsed();
            if code != 0 {
                return Err(BenchError::Handout { handler: HANDLERS[i], code });
            }
            if round >= warmup {
                handouts[i].push(took);
            }
        }
    }
    for (pod, _) in &warm {
        node.cri.stop_pod(pod);
        node.cri.remove_pod(pod);
    }
    for s in samples.iter_mut().chain(handouts.iter_mut()) {
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
    let peer = percentile(&handouts[0], 50);
    println!();
    println!("Standby hand-out at the node: ExecSync of the job in a pod started ahead");
    println!("| pod | median | p90 | vs runc |");
    println!("|---|---|---|---|");
    for (what, s) in [("runc, a running container", &handouts[0]), ("openshell, an idle standby pod", &handouts[1])] {
        let median = percentile(s, 50);
        println!(
            "| {what} | {} | {} | {:.2}× |",
            ms(median),
            ms(percentile(s, 90)),
            median.as_secs_f64() / peer.as_secs_f64()
        );
    }
    Ok(())
}
