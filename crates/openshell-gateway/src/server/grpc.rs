//! The API over gRPC (tonic): each call becomes one of the gateway's requests,
//! answered through an [`Answer`] that turns responses into the call's
//! messages. A run's stdio becomes pipes (or, with a terminal, the master end
//! the driver gives) pumped to and from the call's streams, so the requests'
//! handling is the same as on the local socket.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openshell_gateway_api::ApiError;
use openshell_gateway_api::grpc::v1::{self, run_event::Event, run_input::Input};
use openshell_gateway_api::proto::{Request, Response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::{Answer, Gateway};
use crate::tls::Caller;

/// The caller a call's client certificate names (verified by the TLS layer);
/// on the gateway's Unix socket, its owner, when the peer's uid is the
/// gateway's.
fn caller<T>(request: &tonic::Request<T>) -> Result<Caller, Status> {
    if let Some(unix) = request.extensions().get::<tonic::transport::server::UdsConnectInfo>() {
        let uid = unix.peer_cred.map(|c| c.uid());
        if uid == Some(rustix::process::geteuid().as_raw()) {
            return Ok(Caller::owner());
        }
        return Err(Status::permission_denied("permission denied: not the gateway's owner"));
    }
    let certs = request.peer_certs().ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    let first = certs.first().ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    Caller::from_certificate(first.as_ref()).map_err(|e| Status::permission_denied(e.to_string()))
}

/// The gateway as a tonic service.
pub(super) struct Service {
    pub gateway: Arc<Gateway>,
}

type Events = ReceiverStream<Result<v1::RunEvent, Status>>;
type Outputs = ReceiverStream<Result<v1::Output, Status>>;

/// Answers of a call with one answer: the last response is kept.
struct Unary {
    last: Mutex<Option<Response>>,
}

impl Answer for Unary {
    fn send(&self, response: &Response, _fds: &[BorrowedFd<'_>]) -> bool {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(response.clone());
        true
    }

    fn output(&self, _bytes: &[u8]) -> bool {
        false
    }

    fn blob(&self) -> Result<(String, Box<dyn Read + '_>), ApiError> {
        Err(ApiError::invalid("this call carries no blobs"))
    }
}

fn unexpected(response: &Response) -> Status {
    Status::internal(format!("unexpected answer {response:?}"))
}

impl Service {
    /// Handles a request with one answer (an `Error` answer is the call's error).
    async fn unary(&self, caller: Caller, request: Request) -> Result<Response, Status> {
        let gateway = Arc::clone(&self.gateway);
        let handled = tokio::task::spawn_blocking(move || {
            let answer = Unary { last: Mutex::new(None) };
            let outcome = gateway.handle(request, Vec::new(), &answer, &caller);
            (outcome, answer.last.into_inner().unwrap_or_else(|p| p.into_inner()))
        })
        .await
        .map_err(|e| Status::internal(format!("the request's handler failed: {e}")))?;
        match handled {
            (Err(error), _)
            | (Ok(Some(Response::Error { error })), _)
            | (Ok(None), Some(Response::Error { error })) => Err(error.into()),
            (Ok(Some(last)), _) | (Ok(None), Some(last)) => Ok(last),
            (Ok(None), None) => Err(Status::internal("the gateway gave no answer")),
        }
    }

    async fn done(&self, caller: Caller, request: Request) -> Result<tonic::Response<v1::Done>, Status> {
        match self.unary(caller, request).await? {
            Response::Done { message } => Ok(tonic::Response::new(v1::Done { message })),
            other => Err(unexpected(&other)),
        }
    }

    async fn sandbox(&self, caller: Caller, request: Request) -> Result<tonic::Response<v1::Sandbox>, Status> {
        match self.unary(caller, request).await? {
            Response::Sandbox { sandbox } => Ok(tonic::Response::new(sandbox.into())),
            other => Err(unexpected(&other)),
        }
    }

    /// A run (create or exec): the first input names it, later inputs feed its
    /// stdin or terminal; events carry its start, output and exit.
    async fn run(&self, caller: Caller, mut input: Streaming<v1::RunInput>) -> Result<tonic::Response<Events>, Status> {
        let first = input.message().await?.and_then(|m| m.input);
        let (request, pipes, size) = match first {
            Some(Input::Create(c)) => {
                let attach = c.attach;
                (Request::Create(c.try_into().map_err(Status::from)?), attach, None)
            }
            Some(Input::Exec(e)) => {
                let pipes = !e.tty;
                (Request::Exec { name: e.name, args: e.args, env: e.env, tty: e.tty }, pipes, e.size)
            }
            Some(Input::Forward(f)) => {
                let port = u16::try_from(f.port)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| Status::invalid_argument(format!("port {}: not a TCP port", f.port)))?;
                (Request::Forward { name: f.name, port }, false, None)
            }
            _ => return Err(Status::invalid_argument("a run starts with `create`, `exec` or `forward`")),
        };
        let forward = matches!(request, Request::Forward { .. });
        let (events, rx) = mpsc::channel(64);
        let run = Arc::new(Run {
            events: Arc::new(Mutex::new(Some(events))),
            stdin: Mutex::new(None),
            master: Mutex::new(None),
            size,
            readers: Mutex::new(Vec::new()),
        });
        let mut fds = Vec::new();
        if pipes {
            let (stdin_r, stdin_w) = pipe()?;
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            fds = vec![stdin_r, out_w, err_w];
            *run.stdin.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::fs::File::from(stdin_w));
            run.pump(out_r, v1::OutputStream::Stdout);
            run.pump(err_r, v1::OutputStream::Stderr);
        }
        let (to_stdin, from_client) = std::sync::mpsc::channel::<Option<Vec<u8>>>();
        let writer = Arc::clone(&run);
        std::thread::spawn(move || writer.write_stdin(from_client));
        let resizer = Arc::clone(&run);
        tokio::spawn(async move {
            while let Ok(Some(message)) = input.message().await {
                match message.input {
                    Some(Input::Stdin(bytes)) => {
                        let _ = to_stdin.send(Some(bytes));
                    }
                    Some(Input::StdinClosed(_)) => {
                        let _ = to_stdin.send(None);
                    }
                    Some(Input::Resize(size)) => resizer.resize(size),
                    _ => {}
                }
            }
            let _ = to_stdin.send(None);
        });
        let gateway = Arc::clone(&self.gateway);
        std::thread::spawn(move || {
            match gateway.handle(request, fds, run.as_ref(), &caller) {
                Ok(Some(last)) => run.send(&last, &[]),
                // A forward's connection is relayed until the sandbox's side ends.
                Ok(None) if forward => run.connection_closed(),
                Ok(None) => true,
                Err(error) => run.send(&Response::Error { error }, &[]),
            };
            // The call's end, whatever still holds its input or a pump.
            run.events.lock().unwrap_or_else(|p| p.into_inner()).take();
        });
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }
}

