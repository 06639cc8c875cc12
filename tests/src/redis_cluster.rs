//! A real Redis Cluster (3 primaries, 3 replicas) and a real Sentinel
//! setup (a primary, a replica, three Sentinels), started by the tests on
//! free loopback ports and stopped by pid with them. A missing binary
//! fails loudly.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER_HINT: &str = "redis-server not found on PATH: install it (Debian: `apt-get install redis-server`; \
     `.ci/install-test-deps` does this) — the Redis Cluster and Sentinel suites never skip";
const CLI_HINT: &str = "redis-cli not found on PATH: install it (Debian: `apt-get install redis-tools`; \
     `.ci/install-test-deps` does this) — the Redis Cluster suites never skip";

/// The lowest port the kernel picks on its own, for a client's socket or
/// a listener on port 0 (`ip_local_port_range`; 32768 unless configured).
fn ephemeral_floor() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A port that is free, with its cluster bus port (port + 10000) free
/// too, never the same twice in this process. Both stay below the
/// kernel's ephemeral range where it leaves room (10000 up to it): a
/// client socket of another test, or another server on port 0, then never
/// takes one between this check and the node's bind.
fn free_cluster_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (low, high) = match ephemeral_floor().checked_sub(10_000) {
        Some(top) if top > 12_000 => (10_000, top),
        _ => (20_000, 45_000),
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let span = u32::from(high - low);
    for attempt in 0..5_000u32 {
        let port = low + u16::try_from(seed.wrapping_add(attempt.wrapping_mul(7_919)) % span).unwrap_or(0);
        if !handed_out.contains(&port)
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        {
            handed_out.push(port);
            return port;
        }
    }
    panic!("no free port pair (port, port + 10000) in {low}–{high} on loopback");
}

fn temp_dir(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "portcullis-{kind}-{}-{}",
        std::process::id(),
        crate::free_port()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Every store conformance suite, unchanged, against `servers`: sessions,
/// revocations (the direct store and the replicated mirror, each under its
/// own prefix) and refresh families.
pub async fn run_every_store_suite(servers: portcullis::redis::RedisServers) {
    use portcullis::redis::{
        RedisOptions, RedisRefreshStore, RedisRevocationStore, RedisSessionStore, ReplicatedRevocationStore,
        ReplicationOptions,
    };
    use std::sync::Arc;
    let options = |prefix: &str| {
        let mut options = RedisOptions::default();
        options.prefix = prefix.to_owned();
        options
    };
    let sessions = RedisSessionStore::connect_with(servers.clone(), options("conformance:"))
        .await
        .expect("sessions");
    portcullis::session::conformance::run(Arc::new(sessions), "suite").await;
    let direct = RedisRevocationStore::connect_with(servers.clone(), options("direct:"))
        .await
        .expect("revocations");
    portcullis::revocation::conformance::run(Arc::new(direct)).await;
    let mut replication = ReplicationOptions::default();
    replication.redis = options("replicated:");
    let replicated = ReplicatedRevocationStore::start(servers.clone(), replication)
        .await
        .expect("replicated revocations");
    portcullis::revocation::conformance::run(Arc::new(replicated)).await;
    let refresh = RedisRefreshStore::connect_with(servers, options("conformance:"))
        .await
        .expect("refresh");
    portcullis::refresh::conformance::run(Arc::new(refresh)).await;
}

fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One command to `127.0.0.1:port`, its answer as text (or the error's).
pub fn query(port: u16, args: &[&str]) -> Result<String, String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).map_err(|e| e.to_string())?;
    let mut connection = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    let value: redis::Value = cmd.query(&mut connection).map_err(|e| e.to_string())?;
    Ok(text(&value))
}

fn text(value: &redis::Value) -> String {
    match value {
        redis::Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        redis::Value::SimpleString(text) | redis::Value::VerbatimString { text, .. } => text.clone(),
        redis::Value::Int(number) => number.to_string(),
        redis::Value::Array(items) | redis::Value::Set(items) => items.iter().map(text).collect::<Vec<_>>().join("\n"),
        other => format!("{other:?}"),
    }
}

