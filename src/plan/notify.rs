//! `[plans.NAME.notify]`: telling people and monitoring about a run over HTTP — a webhook
//! POSTed the run's JSON summary, and healthchecks-style pings (`URL/start`, `URL`,
//! `URL/fail`).
//!
//! A notification is never allowed to fail or stall a backup: each request has a bounded time
//! ([`TIMEOUT`] to connect and for each read or write, [`DEADLINE`] in all) and reads at most
//! [`MAX_RESPONSE`] bytes of the answer (only its status line matters); what goes wrong is
//! returned as a sentence for the caller to report. `http://` is spoken here over a
//! `TcpStream` (HTTP/1.1, one request per connection); `https://` goes through the HTTP client
//! of the `remote` feature, and without it is an error saying so.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long to wait to connect, and for each read or write of a request.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The longest a request may take in all.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The most of an answer read: its status line is all that is used.
pub const MAX_RESPONSE: usize = 64 << 10;

/// Whether `url` can be used: `http://` or `https://`, a host, no spaces or control
/// characters.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} has no host"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} contains spaces or control characters"));
    }
    Ok(())
}

/// `URL/suffix` (`URL` itself for ""), as healthchecks.io builds its start and fail URLs.
pub fn ping_url(url: &str, suffix: &str) -> String {
    if suffix.is_empty() {
        url.to_string()
    } else {
        format!("{}/{suffix}", url.trim_end_matches('/'))
    }
}

/// POSTs `json` to `url`; Ok with the status of a 2xx answer, else why not.
pub fn post_json(url: &str, json: &[u8]) -> Result<u16, String> {
    request("POST", url, Some(json))
}

/// GETs `url`; Ok with the status of a 2xx answer, else why not.
pub fn get(url: &str) -> Result<u16, String> {
    request("GET", url, None)
}

fn request(method: &str, url: &str, body: Option<&[u8]>) -> Result<u16, String> {
    check_url(url)?;
    let status = if let Some(rest) = url.strip_prefix("http://") {
        plain(method, rest, body).map_err(|e| format!("{method} {url}: {e}"))?
    } else {
        tls(method, url, body).map_err(|e| format!("{method} {url}: {e}"))?
    };
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(format!("{method} {url}: the server answered {status}"))
    }
}

/// HTTP/1.1 over a `TcpStream`; `rest` is the URL after `http://`.
fn plain(method: &str, rest: &str, body: Option<&[u8]>) -> Result<u16, String> {
    let start = Instant::now();
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let addr = if authority.starts_with('[') || authority.rsplit_once(':').is_some() {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .collect();
    let mut last = format!("{authority} has no address");
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to {a}: {e}"),
        }
    }
    let mut s = stream.ok_or(last)?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: cairn/{}\r\n\
         Connection: close\r\nAccept: */*\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let body = body.unwrap_or_default();
    if method == "POST" {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
        .and_then(|()| s.flush())
        .map_err(|e| format!("sending the request: {e}"))?;
    // Only the status line is needed: read until its end, within the bounds.
    let mut got = Vec::with_capacity(256);
    let mut buf = [0u8; 4096];
    while !got.windows(2).any(|w| w == b"\r\n") {
        if got.len() >= MAX_RESPONSE || start.elapsed() > DEADLINE {
            return Err("no status line in the answer".into());
        }
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("reading the answer: {e}"))?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let line = got.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok(code),
        _ => Err(format!(
            "the answer is not HTTP: {:?}",
            line.chars().take(80).collect::<String>()
        )),
    }
}

#[cfg(feature = "remote")]
fn tls(method: &str, url: &str, body: Option<&[u8]>) -> Result<u16, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .connect_timeout(TIMEOUT)
        .timeout(DEADLINE)
        .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())?;
    let req = match body {
        Some(b) => client
            .post(url)
            .header("Content-Type", "application/json")
            .body(b.to_vec()),
        None if method == "GET" => client.get(url),
        None => return Err(format!("unsupported method {method}")),
    };
    rt.block_on(async {
        let resp = req.send().await.map_err(|e| {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(c) = src {
                s.push_str(&format!(": {c}"));
                src = c.source();
            }
            s
        })?;
        Ok(resp.status().as_u16())
    })
}

#[cfg(not(feature = "remote"))]
fn tls(_method: &str, _url: &str, _body: Option<&[u8]>) -> Result<u16, String> {
    Err("this cairn was built without HTTPS (cargo feature `remote`); use an http:// URL".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-request server: answers `answer` and hands back what it received.
    fn serve(answer: &'static [u8]) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook/x", l.local_addr().expect("addr"));
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).unwrap_or(0);
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some(i) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if got.len() >= i + 4 + len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            s.write_all(answer).ok();
            got
        });
        (url, h)
    }

    #[test]
    fn a_post_sends_the_json_and_reads_the_status() {
        let (url, h) = serve(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(post_json(&url, br#"{"a":1}"#), Ok(204));
        let got = String::from_utf8(h.join().expect("server")).expect("text");
        assert!(got.starts_with("POST /hook/x HTTP/1.1\r\n"), "{got}");
        assert!(got.contains("Content-Type: application/json\r\n"), "{got}");
        assert!(got.ends_with("\r\n\r\n{\"a\":1}"), "{got}");
    }

    #[test]
    fn an_error_status_a_closed_port_and_garbage_are_errors() {
        let (url, h) = serve(b"HTTP/1.1 500 Oops\r\n\r\n");
        let e = get(&url).expect_err("500");
        assert!(e.contains("answered 500"), "{e}");
        h.join().expect("server");
        let (url, h) = serve(b"SSH-2.0-nope\r\n");
        let e = get(&url).expect_err("not http");
        assert!(e.contains("not HTTP"), "{e}");
        h.join().expect("server");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let e = get(&format!("http://127.0.0.1:{port}/")).expect_err("closed");
        assert!(e.contains("cannot connect"), "{e}");
    }

    #[test]
    fn urls_are_checked_and_pings_are_built_as_healthchecks_does() {
        assert!(check_url("http://h/x").is_ok() && check_url("https://h").is_ok());
        assert!(check_url("ftp://h").is_err());
        assert!(check_url("http:///x").is_err());
        assert!(check_url("http://h/a b").is_err());
        assert_eq!(
            ping_url("https://hc/ping/u/", "start"),
            "https://hc/ping/u/start"
        );
        assert_eq!(ping_url("https://hc/ping/u", ""), "https://hc/ping/u");
    }
}
