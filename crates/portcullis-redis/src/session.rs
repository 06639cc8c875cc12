use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{Principal, Route};
use portcullis_session::{
    Changes, SessionKey, SessionRecord, SessionStore, StoreError, StoreFuture, StoreKind, provider_session_key,
};
use redis::Value;

use crate::connection::{Call, Connection, Lua, RedisOptions, RedisServers, connect};
use crate::session_feed::{CachedReads, Feed, SessionCacheOptions, channel};
use portcullis_session::{CacheStats, SessionCache};

/// Sessions in Redis — one node, a Cluster or a Sentinel-watched primary
/// ([`RedisServers`]) — keyed by the session key (a keyed hash of the id,
/// never the id).
///
/// Layout: everything of one principal lives under the hash tag
/// `{prefix + route}` ([`SessionKey::route`], which the layer sets to the
/// principal's [`Route`]), so on a Cluster it shares one slot and every
/// change is one atomic script:
///
/// - `{tag}s:{key}` — a hash with the metadata fields (`_principal`,
///   `_scopes`, `_created`, `_idle`, `_absolute`, `_seen`, `_ua`, `_gen`)
///   and one `d:{name}` field per value, so writes to different keys never
///   overwrite each other. A rotated-away key holds only `_moved_to` for
///   its grace period.
/// - `{tag}idx` — the index of the route's logged-in sessions: one field
///   per session, its key followed by its principal's canonical
///   [`Principal::key`] (never the subject alone: another issuer's `alice`
///   is someone else), valued with the absolute deadline so stale entries
///   are swept as new sessions arrive.
/// - `{tag}gen` — per principal, the "log out everywhere" generation: a
///   session made before its principal's current generation is dead on
///   load, even one that fell out of the index (an eviction, a lost write).
/// - `{tag'}ps:{provider session key}` — the principals logged in through
///   one identity-provider session ([`provider_session_key`]; `tag'` is
///   the route of that key, so it is found from `(issuer, sid)` alone): a
///   set, kept until the last such session's absolute deadline. The
///   sessions themselves carry the provider session in `_psid`, so a
///   provider's logout ends exactly those, under whatever key a rotation
///   moved them to.
///
/// A read costs one round trip (two while a grace alias points across
/// routes). Every key a script touches is passed in `KEYS`; a rotation
/// from one route to another (an anonymous session logging in) is two
/// scripts, ordered so that a logout meanwhile stays final: the new record
/// is written first, under an id nobody holds yet, and removed again if the
/// old one turns out to have ended.
///
/// # The local cache
///
/// [`connect_cached`](RedisSessionStore::connect_cached) puts a bounded
/// local cache in front (opt in): a read is served from this node's memory
/// when it holds a current copy, so the common request costs no round
/// trip. Every write script announces what it changed on a pub/sub
/// channel (`{prefix}session-changes`), and each caching node drops its
/// copy on hearing it — a logout, a rotation or a write on any node
/// reaches every other node's cache within the feed's delay. The node
/// also hears its own heartbeat on that channel; when the feed is lost or
/// falls silent past [`CacheOptions::max_staleness`](portcullis_session::CacheOptions::max_staleness),
/// the cache is bypassed (every read goes to Redis) until the node has
/// subscribed again and emptied it. Writes always go to Redis first.
#[derive(Clone)]
pub struct RedisSessionStore {
    connection: Connection,
    options: Arc<RedisOptions>,
    cached: Option<Arc<CachedReads>>,
}

impl fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSessionStore")
            .field("prefix", &self.options.prefix)
            .finish_non_exhaustive()
    }
}

/// Publishing a change on the session cache's feed (see
/// `session_feed.rs`): `changed(key)` names a session key that changed,
/// on the channel `{prefix}session-changes` (the prefix read back from the
/// key's hash tag, `{prefix + route}`, the route being 4 hex digits).
/// Published by the script that makes the change, so no change goes
/// unannounced; `PUBLISH` names no key, and reaches every node of a
/// Cluster.
macro_rules! publish {
    () => {
        r"
local function channel(key)
  local tag = string.match(key, '^{(.-)}')
  return string.sub(tag, 1, -5) .. 'session-changes'
end
local function changed(key)
  redis.call('PUBLISH', channel(key), key)
end
"
    };
}

