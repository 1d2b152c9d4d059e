//! Outgoing SSH connections: to the approver (thin clients, and a gateway's three links) and
//! from a gateway to its `ssh` targets for recorded sessions. Host keys are pinned or learned
//! as `ssh` does (a key of another type for a known host is a changed key); what a peer sends
//! back is held only up to a bound.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_core::locks::lock;
use russh::client::{self, Handle, Msg};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{Channel, ChannelMsg, Disconnect};
use tokio::io::{AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out connecting to {addr} after {secs}s")]
    Timeout { addr: String, secs: u64 },
    #[error("{0}")]
    HostKey(String),
    #[error("ssh: {0}")]
    Ssh(#[from] russh::Error),
    #[error("{0}")]
    Identity(String),
    #[error("permission denied: {user}@{addr} did not accept {tried}")]
    Denied {
        user: String,
        addr: String,
        tried: String,
    },
    #[error("output: {0}")]
    Output(#[from] std::io::Error),
}

/// How the server's host key is checked.
#[derive(Debug, Clone)]
pub enum HostKeyPolicy {
    /// Exactly this key, or refuse.
    Pinned(PublicKey),
    /// As `ssh` does with `StrictHostKeyChecking=accept-new`: learn an unknown host, refuse a
    /// changed key.
    KnownHosts(PathBuf),
}

/// Which key proves who we are.
#[derive(Debug, Clone)]
pub enum Identity {
    /// A private key file (unencrypted; encrypted keys belong in ssh-agent).
    KeyFile(PathBuf),
    /// A key already loaded (a gateway's own client key).
    Key(Arc<russh::keys::PrivateKey>),
    /// ssh-agent (`SSH_AUTH_SOCK`) first, then these files in order.
    AgentThenFiles(Vec<PathBuf>),
    /// A key and a user certificate for it (the gateway's login to a target that trusts its
    /// CA).
    Certificate(Arc<russh::keys::PrivateKey>, Box<russh::keys::Certificate>),
}

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `HOST:PORT`.
    pub addr: String,
    pub user: String,
    pub identity: Identity,
    pub host_key: HostKeyPolicy,
    pub connect_timeout: Duration,
}

struct Checker {
    host: String,
    port: u16,
    policy: HostKeyPolicy,
    verdict: Arc<Mutex<Option<String>>>,
    /// Set when accept-new recorded the host's key.
    learned: Arc<Mutex<Option<String>>>,
    /// The server's last words, if it disconnected us with a reason.
    goodbye: Arc<Mutex<Option<String>>>,
}

impl Checker {
    fn check(&self, key: &PublicKey) -> Result<(), String> {
        match &self.policy {
            HostKeyPolicy::Pinned(pinned) => {
                if pinned.key_data() == key.key_data() {
                    Ok(())
                } else {
                    Err(format!(
                        "host key of {}:{} does not match the pinned key (got {}, pinned {}): refusing to connect",
                        self.host,
                        self.port,
                        key.fingerprint(Default::default()),
                        pinned.fingerprint(Default::default())
                    ))
                }
            }
            HostKeyPolicy::KnownHosts(path) => {
                // Every key recorded for this host, of any type: as OpenSSH does, a host that
                // has a recorded key and offers another (an ECDSA key where an ed25519 one is
                // pinned, say) is refused, never learned beside it.
                let recorded =
                    russh::keys::known_hosts::known_host_keys_path(&self.host, self.port, path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                if recorded.iter().any(|(_, k)| k.key_data() == key.key_data()) {
                    return Ok(());
                }
                if let Some((line, other)) = recorded.first() {
                    return Err(format!(
                        "HOST KEY CHANGED for [{}]:{}: it offered {} {}, but {} line {line} holds {} {}. \
                         If the approver's key was rotated on purpose, remove that line; otherwise someone may be intercepting",
                        self.host,
                        self.port,
                        key.algorithm().as_str(),
                        key.fingerprint(Default::default()),
                        path.display(),
                        other.algorithm().as_str(),
                        other.fingerprint(Default::default()),
                    ));
                }
                russh::keys::known_hosts::learn_known_hosts_path(&self.host, self.port, key, path)
                    .map_err(|e| format!("cannot record host key in {}: {e}", path.display()))?;
                let note = format!(
                    "learned host key {} for [{}]:{} into {}",
                    key.fingerprint(Default::default()),
                    self.host,
                    self.port,
                    path.display()
                );
                tracing::info!("{note}");
                *lock(&self.learned) = Some(note);
                Ok(())
            }
        }
    }
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn disconnected(
        &mut self,
        reason: client::DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        match reason {
            client::DisconnectReason::ReceivedDisconnect(info) => {
                *lock(&self.goodbye) = Some(info.message);
                Ok(())
            }
            client::DisconnectReason::Error(e) => Err(e),
        }
    }

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(c) => c.public_key().clone().into(),
        };
        match self.check(&key) {
            Ok(()) => Ok(true),
            Err(why) => {
                *lock(&self.verdict) = Some(why);
                Ok(false)
            }
        }
    }
}

