//! A sandbox's seccomp filter compiled to BPF once, at creation, and installed
//! from those bytes at every start and exec.
//!
//! libcontainer compiles a spec's `linux.seccomp` with libseccomp each time a
//! process starts (about 2 ms for the policy's allowlist on this 2-core machine,
//! measured with perf). Sandboxes made by the gateway keep the filter out of the
//! spec and install these bytes instead, in the same place: after Landlock, right
//! before the workload runs, under no_new_privs. The translation below is
//! libcontainer's (`seccomp::initialize_seccomp`), so the program is the one it
//! would load. A gateway compiles each distinct filter once in its life
//! ([`Compiled`]): libseccomp took about 0.9 ms of CPU per create (perf, 20 cold
//! creates of the default policy), the copy of a kept program a few µs.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

/// Why a filter could not be compiled or installed.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("seccomp filter: {0}")]
    Compile(String),
    #[error("seccomp filter {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp program of {0} bytes is not a whole number of BPF instructions")]
    Malformed(usize),
    #[error("installing the seccomp filter: {0}")]
    Install(String),
    #[error("seccomp filter: cannot serialize it to key its program: {0}")]
    Key(#[source] serde_json::Error),
}

fn action(action: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, BpfError> {
    let errno = errno.map(|e| e as i32).unwrap_or(libc_eperm());
    Ok(match action {
        LinuxSeccompAction::ScmpActKill => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno as u16),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(BpfError::Compile("SCMP_ACT_NOTIFY is not supported in sandboxes".into()));
        }
    })
}

const fn libc_eperm() -> i32 {
    1
}

fn arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

fn op(op: LinuxSeccompOperator, mask: Option<u64>) -> ScmpCompareOp {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(mask.unwrap_or(0)),
    }
}

/// Compiles `filter` and writes its BPF program to `path`.
pub fn compile_to(filter: &LinuxSeccomp, path: &Path) -> Result<(), BpfError> {
    let err = |e: libseccomp::error::SeccompError| BpfError::Compile(e.to_string());
    let default = action(filter.default_action(), filter.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(err)?;
    for a in filter.architectures().iter().flatten() {
        ctx.add_arch(arch(*a)).map_err(err)?;
    }
    // no_new_privs is the spec's business (the policy always sets it).
    ctx.set_ctl_nnp(false).map_err(err)?;
    for rule in filter.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue;
        }
        for name in rule.names() {
            // A name this libseccomp does not know is a syscall this kernel lacks.
            let Ok(sc) = ScmpSyscall::from_name(name) else { continue };
            let Some(args) = rule.args() else {
                ctx.add_rule(act, sc).map_err(err)?;
                continue;
            };
            let compares: Vec<ScmpArgCompare> = args
                .iter()
                .map(|a| ScmpArgCompare::new(a.index() as u32, op(a.op(), a.value_two()), a.value()))
                .collect();
            let mut seen = HashSet::new();
            if args.iter().all(|a| seen.insert(a.index())) {
                ctx.add_rule_conditional(act, sc, &compares).map_err(err)?;
            } else {
                // One comparison per argument per rule: each becomes a rule (as runc does).
                for c in &compares {
                    ctx.add_rule_conditional(act, sc, std::slice::from_ref(c)).map_err(err)?;
                }
            }
        }
    }
    let file = std::fs::File::create(path).map_err(|source| BpfError::Io { path: path.to_owned(), source })?;
    ctx.export_bpf(&file).map_err(err)?;
    Ok(())
}

/// The programs this process compiled, by the SHA-256 of their filter's JSON;
/// at most [`Compiled::KEPT`] (a new one past that starts the set afresh). Only
/// in memory: a program is reused by the binary that compiled it, never by
/// another version whose translation or libseccomp may differ.
#[derive(Debug, Default)]
pub struct Compiled {
    programs: Mutex<HashMap<[u8; 32], Arc<[u8]>>>,
}

impl Compiled {
    /// More distinct filters than any set of policies one gateway runs.
    const KEPT: usize = 64;

