//! A throwaway PostgreSQL, started by the tests on a free loopback port
//! (`initdb` into a temp dir, then `postgres`), never the machine's own
//! service, and stopped by pid with them. The server refuses to run as
//! root, so as root it runs as the `postgres` system user. A missing binary
//! fails loudly.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "PostgreSQL server binaries not found (looked in $PORTCULLIS_PG_BIN, \
     /usr/lib/postgresql/*/bin and PATH): install them (Debian: `apt-get install postgresql`; \
     `.ci/install-test-deps` does this) — the PostgreSQL suites never skip";

/// Where `initdb` and `postgres` live.
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PORTCULLIS_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .find(|dir| dir.join("initdb").exists())
        .unwrap_or_else(|| {
            // On PATH, then.
            let found = std::env::var_os("PATH")
                .map(|path| std::env::split_paths(&path).find(|dir| dir.join("initdb").exists()))
                .unwrap_or_default();
            found.unwrap_or_else(|| panic!("{INSTALL_HINT}"))
        })
}

/// `(uid, gid)` of the `postgres` user when we are root, from
/// `/etc/passwd` (no libc needed); `None` when not root.
fn server_user() -> Option<(u32, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let euid: u32 = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    if euid != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let entry = passwd
        .lines()
        .find(|line| line.starts_with("postgres:"))
        .unwrap_or_else(|| panic!("running as root and no `postgres` user to run the server as: {INSTALL_HINT}"));
    let fields: Vec<&str> = entry.split(':').collect();
    Some((fields[2].parse().expect("uid"), fields[3].parse().expect("gid")))
}

/// The pids whose parent is `parent` (from `/proc`).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // `pid (comm) state ppid …`; comm may hold spaces, so split
                // after its closing parenthesis.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}

/// A private CA and a server certificate for `127.0.0.1` it signed, in
/// `dir` (the key readable by the server's user only, as it insists).
fn make_certificates(dir: &Path, owner: Option<(u32, u32)>) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|error| panic!("openssl not found (Debian: `apt-get install openssl`): {error}"));
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=portcullis test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("san.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    use std::os::unix::fs::PermissionsExt;
    let key = dir.join("server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    if let Some(owner) = owner {
        for file in ["server.key", "server.pem", "ca.pem"] {
            chown_all(&dir.join(file), owner);
        }
    }
}

fn chown_all(path: &Path, owner: (u32, u32)) {
    std::os::unix::fs::chown(path, Some(owner.0), Some(owner.1)).expect("chown");
}

/// A running throwaway PostgreSQL owned by one test.
#[derive(Debug)]
pub struct PostgresServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    user: Option<(u32, u32)>,
    bin: PathBuf,
    tls: bool,
}

impl PostgresServer {
    /// `initdb` into a fresh temp dir and start the server on a free
    /// loopback port; returns once it accepts connections.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Like [`start`](Self::start), with TLS on: a fresh private CA signs
    /// the server's certificate for `127.0.0.1` (`openssl`); its PEM is
    /// [`ca_pem`](Self::ca_pem).
    pub fn start_tls() -> Self {
        Self::start_with(true)
    }

    /// The private CA's certificate (PEM), for a server started with TLS.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("ca.pem")).expect("ca.pem of a TLS server")
    }

    fn start_with(tls: bool) -> Self {
        let bin = bin_dir();
        let user = server_user();
        let dir = std::env::temp_dir().join(format!("portcullis-pg-{}-{}", std::process::id(), crate::free_port()));
        std::fs::create_dir_all(dir.join("socket")).expect("temp dir");
        if let Some(owner) = user {
            chown_all(&dir, owner);
            chown_all(&dir.join("socket"), owner);
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args(["--auth=trust", "--no-sync", "-U", "postgres", "-E", "UTF8", "-D"])
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = user {
            initdb.uid(uid).gid(gid);
        }
        let output = initdb
            .output()
            .unwrap_or_else(|error| panic!("{INSTALL_HINT} ({error})"));
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if tls {
            make_certificates(&dir, user);
        }
        let mut server = Self {
            port: crate::free_port(),
            dir,
            child: None,
            user,
            bin,
            tls,
        };
        server.restart();
        server
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server like a crash of its machine: SIGKILL to the
    /// postmaster and to every backend it forked (a backend alone would go
    /// on answering its open connection for a moment), then waits until
    /// the port is closed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let backends = children_of(child.id());
            let _ = child.kill();
            if !backends.is_empty() {
                let _ = Command::new("kill")
                    .arg("-9")
                    .args(backends.iter().map(u32::to_string))
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the server (again) on the same data directory and port;
    /// after a kill it replays its WAL first.
    pub fn restart(&mut self) {
        self.kill();
        let mut postgres = Command::new(self.bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.join("socket"))
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=on",
                "-c",
                "max_connections=200",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.tls {
            postgres
                .args(["-c", "ssl=on", "-c"])
                .arg(format!("ssl_cert_file={}", self.dir.join("server.pem").display()))
                .arg("-c")
                .arg(format!("ssl_key_file={}", self.dir.join("server.key").display()));
        }
        if let Some((uid, gid)) = self.user {
            postgres.uid(uid).gid(gid);
        }
        self.child = Some(
            postgres
                .spawn()
                .unwrap_or_else(|error| panic!("{INSTALL_HINT} ({error})")),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|status| status.success());
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
