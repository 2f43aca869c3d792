//! Plain HTTP/1.1 over std's `TcpStream` (loopback only), and a small
//! WebDriver client for `chromedriver`: enough to open the status page in
//! headless Chromium, read it and take a screenshot.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// How long one HTTP exchange may take.
const HTTP_TIMEOUT_MS: u64 = 10_000;
/// How long chromedriver may take to listen.
const DRIVER_START_TIMEOUT_MS: u64 = 20_000;

/// `METHOD path` on `addr` (`127.0.0.1:PORT`) with an optional JSON body:
/// the status code and the body.
///
/// # Errors
///
/// When the connection or the exchange fails.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_millis(HTTP_TIMEOUT_MS)))?;
    stream.set_write_timeout(Some(Duration::from_millis(HTTP_TIMEOUT_MS)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    // Read the head, then exactly Content-Length bytes: chromedriver keeps
    // the connection open whatever `Connection: close` says.
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Err(std::io::Error::other(
                "closed before the response head ended",
            ));
        }
        raw.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())
            .flatten()
    });
    match length {
        Some(length) => {
            while raw.len() < head_end + length {
                let read = stream.read(&mut chunk)?;
                if read == 0 {
                    break;
                }
                raw.extend_from_slice(&chunk[..read]);
            }
        }
        None => {
            stream.read_to_end(&mut raw)?;
        }
    }
    let rest = String::from_utf8_lossy(&raw[head_end..]).into_owned();
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&rest)
    } else {
        rest
    };
    Ok((code, body))
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

/// A GET that must answer 200: the body.
///
/// # Panics
///
/// When it does not.
pub fn get(addr: &str, path: &str) -> String {
    match request(addr, "GET", path, None) {
        Ok((200, body)) => body,
        other => panic!("GET http://{addr}{path}: {other:?}"),
    }
}

/// A chromedriver process and one headless Chromium session.
pub struct Browser {
    driver: Child,
    addr: String,
    session: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    ///
    /// # Panics
    ///
    /// When chromedriver or Chromium is not installed (`scripts/setup.sh`
    /// installs both) or the session cannot start.
    pub fn start() -> Browser {
        let driver_bin = ["chromedriver", "/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|bin| Command::new(bin).arg("--version").output().is_ok())
            .unwrap_or_else(|| {
                panic!("chromedriver is not installed: run scripts/setup.sh (apt packages chromium and chromium-driver)")
            });
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {driver_bin}: {err}"));
        let addr = format!("127.0.0.1:{port}");
        crate::wait_until(
            "chromedriver to listen",
            Duration::from_millis(DRIVER_START_TIMEOUT_MS),
            || request(&addr, "GET", "/status", None).ok(),
        );
        let mut args = vec!["--headless=new", "--disable-gpu", "--window-size=1100,900"];
        // Root (CI containers) cannot use Chromium's sandbox.
        args.push("--no-sandbox");
        args.push("--disable-dev-shm-usage");
        let mut options = json!({ "args": args });
        if Path::new("/usr/bin/chromium").exists() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": options,
            }}
        });
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
        };
        let created = browser.call("POST", "/session", &capabilities);
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| {
                panic!("Chromium did not start (is the chromium package installed?): {created}")
            })
            .to_owned();
        browser
    }

    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        let body = (!body.is_null()).then_some(body);
        let (code, text) = request(&self.addr, method, path, body)
            .unwrap_or_else(|err| panic!("chromedriver {method} {path}: {err}"));
        let reply: Value = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("chromedriver {method} {path} -> {code}: {err}: {text}"));
        assert_eq!(code, 200, "chromedriver {method} {path}: {reply}");
        reply["value"].clone()
    }

    /// Opens `url`.
    pub fn open(&self, url: &str) {
        self.call(
            "POST",
            &format!("/session/{}/url", self.session),
            &json!({ "url": url }),
        );
    }

    /// Runs `script` (a function body; `return` a value) in the page.
    pub fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            &format!("/session/{}/execute/sync", self.session),
            &json!({ "script": script, "args": [] }),
        )
    }

    /// Saves a PNG screenshot of the page at `path`.
    ///
    /// # Panics
    ///
    /// When the screenshot cannot be taken or written.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let encoded = self.call(
            "GET",
            &format!("/session/{}/screenshot", self.session),
            &Value::Null,
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("a base64 screenshot"))
            .expect("base64");
        std::fs::write(path, png).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = request(
                &self.addr,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
