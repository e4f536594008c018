//! The messages between hosts and from clients, and their framing.
//!
//! One TLS stream carries requests one after the other, each answered
//! before the next is read. A frame is a 4-byte little-endian length and
//! that many bytes of `postcard`; lengths over [`MAX_FRAME`] close the
//! connection before anything is allocated.

use std::collections::{BTreeMap, BTreeSet};

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::sm::{Command, Outcome};
use crate::TypeConfig;

/// Largest frame accepted (snapshot chunks are 1 MiB).
pub const MAX_FRAME: usize = 8 << 20;

/// A request from a peer or a client.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Raft: replicate entries / heartbeat.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Raft: request a vote.
    Vote(VoteRequest<u64>),
    /// Raft: a chunk of a snapshot.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A client's request.
    Client(ClientRequest),
}

/// The answer to a [`Request`], same variant.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// To [`Request::AppendEntries`].
    AppendEntries(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    /// To [`Request::Vote`].
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    /// To [`Request::InstallSnapshot`].
    InstallSnapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    /// To [`Request::Client`].
    Client(Result<ClientReply, ClientError>),
}

/// What a client asks of the pool.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Commit a command; the reply comes once a majority has it and it is
    /// applied here.
    Submit(Command),
    /// Linearizable read of a node (value and revision).
    Read(String),
    /// Linearizable list of a node's children.
    Directory(String),
    /// This node's view: id, leader, term, applied index, voters.
    Status,
    /// Make the first membership (on one node of a new pool).
    Init(BTreeMap<u64, String>),
    /// Add a non-voting member that catches up (by snapshot if needed).
    AddLearner(u64, String),
    /// Make these the voters, through joint consensus.
    ChangeMembership(BTreeSet<u64>),
    /// Take a snapshot now (and purge the log before it).
    Snapshot,
    /// ReadIndex, asked of the leader: once the leader has confirmed with
    /// a majority that it still leads, the index up to which a member must
    /// have applied the log to serve a linearizable read.
    ReadIndex,
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientReply {
    /// The applied outcome of a submitted command, and its log index.
    Outcome(Outcome, u64),
    /// A read: `(value, revision)`, `None` if absent.
    Value(Option<(Vec<u8>, u64)>),
    /// Children names.
    Names(Vec<String>),
    /// This node's status.
    Status(Status),
    /// Done.
    Done,
    /// The answer to [`ClientRequest::ReadIndex`].
    ReadIndex(u64),
}

/// A node's view of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// This node.
    pub id: u64,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// Its term.
    pub term: u64,
    /// Last applied index.
    pub applied: u64,
    /// First index still in the log (after purging), if known.
    pub purged: Option<u64>,
    /// Voters.
    pub voters: Vec<u64>,
    /// Everyone (voters and learners) with their addresses.
    pub nodes: BTreeMap<u64, String>,
}

/// Why a client request failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ClientError {
    /// This node is not the leader; the command was not taken. Retry at
    /// the leader, if one is known.
    #[error("not the leader; leader is {0:?}")]
    NotLeader(Option<(u64, String)>),
    /// The outcome is unknown: the command may or may not commit.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// Refused (bad membership change, not initialized, ...).
    #[error("refused: {0}")]
    Refused(String),
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed or closed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Over [`MAX_FRAME`].
    #[error("frame of {0} bytes is over the limit")]
    TooLong(usize),
    /// Not a valid message.
    #[error("bad message: {0}")]
    Decode(#[from] postcard::Error),
}

/// Writes one message as a frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> Result<(), FrameError> {
    let body = postcard::to_stdvec(msg)?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLong(body.len()));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame and decodes it.
pub async fn read_frame<R: AsyncRead + Unpin, T: for<'a> Deserialize<'a>>(
    r: &mut R,
) -> Result<T, FrameError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLong(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(postcard::from_bytes(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sm::Op;

    #[tokio::test]
    async fn frames_round_trip_and_bound_length() {
        let req = Request::Client(ClientRequest::Submit(Command::Op(Op::Write {
            path: "/pool/a".into(),
            value: b"v".to_vec(),
        })));
        let mut buf = Vec::new();
        write_frame(&mut buf, &req).await.unwrap();
        let back: Request = read_frame(&mut buf.as_slice()).await.unwrap();
        assert_eq!(format!("{back:?}"), format!("{req:?}"));
        let mut huge = ((MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        let r: Result<Request, _> = read_frame(&mut huge.as_slice()).await;
        assert!(matches!(r, Err(FrameError::TooLong(_))));
        let junk = [3u8, 0, 0, 0, 0xff, 0xff, 0xff];
        let r: Result<Request, _> = read_frame(&mut junk.as_slice()).await;
        assert!(matches!(r, Err(FrameError::Decode(_))));
    }
}
