//! A remote gateway: the gRPC API over TCP with mutual TLS. The same requests
//! as on the local socket; a run's stdio travels in the call's streams.

use std::io::{Read, Write};
use std::path::PathBuf;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::client::ClientError;
use crate::error::ApiError;
use crate::grpc::v1::{self, gateway_client::GatewayClient, run_event::Event, run_input::Input};
use crate::proto::{ImageUpload, Request, Response, SandboxInfo};

/// How to reach a remote gateway (`openshell gateway add`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemoteConfig {
    /// `https://HOST:PORT`
    pub url: String,
    /// The gateway's CA (it signed the server's certificate).
    pub ca: PathBuf,
    /// This client's certificate and key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A connection to a remote gateway.
pub struct Remote {
    runtime: tokio::runtime::Runtime,
    client: GatewayClient<Channel>,
    /// How it was reached over TLS (for diagnosing a refusal); none over the
    /// gateway's own Unix socket.
    config: Option<RemoteConfig>,
}

/// Says what went wrong below the API in words a user acts on: a TLS refusal by
/// either side, or no connection at all.
fn transport(context: &str, error: &(dyn std::error::Error + 'static)) -> ClientError {
    let mut chain = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        chain.push(e.to_string());
        next = e.source();
    }
    let text = chain.join(": ");
    let plain = [
        ("NotValidForName", "the gateway's certificate is not valid for the name in its URL"),
        ("not valid for name", "the gateway's certificate is not valid for the name in its URL"),
        ("UnknownIssuer", "the gateway's certificate is not signed by the CA given for it"),
        ("CertificateRequired", "the gateway requires a client certificate"),
        ("CertificateExpired", "the gateway refused this client's certificate: it has expired"),
        ("CertificateRevoked", "the gateway refused this client's certificate: it is revoked"),
        ("UnknownCA", "the gateway refused this client's certificate: not signed by its CA"),
        ("BadCertificate", "the gateway refused this client's certificate"),
        ("DecryptError", "the gateway refused this client's certificate"),
    ];
    let message = match plain.iter().find(|(needle, _)| text.contains(needle)) {
        Some((_, plain)) => format!("{context}: {plain} ({text})"),
        None => format!("{context}: {text}"),
    };
    ClientError::Remote(message)
}

fn status(context: &str, status: tonic::Status) -> ClientError {
    // Not the gateway's answer: the connection failed under the call.
    if status.metadata().get(crate::grpc::ERROR_CODE_KEY).is_none()
        && matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled)
    {
        return match std::error::Error::source(&status) {
            Some(source) => transport(context, source),
            None => ClientError::Remote(format!("{context}: {}", status.message())),
        };
    }
    ClientError::Api(ApiError::from(status))
}

/// What the gateway says of this client's certificate: a TLS session of our
/// own and one read; `None` when the gateway accepts it.
fn refusal(config: &RemoteConfig) -> Option<String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::Read as _;
    let url: url_host::Url = config.url.parse().ok()?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&config.ca).ok()?.flatten() {
        roots.add(cert).ok()?;
    }
    let certs = CertificateDer::pem_file_iter(&config.cert).ok()?.flatten().collect();
    let key = PrivateKeyDer::from_pem_file(&config.key).ok()?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .ok()?;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let name = rustls::pki_types::ServerName::try_from(url.host.clone()).ok()?;
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(tls), name).ok()?;
    let tcp = std::net::TcpStream::connect((url.host.as_str(), url.port)).ok()?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    // HTTP/2's preface: an accepting server answers with its SETTINGS.
    std::io::Write::write_all(&mut stream, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .ok()?;
    let mut frame = [0u8; 9];
    match stream.read_exact(&mut frame) {
        Ok(()) => None,
        Err(e) => match transport("the gateway", &e) {
            ClientError::Remote(m) => Some(m),
            _ => None,
        },
    }
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|e| ClientError::Remote(format!("{}: {e}", path.display())))
}

/// A run's standard streams on the client's side: its input (if any) and
/// where its output goes.
pub struct RunIo {
    pub stdin: Option<Box<dyn Read + Send>>,
    pub stdout: Box<dyn Write>,
    pub stderr: Box<dyn Write>,
}

impl RunIo {
    /// This process's own streams (`stdin`: whether the run reads its input).
    pub fn inherited(stdin: bool) -> RunIo {
        RunIo {
            stdin: stdin.then(|| Box::new(std::io::stdin()) as Box<dyn Read + Send>),
            stdout: Box::new(std::io::stdout()),
            stderr: Box::new(std::io::stderr()),
        }
    }
}

