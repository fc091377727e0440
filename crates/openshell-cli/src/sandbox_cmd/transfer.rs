//! `sandbox upload` and `sandbox download`: a tar stream through the gateway
//! (the local socket or a remote one alike), packed or unpacked inside the
//! sandbox by its own `tar`, run as an exec — as `kubectl cp` does. So a file
//! lands only where the sandbox's filesystem policy (its Landlock rules) lets
//! the sandbox's processes write, and the gateway never reads or writes a
//! sandbox's files itself.
//!
//! What comes out of a sandbox is untrusted: a download is unpacked into a new
//! directory beside its destination, by the `tar` crate's checked unpacking
//! (no absolute path, no `..`, nothing written through a symlink, no setuid
//! bit, no owner), and only then moved into place.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use openshell_gateway_api::grpc::v1;
use openshell_gateway_api::proto::{Request, Response};
use openshell_gateway_api::remote::{RunEnd, RunIo};

use super::{Gateway, SandboxCmdError, connect, fail, rpc_err, run_failed};

/// An absolute path inside a sandbox, split into its directory and last name.
struct SandboxPath {
    parent: String,
    name: String,
}

impl SandboxPath {
    /// `text` names a path inside sandbox `sandbox`: absolute, without `.` or
    /// `..`; `name` replaces its last component when it ends with `/`.
    fn parse(sandbox: &str, text: &str, name: Option<&str>) -> Result<SandboxPath, SandboxCmdError> {
        let bad = |why: &str| fail(format!("`{text}`: {why} (a path inside sandbox `{sandbox}`)"));
        if !text.starts_with('/') {
            return Err(bad("not an absolute path"));
        }
        let mut parts: Vec<&str> = text.split('/').filter(|p| !p.is_empty()).collect();
        if parts.iter().any(|p| *p == "." || *p == "..") {
            return Err(bad("`.` and `..` are not allowed"));
        }
        if text.ends_with('/')
            && let Some(name) = name
        {
            parts.push(name);
        }
        let name = parts.pop().ok_or_else(|| bad("names no file"))?.to_owned();
        Ok(SandboxPath { parent: format!("/{}", parts.join("/")), name })
    }

    fn full(&self) -> String {
        format!("{}/{}", self.parent.trim_end_matches('/'), self.name)
    }
}

/// Copies the local file or directory `src` into sandbox `sandbox` as `dst`
/// (into the directory `dst` when it ends with `/`).
pub(super) fn upload(sandbox: &str, src: &Path, dst: &str) -> Result<u8, SandboxCmdError> {
    let meta = std::fs::symlink_metadata(src).map_err(|e| fail(format!("{}: {e}", src.display())))?;
    let src_name = src.file_name().and_then(|n| n.to_str());
    let to = SandboxPath::parse(sandbox, dst, src_name)?;
    let (reader, writer) = std::io::pipe().map_err(|e| fail(format!("a pipe: {e}")))?;
    let (src, name) = (src.to_path_buf(), to.name.clone());
    let packer = std::thread::spawn(move || pack(writer, &src, &name, meta.is_dir()));
    let args = ["tar", "-x", "-f", "-", "-C", &to.parent];
    let (code, said) = exec(sandbox, &args, Some(Box::new(reader)), Box::new(std::io::sink()))?;
    let packed = packer.join().map_err(|_| fail("packing the upload failed"))?;
    check(code, &said, &format!("upload to `{sandbox}:{}`", to.full()))?;
    packed.map_err(|e| fail(format!("packing {}: {e}", dst)))?;
    Ok(0)
}

/// `src` as a tar stream whose one top entry is `name`.
fn pack(writer: std::io::PipeWriter, src: &Path, name: &str, dir: bool) -> std::io::Result<()> {
    let mut tar = tar::Builder::new(writer);
    tar.follow_symlinks(false);
    if dir {
        tar.append_dir_all(name, src)?;
    } else {
        tar.append_path_with_name(src, name)?;
    }
    tar.into_inner()?.flush()
}

/// Copies `src` out of sandbox `sandbox` to the local `dst` (into `dst` when
/// it is a directory or ends with `/`); an existing file is never overwritten.
pub(super) fn download(sandbox: &str, src: &str, dst: &Path) -> Result<u8, SandboxCmdError> {
    let from = SandboxPath::parse(sandbox, src, None)?;
    let into_dir = dst.is_dir() || dst.as_os_str().to_string_lossy().ends_with('/');
    let target = if into_dir { dst.join(&from.name) } else { dst.to_path_buf() };
    if target.symlink_metadata().is_ok() {
        return Err(fail(format!("{} exists: not overwritten", target.display())));
    }
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let staging = tempfile::Builder::new()
        .prefix(".openshell-download-")
        .tempdir_in(&parent)
        .map_err(|e| fail(format!("{}: {e}", parent.display())))?;
    let (reader, writer) = std::io::pipe().map_err(|e| fail(format!("a pipe: {e}")))?;
    let unpack_in = staging.path().to_path_buf();
    let unpacker = std::thread::spawn(move || {
        let mut archive = tar::Archive::new(reader);
        let unpacked = archive.unpack(&unpack_in);
        // The rest of the stream is drained, so the sandbox's tar ends.
        let _ = std::io::copy(&mut archive.into_inner(), &mut std::io::sink());
        unpacked
    });
    let args = ["tar", "-c", "-f", "-", "-C", &from.parent, &from.name];
    let (code, said) = exec(sandbox, &args, None, Box::new(writer))?;
    let unpacked = unpacker.join().map_err(|_| fail("unpacking the download failed"))?;
    check(code, &said, &format!("download of `{sandbox}:{}`", from.full()))?;
    unpacked.map_err(|e| fail(format!("unpacking `{sandbox}:{}`: {e}", from.full())))?;
    let got = staging.path().join(&from.name);
    if got.symlink_metadata().is_err() {
        return Err(fail(format!("`{sandbox}:{}`: the sandbox sent no such entry", from.full())));
    }
    std::fs::rename(&got, &target).map_err(|e| fail(format!("{}: {e}", target.display())))?;
    Ok(0)
}

