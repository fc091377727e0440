//! `events`: a container's cgroup statistics as runc prints them (`{"type":
//! "stats", "id": ..., "data": {...}}`, the field names of runc's `types.Stats`,
//! which go-runc and containerd read), from libcgroups' manager.

use std::collections::BTreeMap;

use libcgroups::stats::{MemoryData, Stats};
use serde::Serialize;

/// One event line.
#[derive(Debug, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub data: StatsData,
}

#[derive(Debug, Serialize)]
pub struct StatsData {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: BTreeMap<String, Vec<BlkioEntry>>,
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

#[derive(Debug, Serialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

#[derive(Debug, Serialize)]
pub struct CpuUsage {
    pub total: u64,
    pub percpu: Vec<u64>,
    pub percpu_kernel: Vec<u64>,
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

/// runc leaves zero counters out (`{}` when never throttled).
#[derive(Debug, Serialize)]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Serialize)]
pub struct Memory {
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct MemoryEntry {
    pub limit: u64,
    pub usage: u64,
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Serialize)]
pub struct Pids {
    pub current: u64,
    pub limit: u64,
}

#[derive(Debug, Serialize)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

#[derive(Debug, Serialize)]
pub struct Hugetlb {
    pub usage: u64,
    pub max: u64,
    pub failcnt: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn entry(m: &MemoryData) -> MemoryEntry {
    MemoryEntry { limit: m.limit, usage: m.usage, max: m.max_usage, failcnt: m.fail_count }
}

fn blkio(entries: &[libcgroups::stats::BlkioDeviceStat]) -> Vec<BlkioEntry> {
    entries
        .iter()
        .map(|e| BlkioEntry {
            major: e.major,
            minor: e.minor,
            op: e.op_type.clone().unwrap_or_default(),
            value: e.value,
        })
        .collect()
}

/// The stats event of container `id`.
pub fn stats_event(id: &str, s: &Stats) -> Event {
    let u = &s.cpu.usage;
    let t = &s.cpu.throttling;
    let mut io = BTreeMap::new();
    for (name, entries) in [
        ("io_service_bytes_recursive", &s.blkio.service_bytes),
        ("io_serviced_recursive", &s.blkio.serviced),
        ("io_time_recursive", &s.blkio.time),
    ] {
        if !entries.is_empty() {
            io.insert(name.to_owned(), blkio(entries));
        }
    }
    Event {
        kind: "stats",
        id: id.to_owned(),
        data: StatsData {
            cpu: Cpu {
                usage: CpuUsage {
                    total: u.usage_total,
                    percpu: u.per_core_usage_total.clone(),
                    percpu_kernel: u.per_core_usage_kernel.clone(),
                    percpu_user: u.per_core_usage_user.clone(),
                    kernel: u.usage_kernel,
                    user: u.usage_user,
                },
                throttling: Throttling {
                    periods: t.periods,
                    throttled_periods: t.throttled_periods,
                    throttled_time: t.throttled_time,
                },
            },
            memory: Memory {
                cache: s.memory.cache,
                usage: entry(&s.memory.memory),
                swap: entry(&s.memory.memswap),
                kernel: entry(&s.memory.kernel),
                kernel_tcp: entry(&s.memory.kernel_tcp),
                raw: s.memory.stats.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            },
            pids: Pids { current: s.pids.current, limit: s.pids.limit },
            blkio: io,
            hugetlb: s
                .hugetlb
                .iter()
                .map(|(size, h)| (size.clone(), Hugetlb { usage: h.usage, max: h.max_usage, failcnt: h.fail_count }))
                .collect(),
        },
    }
}
