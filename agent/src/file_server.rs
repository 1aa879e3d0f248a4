//! `gangway http file:///path`: the agent serves a directory itself —
//! listings, content types, single-range requests — and never a file
//! outside the root, whatever the path or symlinks say.

use std::convert::Infallible;
use std::io::SeekFrom;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite};

type Body = BoxBody<Bytes, std::io::Error>;

/// Reads files in chunks of this size when streaming them.
const CHUNK_BYTES: usize = 64 * 1024;

/// Serves the HTTP/1.1 exchange(s) on one proxy stream from `root`.
pub async fn serve<S>(stream: S, root: PathBuf)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let root = root.clone();
        async move { Ok::<_, Infallible>(respond(&root, &req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let body = Full::new(Bytes::from(msg.to_string()))
        .map_err(|never: Infallible| match never {})
        .boxed();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The file `url_path` names under `root`, or `None` if it would leave
/// the root (`..`, or a symlink pointing outside).
async fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(url_path)
        .decode_utf8()
        .ok()?;
    let mut path = root.to_path_buf();
    for comp in Path::new(decoded.trim_start_matches('/')).components() {
        match comp {
            Component::Normal(c) => path.push(c),
            Component::CurDir => {}
            _ => return None,
        }
    }
    let real = tokio::fs::canonicalize(&path).await.ok()?;
    let real_root = tokio::fs::canonicalize(root).await.ok()?;
    real.starts_with(&real_root).then_some(real)
}

async fn respond(root: &Path, req: &Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "Only GET and HEAD are served.\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let url_path = req.uri().path();
    let Some(path) = resolve(root, url_path).await else {
        return text(StatusCode::NOT_FOUND, "Not found.\n");
    };
    let Ok(meta) = tokio::fs::metadata(&path).await else {
        return text(StatusCode::NOT_FOUND, "Not found.\n");
    };
    if meta.is_dir() {
        if !url_path.ends_with('/') {
            let mut r = text(StatusCode::MOVED_PERMANENTLY, "");
            if let Ok(loc) = HeaderValue::from_str(&format!("{url_path}/")) {
                r.headers_mut().insert(header::LOCATION, loc);
            }
            return r;
        }
        return listing(&path, url_path).await;
    }
    file(&path, meta.len(), req).await
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn listing(dir: &Path, url_path: &str) -> Response<Body> {
    let Ok(mut rd) = tokio::fs::read_dir(dir).await else {
        return text(StatusCode::FORBIDDEN, "Cannot list this directory.\n");
    };
    let mut names = Vec::new();
    while let Ok(Some(entry)) = rd.next_entry().await {
        let is_dir = entry.file_type().await.map(|t| t.is_dir()).unwrap_or(false);
        let name = entry.file_name().to_string_lossy().into_owned();
        names.push(if is_dir { format!("{name}/") } else { name });
    }
    names.sort();
    let title = html_escape(url_path);
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n<body><h1>Index of {title}</h1>\n<ul>\n"
    );
    if url_path != "/" {
        html.push_str("<li><a href=\"../\">../</a></li>\n");
    }
    for n in names {
        let href = percent_encoding::utf8_percent_encode(&n, percent_encoding::NON_ALPHANUMERIC)
            .to_string()
            .replace("%2F", "/")
            .replace("%2E", ".")
            .replace("%2D", "-")
            .replace("%5F", "_");
        html.push_str(&format!(
            "<li><a href=\"{href}\">{}</a></li>\n",
            html_escape(&n)
        ));
    }
    html.push_str("</ul></body></html>\n");
    let mut r = text(StatusCode::OK, &html);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against a file of `len` bytes.
/// `Err(())` means unsatisfiable (416); `Ok(None)` means serve it whole
/// (no range, or a form we do not serve, like several ranges).
fn parse_range(value: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len.saturating_sub(1))
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end: u64 = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse().map_err(|_| ())?
        };
        (start, end.min(len.saturating_sub(1)))
    };
    if len == 0 || start >= len || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

async fn file(path: &Path, len: u64, req: &Request<Incoming>) -> Response<Body> {
    let range = match req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    {
        Some(v) => match parse_range(v, len) {
            Ok(r) => r,
            Err(()) => {
                let mut r = text(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "Range not satisfiable.\n",
                );
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return r;
            }
        },
        None => None,
    };
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        return text(StatusCode::FORBIDDEN, "Cannot read this file.\n");
    };
    let (start, count, status) = match range {
        Some((s, e)) => (s, e - s + 1, StatusCode::PARTIAL_CONTENT),
        None => (0, len, StatusCode::OK),
    };
    if start > 0 && f.seek(SeekFrom::Start(start)).await.is_err() {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "Seek failed.\n");
    }
    let head_only = req.method() == Method::HEAD;
    let chunks = futures_chunks(f, if head_only { 0 } else { count });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(chunks)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    if let Ok(v) = HeaderValue::from_str(mime.as_ref()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", start + count - 1))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    r
}

/// Streams `remaining` bytes of `f` as body frames.
fn futures_chunks(
    f: tokio::fs::File,
    remaining: u64,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send {
    futures::stream::unfold((f, remaining), |(mut f, remaining)| async move {
        if remaining == 0 {
            return None;
        }
        let want = remaining.min(CHUNK_BYTES as u64) as usize;
        let mut buf = vec![0u8; want];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Frame::data(Bytes::from(buf))), (f, remaining - n as u64)))
            }
            Err(e) => Some((Err(e), (f, 0))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Ok(Some((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=9-3", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
        assert_eq!(parse_range("bytes=x-1", 100), Err(()));
    }
}