/// The ciphers every portcullis endpoint offers, AES-256-GCM first (see [`crate::algorithms`]).
pub const CIPHERS: &[russh::cipher::Name] = crate::algorithms::CIPHERS;

/// Settings for outgoing connections (thin clients, the gateway's approver links and its
/// target logins): the algorithm lists of [`crate::algorithms`], the same as the servers'.
pub fn client_config() -> client::Config {
    client::Config {
        preferred: crate::algorithms::preferred(),
        nodelay: true,
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 3,
        channel_buffer_size: CLIENT_CHANNEL_QUEUE,
        maximum_packet_size: crate::server::MAX_PACKET,
        ..Default::default()
    }
}

/// How many messages russh queues for one channel of an outgoing connection, as
/// [`crate::server::CHANNEL_QUEUE`] for incoming ones: russh's client default, named here
/// because the gateway counts it in what a recorded session can make it hold (a target writing
/// to a client that does not read fills it: `portcullis_gateway`'s `channel_memory`).
/// Shortening it would stall a download's target leg sooner; see docs/ARCHITECTURE.md's known
/// gaps.
pub const CLIENT_CHANNEL_QUEUE: usize = 100;

/// The most [`ClientConnection::run_with_input`] keeps of each output stream: far more than any
/// answer it is used for (a report's acknowledgement, a list of pending requests), and a
/// bound on what a hostile or broken peer can make the caller hold.
const MAX_KEPT_OUTPUT: usize = 1024 * 1024;

/// An authenticated outgoing connection: the client side, as the thin clients and the
/// gateway (to the approver, and to its targets) hold it. The servers' side of their
/// connections is [`crate::server::ServerConnections`].
pub struct ClientConnection {
    handle: Handle<Checker>,
    learned: Option<String>,
    goodbye: Arc<Mutex<Option<String>>>,
}

/// What a finished exec returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecOutput {
    /// The remote exit status; `None` when the channel closed without one.
    pub exit_status: Option<u32>,
}

fn split_addr(addr: &str) -> (String, u16) {
    match addr.rsplit_once(':') {
        Some((h, p)) => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse().unwrap_or(22),
        ),
        None => (addr.to_string(), 22),
    }
}