/// The sandbox's `tar` failed: says so with what it said.
fn check(code: i32, said: &str, what: &str) -> Result<(), SandboxCmdError> {
    if code == 0 {
        return Ok(());
    }
    let said = said.trim();
    if code == 127 {
        return Err(fail(format!("{what}: the sandbox's image has no `tar` (upload and download run it): {said}")));
    }
    Err(fail(format!("{what} failed (tar exited {code}): {said}")))
}

/// Runs `args` in sandbox `name` with `stdin` as its input (else none) and its
/// output to `stdout`; returns its exit code and what it wrote on stderr.
fn exec(
    name: &str,
    args: &[&str],
    stdin: Option<Box<dyn Read + Send>>,
    stdout: Box<dyn Write + Send>,
) -> Result<(i32, String), SandboxCmdError> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    match connect(true)? {
        Gateway::Local(client) => {
            let request = Request::Exec { name: name.to_owned(), args, env: Vec::new(), tty: false };
            exec_local(&client, &request, stdin, stdout)
        }
        Gateway::Remote(remote) => {
            let exec = v1::ExecRequest { name: name.to_owned(), args, env: Vec::new(), tty: false, size: None };
            let said = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let io = RunIo { stdin, stdout, stderr: Box::new(Collect(std::rc::Rc::clone(&said))) };
            let end = remote.run(v1::run_input::Input::Exec(exec), io, &mut |_| {}, None).map_err(run_failed)?;
            let said = String::from_utf8_lossy(&said.borrow()).into_owned();
            match end {
                RunEnd::Exited(code) => Ok((code, said)),
                RunEnd::Detached(_) => Err(fail("the exec ended without an exit code")),
            }
        }
    }
}

/// Output kept in memory.
struct Collect(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl Write for Collect {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The local socket: the exec's stdio are pipes whose other ends this
/// process feeds and drains.
fn exec_local(
    client: &openshell_gateway_api::client::Client,
    request: &Request,
    stdin: Option<Box<dyn Read + Send>>,
    mut stdout: Box<dyn Write + Send>,
) -> Result<(i32, String), SandboxCmdError> {
    let pipe = || std::io::pipe().map_err(|e| fail(format!("a pipe: {e}")));
    let (in_r, in_w) = pipe()?;
    let (mut out_r, out_w) = pipe()?;
    let (mut err_r, err_w) = pipe()?;
    client.send(request, &[in_r.as_fd(), out_w.as_fd(), err_w.as_fd()]).map_err(rpc_err)?;
    drop((in_r, out_w, err_w));
    let feeder = std::thread::spawn(move || {
        let mut in_w = in_w;
        if let Some(mut stdin) = stdin {
            let _ = std::io::copy(&mut stdin, &mut in_w);
        }
    });
    let errors = std::thread::spawn(move || {
        let mut said = Vec::new();
        let _ = err_r.read_to_end(&mut said);
        String::from_utf8_lossy(&said).into_owned()
    });
    let copied = std::io::copy(&mut out_r, &mut stdout);
    drop(stdout);
    let said = errors.join().unwrap_or_default();
    let _ = feeder.join();
    let code = loop {
        match client.recv().map_err(rpc_err)? {
            (Response::Exited { code }, _) => break code,
            (Response::Error { error }, _) => return Err(run_failed(error)),
            _ => continue,
        }
    };
    copied.map_err(|e| fail(format!("the sandbox's output: {e}")))?;
    Ok((code, said))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_paths_are_absolute_and_plain() {
        let p = SandboxPath::parse("s", "/sandbox/a/b.txt", None).expect("path");
        assert_eq!((p.parent.as_str(), p.name.as_str()), ("/sandbox/a", "b.txt"));
        let p = SandboxPath::parse("s", "/sandbox/", Some("src")).expect("into a directory");
        assert_eq!((p.parent.as_str(), p.name.as_str(), p.full().as_str()), ("/sandbox", "src", "/sandbox/src"));
        let p = SandboxPath::parse("s", "/top", None).expect("at the root");
        assert_eq!(p.full(), "/top");
        for bad in ["sandbox/x", "/sandbox/../etc/x", "/", "/a/./b"] {
            let e = SandboxPath::parse("s", bad, None).err().expect(bad).message;
            assert!(e.contains(&format!("`{bad}`")) && e.contains("sandbox `s`"), "{e}");
        }
    }
}