    /// Writes `filter`'s program to `path`: the one compiled before for the same
    /// filter, else compiled now (by [`compile_to`]) and kept.
    pub fn write(&self, filter: &LinuxSeccomp, path: &Path) -> Result<(), BpfError> {
        use sha2::Digest as _;
        let key: [u8; 32] = sha2::Sha256::digest(serde_json::to_vec(filter).map_err(BpfError::Key)?).into();
        let kept = self.programs.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
        let io = |source| BpfError::Io { path: path.to_owned(), source };
        if let Some(program) = kept {
            return std::fs::write(path, &program).map_err(io);
        }
        compile_to(filter, path)?;
        let program: Arc<[u8]> = std::fs::read(path).map_err(io)?.into();
        let mut programs = self.programs.lock().unwrap_or_else(|p| p.into_inner());
        if programs.len() >= Self::KEPT {
            programs.clear();
        }
        programs.insert(key, program);
        Ok(())
    }

    /// How many programs are kept.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.programs.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Whether `program` can be a BPF program at all (a whole, non-zero number of
/// instructions); what the kernel's verifier says shows at [`install`].
pub fn check(program: &[u8]) -> Result<(), BpfError> {
    if program.is_empty() || !program.len().is_multiple_of(8) {
        return Err(BpfError::Malformed(program.len()));
    }
    Ok(())
}

/// Installs a BPF program written by [`compile_to`] on the calling thread (after
/// setting no_new_privs, which an unprivileged process needs for it).
pub fn install(program: &[u8]) -> Result<(), BpfError> {
    check(program)?;
    let filter: Vec<seccompiler::sock_filter> = program
        .chunks_exact(8)
        .map(|i| seccompiler::sock_filter {
            code: u16::from_ne_bytes([i[0], i[1]]),
            jt: i[2],
            jf: i[3],
            k: u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
        })
        .collect();
    seccompiler::apply_filter(&filter).map_err(|e| BpfError::Install(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_compiles_to_a_bpf_program() {
        let filter = default_filter();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("seccomp.bpf");
        compile_to(&filter, &path).expect("compile");
        let program = std::fs::read(&path).expect("read");
        // An allowlist of a few hundred syscalls with argument filters: well over 100
        // instructions of 8 bytes each.
        assert!(program.len().is_multiple_of(8) && program.len() > 800, "{} bytes", program.len());
    }

    fn default_filter() -> LinuxSeccomp {
        let policy =
            openshell_policy::load_str("default.yaml", include_str!("../../../policies/default.yaml")).expect("policy");
        let profile = openshell_policy::KernelProfile::compile(&policy, "/sandbox");
        serde_json::from_value(serde_json::to_value(&profile.seccomp).expect("json")).expect("oci seccomp")
    }

    #[test]
    fn a_kept_program_is_its_own_filters_and_another_filter_gets_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let direct = |filter: &LinuxSeccomp, name: &str| {
            let path = dir.path().join(name);
            compile_to(filter, &path).expect("compile");
            std::fs::read(path).expect("read")
        };
        let a = default_filter();
        // The same filter without one syscall rule: a different program.
        let mut b = a.clone();
        let mut rules = b.syscalls().clone().expect("rules");
        rules.pop();
        b.set_syscalls(Some(rules));
        let (want_a, want_b) = (direct(&a, "a.bpf"), direct(&b, "b.bpf"));
        assert_ne!(want_a, want_b);

        let compiled = Compiled::default();
        let through = |filter: &LinuxSeccomp, name: &str| {
            let path = dir.path().join(name);
            compiled.write(filter, &path).expect("write");
            std::fs::read(path).expect("read")
        };
        assert_eq!(through(&a, "a1.bpf"), want_a, "compiled");
        assert_eq!(through(&a, "a2.bpf"), want_a, "kept");
        assert_eq!(compiled.kept(), 1);
        assert_eq!(through(&b, "b1.bpf"), want_b, "another filter is not served the first one's program");
        assert_eq!(through(&a, "a3.bpf"), want_a);
        assert_eq!(compiled.kept(), 2);
    }

    #[test]
    fn malformed_programs_are_refused_before_the_kernel() {
        assert!(matches!(install(&[]), Err(BpfError::Malformed(0))));
        assert!(matches!(install(&[0; 12]), Err(BpfError::Malformed(12))));
    }
}