/// One `redis-server` process.
#[derive(Debug)]
struct Node {
    port: u16,
    child: Option<Child>,
    args: Vec<String>,
}

impl Node {
    /// A node that must come up: one that exits instead fails loudly.
    fn start(port: u16, args: Vec<String>) -> Self {
        let mut node = Self::stopped(port, args);
        node.respawn();
        node
    }

    /// A node that may find its port taken meanwhile: then its process
    /// exits (and `child` is `None`); the caller checks `is_ours`.
    fn try_start(port: u16, args: Vec<String>) -> Self {
        let mut node = Self::stopped(port, args);
        if !node.spawn() {
            node.kill();
        }
        node
    }

    fn stopped(port: u16, args: Vec<String>) -> Self {
        Self {
            port,
            child: None,
            args,
        }
    }

    /// Starts the process and waits until it listens (`true`) or exits
    /// (`false`: it could not bind its port, or its cluster bus port,
    /// taken since they were checked free).
    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("{SERVER_HINT} ({error})"));
        let child = self.child.insert(child);
        let port = self.port;
        let mut exited = false;
        wait_until(
            &format!("redis on {port} listens or exits"),
            Duration::from_secs(10),
            || {
                exited = matches!(child.try_wait(), Ok(Some(_)));
                exited || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            },
        );
        !exited
    }

    /// Starts the node (again, after a kill) on its port: it must come up.
    fn respawn(&mut self) {
        let port = self.port;
        assert!(self.spawn(), "redis on {port} exited at start (port taken?)");
    }

    /// Whether the server answering on the port is this node: its process
    /// is alive and the server there works in this node's directory.
    fn is_ours(&mut self, cluster_dir: &Path) -> bool {
        let alive = self
            .child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)));
        let expected = cluster_dir.join(self.port.to_string());
        alive
            && query(self.port, &["CONFIG", "GET", "dir"]).is_ok_and(|answer| {
                answer
                    .lines()
                    .nth(1)
                    .is_some_and(|dir| Path::new(dir).canonicalize().ok() == expected.canonicalize().ok())
            })
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running 3-primary, 3-replica Redis Cluster owned by one test.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
}

fn cluster_node_args(port: u16, dir: &Path) -> Vec<String> {
    let node_dir = dir.join(port.to_string());
    std::fs::create_dir_all(&node_dir).expect("node dir");
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        // A killed primary's replica takes over in about 3–4 s (see
        // TESTING-NOTES: without the validity factor a fresh replica may
        // refuse to).
        "--cluster-node-timeout",
        "2000",
        "--cluster-replica-validity-factor",
        "0",
        "--save",
        "",
        "--appendonly",
        "no",
        "--enable-debug-command",
        "local",
        // A replica is in sync at once, not after the default 5 s wait for
        // more replicas to share the transfer (until then WAIT counts 0).
        "--repl-diskless-sync-delay",
        "0",
        "--dir",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .chain([node_dir.display().to_string()])
    .collect()
}