/// The Lua functions the scripts share. `live(key, gen)` is the record
/// under `key` if it is live (created, and of its principal's current
/// generation); `create` writes and indexes a record; `retire` removes a
/// live record (and its index entry), leaving grace aliases if asked.
macro_rules! functions {
    () => {
        concat!(
            publish!(),
            r"
local function live(key, gen)
  local f = redis.call('HMGET', key, '_created', '_principal', '_gen')
  if not f[1] then return false end
  if f[2] then
    local current = redis.call('HGET', gen, f[2])
    if current and tonumber(current) > tonumber(f[3] or '0') then return false end
  end
  return true, f[2]
end
local function create(key, idx, gen, ttl, member, deadline, principal, first)
  redis.call('DEL', key)
  redis.call('HSET', key, unpack(ARGV, first))
  if principal ~= '' then
    redis.call('HSET', key, '_gen', redis.call('HGET', gen, principal) or '0')
    redis.call('HSET', idx, member .. principal, deadline)
    local keep = tonumber(deadline) - tonumber(ARGV[1])
    for _, k in ipairs({idx, gen}) do
      if redis.call('PTTL', k) < keep then redis.call('PEXPIRE', k, string.format('%.0f', keep)) end
    end
    -- Sweep a few index entries whose sessions reached their deadline.
    local sample = redis.call('HRANDFIELD', idx, 3, 'WITHVALUES')
    for i = 1, #sample, 2 do
      if tonumber(sample[i + 1]) <= tonumber(ARGV[1]) then redis.call('HDEL', idx, sample[i]) end
    end
  end
  redis.call('PEXPIRE', key, ttl)
end
"
        )
    };
}

// Every script: ARGV[1] = now (ms).

// KEYS = session, gen; ARGV = now, with ttl ('1': append `_pttl`, for a
// caching store). A record, nothing (`{}`), or `{'@moved', member}`. One
// HGETALL, and one HGET of the generation for a logged-in session.
const LOAD: &str = r"
local h = redis.call('HGETALL', KEYS[1])
local principal, gen
for i = 1, #h, 2 do
  local name = h[i]
  if name == '_moved_to' then return {'@moved', h[i + 1]}
  elseif name == '_principal' then principal = h[i + 1]
  elseif name == '_gen' then gen = h[i + 1] end
end
if principal then
  local current = redis.call('HGET', KEYS[2], principal)
  if current and tonumber(current) > tonumber(gen or '0') then return {} end
end
if #h > 0 and ARGV[2] == '1' then
  -- For a caching node: how long Redis keeps it (its copy lives no longer).
  table.insert(h, '_pttl'); table.insert(h, tostring(redis.call('PTTL', KEYS[1])))
end
return h";

// KEYS = session, idx, gen; ARGV = now, ttl, member, deadline, principal, pairs…
const CREATE: &str = concat!(
    functions!(),
    "create(KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[3], ARGV[4], ARGV[5], 6)\nreturn 1"
);

// KEYS = session, gen; ARGV = now, nset, (name, value)*, nremove, name*, touch, idle, seen, ttl
const UPDATE: &str = concat!(
    functions!(),
    r"
local moved = redis.call('HGET', KEYS[1], '_moved_to')
if moved then return {'@moved', moved} end
if not live(KEYS[1], KEYS[2]) then return 0 end
local i = 2
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HSET', KEYS[1], 'd:' .. ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HDEL', KEYS[1], 'd:' .. ARGV[i]); i = i + 1 end
if ARGV[i] == '1' then
  redis.call('HSET', KEYS[1], '_idle', ARGV[i + 1], '_seen', ARGV[i + 2])
  redis.call('PEXPIRE', KEYS[1], ARGV[i + 3])
end
changed(KEYS[1])
return 1"
);

// Removes the live record KEYS[2] that KEYS[1] resolves to (itself, or
// through the alias the caller found: ARGV[2] names it, '' for none),
// with grace aliases to ARGV[5] for ARGV[4] ms ('' for none). 0 when
// there is no live record (a logout meanwhile: nothing is written);
// `{'@moved', member}` when the alias is not the one the caller declared.
macro_rules! retire {
    () => {
        r"
local function retire(old, target, idx, gen, expected, target_member, grace, new_member)
  local moved = redis.call('HGET', old, '_moved_to')
  if (moved or '') ~= expected then return {'@moved', moved or ''} end
  local ok, principal = live(target, gen)
  if not ok then return 0 end
  if principal then redis.call('HDEL', idx, target_member .. principal) end
  redis.call('DEL', target)
  redis.call('DEL', old)
  changed(target)
  if old ~= target then changed(old) end
  if grace ~= '' then
    for _, k in ipairs({target, old}) do
      redis.call('HSET', k, '_moved_to', new_member)
      redis.call('PEXPIRE', k, grace)
    end
  end
  return 1
end
"
    };
}

// KEYS = old, target, idx, gen; ARGV = now, expected alias, target member, grace, new member
const RETIRE: &str = concat!(
    functions!(),
    retire!(),
    "return retire(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[2], ARGV[3], ARGV[4], ARGV[5])"
);

