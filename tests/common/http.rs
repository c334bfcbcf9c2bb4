//! Minimal blocking HTTP/1.0 client over `std::net::TcpStream`, so helpers
//! work without (or inside any) async runtime. Only for plain-HTTP loopback
//! servers started by the tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Installs rustls' `ring` CryptoProvider as the process default, once.
///
/// The crate builds reqwest with `rustls-no-provider`, so creating ANY
/// `reqwest::Client` — even one that only ever talks plain `http://` —
/// panics ("No rustls crypto provider is configured") until a provider is
/// installed. Idempotent; a provider installed earlier by someone else wins.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A `reqwest::Client` for tests (installs the crypto provider first).
pub fn reqwest_client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::new()
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names are lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET http://{authority}{path_and_query}`; `authority` is `host:port`.
pub fn get(authority: &str, path_and_query: &str, timeout: Duration) -> std::io::Result<Response> {
    request("GET", authority, path_and_query, None, timeout)
}

/// `POST` with a JSON body (`Content-Type: application/json`).
pub fn post_json(
    authority: &str,
    path: &str,
    json: &str,
    timeout: Duration,
) -> std::io::Result<Response> {
    request(
        "POST",
        authority,
        path,
        Some(("application/json", json.as_bytes())),
        timeout,
    )
}

/// Sends one request (HTTP/1.0, `Connection: close`) and reads the whole reply.
pub fn request(
    method: &str,
    authority: &str,
    path_and_query: &str,
    body: Option<(&str, &[u8])>,
    timeout: Duration,
) -> std::io::Result<Response> {
    let addr: SocketAddr = authority.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("bad address {authority}"),
        )
    })?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut req = format!(
        "{method} {path_and_query} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: mlrollout-tests\r\nAccept: */*\r\nConnection: close\r\n"
    );
    if let Some((content_type, bytes)) = body {
        req.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            bytes.len()
        ));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    if let Some((_, bytes)) = body {
        stream.write_all(bytes)?;
    }
    stream.flush()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn invalid(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("no end of headers in HTTP response"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| invalid("truncated chunk size"))?;
        let size_str = String::from_utf8_lossy(&data[..eol]);
        let size_str = size_str.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_str, 16)
            .map_err(|_| invalid(format!("bad chunk size {size_str:?}")))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err(invalid("truncated chunk"));
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

/// Percent-encodes a query-string component (RFC 3986 unreserved kept).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A free TCP port on 127.0.0.1 (bound then released; tiny race window, so
/// callers retry when the server reports the port taken).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// An HTTP/1.1 reverse proxy on `127.0.0.1:<random port>` in front of a real server, which
/// holds the requests whose path starts with a prefix for as long as the test says: the
/// server's answer to them comes late, as from a slow server, and what waits for it waits.
/// Every other request goes through untouched. One request per connection (the proxy answers
/// `Connection: close`). Stops accepting when dropped.
pub struct HoldingProxy {
    addr: SocketAddr,
    hold: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    held: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl HoldingProxy {
    /// A proxy to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> HoldingProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let proxy = HoldingProxy {
            addr: listener.local_addr().expect("proxy address"),
            hold: std::sync::Arc::default(),
            held: std::sync::Arc::default(),
            stop: std::sync::Arc::default(),
        };
        let (hold, held, stop) = (proxy.hold.clone(), proxy.held.clone(), proxy.stop.clone());
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (hold, held, upstream) = (hold.clone(), held.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = forward(conn, &upstream, &hold, &held);
                });
            }
        });
        proxy
    }

    /// `http://127.0.0.1:PORT`
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Holds every request whose path starts with `prefix` (from now until [`Self::release`]).
    pub fn hold(&self, prefix: &str) {
        *self.hold.lock().unwrap_or_else(|e| e.into_inner()) = Some(prefix.to_string());
    }

    /// Lets the held requests (and all later ones) go.
    pub fn release(&self) {
        *self.hold.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// How many requests were held so far.
    pub fn held(&self) -> u64 {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for HoldingProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// One request: read it, hold it while its path matches, send it upstream with
/// `Connection: close`, relay the answer (its head with `Connection: close`) until the end.
fn forward(
    mut client: TcpStream,
    upstream: &str,
    hold: &std::sync::Mutex<Option<String>>,
    held: &std::sync::atomic::AtomicU64,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let (head, mut body) = read_head(&mut client)?;
    let length = header_value(&head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    while body.len() < length {
        let mut chunk = vec![0u8; length - body.len()];
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut counted = false;
    while hold
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_deref()
        .is_some_and(|prefix| path.starts_with(prefix))
    {
        if !counted {
            held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            counted = true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(close_connection(&head).as_bytes())?;
    server.write_all(&body)?;
    let (answer, rest) = read_head(&mut server)?;
    client.write_all(close_connection(&answer).as_bytes())?;
    client.write_all(&rest)?;
    std::io::copy(&mut server, &mut client)?;
    client.flush()
}

/// The head of a request or response (up to and without its blank line) and the bytes read
/// after it.
fn read_head(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return Ok((head, buf[end + 4..].to_vec()));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(invalid("connection closed before the end of the head"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// `head` without its `Connection`/`Keep-Alive` headers, with `Connection: close`, and the
/// blank line that ends it.
fn close_connection(head: &str) -> String {
    let mut out = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        let name = line.split(':').next().unwrap_or_default().trim();
        if i > 0
            && (name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive"))
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}