impl ClientConnection {
    /// Connect, check the host key, authenticate.
    pub async fn connect(opts: &ConnectOptions) -> Result<ClientConnection, SshError> {
        let (host, port) = split_addr(&opts.addr);
        let verdict = Arc::new(Mutex::new(None));
        let learned = Arc::new(Mutex::new(None));
        let goodbye = Arc::new(Mutex::new(None));
        let checker = Checker {
            host,
            port,
            policy: opts.host_key.clone(),
            verdict: verdict.clone(),
            learned: learned.clone(),
            goodbye: goodbye.clone(),
        };
        let tcp = tokio::time::timeout(
            opts.connect_timeout,
            tokio::net::TcpStream::connect(&opts.addr),
        )
        .await
        .map_err(|_| SshError::Timeout {
            addr: opts.addr.clone(),
            secs: opts.connect_timeout.as_secs(),
        })?
        .map_err(|source| SshError::Connect {
            addr: opts.addr.clone(),
            source,
        })?;
        let _ = tcp.set_nodelay(true);
        let handshake = client::connect_stream(Arc::new(client_config()), tcp, checker);
        let mut handle = match tokio::time::timeout(opts.connect_timeout, handshake).await {
            Err(_) => {
                return Err(SshError::Timeout {
                    addr: opts.addr.clone(),
                    secs: opts.connect_timeout.as_secs(),
                })
            }
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                let why = lock(&verdict).take();
                return Err(match why {
                    Some(why) => SshError::HostKey(why),
                    None => SshError::Ssh(e),
                });
            }
        };
        authenticate(&mut handle, opts).await?;
        let learned = lock(&learned).take();
        Ok(ClientConnection {
            handle,
            learned,
            goodbye,
        })
    }

    /// Open a session channel and start `line` on it.
    pub async fn exec(&self, line: &str) -> Result<Channel<Msg>, SshError> {
        let channel = self.handle.channel_open_session().await?;
        channel.exec(true, line.as_bytes()).await?;
        Ok(channel)
    }

    /// Open a session channel (for a shell, exec or subsystem the caller requests on it).
    pub async fn open_session(&self) -> Result<Channel<Msg>, SshError> {
        Ok(self.handle.channel_open_session().await?)
    }

    /// Open a direct-tcpip channel (what `ssh -W HOST:PORT` asks for).
    pub async fn direct_tcpip(&self, host: &str, port: u32) -> Result<Channel<Msg>, SshError> {
        Ok(self
            .handle
            .channel_open_direct_tcpip(host, port, "127.0.0.1", 0)
            .await?)
    }

    /// Run `line` with `input` as its standard input, collecting its output.
    pub async fn run_with_input<R: tokio::io::AsyncRead + Unpin>(
        &self,
        line: &str,
        input: R,
    ) -> Result<(ExecOutput, Vec<u8>, Vec<u8>), SshError> {
        let mut channel = self.exec(line).await?;
        channel.data(input).await?;
        channel.eof().await?;
        let (mut out, mut err, mut exit_status) = (Vec::new(), Vec::new(), None);
        // The peer decides how much it answers: keep a bounded head of each stream (replies
        // to the commands sent this way are a line or two).
        let keep = |buf: &mut Vec<u8>, data: &[u8]| {
            let room = MAX_KEPT_OUTPUT.saturating_sub(buf.len());
            buf.extend_from_slice(&data[..data.len().min(room)]);
        };
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => keep(&mut out, &data),
                ChannelMsg::ExtendedData { data, .. } => keep(&mut err, &data),
                ChannelMsg::ExitStatus { exit_status: s } => exit_status = Some(s),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        Ok((ExecOutput { exit_status }, out, err))
    }

    /// Run `line`, copying its stdout and stderr as they arrive.
    pub async fn run<O, E>(
        &self,
        line: &str,
        out: &mut O,
        err: &mut E,
    ) -> Result<ExecOutput, SshError>
    where
        O: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        let mut channel = self.exec(line).await?;
        let mut exit_status = None;
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    out.write_all(&data).await?;
                    out.flush().await?;
                }
                ChannelMsg::ExtendedData { data, .. } => {
                    err.write_all(&data).await?;
                    err.flush().await?;
                }
                ChannelMsg::ExitStatus { exit_status: s } => exit_status = Some(s),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        Ok(ExecOutput { exit_status })
    }

    /// What accept-new learned while connecting (`learned host key … into FILE`), for the
    /// caller to tell the user, as `ssh` does.
    pub fn learned_host_key(&self) -> Option<&str> {
        self.learned.as_deref()
    }

    /// Why the server disconnected us, if it said (`portcullis: approver stopping`). The
    /// reason may arrive a moment after the channels close: this waits up to 200 ms for it.
    pub async fn goodbye(&self) -> Option<String> {
        for _ in 0..20 {
            if let Some(g) = lock(&self.goodbye).clone() {
                return Some(g);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// Whether the connection has ended (the peer went away, or it was closed).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

async fn authenticate(handle: &mut Handle<Checker>, opts: &ConnectOptions) -> Result<(), SshError> {
    let denied = |tried: String| SshError::Denied {
        user: opts.user.clone(),
        addr: opts.addr.clone(),
        tried,
    };
    match &opts.identity {
        Identity::Key(key) => {
            if try_key(handle, &opts.user, key.clone()).await? {
                return Ok(());
            }
            Err(denied(format!(
                "key {}",
                key.public_key().fingerprint(Default::default())
            )))
        }
        Identity::Certificate(key, cert) => {
            let res = handle
                .authenticate_openssh_cert(&opts.user, key.clone(), (**cert).clone())
                .await?;
            if res.success() {
                return Ok(());
            }
            Err(denied(format!("certificate {:?}", cert.key_id())))
        }
        Identity::KeyFile(path) => {
            if try_file(handle, &opts.user, path).await? {
                return Ok(());
            }
            Err(denied(format!("key {}", path.display())))
        }
        Identity::AgentThenFiles(files) => {
            let mut tried = Vec::new();
            if std::env::var_os("SSH_AUTH_SOCK").is_some() {
                if let Ok(mut agent) = AgentClient::connect_env().await {
                    let ids = agent.request_identities().await.unwrap_or_default();
                    for id in ids {
                        let ok = match id {
                            AgentIdentity::PublicKey { key, .. } => {
                                let hash = rsa_hash(handle, &key).await;
                                handle
                                    .authenticate_publickey_with(&opts.user, key, hash, &mut agent)
                                    .await
                            }
                            // A certificate the agent holds, as ssh would offer it.
                            AgentIdentity::Certificate { certificate, .. } => {
                                let key = PublicKey::new(certificate.public_key().clone(), "");
                                let hash = rsa_hash(handle, &key).await;
                                handle
                                    .authenticate_certificate_with(
                                        &opts.user,
                                        certificate,
                                        hash,
                                        &mut agent,
                                    )
                                    .await
                            }
                        }
                        .map(|r| r.success())
                        .unwrap_or(false);
                        if ok {
                            return Ok(());
                        }
                    }
                    tried.push("the keys in ssh-agent".to_string());
                }
            }
            for path in files.iter().filter(|p| p.exists()) {
                if try_file(handle, &opts.user, path).await? {
                    return Ok(());
                }
                tried.push(path.display().to_string());
            }
            if tried.is_empty() {
                return Err(SshError::Identity(
                    "no key to log in with: pass -i KEYFILE, set PORTCULLIS_IDENTITY, load a key into ssh-agent, or create ~/.ssh/id_ed25519".into(),
                ));
            }
            Err(denied(tried.join(", ")))
        }
    }
}

fn load_identity(path: &std::path::Path) -> Result<russh::keys::PrivateKey, SshError> {
    // As `ssh` does: a private key others can read is not used.
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.mode() & 0o077 != 0 {
                return Err(SshError::Identity(format!(
                    "key {} is readable by others (mode {:04o}): chmod 600 {}",
                    path.display(),
                    meta.mode() & 0o777,
                    path.display()
                )));
            }
        }
    }
    russh::keys::load_secret_key(path, None).map_err(|e| {
        let hint = if e.to_string().to_lowercase().contains("encrypt") {
            " (it is encrypted: add it to ssh-agent with `ssh-add` and leave out -i)"
        } else {
            ""
        };
        SshError::Identity(format!("cannot use key {}: {e}{hint}", path.display()))
    })
}

/// A key file: signed here, or by a private ssh-agent for an RSA or FIDO key
/// (`crate::private_agent`).
async fn try_file(
    handle: &mut Handle<Checker>,
    user: &str,
    path: &std::path::Path,
) -> Result<bool, SshError> {
    let key = load_identity(path)?;
    // `FILE-cert.pub` beside the key is tried first, as ssh does.
    let cert = certificate_beside(path);
    if crate::private_agent::signs(&key) {
        let public = key.public_key().clone();
        drop(key);
        // ssh-add adds the certificate beside the key along with it.
        let agent = crate::private_agent::PrivateAgent::holding(path).await?;
        let hash = rsa_hash(handle, &public).await;
        if let Some(cert) = cert {
            if agent
                .authenticate_certificate(handle, user, cert, hash)
                .await?
            {
                return Ok(true);
            }
        }
        return agent.authenticate(handle, user, &public, hash).await;
    }
    let key = Arc::new(key);
    if let Some(cert) = cert {
        let res = handle
            .authenticate_openssh_cert(user, key.clone(), cert)
            .await?;
        if res.success() {
            return Ok(true);
        }
    }
    try_key(handle, user, key).await
}

/// The certificate `FILE-cert.pub` for the key `FILE`, if there is one that parses.
fn certificate_beside(path: &std::path::Path) -> Option<russh::keys::Certificate> {
    let mut name = path.as_os_str().to_owned();
    name.push("-cert.pub");
    let text = std::fs::read_to_string(name).ok()?;
    russh::keys::Certificate::from_openssh(text.trim()).ok()
}

async fn try_key(
    handle: &mut Handle<Checker>,
    user: &str,
    key: Arc<russh::keys::PrivateKey>,
) -> Result<bool, SshError> {
    if key.algorithm().is_rsa() {
        return Err(SshError::Identity(
            "portcullis never signs with an RSA key itself: give it as a file (-i), or through ssh-agent".into(),
        ));
    }
    let hash = rsa_hash(handle, key.public_key()).await;
    let res = handle
        .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, hash))
        .await?;
    Ok(res.success())
}

/// The hash an RSA key signs with: SHA-512 unless the server lists only SHA-256 in
/// `server-sig-algs`. Never SHA-1 (`ssh-rsa`), which russh would pick for `None` and which
/// OpenSSH 8.8+ and portcullis refuse. Other kinds of key take no hash (`None`), and do not
/// wait for the server's list.
async fn rsa_hash(handle: &Handle<Checker>, key: &PublicKey) -> Option<HashAlg> {
    if !key.algorithm().is_rsa() {
        return None;
    }
    match handle.best_supported_rsa_hash().await {
        Ok(Some(Some(HashAlg::Sha256))) => Some(HashAlg::Sha256),
        _ => Some(HashAlg::Sha512),
    }
}