// Rotation within one route: retire and create in one step.
// KEYS = old, target, new, idx, gen;
// ARGV = now, expected alias, target member, grace, new member, ttl, deadline, principal, pairs…
const ROTATE: &str = concat!(
    functions!(),
    retire!(),
    r"
local retired = retire(KEYS[1], KEYS[2], KEYS[4], KEYS[5], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
if retired ~= 1 then return retired end
create(KEYS[3], KEYS[4], KEYS[5], ARGV[6], ARGV[5], ARGV[7], ARGV[8], 9)
return 1"
);

// Re-keying (a session found under a previous secret): the record as it
// is, moved with its TTL (RENAME keeps it) and its index entry, then a
// grace alias at the old key for ARGV[4] ms ('' for none). 0 when the old
// key holds no live record of its own or the new one is taken.
// KEYS = old, new, idx, gen; ARGV = now, old member, new member, grace
const REKEY: &str = concat!(
    functions!(),
    r"
if redis.call('HGET', KEYS[1], '_moved_to') then return 0 end
local ok, principal = live(KEYS[1], KEYS[4])
if not ok then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local keep = redis.call('PTTL', KEYS[1])
redis.call('RENAME', KEYS[1], KEYS[2])
changed(KEYS[1])
if principal then
  local deadline = redis.call('HGET', KEYS[3], ARGV[2] .. principal) or redis.call('HGET', KEYS[2], '_absolute')
  redis.call('HDEL', KEYS[3], ARGV[2] .. principal)
  redis.call('HSET', KEYS[3], ARGV[3] .. principal, deadline)
end
if ARGV[4] ~= '' and keep > 0 then
  redis.call('HSET', KEYS[1], '_moved_to', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.min(tonumber(ARGV[4]), keep))
end
return 1"
);

// KEYS = session, idx; ARGV = now, member, follow ('1': report an alias
// instead of deleting it)
const DELETE: &str = concat!(
    publish!(),
    r"
local moved = redis.call('HGET', KEYS[1], '_moved_to')
if moved and ARGV[3] == '1' then return {'@moved', moved} end
local principal = redis.call('HGET', KEYS[1], '_principal')
if principal then redis.call('HDEL', KEYS[2], ARGV[2] .. principal) end
changed(KEYS[1])
return redis.call('DEL', KEYS[1])"
);

// KEYS = idx; ARGV = now, principal. The members of the principal's
// sessions in the index.
const MEMBERS: &str = r"
local out = {}
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 65) == ARGV[2] then table.insert(out, string.sub(field, 1, 64)) end
end
return out";

// KEYS = idx, gen, session*; ARGV = now, principal, end ('1' to delete),
// member*. Each session's record (`{}` when gone; its index entry is
// dropped), or with end = '1' the number of live sessions deleted, after
// which the principal moves to a new generation: every older session of
// theirs, listed here or not (created meanwhile, or fallen out of the
// index), is dead on load.
const SESSIONS: &str = concat!(
    functions!(),
    r"
local out, ended = {}, 0
for i = 3, #KEYS do
  local member = ARGV[i + 1]
  local ok, principal = live(KEYS[i], KEYS[2])
  if ok and principal == ARGV[2] then
    if ARGV[3] == '1' then
      redis.call('DEL', KEYS[i]); ended = ended + 1
      redis.call('HDEL', KEYS[1], member .. ARGV[2])
      changed(KEYS[i])
    else
      table.insert(out, member); table.insert(out, redis.call('HGETALL', KEYS[i]))
    end
  else
    redis.call('HDEL', KEYS[1], member .. ARGV[2])
  end
end
if ARGV[3] == '1' then
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  -- Sessions of the principal outside the index die by generation: every
  -- node drops all it holds of theirs.
  redis.call('PUBLISH', channel(KEYS[1]), 'p:' .. ARGV[2])
  local keep = redis.call('PTTL', KEYS[1])
  if keep > 0 and redis.call('PTTL', KEYS[2]) < keep then redis.call('PEXPIRE', KEYS[2], keep) end
  return ended
end
return out"
);

// KEYS = idx, gen, session*; ARGV = now, principal, provider session,
// member*. Deletes each listed live session of the principal that names
// the provider session; the number deleted.
const PROVIDER_SESSIONS: &str = concat!(
    functions!(),
    r"
local ended = 0
for i = 3, #KEYS do
  local ok, principal = live(KEYS[i], KEYS[2])
  if ok and principal == ARGV[2] and redis.call('HGET', KEYS[i], '_psid') == ARGV[3] then
    redis.call('DEL', KEYS[i]); ended = ended + 1
    redis.call('HDEL', KEYS[1], ARGV[i + 1] .. ARGV[2])
    changed(KEYS[i])
  end
end
return ended"
);

// KEYS = provider index; ARGV = now, principal, absolute deadline. Kept
// until the latest deadline of the sessions it lists.
const INDEX_PROVIDER_SESSION: &str = r"
redis.call('SADD', KEYS[1], ARGV[2])
local keep = tonumber(ARGV[3]) - tonumber(ARGV[1])
if keep > 0 and redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], string.format('%.0f', keep)) end
return 1";

// KEYS = provider index. The principals it lists.
const PROVIDER_PRINCIPALS: &str = r"return redis.call('SMEMBERS', KEYS[1])";

