//! What every Redis store shares: where it connects (one node, a Cluster,
//! or a Sentinel-watched primary), its options, the reconnecting
//! connection, and how a script is called.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

#[cfg(any(feature = "sessions", feature = "refresh", test))]
use portcullis_core::Route;
use portcullis_core::{StoreError, StoreKind};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, Script, Value};

/// Where the Redis stores connect.
///
/// Every store keeps the same guarantees on each: its multi-key changes
/// are single Lua scripts whose keys share one hash slot (see the crate
/// docs for the layout), so they are atomic on a Cluster too.
///
/// ```
/// use portcullis_redis::RedisServers;
///
/// let single = RedisServers::single("redis://127.0.0.1:6379");
/// let cluster = RedisServers::cluster(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]);
/// let sentinel = RedisServers::sentinel(["redis://127.0.0.1:26379"], "portcullis");
/// // Debug output names the topology, never an address or a password.
/// assert_eq!(format!("{cluster:?}"), "RedisServers::Cluster(2 seed nodes)");
/// assert_ne!(single, sentinel);
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisServers {
    /// One Redis (`redis://…` or `rediss://…`), perhaps a primary with
    /// replicas that nobody fails over automatically.
    Single(String),
    /// A Redis Cluster, found from these seed nodes. `MOVED`/`ASK`
    /// redirections, slot migrations and failovers are followed.
    Cluster(Vec<String>),
    /// The primary that these Sentinels name `master`, followed across
    /// failovers.
    Sentinel {
        /// Sentinel addresses (`redis://host:26379`).
        sentinels: Vec<String>,
        /// The monitored primary's name (`sentinel monitor NAME …`).
        master: String,
    },
}

impl RedisServers {
    /// One Redis at `url`.
    pub fn single(url: impl Into<String>) -> Self {
        Self::Single(url.into())
    }

    /// A Cluster, from its seed nodes.
    pub fn cluster<I, S>(seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::Cluster(seeds.into_iter().map(Into::into).collect())
    }

    /// The primary `master` of these Sentinels.
    pub fn sentinel<I, S>(sentinels: I, master: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::Sentinel {
            sentinels: sentinels.into_iter().map(Into::into).collect(),
            master: master.into(),
        }
    }
}

impl fmt::Debug for RedisServers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // URLs may carry passwords: only the shape is printed.
        match self {
            Self::Single(_) => write!(f, "RedisServers::Single"),
            Self::Cluster(seeds) => write!(f, "RedisServers::Cluster({} seed nodes)", seeds.len()),
            Self::Sentinel { sentinels, .. } => write!(f, "RedisServers::Sentinel({} sentinels)", sentinels.len()),
        }
    }
}

impl From<&str> for RedisServers {
    fn from(url: &str) -> Self {
        Self::single(url)
    }
}

impl From<&String> for RedisServers {
    fn from(url: &String) -> Self {
        Self::single(url.as_str())
    }
}

impl From<String> for RedisServers {
    fn from(url: String) -> Self {
        Self::Single(url)
    }
}

/// Replication acknowledgements a durable write waits for (`WAIT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaAcks {
    /// How many replicas must have the write.
    pub replicas: u32,
    /// How long to wait for them; past it the write is reported as a
    /// store outage (a 503), though the primary has it. Keep it below
    /// [`RedisOptions::response_timeout`]: the wait is part of the write's
    /// command.
    pub timeout: Duration,
}

/// Connection options of the Redis stores.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Prefix of every key the store writes (default `portcullis:`). It
    /// becomes part of a hash tag, so it must not contain `{` or `}`.
    pub prefix: String,
    /// How long a command may take before the request gets a 503
    /// (default 1 s).
    pub response_timeout: Duration,
    /// How long a (re)connection attempt may take (default 1 s).
    pub connection_timeout: Duration,
    /// Replicas a durable write waits for (default none). Durable writes
    /// are the ones a failover must not undo: a session created or
    /// rotated (a login), a session ended (a logout, "log out everywhere"),
    /// a refresh family created, spent or revoked, and a revocation. Data
    /// writes and idle refreshes never wait. Set it where replicas exist
    /// (a Cluster with replicas, a Sentinel setup); on a lone node every
    /// durable write would time out.
    pub replica_acks: Option<ReplicaAcks>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "portcullis:".into(),
            response_timeout: Duration::from_secs(1),
            connection_timeout: Duration::from_secs(1),
            replica_acks: None,
        }
    }
}

impl RedisOptions {
    /// The hash tag of `route`'s keys: `{prefix + route}`. Everything of
    /// one principal shares it, so lives in one slot.
    #[cfg(any(feature = "sessions", feature = "refresh", test))]
    pub(crate) fn tag(&self, route: Route) -> String {
        format!("{{{}{route}}}", self.prefix)
    }