/// What a run ended with.
pub enum RunEnd {
    Exited(i32),
    /// A detached create: the sandbox runs.
    Detached(Box<SandboxInfo>),
}

impl Remote {
    pub fn connect(config: &RemoteConfig) -> Result<Remote, ClientError> {
        let url: url_host::Url = config.url.parse()?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read_file(&config.ca)?))
            .identity(Identity::from_pem(read_file(&config.cert)?, read_file(&config.key)?))
            .domain_name(url.host.clone());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| ClientError::Remote(format!("a runtime: {e}")))?;
        let context = format!("gateway {}", config.url);
        let endpoint = Channel::from_shared(config.url.clone())
            .map_err(|e| ClientError::Remote(format!("{context}: {e}")))?
            .tls_config(tls)
            .map_err(|e| transport(&context, &e))?
            .connect_timeout(std::time::Duration::from_secs(10))
            .tcp_nodelay(true);
        let channel = runtime.block_on(endpoint.connect()).map_err(|e| transport(&context, &e))?;
        Ok(Remote { runtime, client: GatewayClient::new(channel), config: Some(config.clone()) })
    }

    /// The gRPC API on the gateway's own Unix socket (`GatewayDir::grpc_socket`;
    /// its owner only), for programs on the gateway's machine.
    pub fn connect_unix(path: &std::path::Path) -> Result<Remote, ClientError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| ClientError::Remote(format!("a runtime: {e}")))?;
        let context = format!("gateway socket {}", path.display());
        let path = path.to_path_buf();
        // The URI is only a placeholder: every connection is made to `path`.
        let endpoint = tonic::transport::Endpoint::from_static("http://localhost");
        let connector = tower::service_fn(move |_| {
            let path = path.clone();
            async move { tokio::net::UnixStream::connect(path).await.map(hyper_util::rt::TokioIo::new) }
        });
        let channel =
            runtime.block_on(endpoint.connect_with_connector(connector)).map_err(|e| transport(&context, &e))?;
        Ok(Remote { runtime, client: GatewayClient::new(channel), config: None })
    }

    /// Why calls fail although the connection was made: with TLS 1.3 a server
    /// refuses a client's certificate after the handshake, and the refusal
    /// (an alert) is lost below HTTP/2. A handshake of its own, then one read,
    /// finds it.
    fn diagnose(&self, error: ClientError) -> ClientError {
        let ClientError::Remote(message) = &error else { return error };
        let Some(config) = &self.config else { return error };
        match refusal(config) {
            Some(refused) => ClientError::Remote(format!("{message}: {refused}")),
            None => error,
        }
    }

    /// A request with one answer, as [`crate::client::Client::call`] answers it.
    pub fn call(&self, request: &Request) -> Result<Response, ClientError> {
        self.call_once(request).map_err(|e| self.diagnose(e))
    }

    fn call_once(&self, request: &Request) -> Result<Response, ClientError> {
        let mut c = self.client.clone();
        let context = "the gateway";
        let s = |e| status(context, e);
        let sandbox = |r: tonic::Response<v1::Sandbox>| -> Result<Response, ClientError> {
            Ok(Response::Sandbox { sandbox: r.into_inner().try_into()? })
        };
        let done = |r: tonic::Response<v1::Done>| Response::Done { message: r.into_inner().message };
        self.runtime.block_on(async move {
            Ok(match request.clone() {
                Request::Start { name, .. } => sandbox(c.start(v1::SandboxName { name }).await.map_err(s)?)?,
                Request::Stop { name, timeout_secs } => {
                    sandbox(c.stop(v1::StopRequest { name, timeout_secs }).await.map_err(s)?)?
                }
                Request::Get { name } => sandbox(c.get(v1::SandboxName { name }).await.map_err(s)?)?,
                Request::Kill { name, signal } => done(c.kill(v1::KillRequest { name, signal }).await.map_err(s)?),
                Request::Delete { name } => done(c.delete(v1::SandboxName { name }).await.map_err(s)?),
                Request::List => {
                    let list = c.list(v1::ListRequest {}).await.map_err(s)?.into_inner();
                    let sandboxes = list.sandboxes.into_iter().map(SandboxInfo::try_from).collect::<Result<_, _>>()?;
                    Response::Sandboxes { sandboxes }
                }
                Request::PolicySet { name, policy_name, policy, wait } => {
                    done(c.policy_set(v1::PolicySetRequest { name, policy_name, policy, wait }).await.map_err(s)?)
                }
                Request::PolicyGet { name, all } => {
                    let r = c.policy_get(v1::PolicyGetRequest { name, all }).await.map_err(s)?.into_inner();
                    Response::Policies { revisions: r.revisions.into_iter().map(Into::into).collect() }
                }
                Request::Status => {
                    Response::Status { status: c.status(v1::StatusRequest {}).await.map_err(s)?.into_inner().into() }
                }
                Request::ProviderCreate { name, kind, base_url, credential_name, credential } => done(
                    c.provider_create(v1::ProviderCreateRequest {
                        name,
                        kind,
                        base_url,
                        credential_name,
                        credential: credential.0,
                    })
                    .await
                    .map_err(s)?,
                ),
                Request::ProviderList | Request::ProviderGet { .. } => {
                    let name = match request {
                        Request::ProviderGet { name } => Some(name.clone()),
                        _ => None,
                    };
                    let r = c.provider_list(v1::ProviderListRequest { name }).await.map_err(s)?.into_inner();
                    Response::Providers { providers: r.providers.into_iter().map(Into::into).collect() }
                }
                Request::ProviderDelete { name } => {
                    done(c.provider_delete(v1::ProviderName { name }).await.map_err(s)?)
                }
                Request::InferenceSet { provider, model, timeout_secs } => {
                    done(c.inference_set(v1::InferenceSetRequest { provider, model, timeout_secs }).await.map_err(s)?)
                }
                Request::InferenceGet => {
                    let r = c.inference_get(v1::InferenceGetRequest {}).await.map_err(s)?.into_inner();
                    Response::Inference { route: r.route.map(Into::into) }
                }
                Request::InferenceDelete => done(c.inference_delete(v1::InferenceDeleteRequest {}).await.map_err(s)?),
                other => {
                    return Err(ClientError::Remote(format!("{other:?} is not a request with one answer")));
                }
            })
        })
    }

    /// A create or exec: this process's stdin (when `stdin`) goes to it, its
    /// output to this process's stdout and stderr; `started` sees the sandbox
    /// once it runs. With `tty`, `size` is the terminal's size and `resizes`
    /// yields its changes.
    pub fn run(
        &self,
        first: v1::run_input::Input,
        io: RunIo,
        started: &mut dyn FnMut(&SandboxInfo),
        resizes: Option<std::sync::mpsc::Receiver<v1::WindowSize>>,
    ) -> Result<RunEnd, ClientError> {
        self.run_once(first, io, started, resizes).map_err(|e| self.diagnose(e))
    }

    fn run_once(
        &self,
        first: v1::run_input::Input,
        io: RunIo,
        started: &mut dyn FnMut(&SandboxInfo),
        resizes: Option<std::sync::mpsc::Receiver<v1::WindowSize>>,
    ) -> Result<RunEnd, ClientError> {
        let RunIo { stdin, mut stdout, mut stderr } = io;
        let exec = matches!(first, Input::Exec(_) | Input::Forward(_));
        let (tx, rx) = mpsc::channel::<v1::RunInput>(16);
        let input = |i| v1::RunInput { input: Some(i) };
        tx.try_send(input(first)).map_err(|e| ClientError::Remote(format!("the run's first message: {e}")))?;
        // The input is read once the run exists (a create refused, say for an
        // image the gateway lacks, leaves it unread for the retry).
        let stdin_tx = tx.clone();
        let read_stdin = move |mut stdin: Box<dyn Read + Send>| {
            let tx = stdin_tx;
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match stdin.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = tx.blocking_send(input(Input::StdinClosed(true)));
                            break;
                        }
                        Ok(n) => {
                            if tx.blocking_send(input(Input::Stdin(buf[..n].to_vec()))).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        };
        let mut read_stdin = stdin.map(|stdin| move || read_stdin(stdin));
        if exec && let Some(start) = read_stdin.take() {
            start();
        }
        if let Some(resizes) = resizes {
            let tx = tx.clone();
            std::thread::spawn(move || {
                while let Ok(size) = resizes.recv() {
                    if tx.blocking_send(input(Input::Resize(size))).is_err() {
                        break;
                    }
                }
            });
        }
        // Held to the end: a run whose input ends early is not cut short.
        let _input = tx;
        let mut c = self.client.clone();
        self.runtime.block_on(async move {
            let requests = ReceiverStream::new(rx);
            let context = "the gateway";
            let mut events = if exec { c.exec(requests).await } else { c.create(requests).await }
                .map_err(|e| status(context, e))?
                .into_inner();
            let mut sandbox = None;
            while let Some(event) = events.message().await.map_err(|e| status(context, e))? {
                match event.event {
                    Some(Event::Started(s)) => {
                        if let Some(start) = read_stdin.take() {
                            start();
                        }
                        let info = SandboxInfo::try_from(s)?;
                        started(&info);
                        sandbox = Some(info);
                    }
                    Some(Event::Output(o)) => {
                        let to = if o.stream == v1::OutputStream::Stderr as i32 { &mut stderr } else { &mut stdout };
                        let written = to.write_all(&o.data).and_then(|()| to.flush());
                        if written.is_err() {
                            break;
                        }
                    }
                    Some(Event::Exited(code)) => return Ok(RunEnd::Exited(code)),
                    None => {}
                }
            }
            sandbox.map(|s| RunEnd::Detached(Box::new(s))).ok_or(ClientError::NoAnswer)
        })
    }

    /// A sandbox's log, written to `out` as it comes.
    pub fn logs(&self, name: &str, follow: bool, audit: bool, out: &mut dyn Write) -> Result<(), ClientError> {
        let mut c = self.client.clone();
        let request = v1::LogsRequest { name: name.to_owned(), follow, audit };
        self.runtime
            .block_on(async move {
                let mut stream = c.logs(request).await.map_err(|e| status("the gateway", e))?.into_inner();
                while let Some(output) = stream.message().await.map_err(|e| status("the gateway", e))? {
                    if out.write_all(&output.data).and_then(|()| out.flush()).is_err() {
                        break;
                    }
                }
                Ok(())
            })
            .map_err(|e| self.diagnose(e))
    }

    /// Sends an image the gateway lacks: its record, then each blob (`open`
    /// gives a blob's content by digest) in chunks.
    pub fn upload(
        &self,
        upload: ImageUpload,
        open: &dyn Fn(&str) -> std::io::Result<std::fs::File>,
    ) -> Result<String, ClientError> {
        use crate::grpc::v1::image_upload_part::Part;
        let (tx, rx) = mpsc::channel::<v1::ImageUploadPart>(8);
        let part = |p| v1::ImageUploadPart { part: Some(p) };
        let blobs: Vec<String> = upload.blobs().into_iter().map(str::to_owned).collect();
        let mut files = Vec::new();
        for blob in &blobs {
            files.push(open(blob).map_err(|e| ClientError::Remote(format!("blob {blob}: {e}")))?);
        }
        tx.try_send(part(Part::Image(upload.into()))).map_err(|e| ClientError::Remote(e.to_string()))?;
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            for (blob, mut file) in blobs.into_iter().zip(files) {
                if tx.blocking_send(part(Part::Blob(blob))).is_err() {
                    return;
                }
                while let Ok(n) = file.read(&mut buf) {
                    if n == 0 || tx.blocking_send(part(Part::Data(buf[..n].to_vec()))).is_err() {
                        break;
                    }
                }
            }
        });
        let mut c = self.client.clone();
        self.runtime
            .block_on(async move {
                let done = c.image_upload(ReceiverStream::new(rx)).await.map_err(|e| status("the gateway", e))?;
                Ok(done.into_inner().message)
            })
            .map_err(|e| self.diagnose(e))
    }
}

/// The host of a gateway URL (`https://HOST:PORT`), the name its certificate
/// must hold.
mod url_host {
    use crate::client::ClientError;

    pub struct Url {
        pub host: String,
        pub port: u16,
    }

    impl std::str::FromStr for Url {
        type Err = ClientError;
        fn from_str(text: &str) -> Result<Url, ClientError> {
            let bad =
                |why: &str| ClientError::Remote(format!("gateway URL `{text}`: {why} (expected https://HOST:PORT)"));
            let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
            if url.scheme() != "https" {
                return Err(bad("the scheme must be https"));
            }
            let host = match url.host() {
                Some(url::Host::Domain(d)) => d.to_owned(),
                Some(url::Host::Ipv4(ip)) => ip.to_string(),
                Some(url::Host::Ipv6(ip)) => ip.to_string(),
                None => return Err(bad("no host")),
            };
            let port = url.port().ok_or_else(|| bad("no port"))?;
            Ok(Url { host, port })
        }
    }
}