/// Every script of the session store, for the static key check.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const SCRIPTS: &[(&str, &str)] = &[
    ("load", LOAD),
    ("create", CREATE),
    ("update", UPDATE),
    ("retire", RETIRE),
    ("rotate", ROTATE),
    ("rekey", REKEY),
    ("delete", DELETE),
    ("members", MEMBERS),
    ("sessions", SESSIONS),
    ("provider_sessions", PROVIDER_SESSIONS),
    ("index_provider_session", INDEX_PROVIDER_SESSION),
    ("provider_principals", PROVIDER_PRINCIPALS),
];

struct Scripts {
    load: Lua,
    create: Lua,
    update: Lua,
    retire: Lua,
    rotate: Lua,
    rekey: Lua,
    delete: Lua,
    members: Lua,
    sessions: Lua,
    provider_sessions: Lua,
    index_provider_session: Lua,
    provider_principals: Lua,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        load: Lua::new(LOAD),
        create: Lua::new(CREATE),
        update: Lua::new(UPDATE),
        retire: Lua::new(RETIRE),
        rotate: Lua::new(ROTATE),
        rekey: Lua::new(REKEY),
        delete: Lua::new(DELETE),
        members: Lua::new(MEMBERS),
        sessions: Lua::new(SESSIONS),
        provider_sessions: Lua::new(PROVIDER_SESSIONS),
        index_provider_session: Lua::new(INDEX_PROVIDER_SESSION),
        provider_principals: Lua::new(PROVIDER_PRINCIPALS),
    })
}

/// How many grace aliases a read follows: the layer never chains them
/// (a rotation through an alias re-points it), so one is the most seen.
const MAX_ALIAS_HOPS: usize = 2;

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn now_ms() -> u64 {
    portcullis_core::epoch_millis(std::time::SystemTime::now())
}

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::unavailable(StoreKind::Session, error)
}

fn corrupt(what: impl fmt::Display) -> StoreError {
    StoreError::corrupt(StoreKind::Session, what)
}

/// A script's answer: its value, or the alias it stopped at.
enum Answer {
    Value(Value),
    Moved(String),
}

fn answer(value: Value) -> Answer {
    if let Value::Array(items) = &value
        && let [Value::BulkString(marker), Value::BulkString(member)] = items.as_slice()
        && marker == b"@moved"
    {
        return Answer::Moved(String::from_utf8_lossy(member).into_owned());
    }
    Answer::Value(value)
}

impl RedisSessionStore {
    /// Connects to one Redis at `url` (`redis://…`), failing if it cannot
    /// be reached now.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// Connects to `servers` (one node, a Cluster, or a Sentinel-watched
    /// primary) with explicit options.
    pub async fn connect_with(servers: impl Into<RedisServers>, options: RedisOptions) -> Result<Self, StoreError> {
        let connection = connect(&servers.into(), &options, StoreKind::Session, None).await?;
        Ok(Self {
            connection,
            options: Arc::new(options),
            cached: None,
        })
    }

    /// [`connect_with`](Self::connect_with), with the local read cache in
    /// front (see [the local cache](Self#the-local-cache)): subscribes to
    /// the invalidation feed before it returns, and follows it in a task on
    /// the current tokio runtime for as long as a clone of the store lives.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use portcullis_redis::{RedisOptions, RedisSessionStore, SessionCacheOptions};
    /// use portcullis_session::SessionLayer;
    ///
    /// # async fn demo() -> Result<(), portcullis_session::StoreError> {
    /// let store = RedisSessionStore::connect_cached(
    ///     "redis://127.0.0.1:6379",
    ///     RedisOptions::default(),
    ///     SessionCacheOptions::default(),
    /// )
    /// .await?;
    /// let layer = SessionLayer::new(Arc::new(store));
    /// # Ok(()) }
    /// ```
    pub async fn connect_cached(
        servers: impl Into<RedisServers>,
        options: RedisOptions,
        cache_options: SessionCacheOptions,
    ) -> Result<Self, StoreError> {
        let servers = servers.into();
        let mut store = Self::connect_with(servers.clone(), options).await?;
        let cache = Arc::new(SessionCache::new(cache_options.cache));
        let feed = Feed {
            servers: cache_options.feed.unwrap_or(servers),
            channel: channel(&store.options.prefix),
            heartbeat: cache_options.heartbeat,
            connect_timeout: store.options.connection_timeout,
            publisher: store.connection.clone(),
        };
        let task = feed.start(cache.clone()).await.map_err(unavailable)?;
        store.cached = Some(Arc::new(CachedReads::new(cache, task)));
        Ok(store)
    }

