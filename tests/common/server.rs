//! A running `assay serve` for the HTTP tests, on a free port, talked to with `ureq`.

use super::{assay_bin, repo_root};
use serde_json::Value;
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running `assay serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    /// Holds the store when the test named none (`--db`), so that none lands in the checkout.
    _store: Option<tempfile::TempDir>,
}

impl Server {
    pub fn start(extra: &[&str]) -> Self {
        Self::start_with(extra, &[])
    }

    /// `start` with environment variables set for the server.
    pub fn start_with(extra: &[&str], env: &[(&str, &str)]) -> Self {
        // A port the OS just handed out is free for the moment it takes the server to bind it.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let store = (!extra.contains(&"--db")).then(|| tempfile::tempdir().unwrap());
        let mut command = Command::new(assay_bin());
        command.args(["serve", "--model", "smollm2", "--port", &port.to_string()]).args(extra).envs(env.iter().copied());
        if let Some(dir) = &store {
            command.arg("--db").arg(dir.path().join("server.db"));
        }
        let child = command.current_dir(repo_root()).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap();
        let server = Self { child, base: format!("http://127.0.0.1:{port}"), _store: store };
        let started = Instant::now();
        while server.get("/health").0 != 200 {
            assert!(started.elapsed() < Duration::from_secs(120), "server did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    pub fn call(&self, req: ureq::Request, body: Option<&str>) -> (u16, String, Option<String>) {
        let result = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(b),
            None => req.call(),
        };
        match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => {
                let retry = r.header("Retry-After").map(str::to_string);
                (r.status(), r.into_string().unwrap(), retry)
            }
            Err(e) => (0, e.to_string(), None),
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let (s, b, _) = self.call(ureq::get(&format!("{}{path}", self.base)), None);
        (s, b)
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(ureq::post(&format!("{}{path}", self.base)), Some(body))
    }

    pub fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(ureq::put(&format!("{}{path}", self.base)), Some(body))
    }

    /// A GET whose answer is JSON.
    pub fn get_json(&self, path: &str) -> (u16, Value) {
        self.send(ureq::get(&format!("{}{path}", self.base)), None)
    }

    /// Asks the server to shut down, as an orchestrator would.
    pub fn sigterm(&self) {
        assert!(Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success());
    }

    /// Waits for the server to exit on its own, at most `within`.
    pub fn exit_status(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < within, "the server did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn send(&self, req: ureq::Request, body: Option<&Value>) -> (u16, Value) {
        let (s, b, _) = self.call(req, body.map(Value::to_string).as_deref());
        (s, serde_json::from_str(&b).unwrap_or_else(|_| panic!("not JSON ({s}): {b}")))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
