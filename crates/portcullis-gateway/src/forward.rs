//! Forwards: `ssh -L`, `ssh -W` and `ssh -J` open direct-tcpip channels to a configured
//! target, checked, numbered, reported and relayed (`forward/relay.rs`) through the session
//! lifecycle.

mod relay;

pub(crate) use relay::READ_CHUNK;

use std::sync::Arc;
use std::time::Duration;

use russh::server::Msg;
use russh::{Channel, ChannelOpenFailure};
use tokio::net::TcpStream;

use self::relay::Counters;

use crate::refusals;
use crate::session::{self, Denial, Holder, Live, SessionOutcome, Unreachable};
use crate::state::GatewayState;

/// How long to wait for a target to accept a connection.
const TARGET_CONNECT: Duration = Duration::from_secs(10);

/// One direct-tcpip request, checked and then relayed.
pub(crate) struct Forward {
    pub gw: Arc<GatewayState>,
    pub who: Holder,
    pub host: String,
    pub port: u32,
}

/// What a forward was admitted to.
struct Admitted {
    target: String,
    address: String,
    grant: u64,
}

pub(crate) fn refuse(reason: String) -> ChannelOpenFailure {
    ChannelOpenFailure::Other { code: 1, reason }
}

impl Forward {
    /// Say why the forward is refused (naming a pending request if there is one), and record
    /// the refusal.
    async fn refused(&self, denial: session::Denial, reply: russh::server::ChannelOpenHandle) {
        let gw = &self.gw;
        let why = crate::pending::refusal(gw, &self.who, &denial).await;
        tracing::info!(
            // Debug-quoted: the host is the client's own text, and may hold line breaks.
            "{} {}: refused {:?}:{}: {why:?}",
            self.who.client,
            self.who.user,
            self.host,
            self.port
        );
        reply.reject(refuse(why.clone())).await;
        let destination = format!("{}:{}", self.host, self.port);
        let reason = denial.reason();
        refusals::record(gw, &self.who, "direct-tcpip", &destination, reason, &why).await;
    }

    pub async fn run(self, channel: Channel<Msg>, reply: russh::server::ChannelOpenHandle) {
        let gw = &self.gw;
        let admitted = match session::admit(gw, || self.check()).await {
            Ok(a) => a,
            Err(denial) => {
                // Boxed: the refusal's path (a question to the approver, a spooled report) is
                // larger than a running forward's, and every forward's task would otherwise
                // be sized for it while it runs.
                return Box::pin(self.refused(denial, reply)).await;
            }
        };
        let Admitted {
            target,
            address,
            grant,
        } = admitted;
        let session_id = match gw.new_session_id().await {
            Ok(id) => id,
            Err(e) => {
                tracing::error!("cannot number a session: {e}");
                reply.reject(ChannelOpenFailure::ResourceShortage).await;
                return;
            }
        };
        // On the books before the target is dialled: a revocation during the connect cuts it.
        let live = Live::enter(gw, session_id.clone(), &self.who, &target, grant);
        let tcp = match self.dial(&live, &target, &address, grant).await {
            Ok(tcp) => tcp,
            Err(why) => {
                reply.reject(why).await;
                return;
            }
        };
        let _ = tcp.set_nodelay(true);
        let started = std::time::Instant::now();
        if let Err(e) = session::report_start(gw, &live, grant, "direct-tcpip").await {
            tracing::error!("cannot record session {session_id}: {e}; refusing it");
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return;
        }
        let channel_id = channel.id();
        reply.accept().await;
        tracing::info!(
            "session {session_id}: {} → {target} under grant {grant}",
            self.who.user
        );
        let counters = Arc::new(Counters::default());
        let reason = relay::run(channel, tcp, counters.clone(), live.cut_receiver()).await;
        let left = live.leave();
        match session::cut_message(gw, &reason, &session_id, &self.who, &target, left.grant) {
            Some(why) if !left.others => session::disconnect_if_last(&self.who, &left, &why).await,
            _ => {
                if let Some(handle) = &self.who.handle {
                    let _ = handle.close(channel_id).await;
                }
            }
        }
        session::report_end(
            gw,
            &session_id,
            SessionOutcome {
                reason,
                bytes_in: counters
                    .to_target
                    .load(std::sync::atomic::Ordering::Relaxed),
                bytes_out: counters
                    .to_client
                    .load(std::sync::atomic::Ordering::Relaxed),
                started,
                exit_status: None,
                recording: None,
            },
        )
        .await;
    }

    /// Connect to the target, unless the session is cut first (it is on the books already).
    async fn dial(
        &self,
        live: &Live,
        target: &str,
        address: &str,
        grant: u64,
    ) -> Result<TcpStream, ChannelOpenFailure> {
        let unreachable = |reason| ChannelOpenFailure::Other { code: 2, reason };
        tokio::select! {
            r = tokio::time::timeout(TARGET_CONNECT, TcpStream::connect(address)) => match r {
                Ok(Ok(s)) => Ok(s),
                Ok(Err(e)) => Err(unreachable(format!("portcullis: cannot reach {target}: {e}"))),
                Err(_) => Err(unreachable(format!(
                    "portcullis: {target} did not answer within {TARGET_CONNECT:?}"
                ))),
            },
            reason = live.cut_signal() => {
                let why = session::cut_message(
                    &self.gw, &reason, live.id(), &self.who, target, Some(grant),
                );
                Err(refuse(why.unwrap_or_else(|| "portcullis: cut".into())))
            }
        }
    }

    /// Which target, and under which grant: refused before any connection is made.
    fn check(&self) -> Result<Admitted, Denial> {
        let catalog = session::admit_user(&self.gw, &self.who)?;
        let port = u16::try_from(self.port).map_err(|_| {
            Denial::Target(
                Unreachable::BadPort,
                format!("portcullis: bad port {}", self.port),
            )
        })?;
        let target = match catalog.target_by_name_or_address(&self.host, port) {
            Some(t) => t,
            None => {
                let same_host = catalog.targets.get(&self.host);
                let (why, message) = match same_host {
                    Some(t) => (
                        Unreachable::PortNotAllowed,
                        format!(
                            "portcullis: {} is reachable on port {} only, not {}",
                            t.name, t.port, self.port
                        ),
                    ),
                    None => (
                        Unreachable::UnknownTarget,
                        format!(
                            "portcullis: {}:{} is not a configured target - list yours with: {} targets",
                            self.host, self.port, self.who.reach
                        ),
                    ),
                };
                return Err(Denial::Target(why, message));
            }
        };
        let grant = session::grant_for(&self.gw, &self.who, &target.name)?;
        Ok(Admitted {
            target: target.name.clone(),
            address: target.address.clone(),
            grant: grant.id,
        })
    }
}