impl RedisCluster {
    /// Starts six empty nodes and joins them into a cluster with one
    /// replica per primary; returns once every node says `cluster_state:ok`
    /// and every primary has its replica.
    pub fn start() -> Self {
        let dir = temp_dir("cluster");
        // A port checked free can be taken before our node binds it (by
        // another test's server on an OS-chosen port): then the port
        // answers, but not with our node. Such a start is detected and
        // retried on fresh ports, a bounded number of times.
        let mut attempt = 0;
        let (ports, nodes) = loop {
            attempt += 1;
            let mut ports: Vec<u16> = Vec::new();
            while ports.len() < 6 {
                let port = free_cluster_port();
                if !ports.contains(&port) {
                    ports.push(port);
                }
            }
            let mut nodes: Vec<Node> = ports
                .iter()
                .map(|&port| Node::try_start(port, cluster_node_args(port, &dir)))
                .collect();
            if nodes.iter_mut().all(|node| node.is_ours(&dir)) {
                break (ports, nodes);
            }
            assert!(
                attempt < 3,
                "three attempts to start six cluster nodes on free ports failed"
            );
        };
        let cluster = Self { nodes, dir };
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in &ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let output = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("{CLI_HINT} ({error})"));
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        cluster.wait_healthy(Duration::from_secs(30));
        cluster
    }

    /// Waits until every running node says `cluster_state:ok`, every slot
    /// is served, and every primary has a replica in sync (`state=online`).
    pub fn wait_healthy(&self, limit: Duration) {
        wait_until("the cluster is healthy", limit, || {
            let running: Vec<u16> = self.running_ports();
            let all_ok = running.iter().all(|&port| {
                query(port, &["CLUSTER", "INFO"])
                    .is_ok_and(|info| info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384"))
            });
            all_ok
                && self.primaries().iter().all(|&port| {
                    query(port, &["INFO", "replication"])
                        .is_ok_and(|info| info.contains("connected_slaves:1") && info.contains("state=online"))
                })
        });
    }

    fn running_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|node| node.child.is_some())
            .map(|node| node.port)
            .collect()
    }

    /// The seed URLs of every node.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}", node.port))
            .collect()
    }

    /// The ports of the running primaries, as the cluster sees them now.
    pub fn primaries(&self) -> Vec<u16> {
        let running = self.running_ports();
        let mut primaries: Vec<u16> = running
            .iter()
            .copied()
            .filter(|&port| query(port, &["ROLE"]).is_ok_and(|role| role.starts_with("master")))
            .collect();
        primaries.sort_unstable();
        primaries
    }

    /// The port of the primary that serves `key`'s slot now.
    pub fn primary_for(&self, key: &str) -> u16 {
        let slot: u16 = self
            .running_ports()
            .iter()
            .find_map(|&port| query(port, &["CLUSTER", "KEYSLOT", key]).ok())
            .and_then(|slot| slot.parse().ok())
            .expect("CLUSTER KEYSLOT");
        self.primary_for_slot(slot)
    }

    /// The port of the primary that serves `slot` now.
    pub fn primary_for_slot(&self, slot: u16) -> u16 {
        for port in self.primaries() {
            let Ok(nodes) = query(port, &["CLUSTER", "NODES"]) else {
                continue;
            };
            for line in nodes.lines() {
                let fields: Vec<&str> = line.split(' ').collect();
                if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                    continue;
                }
                let serves = fields[8..].iter().any(|range| match range.split_once('-') {
                    Some((low, high)) => {
                        low.parse::<u16>().is_ok_and(|low| low <= slot)
                            && high.parse::<u16>().is_ok_and(|high| slot <= high)
                    }
                    None => range.parse::<u16>().is_ok_and(|single| single == slot),
                });
                if serves {
                    let address = fields[1].split('@').next().unwrap_or_default();
                    if let Some(port) = address.rsplit(':').next().and_then(|p| p.parse().ok()) {
                        return port;
                    }
                }
            }
        }
        panic!("no primary serves slot {slot}");
    }

    /// Keys held by each running primary (`DBSIZE`), by port.
    pub fn keys_per_primary(&self) -> BTreeMap<u16, u64> {
        self.primaries()
            .into_iter()
            .map(|port| {
                let size = query(port, &["DBSIZE"]).ok().and_then(|n| n.parse().ok()).unwrap_or(0);
                (port, size)
            })
            .collect()
    }

    /// Calls of each command summed over the running primaries (`INFO
    /// commandstats`), without admin commands and replication traffic.
    pub fn command_calls(&self) -> BTreeMap<String, u64> {
        let mut calls = BTreeMap::new();
        for port in self.primaries() {
            let Ok(info) = query(port, &["INFO", "commandstats"]) else {
                continue;
            };
            for line in info.lines() {
                let Some(line) = line.strip_prefix("cmdstat_") else {
                    continue;
                };
                let Some((name, rest)) = line.split_once(':') else {
                    continue;
                };
                // Admin traffic, and replication's own (replicas acknowledge
                // with REPLCONF).
                if [
                    "info", "config", "cluster", "ping", "role", "dbsize", "command", "hello", "client", "readonly",
                    "replconf", "psync", "sync", "script",
                ]
                .iter()
                .any(|skip| name.starts_with(skip))
                {
                    continue;
                }
                let count: u64 = rest
                    .strip_prefix("calls=")
                    .and_then(|rest| rest.split(',').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                *calls.entry(name.to_owned()).or_insert(0) += count;
            }
        }
        calls
    }

    /// Resets `INFO commandstats` on every running primary.
    pub fn reset_stats(&self) {
        for port in self.primaries() {
            let _ = query(port, &["CONFIG", "RESETSTAT"]);
        }
    }

    /// Kills the node on `port` (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        for node in &mut self.nodes {
            if node.port == port {
                node.kill();
            }
        }
    }

    /// Starts the killed node on `port` again; it rejoins as a replica.
    pub fn restart(&mut self, port: u16) {
        for node in &mut self.nodes {
            if node.port == port && node.child.is_none() {
                node.respawn();
            }
        }
    }

    /// Waits until `port` is no longer a primary and every slot is served
    /// again (a replica was promoted).
    pub fn wait_failover_from(&self, port: u16, limit: Duration) {
        wait_until("a replica is promoted", limit, || {
            let running = self.running_ports();
            !self.primaries().contains(&port)
                && self.primaries().len() == 3
                && running.iter().all(|&p| {
                    query(p, &["CLUSTER", "INFO"])
                        .is_ok_and(|info| info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384"))
                })
        });
    }

    /// Moves `count` slots from the primary on `from` to the one on `to`
    /// (`redis-cli --cluster reshard`), while clients keep working.
    pub fn reshard(&self, from: u16, to: u16, count: u32) {
        let id = |port: u16| query(port, &["CLUSTER", "MYID"]).expect("CLUSTER MYID");
        let output = Command::new("redis-cli")
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
            .args(["--cluster-from", &id(from), "--cluster-to", &id(to)])
            .args(["--cluster-slots", &count.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("{CLI_HINT} ({error})"));
        assert!(
            output.status.success(),
            "redis-cli --cluster reshard failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A primary, its replica and three Sentinels watching it as
/// [`RedisSentinel::MASTER`].
#[derive(Debug)]
pub struct RedisSentinel {
    servers: Vec<Node>,
    sentinels: Vec<Node>,
    dir: PathBuf,
}

impl RedisSentinel {
    /// The monitored primary's name.
    pub const MASTER: &'static str = "portcullis";

    /// Starts the setup and returns once every Sentinel knows the primary,
    /// its replica and the other two Sentinels.
    pub fn start() -> Self {
        let dir = temp_dir("sentinel");
        let (primary, replica) = (crate::free_port(), crate::free_port());
        let server_args = |port: u16, replica_of: Option<u16>| {
            let node_dir = dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let mut args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--enable-debug-command",
                "local",
                "--repl-diskless-sync-delay",
                "0",
            ]
            .iter()
            .map(|arg| (*arg).to_owned())
            .collect();
            args.extend(["--dir".to_owned(), node_dir.display().to_string()]);
            if let Some(of) = replica_of {
                args.extend(["--replicaof".to_owned(), "127.0.0.1".to_owned(), of.to_string()]);
            }
            args
        };
        let servers = vec![
            Node::start(primary, server_args(primary, None)),
            Node::start(replica, server_args(replica, Some(primary))),
        ];
        wait_until("the replica syncs", Duration::from_secs(15), || {
            query(primary, &["INFO", "replication"])
                .is_ok_and(|info| info.contains("connected_slaves:1") && info.contains("state=online"))
        });
        let sentinels = (0..3)
            .map(|_| {
                let port = crate::free_port();
                let conf = dir.join(format!("sentinel-{port}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                         sentinel monitor {master} 127.0.0.1 {primary} 2\n\
                         sentinel down-after-milliseconds {master} 1000\n\
                         sentinel failover-timeout {master} 5000\n\
                         sentinel parallel-syncs {master} 1\n",
                        dir = dir.display(),
                        master = Self::MASTER,
                    ),
                )
                .expect("sentinel.conf");
                Node::start(port, vec![conf.display().to_string(), "--sentinel".to_owned()])
            })
            .collect();
        let setup = Self {
            servers,
            sentinels,
            dir,
        };
        setup.wait_settled(Duration::from_secs(30));
        setup
    }

    fn wait_settled(&self, limit: Duration) {
        wait_until(
            "every Sentinel knows the primary, its replica and the others",
            limit,
            || {
                self.sentinels.iter().filter(|s| s.child.is_some()).all(|sentinel| {
                    query(sentinel.port, &["SENTINEL", "MASTER", Self::MASTER]).is_ok_and(|info| {
                        let fields: Vec<&str> = info.lines().collect();
                        let field = |name: &str| {
                            fields
                                .iter()
                                .position(|f| *f == name)
                                .and_then(|i| fields.get(i + 1))
                                .copied()
                                .unwrap_or_default()
                        };
                        field("num-slaves") == "1"
                            && field("num-other-sentinels") == "2"
                            && !field("flags").contains("down")
                    })
                })
            },
        );
    }

    /// The Sentinels' URLs.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}", node.port))
            .collect()
    }

    /// The port of the primary the Sentinels name now.
    pub fn primary(&self) -> u16 {
        self.sentinels
            .iter()
            .filter(|s| s.child.is_some())
            .find_map(|sentinel| {
                let answer = query(sentinel.port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", Self::MASTER]).ok()?;
                answer.lines().nth(1)?.parse().ok()
            })
            .expect("a Sentinel names the primary")
    }

    /// Kills the primary (SIGKILL) and returns its port.
    pub fn kill_primary(&mut self) -> u16 {
        let primary = self.primary();
        for node in &mut self.servers {
            if node.port == primary {
                node.kill();
            }
        }
        primary
    }

    /// Starts the killed server on `port` again; the Sentinels make it a
    /// replica of the new primary.
    pub fn restart(&mut self, port: u16) {
        for node in &mut self.servers {
            if node.port == port && node.child.is_none() {
                node.respawn();
            }
        }
    }

    /// Waits until the Sentinels name a primary other than `old` and it
    /// answers as one.
    pub fn wait_failover_from(&self, old: u16, limit: Duration) -> u16 {
        let mut promoted = 0;
        wait_until("the Sentinels promote the replica", limit, || {
            promoted = self.primary();
            promoted != old && query(promoted, &["ROLE"]).is_ok_and(|role| role.starts_with("master"))
        });
        promoted
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        self.sentinels.clear();
        self.servers.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_that_cannot_bind_its_bus_port_is_seen_to_exit_at_once() {
        // What a CI run met: the bus port taken between the check and the
        // bind. The node must be seen to exit (then a fresh port pair is
        // drawn), not waited on for ten seconds and failed.
        let port = free_cluster_port();
        let dir = temp_dir("bus-taken");
        let _taken = TcpListener::bind(("127.0.0.1", port + 10_000)).expect("the bus port");
        let started = Instant::now();
        let mut node = Node::try_start(port, cluster_node_args(port, &dir));
        assert!(node.child.is_none(), "the node on {port} exited");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "seen at once: {:?}",
            started.elapsed()
        );
        assert!(!node.is_ours(&dir));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cluster_ports_and_their_bus_ports_stay_below_the_ephemeral_range() {
        let floor = ephemeral_floor();
        for _ in 0..20 {
            let port = free_cluster_port();
            assert!(port >= 10_000, "{port}");
            if floor > 22_000 {
                assert!(port + 10_000 < floor, "{port} + 10000 below {floor}");
            }
        }
    }
}
