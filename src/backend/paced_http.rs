//! OpenDAL's HTTP client for S3 under an upload limit: a request body goes out piece by piece,
//! each piece granted by the limiter first (OpenDAL hands the client a body as one buffer; this
//! client streams it). Installed only when `--limit-upload` is given; everything else is as
//! OpenDAL's own reqwest client does it.

use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use opendal::raw::{parse_content_encoding, parse_content_length, HttpBody, HttpFetch};
use opendal::{Buffer, Error, ErrorKind};

use super::RateLimiter;

/// An HTTP client whose request bodies are paced by an upload limiter.
pub(super) struct PacedHttp {
    client: reqwest::Client,
    upload: Arc<RateLimiter>,
}

impl PacedHttp {
    pub(super) fn new(upload: Arc<RateLimiter>) -> Self {
        PacedHttp {
            client: reqwest::Client::new(),
            upload,
        }
    }
}

/// Whether a failed transfer may pass (as OpenDAL's own client judges it).
fn temporary(e: &reqwest::Error) -> bool {
    e.is_request() || e.is_body() || e.is_decode()
}

impl HttpFetch for PacedHttp {
    async fn fetch(&self, req: http::Request<Buffer>) -> opendal::Result<http::Response<HttpBody>> {
        let uri = req.uri().clone();
        let is_head = req.method() == http::Method::HEAD;
        let (parts, body) = req.into_parts();
        let url = reqwest::Url::parse(&uri.to_string()).map_err(|e| {
            Error::new(ErrorKind::Unexpected, "request url is invalid")
                .with_context("url", uri.to_string())
                .set_source(e)
        })?;
        let mut request = self
            .client
            .request(parts.method, url)
            .headers(parts.headers)
            .version(parts.version);
        if !body.is_empty() {
            // The request carries its Content-Length, so the streamed body is sent as it is,
            // not chunked.
            let all = body.to_bytes();
            let piece = self.upload.piece();
            let limiter = self.upload.clone();
            let pieces = (0..all.len())
                .step_by(piece)
                .map(move |at| all.slice(at..(at + piece).min(all.len())));
            let paced = futures_util::stream::iter(pieces).then(move |p| {
                let wait = limiter.reserve(p.len());
                async move {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    Ok::<_, std::io::Error>(p)
                }
            });
            request = request.body(reqwest::Body::wrap_stream(paced));
        }
        let mut resp = request.send().await.map_err(|e| {
            Error::new(ErrorKind::Unexpected, "send http request")
                .with_context("url", uri.to_string())
                .with_temporary(temporary(&e))
                .set_source(e)
        })?;
        let size = if is_head || parse_content_encoding(resp.headers())?.is_some() {
            None
        } else {
            parse_content_length(resp.headers())?
        };
        let mut out = http::Response::builder()
            .status(resp.status())
            .version(resp.version())
            .extension(uri.clone());
        if let Some(h) = out.headers_mut() {
            std::mem::swap(h, resp.headers_mut());
        }
        let stream = resp
            .bytes_stream()
            .try_filter(|b| std::future::ready(!b.is_empty()))
            .map_ok(Buffer::from)
            .map_err(move |e| {
                Error::new(ErrorKind::Unexpected, "read data from http response")
                    .with_context("url", uri.to_string())
                    .with_temporary(temporary(&e))
                    .set_source(e)
            });
        out.body(HttpBody::new(stream, size))
            .map_err(|e| Error::new(ErrorKind::Unexpected, "build http response").set_source(e))
    }
}