    /// The hash tag of state that is one for everybody (the revocation
    /// denylist and its feed): `{prefix + name}`.
    #[cfg(any(feature = "revocation", test))]
    pub(crate) fn shared_tag(&self, name: &str) -> String {
        format!("{{{}{name}}}", self.prefix)
    }
}

/// A connection to wherever the store lives, reconnecting by itself.
///
/// With [`RedisOptions::replica_acks`], durable writes travel on a lane of
/// their own: `WAIT` blocks the connection it is sent on until the
/// replicas answer (up to its timeout), and on a multiplexed connection
/// every read queued behind it would wait too — while a failover leaves
/// the new primary without replicas, that stalls reads for seconds.
#[derive(Clone)]
pub(crate) struct Connection {
    shared: Lane,
    durable: Option<Lane>,
}

impl Connection {
    fn new(shared: Lane) -> Self {
        Self { shared, durable: None }
    }

    /// The connection durable writes (a script followed by `WAIT`) use.
    fn for_durable_writes(&self) -> Self {
        match &self.durable {
            Some(lane) => Self::new(lane.clone()),
            None => self.clone(),
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.shared.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.shared.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.shared.get_db()
    }
}

/// One reconnecting connection, of the servers' kind.
#[derive(Clone)]
enum Lane {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(SentinelConnection),
}

impl ConnectionLike for Lane {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
            Self::Sentinel(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
            Self::Sentinel(connection) => connection.get_db(),
        }
    }
}

/// A reconnecting connection to the same servers the stores use, for an
/// application's own data and health checks (any `redis` command; a
/// command's keys must share a slot on a Cluster, as always).
///
/// ```no_run
/// use portcullis_redis::{RedisConnection, RedisOptions, RedisServers};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let servers = RedisServers::cluster(["redis://127.0.0.1:7000"]);
/// let mut connection = RedisConnection::connect(&servers, &RedisOptions::default()).await?;
/// let pong: String = redis::cmd("PING").query_async(&mut connection).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisConnection(Connection);

impl RedisConnection {
    /// Connects to `servers` with the options' timeouts; fails if they
    /// cannot be reached now.
    pub async fn connect(servers: &RedisServers, options: &RedisOptions) -> Result<Self, StoreError> {
        connect(servers, options, StoreKind::Session, None).await.map(Self)
    }
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedisConnection")
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// The primary a Sentinel set names, reconnected after a failover: a
/// dropped connection, a timeout or a `READONLY` answer (the old primary,
/// now a replica) fails that one command (a 503) and makes the next one
/// ask the Sentinels again.
#[derive(Clone)]
pub(crate) struct SentinelConnection {
    shared: Arc<SentinelShared>,
}

struct SentinelShared {
    client: tokio::sync::Mutex<SentinelClient>,
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    /// Numbers each connection made, never reused: an error seen on an old
    /// connection must not drop a newer one.
    connections_made: std::sync::atomic::AtomicU64,
    config: AsyncConnectionConfig,
    connection_timeout: Duration,
}

impl SentinelConnection {
    async fn open(
        sentinels: &[String],
        master: &str,
        config: AsyncConnectionConfig,
        connection_timeout: Duration,
    ) -> Result<Self, RedisError> {
        let client = SentinelClient::build(
            sentinels.iter().map(String::as_str).collect(),
            master.to_owned(),
            None,
            SentinelServerType::Master,
        )?;
        let connection = Self {
            shared: Arc::new(SentinelShared {
                client: tokio::sync::Mutex::new(client),
                current: Mutex::new(None),
                connections_made: std::sync::atomic::AtomicU64::new(0),
                config,
                connection_timeout,
            }),
        };
        connection.current().await?;
        Ok(connection)
    }