    /// The local cache's counters and health, when it is on.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cached.as_ref().map(|cached| cached.cache.stats())
    }

    /// Drops this node's copy of `key` (a write to it, whatever its
    /// outcome: an unknown outcome may have changed it).
    fn forget(&self, key: &SessionKey) {
        if let Some(cached) = &self.cached {
            cached.cache.invalidate(key);
        }
    }

    fn session_key_of(&self, route: Route, member: &str) -> String {
        format!("{}s:{member}", self.options.tag(route))
    }

    fn session_key(&self, key: &SessionKey) -> String {
        self.session_key_of(key.route(), &key.to_hex())
    }

    fn idx(&self, route: Route) -> String {
        format!("{}idx", self.options.tag(route))
    }

    fn gen_key(&self, route: Route) -> String {
        format!("{}gen", self.options.tag(route))
    }

    /// The set of principals logged in through the provider session
    /// `issuer`/`session`, on the route of that pair.
    fn provider_index(&self, issuer: &str, session: &str) -> String {
        let route = Route::of(&Principal::new(issuer, session));
        format!(
            "{}ps:{}",
            self.options.tag(route),
            provider_session_key(issuer, session)
        )
    }

    /// Lists the record's principal under its provider session, before the
    /// record is written: a failed write leaves only an entry that points
    /// at nothing, never a session its provider cannot end.
    async fn index_provider_session(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let (Some(principal), Some(session)) = (&record.principal, &record.provider_session) else {
            return Ok(());
        };
        let mut connection = self.connection.clone();
        let _: i64 = Call::new(&scripts().index_provider_session)
            .key(self.provider_index(principal.issuer(), session))
            .arg(now_ms())
            .arg(principal.key())
            .arg(record.absolute_deadline_ms)
            .run_durable(&mut connection, self.options.replica_acks)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The key and route of an alias's target.
    fn target(member: &str) -> Result<(SessionKey, Route), StoreError> {
        let key = SessionKey::from_hex(member).ok_or_else(|| corrupt("field _moved_to"))?;
        Ok((key, key.route()))
    }

    fn fields(record: &SessionRecord) -> Vec<String> {
        let mut fields = vec![
            "_created".to_owned(),
            record.created_ms.to_string(),
            "_idle".to_owned(),
            record.idle_deadline_ms.to_string(),
            "_absolute".to_owned(),
            record.absolute_deadline_ms.to_string(),
            "_seen".to_owned(),
            record.last_seen_ms.to_string(),
            "_scopes".to_owned(),
            serde_json::to_string(&record.scopes).unwrap_or_else(|_| "[]".into()),
        ];
        if let Some(principal) = &record.principal {
            fields.extend(["_principal".to_owned(), principal.key()]);
        }
        if let Some(ua) = &record.user_agent {
            fields.extend(["_ua".to_owned(), ua.clone()]);
        }
        if let Some(session) = &record.provider_session {
            fields.extend(["_psid".to_owned(), session.clone()]);
        }
        for (name, value) in &record.data {
            fields.extend([format!("d:{name}"), value.clone()]);
        }
        fields
    }

    /// A record's principal, checked to be routed where its key is.
    fn principal_of(record: &SessionRecord, key: &SessionKey) -> Result<String, StoreError> {
        match &record.principal {
            Some(principal) if Route::of(principal) != key.route() => Err(corrupt(
                "a session key not routed to its principal (see SessionKey::route)",
            )),
            Some(principal) => Ok(principal.key()),
            None => Ok(String::new()),
        }
    }

    async fn create_record(&self, key: &SessionKey, record: &SessionRecord, ttl: Duration) -> Result<(), StoreError> {
        let principal = Self::principal_of(record, key)?;
        self.index_provider_session(record).await?;
        let route = key.route();
        let mut connection = self.connection.clone();
        let _: i64 = Call::new(&scripts().create)
            .key(self.session_key(key))
            .key(self.idx(route))
            .key(self.gen_key(route))
            .arg(now_ms())
            .arg(ms(ttl))
            .arg(key.to_hex())
            .arg(record.absolute_deadline_ms)
            .arg(principal)
            .args(Self::fields(record))
            .run_durable(&mut connection, self.options.replica_acks)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The record under `key` as Redis has it, whether it was found
    /// through a grace alias, and how long Redis keeps it.
    async fn load_from_redis(&self, key: SessionKey) -> Result<Loaded, StoreError> {
        let mut at = key;
        let mut connection = self.connection.clone();
        // Only a caching store asks how long Redis keeps the record.
        let with_ttl = if self.cached.is_some() { "1" } else { "0" };
        for _ in 0..=MAX_ALIAS_HOPS {
            let reply: Value = Call::new(&scripts().load)
                .key(self.session_key(&at))
                .key(self.gen_key(at.route()))
                .arg(now_ms())
                .arg(with_ttl)
                .run(&mut connection)
                .await
                .map_err(unavailable)?;
            match answer(reply) {
                Answer::Moved(member) => at = Self::target(&member)?.0,
                Answer::Value(value) => {
                    let flat: Vec<String> = redis::from_redis_value(value).map_err(corrupt)?;
                    let kept_ms = flat
                        .chunks(2)
                        .find(|pair| pair[0] == "_pttl")
                        .and_then(|pair| pair.get(1)?.parse::<i64>().ok())
                        .unwrap_or(0);
                    return Ok(Loaded {
                        record: parse_record(flat)?.map(Arc::new),
                        through_alias: at != key,
                        kept_for: Duration::from_millis(u64::try_from(kept_ms).unwrap_or(0)),
                    });
                }
            }
        }
        Ok(Loaded {
            record: None,
            through_alias: true,
            kept_for: Duration::ZERO,
        })
    }

    /// [`SessionStore::rotate`] in Redis (the cache is told afterwards).
    async fn rotate_in_redis(
        &self,
        old: SessionKey,
        new: SessionKey,
        record: SessionRecord,
        ttl: Duration,
        grace: String,
    ) -> Result<bool, StoreError> {
        let principal = Self::principal_of(&record, &new)?;
        let mut connection = self.connection.clone();
        // The live record `old` resolves to, as last seen: itself, or
        // the target of its alias. A script that finds another alias
        // says so, and we go again.
        let mut alias = String::new();
        for _ in 0..=MAX_ALIAS_HOPS {
            let (target, route) = if alias.is_empty() {
                (old, old.route())
            } else {
                Self::target(&alias)?
            };
            if route != old.route() {
                // An alias across routes: the layer never makes one
                // (grace is for the same subject); no rotation
                // through it.
                return Ok(false);
            }
            let reply: Value = if route == new.route() {
                self.index_provider_session(&record).await?;
                Call::new(&scripts().rotate)
                    .key(self.session_key(&old))
                    .key(self.session_key(&target))
                    .key(self.session_key(&new))
                    .key(self.idx(route))
                    .key(self.gen_key(route))
                    .arg(now_ms())
                    .arg(&alias)
                    .arg(target.to_hex())
                    .arg(&grace)
                    .arg(new.to_hex())
                    .arg(ms(ttl))
                    .arg(record.absolute_deadline_ms)
                    .arg(&principal)
                    .args(Self::fields(&record))
                    .run_durable(&mut connection, self.options.replica_acks)
                    .await
                    .map_err(unavailable)?
            } else {
                // Across routes (a login): the new record first, under
                // an id nobody holds yet; then the old one retired; and
                // if it had ended meanwhile, the new one removed again.
                self.create_record(&new, &record, ttl).await?;
                let retired: Result<Value, redis::RedisError> = Call::new(&scripts().retire)
                    .key(self.session_key(&old))
                    .key(self.session_key(&target))
                    .key(self.idx(route))
                    .key(self.gen_key(route))
                    .arg(now_ms())
                    .arg(&alias)
                    .arg(target.to_hex())
                    .arg(&grace)
                    .arg(new.to_hex())
                    .run_durable(&mut connection, self.options.replica_acks)
                    .await;
                match retired {
                    Ok(Value::Int(1)) => Value::Int(1),
                    other => {
                        self.delete_one(&new, false).await?;
                        other.map_err(unavailable)?
                    }
                }
            };
            match answer(reply) {
                Answer::Moved(member) => alias = member,
                Answer::Value(value) => return Ok(redis::from_redis_value::<i64>(value).map_err(corrupt)? == 1),
            }
        }
        Ok(false)
    }

    /// [`SessionStore::rekey`] in Redis (the cache is told afterwards).
    async fn rekey_in_redis(&self, old: SessionKey, new: SessionKey, grace: String) -> Result<bool, StoreError> {
        if old.route() != new.route() || old == new {
            // Two keys of one id share its route; anything else is not
            // a re-key.
            return Ok(false);
        }
        let route = old.route();
        let mut connection = self.connection.clone();
        let moved: i64 = Call::new(&scripts().rekey)
            .key(self.session_key(&old))
            .key(self.session_key(&new))
            .key(self.idx(route))
            .key(self.gen_key(route))
            .arg(now_ms())
            .arg(old.to_hex())
            .arg(new.to_hex())
            .arg(grace)
            .run_durable(&mut connection, self.options.replica_acks)
            .await
            .map_err(unavailable)?;
        Ok(moved == 1)
    }

    async fn delete_one(&self, key: &SessionKey, follow: bool) -> Result<Option<String>, StoreError> {
        let mut connection = self.connection.clone();
        let reply: Result<Value, redis::RedisError> = Call::new(&scripts().delete)
            .key(self.session_key(key))
            .key(self.idx(key.route()))
            .arg(now_ms())
            .arg(key.to_hex())
            .arg(if follow { "1" } else { "0" })
            .run_durable(&mut connection, self.options.replica_acks)
            .await;
        self.forget(key);
        Ok(match answer(reply.map_err(unavailable)?) {
            Answer::Moved(member) => Some(member),
            Answer::Value(_) => None,
        })
    }

    /// The members (key hex) of `principal`'s indexed sessions.
    async fn members(&self, principal: &Principal) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection.clone();
        Call::new(&scripts().members)
            .key(self.idx(Route::of(principal)))
            .arg(now_ms())
            .arg(principal.key())
            .run(&mut connection)
            .await
            .map_err(unavailable)
    }

    fn sessions_call(&self, principal: &Principal, members: &[String], end: bool) -> Call {
        let route = Route::of(principal);
        let mut call = Call::new(&scripts().sessions)
            .key(self.idx(route))
            .key(self.gen_key(route));
        for member in members {
            call = call.key(self.session_key_of(route, member));
        }
        call.arg(now_ms())
            .arg(principal.key())
            .arg(if end { "1" } else { "0" })
            .args(members)
    }
}