type EventSender = Arc<Mutex<Option<mpsc::Sender<Result<v1::RunEvent, Status>>>>>;

/// Sends an event unless the call has ended; false when it has (or the client went away).
fn emit(events: &EventSender, event: Result<v1::RunEvent, Status>) -> bool {
    let sender = events.lock().unwrap_or_else(|p| p.into_inner()).clone();
    sender.is_some_and(|s| s.blocking_send(event).is_ok())
}

/// A run's streams, as the handler answers it.
struct Run {
    /// Taken when the run's answer is complete: the call ends.
    events: EventSender,
    /// Where stdin goes: the pipe's write end, or the terminal's master end.
    stdin: Mutex<Option<std::fs::File>>,
    /// The terminal's master end, once the driver gave it.
    master: Mutex<Option<OwnedFd>>,
    /// The terminal's size at the start.
    size: Option<v1::WindowSize>,
    /// Output pumps, drained before the exit is sent.
    readers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Status> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| Status::internal(format!("pipe: {e}")))
}

impl Run {
    fn event(&self, event: Event) -> bool {
        emit(&self.events, Ok(v1::RunEvent { event: Some(event) }))
    }

    /// Sends what is read from `from` as output of `stream`, until its end.
    fn pump(&self, from: OwnedFd, stream: v1::OutputStream) {
        let events = Arc::clone(&self.events);
        let handle = std::thread::spawn(move || {
            let mut from = std::fs::File::from(from);
            let mut buf = vec![0u8; 64 * 1024];
            // EIO from a terminal once every process closed it: its end.
            while let Ok(n) = from.read(&mut buf) {
                let output = v1::Output { stream: stream as i32, data: buf[..n].to_vec() };
                if n == 0 || !emit(&events, Ok(v1::RunEvent { event: Some(Event::Output(output)) })) {
                    break;
                }
            }
        });
        self.readers.lock().unwrap_or_else(|p| p.into_inner()).push(handle);
    }