    /// The live connection, asking the Sentinels for the primary first if
    /// there is none (one request asks; the others wait for its answer).
    async fn current(&self) -> Result<(u64, MultiplexedConnection), RedisError> {
        if let Some(live) = self.lock().clone() {
            return Ok(live);
        }
        let mut client = self.shared.client.lock().await;
        if let Some(live) = self.lock().clone() {
            return Ok(live);
        }
        let resolve = async {
            let primary = client.async_get_client().await?;
            primary
                .get_multiplexed_async_connection_with_config(&self.shared.config)
                .await
        };
        let connection = tokio::time::timeout(self.shared.connection_timeout * 2, resolve)
            .await
            .map_err(|_| RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
        let generation = self
            .shared
            .connections_made
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *self.lock() = Some((generation, connection.clone()));
        Ok((generation, connection))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(u64, MultiplexedConnection)>> {
        self.shared.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops `generation`'s connection after an error that may mean the
    /// primary moved.
    fn observe(&self, generation: u64, error: &RedisError) {
        let moved = error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.to_string().contains("READONLY");
        if moved {
            let mut current = self.lock();
            if current.as_ref().is_some_and(|(live, _)| *live == generation) {
                *current = None;
            }
        }
    }
}

impl ConnectionLike for SentinelConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut connection) = self.current().await?;
            let answer = connection.req_packed_command(cmd).await;
            if let Err(error) = &answer {
                self.observe(generation, error);
            }
            answer
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut connection) = self.current().await?;
            let answer = connection.req_packed_commands(pipeline, offset, count).await;
            if let Err(error) = &answer {
                self.observe(generation, error);
            }
            answer
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// The one way every store connects: a reconnecting connection with the
/// options' timeouts (`response_timeout` overrides the options' one, for
/// the revocation feed's blocking reads). While Redis is down, commands
/// fail fast (a 503) and the connection recovers in the background. A
/// failure to connect now is `store`'s `Unavailable` error.
pub(crate) async fn connect(
    servers: &RedisServers,
    options: &RedisOptions,
    store: StoreKind,
    response_timeout: Option<Duration>,
) -> Result<Connection, StoreError> {
    if options.prefix.contains(['{', '}']) {
        return Err(StoreError::unavailable(
            store,
            "the key prefix must not contain `{` or `}` (it is part of a hash tag)",
        ));
    }
    if options
        .replica_acks
        .is_some_and(|acks| acks.timeout >= options.response_timeout || acks.replicas == 0)
    {
        return Err(StoreError::unavailable(
            store,
            "replica_acks needs at least one replica and a timeout below response_timeout",
        ));
    }
    let shared = connect_lane(servers, options, store, response_timeout).await?;
    let durable = match options.replica_acks {
        Some(_) => Some(connect_lane(servers, options, store, response_timeout).await?),
        None => None,
    };
    Ok(Connection { shared, durable })
}

async fn connect_lane(
    servers: &RedisServers,
    options: &RedisOptions,
    store: StoreKind,
    response_timeout: Option<Duration>,
) -> Result<Lane, StoreError> {
    let unavailable = |error: RedisError| StoreError::unavailable(store, error);
    let response_timeout = response_timeout.unwrap_or(options.response_timeout);
    match servers {
        RedisServers::Single(url) => {
            let client = redis::Client::open(url.as_str()).map_err(unavailable)?;
            let config = ConnectionManagerConfig::new()
                .set_response_timeout(Some(response_timeout))
                .set_connection_timeout(Some(options.connection_timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            ConnectionManager::new_with_config(client, config)
                .await
                .map(Lane::Single)
                .map_err(unavailable)
        }
        RedisServers::Cluster(seeds) => {
            let client = ClusterClient::builder(seeds.iter().map(String::as_str))
                .connection_timeout(options.connection_timeout)
                .response_timeout(response_timeout)
                // Redirections and a reconnect fit in twice the command
                // timeout; past it the request gets its 503.
                .overall_response_timeout(Some(response_timeout * 2))
                .retries(3)
                .min_retry_wait(20)
                .max_retry_wait(200)
                .build()
                .map_err(unavailable)?;
            let connect = client.get_async_connection();
            tokio::time::timeout(options.connection_timeout * 3, connect)
                .await
                .map_err(|_| StoreError::unavailable(store, "timed out connecting to the cluster"))?
                .map(Lane::Cluster)
                .map_err(unavailable)
        }
        RedisServers::Sentinel { sentinels, master } => {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(options.connection_timeout))
                .set_response_timeout(Some(response_timeout));
            SentinelConnection::open(sentinels, master, config, options.connection_timeout)
                .await
                .map(Lane::Sentinel)
                .map_err(unavailable)
        }
    }
}

/// A Lua script: its source, and the SHA-1 it is called by.
#[cfg_attr(
    not(any(feature = "sessions", feature = "revocation", feature = "refresh")),
    allow(dead_code)
)]
pub(crate) struct Lua {
    source: &'static str,
    hash: String,
}

#[cfg_attr(
    not(any(feature = "sessions", feature = "revocation", feature = "refresh")),
    allow(dead_code)
)]
impl Lua {
    pub(crate) fn new(source: &'static str) -> Self {
        Self {
            source,
            hash: Script::new(source).get_hash().to_owned(),
        }
    }
}

