//! HTTP/1.1 framing for dom0's XenAPI server: requests parsed with
//! `httparse` from a connection's bytes, bodies by `Content-Length`
//! (bounded), responses rendered with a length. Sans-IO: the network loop
//! (`net`) feeds bytes in and writes bytes out.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Most header lines a request may have.
const MAX_HEADERS: usize = 32;
/// Largest request head (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body.
pub const MAX_BODY: usize = 1 << 20;

/// One request.
#[derive(Debug)]
pub struct Request {
    /// `POST`, `GET`, ...
    pub method: String,
    /// The path (query dropped).
    pub path: String,
    /// The query (after `?`), empty if none.
    pub query: String,
    /// The `Host` header, empty if none.
    pub host: String,
    /// `Content-Type`, lower case, empty if none.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
}

/// A request that cannot be served: the status to answer with, then
/// close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// 400: not HTTP/1.x, or a bad header.
    BadRequest,
    /// 413: a body over [`MAX_BODY`].
    TooLarge,
    /// 431: a head over [`MAX_HEAD`].
    HeadTooLarge,
    /// 501: chunked request bodies are not supported.
    NotImplemented,
}

impl Refused {
    /// Status code and reason.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Refused::BadRequest => (400, "Bad Request"),
            Refused::TooLarge => (413, "Payload Too Large"),
            Refused::HeadTooLarge => (431, "Request Header Fields Too Large"),
            Refused::NotImplemented => (501, "Not Implemented"),
        }
    }
}

/// Takes one complete request off the front of `buf`: `Ok(None)` while
/// more bytes are needed.
pub fn take_request(buf: &mut Vec<u8>) -> Result<Option<Request>, Refused> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(Refused::HeadTooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Refused::HeadTooLarge),
        Err(_) => return Err(Refused::BadRequest),
    };
    if head > MAX_HEAD {
        return Err(Refused::HeadTooLarge);
    }
    let mut length = 0usize;
    let mut content_type = String::new();
    let mut host = String::new();
    let mut close = req.version == Some(0);
    for h in req.headers.iter() {
        let value = core::str::from_utf8(h.value).map_err(|_| Refused::BadRequest)?;
        if h.name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().map_err(|_| Refused::BadRequest)?;
        } else if h.name.eq_ignore_ascii_case("content-type") {
            content_type = value.trim().to_ascii_lowercase();
        } else if h.name.eq_ignore_ascii_case("host") {
            host = value.trim().to_string();
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Refused::NotImplemented);
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = value.trim();
            if v.eq_ignore_ascii_case("close") {
                close = true;
            } else if v.eq_ignore_ascii_case("keep-alive") {
                close = false;
            }
        }
    }
    if length > MAX_BODY {
        return Err(Refused::TooLarge);
    }
    if buf.len() < head + length {
        return Ok(None);
    }
    let path = req.path.unwrap_or("/");
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let (path, query) = (path.to_string(), query.to_string());
    let method = req.method.unwrap_or("").to_string();
    let body = buf[head..head + length].to_vec();
    buf.drain(..head + length);
    Ok(Some(Request {
        method,
        path,
        query,
        host,
        content_type,
        body,
        keep_alive: !close,
    }))
}

/// An HTTP/1.1 response with a body.
pub fn response(
    status: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
) -> Vec<u8> {
    response_with(status, reason, content_type, "", body, keep_alive)
}

/// As [`response`], with `extra` header lines (each ending in CRLF).
pub fn response_with(
    status: u16,
    reason: &str,
    content_type: &str,
    extra: &str,
    body: &[u8],
    keep_alive: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {extra}Connection: {}\r\n\r\n",
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn the_query_and_host_are_kept() {
        let mut b =
            req("GET /console?uuid=u&session_id=s HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n");
        let r = take_request(&mut b).unwrap().unwrap();
        assert_eq!(r.path, "/console");
        assert_eq!(r.query, "uuid=u&session_id=s");
        assert_eq!(r.host, "127.0.0.1:8080");
        let out = response_with(200, "OK", "text/plain", "X-A: 1\r\n", b"hi", false);
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("\r\nX-A: 1\r\nConnection: close\r\n\r\nhi"),
            "{out}"
        );
    }

    #[test]
    fn a_request_is_framed_by_content_length_and_the_rest_stays() {
        let mut b = req(
            "POST /jsonrpc HTTP/1.1\r\nHost: x\r\nContent-Type: Application/JSON\r\n\
             Content-Length: 5\r\n\r\nhelloPOST / HTTP/1.1\r\n",
        );
        let r = take_request(&mut b).unwrap().unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/jsonrpc");
        assert_eq!(r.content_type, "application/json");
        assert_eq!(r.body, b"hello");
        assert_eq!((r.host.as_str(), r.query.as_str()), ("x", ""));
        assert!(r.keep_alive);
        // The next request's first bytes are kept, and it is incomplete.
        assert_eq!(b, req("POST / HTTP/1.1\r\n"));
        assert!(take_request(&mut b).unwrap().is_none());
    }

    #[test]
    fn partial_heads_and_bodies_wait_for_more_bytes() {
        let full = "POST /?q=1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        for cut in 0..full.len() {
            let mut b = req(&full[..cut]);
            assert!(take_request(&mut b).unwrap().is_none(), "cut at {cut}");
            assert_eq!(b.len(), cut, "nothing consumed at {cut}");
        }
        let mut b = req(full);
        let r = take_request(&mut b).unwrap().unwrap();
        assert_eq!(r.path, "/");
        assert!(b.is_empty());
    }

    #[test]
    fn hostile_requests_are_refused_with_a_status() {
        let mut b = req("POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n");
        assert_eq!(take_request(&mut b).unwrap_err(), Refused::TooLarge);
        assert_eq!(Refused::TooLarge.status().0, 413);
        let mut b = req("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(take_request(&mut b).unwrap_err(), Refused::NotImplemented);
        let mut b = req("POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n");
        assert_eq!(take_request(&mut b).unwrap_err(), Refused::BadRequest);
        let mut b = req("\x01\x02 garbage\r\n\r\n");
        assert_eq!(take_request(&mut b).unwrap_err(), Refused::BadRequest);
        let mut b = req("POST / HTTP/1.1\r\n");
        b.extend(core::iter::repeat_n(b'a', MAX_HEAD + 1));
        assert_eq!(take_request(&mut b).unwrap_err(), Refused::HeadTooLarge);
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..MAX_HEADERS + 1 {
            many += &format!("X-{i}: y\r\n");
        }
        many += "\r\n";
        let mut b = req(&many);
        assert_eq!(take_request(&mut b).unwrap_err(), Refused::HeadTooLarge);
    }

    #[test]
    fn connection_close_and_http_1_0_end_the_connection() {
        let mut b = req("POST / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(!take_request(&mut b).unwrap().unwrap().keep_alive);
        let mut b = req("POST / HTTP/1.0\r\n\r\n");
        assert!(!take_request(&mut b).unwrap().unwrap().keep_alive);
        let mut b = req("POST / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(take_request(&mut b).unwrap().unwrap().keep_alive);
    }

    #[test]
    fn responses_carry_their_length() {
        let r = response(200, "OK", "text/xml", b"<x/>", false);
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 4\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n<x/>"));
    }
}