/// A read from Redis.
struct Loaded {
    record: Option<Arc<SessionRecord>>,
    /// Found through a grace alias (its changes arrive under another key).
    through_alias: bool,
    /// How long Redis keeps the record from now (`PTTL`).
    kept_for: Duration,
}

/// Parses a flat `HGETALL` answer.
fn parse_record(flat: Vec<String>) -> Result<Option<SessionRecord>, StoreError> {
    if flat.is_empty() {
        return Ok(None);
    }
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut iter = flat.into_iter();
    while let (Some(name), Some(value)) = (iter.next(), iter.next()) {
        fields.insert(name, value);
    }
    let number = |name: &str| -> Result<u64, StoreError> {
        fields
            .get(name)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| corrupt(format!("field {name}")))
    };
    let mut record = SessionRecord::default();
    record.created_ms = number("_created")?;
    record.idle_deadline_ms = number("_idle")?;
    record.absolute_deadline_ms = number("_absolute")?;
    record.last_seen_ms = number("_seen")?;
    record.principal = match fields.get("_principal") {
        Some(key) => Some(Principal::from_key(key).ok_or_else(|| corrupt("field _principal"))?),
        None => None,
    };
    record.user_agent = fields.get("_ua").cloned();
    record.provider_session = fields.get("_psid").cloned();
    record.scopes = match fields.get("_scopes") {
        Some(text) => serde_json::from_str(text).map_err(|_| corrupt("field _scopes"))?,
        None => Vec::new(),
    };
    for (name, value) in fields {
        if let Some(data_name) = name.strip_prefix("d:") {
            record.data.insert(data_name.to_owned(), value);
        }
    }
    Ok(Some(record))
}

