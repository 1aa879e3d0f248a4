//! One RPC per stream: the caller opens a stream, writes the u32 type and a
//! JSON object in one frame (no FIN: the SDK never sends one), and the
//! callee answers with one JSON object and FIN.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::codec::{read_json, typed_json, MAX_RPC_BYTES};
use crate::msg::{MsgError, StreamType};
use crate::session::{Session, SessionError, Stream};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The session could not open a stream.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The request or reply was not valid JSON of the expected shape.
    #[error(transparent)]
    Msg(#[from] MsgError),
    /// The stream failed while writing the request.
    #[error("rpc stream: {0}")]
    Io(#[from] std::io::Error),
    /// The callee answered with a non-empty `Error`.
    #[error("{0}")]
    Remote(String),
}

impl RpcError {
    /// The `ERR_NGROK_...` code of a remote error, if it carries one.
    pub fn code(&self) -> Option<&str> {
        match self {
            RpcError::Remote(s) => crate::msg::error_code(s),
            _ => None,
        }
    }
}

/// Replies carry an optional `Error` string; a non-empty one fails the call.
pub trait RpcReply {
    fn error(&self) -> &str;
}

/// Calls `typ` on the peer and waits for its reply.
pub async fn call<Req, Resp>(
    session: &Session,
    typ: StreamType,
    req: &Req,
) -> Result<Resp, RpcError>
where
    Req: Serialize,
    Resp: DeserializeOwned + RpcReply,
{
    let mut stream = session.open()?;
    stream.write_all(&typed_json(typ, req)?).await?;
    let resp: Resp = read_json(&mut stream, MAX_RPC_BYTES).await?;
    if !resp.error().is_empty() {
        return Err(RpcError::Remote(resp.error().to_string()));
    }
    Ok(resp)
}

/// Callee side: reads the request body of an accepted stream (its type
/// already consumed).
pub async fn read_request<Req: DeserializeOwned>(stream: &mut Stream) -> Result<Req, MsgError> {
    read_json(stream, MAX_RPC_BYTES).await
}

/// Callee side: writes the reply and FIN.
pub async fn reply<Resp: Serialize>(stream: &mut Stream, resp: &Resp) -> Result<(), RpcError> {
    let body = serde_json::to_vec(resp).map_err(MsgError::InvalidJson)?;
    stream.write_all(&body).await?;
    stream.shutdown().await?;
    Ok(())
}

macro_rules! reply_with_error_field {
    ($($t:ty),*) => {$(
        impl RpcReply for $t {
            fn error(&self) -> &str {
                &self.error
            }
        }
    )*};
}

reply_with_error_field!(
    crate::msg::AuthResp,
    crate::msg::BindResp,
    crate::msg::UnbindResp,
    crate::msg::StartTunnelWithLabelResp,
    crate::msg::CommandResp
);
