//! Starting an example binary the way a user would, on a free loopback
//! port, and reading what it prints until it listens.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running example; stopped on drop.
#[derive(Debug)]
pub struct Example {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The lines it printed before `listening on http://…`.
    pub printed: Vec<String>,
    _child: Child,
}

impl Example {
    /// Starts `executable` with `PORTCULLIS_ADDR=127.0.0.1:0` and `env`,
    /// and waits (60 s at most) for its `listening on http://ADDR` line.
    pub async fn start(executable: &str, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(executable);
        command
            .env("PORTCULLIS_ADDR", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("start {executable}: {error}"));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut printed = Vec::new();
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    return addr.parse::<SocketAddr>().expect("an address");
                }
                printed.push(line);
            }
            panic!("{executable} exited before listening; it printed {printed:?}");
        })
        .await
        .unwrap_or_else(|_| panic!("{executable} did not listen within 60 s"));
        assert!(addr.ip().is_loopback());
        Self {
            addr,
            printed,
            _child: child,
        }
    }

    /// The resident memory of the process now, in KiB (Linux `/proc`).
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self._child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The value of a printed `label: value` line.
    pub fn printed(&self, label: &str) -> &str {
        let prefix = format!("{label}: ");
        self.printed
            .iter()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {label:?} line in {:?}", self.printed))
    }
}