    /// Waits (1 s at most: a process left in the background may hold the
    /// output open) for the output to be sent.
    fn drain(&self) {
        let readers = std::mem::take(&mut *self.readers.lock().unwrap_or_else(|p| p.into_inner()));
        let deadline = Instant::now() + Duration::from_secs(1);
        for reader in readers {
            while !reader.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    /// Waits for a forwarded connection's end on the sandbox's side, then ends
    /// the call with `exited` 0.
    fn connection_closed(&self) -> bool {
        for reader in std::mem::take(&mut *self.readers.lock().unwrap_or_else(|p| p.into_inner())) {
            let _ = reader.join();
        }
        self.event(Event::Exited(0))
    }

    /// Writes the client's stdin (`None`: its end) where it goes now.
    fn write_stdin(&self, from_client: std::sync::mpsc::Receiver<Option<Vec<u8>>>) {
        while let Ok(chunk) = from_client.recv() {
            let Some(bytes) = chunk else {
                // The pipe's end (a socket's write side: its other direction stays
                // open); a terminal stays open (its processes end on their own).
                if self.master.lock().unwrap_or_else(|p| p.into_inner()).is_none()
                    && let Some(sink) = self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take()
                {
                    let _ = rustix::net::shutdown(&sink, rustix::net::Shutdown::Write);
                }
                continue;
            };
            // A terminal's master end arrives with the exec's start: wait for it.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let mut stdin = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(sink) = stdin.as_mut() {
                    if sink.write_all(&bytes).is_err() {
                        stdin.take();
                    }
                    break;
                }
                drop(stdin);
                if Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    fn resize(&self, size: v1::WindowSize) {
        if let Some(master) = self.master.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            set_size(master.as_fd(), size);
        }
    }
}

fn set_size(master: BorrowedFd<'_>, size: v1::WindowSize) {
    let size = rustix::termios::Winsize {
        ws_row: size.rows.min(u32::from(u16::MAX)) as u16,
        ws_col: size.cols.min(u32::from(u16::MAX)) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let _ = rustix::termios::tcsetwinsize(master, size);
}

impl Answer for Run {
    fn send(&self, response: &Response, fds: &[BorrowedFd<'_>]) -> bool {
        match response {
            Response::Sandbox { sandbox } => self.event(Event::Started(sandbox.clone().into())),
            Response::Console => {
                let Some(master) = fds.first().and_then(|f| f.try_clone_to_owned().ok()) else { return false };
                if let Some(size) = self.size {
                    set_size(master.as_fd(), size);
                }
                let (Ok(reader), Ok(writer)) = (master.try_clone(), master.try_clone()) else { return false };
                *self.stdin.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::fs::File::from(writer));
                *self.master.lock().unwrap_or_else(|p| p.into_inner()) = Some(master);
                self.pump(reader, v1::OutputStream::Stdout);
                true
            }
            Response::Connected => {
                let Some(stream) = fds.first().and_then(|f| f.try_clone_to_owned().ok()) else { return false };
                let Ok(writer) = stream.try_clone() else { return false };
                *self.stdin.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::fs::File::from(writer));
                self.pump(stream, v1::OutputStream::Stdout);
                true
            }
            Response::Exited { code } => {
                self.drain();
                self.event(Event::Exited(*code))
            }
            Response::Error { error } => {
                self.drain();
                emit(&self.events, Err(error.clone().into()))
            }
            _ => true,
        }
    }

    fn output(&self, _bytes: &[u8]) -> bool {
        false
    }

    fn blob(&self) -> Result<(String, Box<dyn Read + '_>), ApiError> {
        Err(ApiError::invalid("a run carries no blobs"))
    }
}

/// Answers of `logs`: output messages, then the end of the stream.
struct Logs {
    outputs: mpsc::Sender<Result<v1::Output, Status>>,
}

impl Answer for Logs {
    fn send(&self, response: &Response, _fds: &[BorrowedFd<'_>]) -> bool {
        match response {
            Response::Error { error } => self.outputs.blocking_send(Err(error.clone().into())).is_ok(),
            _ => true,
        }
    }

    fn output(&self, bytes: &[u8]) -> bool {
        let output = v1::Output { stream: v1::OutputStream::Stdout as i32, data: bytes.to_vec() };
        self.outputs.blocking_send(Ok(output)).is_ok()
    }

    fn blob(&self) -> Result<(String, Box<dyn Read + '_>), ApiError> {
        Err(ApiError::invalid("logs carry no blobs"))
    }
}

/// The blobs of an upload, read from the call's parts as they come.
struct Upload {
    parts: Mutex<mpsc::Receiver<v1::ImageUploadPart>>,
    /// A part read ahead: the next blob's name.
    next: Mutex<Option<String>>,
    last: Mutex<Option<Response>>,
}

/// One blob's content: `data` parts up to the next blob (or the end).
struct BlobReader<'a> {
    upload: &'a Upload,
    chunk: Vec<u8>,
    at: usize,
    done: bool,
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use openshell_gateway_api::grpc::v1::image_upload_part::Part;
        while self.at == self.chunk.len() && !self.done {
            match self.upload.parts.lock().unwrap_or_else(|p| p.into_inner()).blocking_recv().and_then(|p| p.part) {
                Some(Part::Data(data)) => (self.chunk, self.at) = (data, 0),
                Some(Part::Blob(next)) => {
                    *self.upload.next.lock().unwrap_or_else(|p| p.into_inner()) = Some(next);
                    self.done = true;
                }
                Some(Part::Image(_)) => return Err(std::io::Error::other("a second image record in one upload")),
                None => self.done = true,
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Answer for Upload {
    fn send(&self, response: &Response, _fds: &[BorrowedFd<'_>]) -> bool {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(response.clone());
        true
    }

    fn output(&self, _bytes: &[u8]) -> bool {
        false
    }

    fn blob(&self) -> Result<(String, Box<dyn Read + '_>), ApiError> {
        use openshell_gateway_api::grpc::v1::image_upload_part::Part;
        let named = self.next.lock().unwrap_or_else(|p| p.into_inner()).take();
        let digest = match named {
            Some(d) => d,
            None => match self.parts.lock().unwrap_or_else(|p| p.into_inner()).blocking_recv().and_then(|p| p.part) {
                Some(Part::Blob(d)) => d,
                Some(_) => return Err(ApiError::invalid("image upload: data came before its blob's name")),
                None => return Err(ApiError::invalid("image upload: the client ended it early")),
            },
        };
        Ok((digest, Box::new(BlobReader { upload: self, chunk: Vec::new(), at: 0, done: false })))
    }
}

#[tonic::async_trait]
impl v1::gateway_server::Gateway for Service {
    type CreateStream = Events;
    type ExecStream = Events;
    type LogsStream = Outputs;

    async fn create(
        &self,
        request: tonic::Request<Streaming<v1::RunInput>>,
    ) -> Result<tonic::Response<Events>, Status> {
        self.run(caller(&request)?, request.into_inner()).await
    }

    async fn exec(&self, request: tonic::Request<Streaming<v1::RunInput>>) -> Result<tonic::Response<Events>, Status> {
        self.run(caller(&request)?, request.into_inner()).await
    }

    async fn start(&self, request: tonic::Request<v1::SandboxName>) -> Result<tonic::Response<v1::Sandbox>, Status> {
        self.sandbox(caller(&request)?, Request::Start { name: request.into_inner().name, attach: false }).await
    }

    async fn stop(&self, request: tonic::Request<v1::StopRequest>) -> Result<tonic::Response<v1::Sandbox>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        self.sandbox(caller, Request::Stop { name: r.name, timeout_secs: r.timeout_secs }).await
    }

    async fn kill(&self, request: tonic::Request<v1::KillRequest>) -> Result<tonic::Response<v1::Done>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        self.done(caller, Request::Kill { name: r.name, signal: r.signal }).await
    }

    async fn delete(&self, request: tonic::Request<v1::SandboxName>) -> Result<tonic::Response<v1::Done>, Status> {
        self.done(caller(&request)?, Request::Delete { name: request.into_inner().name }).await
    }

    async fn list(&self, request: tonic::Request<v1::ListRequest>) -> Result<tonic::Response<v1::SandboxList>, Status> {
        match self.unary(caller(&request)?, Request::List).await? {
            Response::Sandboxes { sandboxes } => {
                Ok(tonic::Response::new(v1::SandboxList { sandboxes: sandboxes.into_iter().map(Into::into).collect() }))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn get(&self, request: tonic::Request<v1::SandboxName>) -> Result<tonic::Response<v1::Sandbox>, Status> {
        self.sandbox(caller(&request)?, Request::Get { name: request.into_inner().name }).await
    }

    async fn logs(&self, request: tonic::Request<v1::LogsRequest>) -> Result<tonic::Response<Outputs>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let (outputs, rx) = mpsc::channel(64);
        let gateway = Arc::clone(&self.gateway);
        std::thread::spawn(move || {
            let answer = Logs { outputs };
            let request = Request::Logs { name: r.name, follow: r.follow, audit: r.audit };
            if let Err(error) = gateway.handle(request, Vec::new(), &answer, &caller) {
                answer.send(&Response::Error { error }, &[]);
            }
        });
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }

    async fn policy_set(
        &self,
        request: tonic::Request<v1::PolicySetRequest>,
    ) -> Result<tonic::Response<v1::Done>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        self.done(
            caller,
            Request::PolicySet { name: r.name, policy_name: r.policy_name, policy: r.policy, wait: r.wait },
        )
        .await
    }

    async fn policy_get(
        &self,
        request: tonic::Request<v1::PolicyGetRequest>,
    ) -> Result<tonic::Response<v1::PolicyRevisions>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        match self.unary(caller, Request::PolicyGet { name: r.name, all: r.all }).await? {
            Response::Policies { revisions } => Ok(tonic::Response::new(v1::PolicyRevisions {
                revisions: revisions.into_iter().map(Into::into).collect(),
            })),
            other => Err(unexpected(&other)),
        }
    }

    async fn status(
        &self,
        request: tonic::Request<v1::StatusRequest>,
    ) -> Result<tonic::Response<v1::GatewayStatus>, Status> {
        match self.unary(caller(&request)?, Request::Status).await? {
            Response::Status { status } => Ok(tonic::Response::new(status.into())),
            other => Err(unexpected(&other)),
        }
    }

    async fn provider_create(
        &self,
        request: tonic::Request<v1::ProviderCreateRequest>,
    ) -> Result<tonic::Response<v1::Done>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        self.done(
            caller,
            Request::ProviderCreate {
                name: r.name,
                kind: r.kind,
                base_url: r.base_url,
                credential_name: r.credential_name,
                credential: openshell_gateway_api::proto::Credential(r.credential),
            },
        )
        .await
    }

    async fn provider_list(
        &self,
        request: tonic::Request<v1::ProviderListRequest>,
    ) -> Result<tonic::Response<v1::Providers>, Status> {
        let caller = caller(&request)?;
        let request = match request.into_inner().name {
            Some(name) => Request::ProviderGet { name },
            None => Request::ProviderList,
        };
        match self.unary(caller, request).await? {
            Response::Providers { providers } => {
                Ok(tonic::Response::new(v1::Providers { providers: providers.into_iter().map(Into::into).collect() }))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn provider_delete(
        &self,
        request: tonic::Request<v1::ProviderName>,
    ) -> Result<tonic::Response<v1::Done>, Status> {
        self.done(caller(&request)?, Request::ProviderDelete { name: request.into_inner().name }).await
    }

    async fn inference_set(
        &self,
        request: tonic::Request<v1::InferenceSetRequest>,
    ) -> Result<tonic::Response<v1::Done>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        self.done(caller, Request::InferenceSet { provider: r.provider, model: r.model, timeout_secs: r.timeout_secs })
            .await
    }

    async fn inference_get(
        &self,
        request: tonic::Request<v1::InferenceGetRequest>,
    ) -> Result<tonic::Response<v1::InferenceRoute>, Status> {
        match self.unary(caller(&request)?, Request::InferenceGet).await? {
            Response::Inference { route } => {
                Ok(tonic::Response::new(v1::InferenceRoute { route: route.map(Into::into) }))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn inference_delete(
        &self,
        request: tonic::Request<v1::InferenceDeleteRequest>,
    ) -> Result<tonic::Response<v1::Done>, Status> {
        self.done(caller(&request)?, Request::InferenceDelete).await
    }

    async fn image_upload(
        &self,
        request: tonic::Request<Streaming<v1::ImageUploadPart>>,
    ) -> Result<tonic::Response<v1::Done>, Status> {
        use openshell_gateway_api::grpc::v1::image_upload_part::Part;
        let caller = caller(&request)?;
        let mut parts = request.into_inner();
        let Some(Part::Image(image)) = parts.message().await?.and_then(|p| p.part) else {
            return Err(Status::invalid_argument("an upload starts with the image's record"));
        };
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Ok(Some(part)) = parts.message().await {
                if tx.send(part).await.is_err() {
                    break;
                }
            }
        });
        let gateway = Arc::clone(&self.gateway);
        let handled = tokio::task::spawn_blocking(move || {
            let answer = Upload { parts: Mutex::new(rx), next: Mutex::new(None), last: Mutex::new(None) };
            let outcome = gateway.handle(Request::ImageUpload(image.into()), Vec::new(), &answer, &caller);
            (outcome, answer.last.into_inner().unwrap_or_else(|p| p.into_inner()))
        })
        .await
        .map_err(|e| Status::internal(format!("the upload's handler failed: {e}")))?;
        match handled {
            (Ok(Some(Response::Done { message })), _) => Ok(tonic::Response::new(v1::Done { message })),
            (Err(error), _) | (Ok(Some(Response::Error { error })), _) => Err(error.into()),
            (other, _) => Err(Status::internal(format!("unexpected answer {other:?}"))),
        }
    }
}