/// One script call: its keys (every key it touches, all in one slot) and
/// arguments.
#[cfg_attr(
    not(any(feature = "sessions", feature = "revocation", feature = "refresh")),
    allow(dead_code)
)]
pub(crate) struct Call {
    script: &'static Lua,
    keys: Vec<String>,
    args: Vec<String>,
}

#[cfg_attr(
    not(any(feature = "sessions", feature = "revocation", feature = "refresh")),
    allow(dead_code)
)]
impl Call {
    pub(crate) fn new(script: &'static Lua) -> Self {
        Self {
            script,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }

    pub(crate) fn key(mut self, key: impl Into<String>) -> Self {
        self.keys.push(key.into());
        self
    }

    pub(crate) fn arg(mut self, arg: impl ToString) -> Self {
        self.args.push(arg.to_string());
        self
    }

    #[cfg_attr(not(any(feature = "sessions", feature = "refresh")), allow(dead_code))]
    pub(crate) fn args<I: IntoIterator<Item = S>, S: ToString>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(|arg| arg.to_string()));
        self
    }

    fn command(&self, by_hash: bool) -> Cmd {
        let mut cmd = if by_hash {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(&self.script.hash);
            cmd
        } else {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(self.script.source);
            cmd
        };
        cmd.arg(self.keys.len()).arg(&self.keys).arg(&self.args);
        cmd
    }

    /// Runs the script (by hash; by source after `NOSCRIPT`, which also
    /// loads it: a node that restarted or was promoted has an empty
    /// script cache).
    pub(crate) async fn run<T: FromRedisValue>(&self, connection: &mut Connection) -> Result<T, RedisError> {
        match self.command(true).query_async(connection).await {
            Err(error) if is_no_script(&error) => self.command(false).query_async(connection).await,
            answer => answer,
        }
    }

    /// Runs the script, then, when `acks` asks for it, waits until that
    /// many replicas have the write (`WAIT`, pipelined after the script
    /// so both go to the node of the script's slot). Too few in time is
    /// an error: the write is not yet durable.
    pub(crate) async fn run_durable<T: FromRedisValue>(
        &self,
        connection: &mut Connection,
        acks: Option<ReplicaAcks>,
    ) -> Result<T, RedisError> {
        let Some(acks) = acks else {
            return self.run(connection).await;
        };
        let pipeline = |by_hash: bool| {
            let mut pipeline = redis::pipe();
            pipeline
                .add_command(self.command(by_hash))
                .cmd("WAIT")
                .arg(acks.replicas)
                .arg(u64::try_from(acks.timeout.as_millis()).unwrap_or(u64::MAX).max(1));
            pipeline
        };
        let connection = &mut connection.for_durable_writes();
        let answer: Result<(T, u32), RedisError> = match pipeline(true).query_async(connection).await {
            Err(error) if is_no_script(&error) => pipeline(false).query_async(connection).await,
            answer => answer,
        };
        let (value, acknowledged) = answer?;
        if acknowledged < acks.replicas {
            return Err(RedisError::from((
                redis::ErrorKind::Io,
                "write not acknowledged by enough replicas in time",
            )));
        }
        Ok(value)
    }
}

#[cfg_attr(
    not(any(feature = "sessions", feature = "revocation", feature = "refresh")),
    allow(dead_code)
)]
fn is_no_script(error: &RedisError) -> bool {
    error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) || error.to_string().contains("NOSCRIPT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_put_the_prefix_and_route_in_one_hash_tag() {
        let options = RedisOptions::default();
        let route = Route::parse("1a2b").expect("route");
        assert_eq!(options.tag(route), "{portcullis:1a2b}");
        assert_eq!(options.shared_tag("rev"), "{portcullis:rev}");
    }

    #[tokio::test]
    async fn a_prefix_that_would_break_the_hash_tag_is_refused() {
        let options = RedisOptions {
            prefix: "app{1}:".into(),
            ..RedisOptions::default()
        };
        let error = connect(
            &RedisServers::single("redis://127.0.0.1:1"),
            &options,
            StoreKind::Session,
            None,
        )
        .await
        .err()
        .expect("refused");
        assert!(error.to_string().contains("must not contain"), "{error}");
    }

    #[tokio::test]
    async fn a_replica_wait_longer_than_the_command_timeout_is_refused() {
        let options = RedisOptions {
            replica_acks: Some(ReplicaAcks {
                replicas: 1,
                timeout: Duration::from_secs(1),
            }),
            ..RedisOptions::default()
        };
        let error = connect(
            &RedisServers::single("redis://127.0.0.1:1"),
            &options,
            StoreKind::Session,
            None,
        )
        .await
        .err()
        .expect("refused");
        assert!(error.to_string().contains("below response_timeout"), "{error}");
    }
}