impl SessionStore for RedisSessionStore {
    fn load(&self, key: &SessionKey) -> StoreFuture<'_, Option<Arc<SessionRecord>>> {
        let key = *key;
        Box::pin(async move {
            let Some(cached) = &self.cached else {
                return self.load_from_redis(key).await.map(|loaded| loaded.record);
            };
            if let Some(hit) = cached.cache.get(&key) {
                return Ok(Some(hit));
            }
            let ticket = cached.cache.begin_load(&key);
            let loaded = self.load_from_redis(key).await;
            // A record found through a grace alias changes under another
            // key: not cached.
            match &loaded {
                Ok(Loaded {
                    record: Some(record),
                    through_alias: false,
                    kept_for,
                }) => cached.cache.finish_load(ticket, Some((record, *kept_for))),
                _ => cached.cache.finish_load(ticket, None),
            }
            loaded.map(|loaded| loaded.record)
        })
    }

    fn load_now(&self, key: &SessionKey) -> Option<Result<Option<Arc<SessionRecord>>, StoreError>> {
        self.cached.as_ref()?.cache.get(key).map(|hit| Ok(Some(hit)))
    }

    fn create(&self, key: &SessionKey, record: &SessionRecord, ttl: Duration) -> StoreFuture<'_, ()> {
        let (key, record) = (*key, record.clone());
        Box::pin(async move { self.create_record(&key, &record, ttl).await })
    }

    fn update(&self, key: &SessionKey, changes: &Changes) -> StoreFuture<'_, bool> {
        let mut args: Vec<String> = vec![now_ms().to_string(), changes.set.len().to_string()];
        for (name, value) in &changes.set {
            args.extend([name.clone(), value.clone()]);
        }
        args.push(changes.removed.len().to_string());
        args.extend(changes.removed.iter().cloned());
        match changes.touch {
            Some(touch) => args.extend([
                "1".to_owned(),
                touch.idle_deadline_ms.to_string(),
                touch.last_seen_ms.to_string(),
                ms(touch.ttl).to_string(),
            ]),
            None => args.push("0".to_owned()),
        }
        let mut at = *key;
        Box::pin(async move {
            let mut connection = self.connection.clone();
            for _ in 0..=MAX_ALIAS_HOPS {
                let reply = Call::new(&scripts().update)
                    .key(self.session_key(&at))
                    .key(self.gen_key(at.route()))
                    .args(&args)
                    .run(&mut connection)
                    .await;
                self.forget(&at);
                match answer(reply.map_err(unavailable)?) {
                    Answer::Moved(member) => at = Self::target(&member)?.0,
                    Answer::Value(value) => return Ok(redis::from_redis_value::<i64>(value).map_err(corrupt)? == 1),
                }
            }
            Ok(false)
        })
    }

    fn rotate(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        record: &SessionRecord,
        ttl: Duration,
        grace: Option<Duration>,
    ) -> StoreFuture<'_, bool> {
        let (old, new, record) = (*old, *new, record.clone());
        let grace = grace.map(|g| ms(g).to_string()).unwrap_or_default();
        Box::pin(async move {
            let rotated = self.rotate_in_redis(old, new, record, ttl, grace).await;
            self.forget(&old);
            self.forget(&new);
            rotated
        })
    }

    fn rekey(&self, old: &SessionKey, new: &SessionKey, grace: Option<Duration>) -> StoreFuture<'_, bool> {
        let (old, new) = (*old, *new);
        let grace = grace.map(|g| ms(g).to_string()).unwrap_or_default();
        Box::pin(async move {
            let moved = self.rekey_in_redis(old, new, grace).await;
            self.forget(&old);
            self.forget(&new);
            moved
        })
    }

    fn delete(&self, key: &SessionKey) -> StoreFuture<'_, ()> {
        let key = *key;
        Box::pin(async move {
            // A grace alias: its target first, then the alias itself.
            let mut at = key;
            for _ in 0..MAX_ALIAS_HOPS {
                match self.delete_one(&at, true).await? {
                    Some(member) => at = Self::target(&member)?.0,
                    None => break,
                }
            }
            if at != key {
                self.delete_one(&at, false).await?;
                self.delete_one(&key, false).await?;
            }
            Ok(())
        })
    }

    fn sessions_of(&self, principal: &Principal) -> StoreFuture<'_, Vec<(SessionKey, SessionRecord)>> {
        let principal = principal.clone();
        Box::pin(async move {
            let members = self.members(&principal).await?;
            if members.is_empty() {
                return Ok(Vec::new());
            }
            let mut connection = self.connection.clone();
            let answer: Vec<Value> = self
                .sessions_call(&principal, &members, false)
                .run(&mut connection)
                .await
                .map_err(unavailable)?;
            let mut sessions = Vec::new();
            let mut iter = answer.into_iter();
            while let (Some(member), Some(fields)) = (iter.next(), iter.next()) {
                let member: String = redis::from_redis_value(member).map_err(corrupt)?;
                let flat: Vec<String> = redis::from_redis_value(fields).map_err(corrupt)?;
                let key = SessionKey::from_hex(&member).ok_or_else(|| corrupt("index member"))?;
                if let Some(record) = parse_record(flat)? {
                    sessions.push((key, record));
                }
            }
            sessions.sort_by_key(|(_, record)| record.created_ms);
            Ok(sessions)
        })
    }

    fn delete_all_of(&self, principal: &Principal) -> StoreFuture<'_, usize> {
        let principal = principal.clone();
        Box::pin(async move {
            // The listed sessions end, and the generation moves in the same
            // step, which ends every other older one too.
            let members = self.members(&principal).await?;
            let mut connection = self.connection.clone();
            let ended: Result<i64, _> = self
                .sessions_call(&principal, &members, true)
                .run_durable(&mut connection, self.options.replica_acks)
                .await;
            if let Some(cached) = &self.cached {
                cached.cache.invalidate_principal(&principal.key());
            }
            Ok(usize::try_from(ended.map_err(unavailable)?).unwrap_or(0))
        })
    }

    fn delete_provider_session(&self, issuer: &str, session: &str) -> StoreFuture<'_, usize> {
        let (issuer, session) = (issuer.to_owned(), session.to_owned());
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let principals: Vec<String> = Call::new(&scripts().provider_principals)
                .key(self.provider_index(&issuer, &session))
                .run(&mut connection)
                .await
                .map_err(unavailable)?;
            let mut ended = 0;
            for principal in principals {
                let principal = Principal::from_key(&principal).ok_or_else(|| corrupt("provider session index"))?;
                if principal.issuer() != issuer {
                    continue;
                }
                // A rotation racing this moves a session to a key the first
                // listing did not have: list again until nothing is new.
                let mut seen = std::collections::HashSet::new();
                for _ in 0..3 {
                    let fresh: Vec<String> = self
                        .members(&principal)
                        .await?
                        .into_iter()
                        .filter(|member| seen.insert(member.clone()))
                        .collect();
                    if fresh.is_empty() {
                        break;
                    }
                    let route = Route::of(&principal);
                    let mut call = Call::new(&scripts().provider_sessions)
                        .key(self.idx(route))
                        .key(self.gen_key(route));
                    for member in &fresh {
                        call = call.key(self.session_key_of(route, member));
                    }
                    let count: Result<i64, _> = call
                        .arg(now_ms())
                        .arg(principal.key())
                        .arg(&session)
                        .args(&fresh)
                        .run_durable(&mut connection, self.options.replica_acks)
                        .await;
                    for key in fresh.iter().filter_map(|member| SessionKey::from_hex(member)) {
                        self.forget(&key);
                    }
                    ended += usize::try_from(count.map_err(unavailable)?).unwrap_or(0);
                }
            }
            Ok(ended)
        })
    }
}
