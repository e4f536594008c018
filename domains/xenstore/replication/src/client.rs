//! A client of the pool that follows the leader.
//!
//! Every reply is definite except [`ClientError::Unknown`]: a command was
//! sent and no answer came (the member died, the network broke, the
//! deadline passed), so it may or may not commit. The client never resends
//! a command after that: the caller decides (a xenstore transaction is
//! retried as a whole, a plain write may be read back).

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use crate::net::connect;
use crate::proto::{
    read_frame, write_frame, ClientError, ClientReply, ClientRequest, Request, Response,
};
use crate::sm::{Command, Outcome};
use crate::tls::Tls;

/// A connection to the pool.
pub struct PoolClient {
    tls: Tls,
    addrs: Vec<String>,
    current: usize,
    stream: Option<TlsStream<TcpStream>>,
    /// How long one request may take in all, redirections included.
    pub deadline: Duration,
    /// How long one answer may take once sent.
    pub reply_timeout: Duration,
}

impl PoolClient {
    /// A client of the members at `addrs` (any of them; it finds the leader).
    pub fn new(tls: Tls, addrs: Vec<String>) -> Self {
        PoolClient {
            tls,
            addrs,
            current: 0,
            stream: None,
            deadline: Duration::from_secs(5),
            reply_timeout: Duration::from_secs(2),
        }
    }

    /// Another client of the same members, with the same settings and no
    /// connection yet.
    pub fn clone_config(&self) -> Self {
        PoolClient {
            tls: self.tls.clone(),
            addrs: self.addrs.clone(),
            current: self.current,
            stream: None,
            deadline: self.deadline,
            reply_timeout: self.reply_timeout,
        }
    }

    /// Sends to the member at `addr` only, without following the leader.
    pub async fn call_at(
        &self,
        addr: &str,
        req: ClientRequest,
    ) -> Result<Result<ClientReply, ClientError>, ClientError> {
        let unknown = |e: String| ClientError::Unknown(e);
        let mut s = connect(&self.tls, addr)
            .await
            .map_err(|e| unknown(e.to_string()))?;
        let r = tokio::time::timeout(self.reply_timeout, async {
            write_frame(&mut s, &Request::Client(req)).await?;
            read_frame::<_, Response>(&mut s).await
        })
        .await
        .map_err(|_| unknown("timed out".into()))?
        .map_err(|e| unknown(e.to_string()))?;
        match r {
            Response::Client(r) => Ok(r),
            _ => Err(unknown("wrong reply kind".into())),
        }
    }

    fn next(&mut self) {
        self.stream = None;
        self.current = (self.current + 1) % self.addrs.len().max(1);
    }

    /// Sends `req` to the leader, following redirections, until the
    /// deadline.
    pub async fn request(&mut self, req: ClientRequest) -> Result<ClientReply, ClientError> {
        let changes = matches!(
            req,
            ClientRequest::Submit(_)
                | ClientRequest::Init(_)
                | ClientRequest::AddLearner(..)
                | ClientRequest::ChangeMembership(_)
        );
        let end = Instant::now() + self.deadline;
        loop {
            if Instant::now() >= end {
                return Err(ClientError::Unknown("deadline passed".into()));
            }
            if self.stream.is_none() {
                let addr = self.addrs[self.current].clone();
                match connect(&self.tls, &addr).await {
                    Ok(s) => self.stream = Some(s),
                    Err(e) => {
                        tracing::debug!(addr, "connect: {e}");
                        // Nothing was sent: try another member.
                        self.next();
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                }
            }
            let Some(s) = self.stream.as_mut() else {
                continue;
            };
            let timeout = self.reply_timeout.min(end - Instant::now());
            let r = tokio::time::timeout(timeout, async {
                write_frame(s, &Request::Client(req.clone())).await?;
                read_frame::<_, Response>(s).await
            })
            .await;
            let reply = match r {
                Ok(Ok(Response::Client(r))) => r,
                other => {
                    let why = match other {
                        Ok(Ok(_)) => "wrong reply kind".to_string(),
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "timed out".to_string(),
                    };
                    self.next();
                    if changes {
                        return Err(ClientError::Unknown(format!(
                            "no answer from the member: {why}"
                        )));
                    }
                    continue;
                }
            };
            match reply {
                Err(ClientError::NotLeader(Some((_, addr)))) => {
                    self.stream = None;
                    self.current = match self.addrs.iter().position(|a| *a == addr) {
                        Some(i) => i,
                        None => {
                            self.addrs.push(addr);
                            self.addrs.len() - 1
                        }
                    };
                }
                Err(ClientError::NotLeader(None)) => {
                    // An election is under way.
                    self.next();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(ClientError::Refused(_)) if !changes => {
                    // A read without a quorum: try again.
                    self.next();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    /// Commits `cmd`; its outcome and log index.
    pub async fn submit(&mut self, cmd: Command) -> Result<(Outcome, u64), ClientError> {
        match self.request(ClientRequest::Submit(cmd)).await? {
            ClientReply::Outcome(o, i) => Ok((o, i)),
            r => Err(ClientError::Unknown(format!("unexpected reply {r:?}"))),
        }
    }

    /// ReadIndex at the leader: the index a member must have applied to
    /// serve a linearizable read (see [`ClientRequest::ReadIndex`]).
    pub async fn read_index(&mut self) -> Result<u64, ClientError> {
        match self.request(ClientRequest::ReadIndex).await? {
            ClientReply::ReadIndex(i) => Ok(i),
            r => Err(ClientError::Unknown(format!("unexpected reply {r:?}"))),
        }
    }

    /// Linearizable read: value and revision, `None` if absent.
    pub async fn read(&mut self, path: &str) -> Result<Option<(Vec<u8>, u64)>, ClientError> {
        match self.request(ClientRequest::Read(path.to_string())).await? {
            ClientReply::Value(v) => Ok(v),
            r => Err(ClientError::Unknown(format!("unexpected reply {r:?}"))),
        }
    }
}
