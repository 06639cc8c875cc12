//! Refresh-token families in Redis; every spend is one atomic Lua script.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::Route;
use portcullis_core::{StoreError, StoreFuture, StoreKind};
use portcullis_refresh::{Family, RefreshStore, Spend, SpendRules};
use redis::Value;

use crate::connection::{Call, Connection, Lua, RedisOptions, RedisServers, connect};
use portcullis_core::duration_millis as millis;

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::unavailable(StoreKind::Refresh, error)
}

// One hash per family, whatever its number of rotations: `n` the live
// token's number, `t` when it was made live, `d` when it idles out, `r`
// revoked, `g` its subject's generation when it was made. It expires when
// the live token idles out (never past the absolute deadline): then
// nothing of it can be spent.

// KEYS = family, index, gen; ARGV = subject, scopes, created, absolute, idle deadline, index field
const CREATE: &str = r"
local g = redis.call('HGET', KEYS[3], ARGV[1]) or '0'
redis.call('HSET', KEYS[1], 'sub', ARGV[1], 'scopes', ARGV[2], 'c', ARGV[3], 'a', ARGV[4], 'r', '0', 'n', '0', 't', ARGV[3], 'd', ARGV[5], 'g', g)
redis.call('PEXPIREAT', KEYS[1], ARGV[5])
redis.call('HSET', KEYS[2], ARGV[6], ARGV[4])
local keep = tonumber(ARGV[4]) - tonumber(ARGV[3])
for _, k in ipairs({KEYS[2], KEYS[3]}) do
  if redis.call('PTTL', k) < keep then redis.call('PEXPIRE', k, string.format('%.0f', keep)) end
end
-- Sweep a few index entries of families past their absolute deadline.
local sample = redis.call('HRANDFIELD', KEYS[2], 3, 'WITHVALUES')
for i = 1, #sample, 2 do
  if tonumber(sample[i + 1]) <= tonumber(ARGV[3]) then redis.call('HDEL', KEYS[2], sample[i]) end
end
return 1";

// KEYS = family, gen; ARGV = family id, seq, now, grace ms, idle ms, min interval ms
const SPEND: &str = r"
local f = redis.call('HMGET', KEYS[1], 'sub', 'scopes', 'c', 'a', 'r', 'n', 't', 'd', 'g')
if not f[1] then return {'unknown'} end
local now = tonumber(ARGV[3])
if f[5] == '1' or tonumber(f[4]) <= now then return {'ended'} end
local current = redis.call('HGET', KEYS[2], f[1])
if current and tonumber(current) > tonumber(f[9] or '0') then return {'ended'} end
local out = {ARGV[1], f[1], f[2], f[3], f[4]}
local seq, live = tonumber(ARGV[2]), tonumber(f[6])
if seq == live then
  if tonumber(f[8]) <= now then return {'ended'} end
  if math.max(now - tonumber(f[7]), 0) < tonumber(ARGV[6]) then return {'throttled'} end
  local d = string.format('%.0f', math.min(now + tonumber(ARGV[5]), tonumber(f[4])))
  redis.call('HSET', KEYS[1], 'n', string.format('%.0f', live + 1), 't', ARGV[3], 'd', d)
  redis.call('PEXPIREAT', KEYS[1], d)
  return {'rotated', out[1], out[2], out[3], out[4], out[5]}
end
-- A spend stamped before the rotation it raced counts as 0 ms after
-- it, never as negative (inside any grace window, even a zero one).
if seq + 1 == live and math.max(now - tonumber(f[7]), 0) < tonumber(ARGV[4]) then
  return {'retry', out[1], out[2], out[3], out[4], out[5]}
end
redis.call('HSET', KEYS[1], 'r', '1')
return {'reused', out[1], out[2], out[3], out[4], out[5]}";

// KEYS = family; ARGV = family id, revoke ('1' or '0')
const FAMILY: &str = r"
local fam = redis.call('HMGET', KEYS[1], 'sub', 'scopes', 'c', 'a')
if not fam[1] then return {} end
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'r', '1') end
return {'found', ARGV[1], fam[1], fam[2], fam[3], fam[4]}";

// KEYS = index, gen; ARGV = subject, index field prefix. Moves the
// subject to a new generation (every family made before is dead, indexed
// or not) and returns the ids of its indexed families.
const SUBJECT_FAMILIES: &str = r"
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
local keep = redis.call('PTTL', KEYS[1])
if keep > 0 and redis.call('PTTL', KEYS[2]) < keep then redis.call('PEXPIRE', KEYS[2], keep) end
local out = {}
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, #ARGV[2]) == ARGV[2] then table.insert(out, string.sub(field, #ARGV[2] + 1)) end
end
return out";

// KEYS = index, family*; ARGV = index field prefix, id*. Marks each
// family revoked; returns the ids of those that were still there.
const REVOKE_FAMILIES: &str = r"
local out = {}
for i = 2, #KEYS do
  local id = ARGV[i]
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HSET', KEYS[i], 'r', '1')
    table.insert(out, id)
  end
  redis.call('HDEL', KEYS[1], ARGV[1] .. id)
end
return out";

/// Every script of the refresh store, for the static key check.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const SCRIPTS: &[(&str, &str)] = &[
    ("create", CREATE),
    ("spend", SPEND),
    ("family", FAMILY),
    ("subject_families", SUBJECT_FAMILIES),
    ("revoke_families", REVOKE_FAMILIES),
];

struct Scripts {
    create: Lua,
    spend: Lua,
    family: Lua,
    subject_families: Lua,
    revoke_families: Lua,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        create: Lua::new(CREATE),
        spend: Lua::new(SPEND),
        family: Lua::new(FAMILY),
        subject_families: Lua::new(SUBJECT_FAMILIES),
        revoke_families: Lua::new(REVOKE_FAMILIES),
    })
}

/// Refresh-token families in Redis, so every instance rotates the same
/// tokens: a spend is one atomic script, so two instances spending one
/// token at once never both rotate.
///
/// Layout: everything of one subject lives under the hash tag
/// `{prefix + route}`, the route every family id starts with
/// ([`Route::of_subject`]), so on a Cluster it shares one slot:
/// `{tag}rf:{id}` per family (subject, scopes, created, absolute deadline,
/// revoked, the live token's number, when it was made live and when it
/// idles out, and the subject's generation), `{tag}rs` the index of the
/// route's families by subject, `{tag}rg` each subject's "revoke
/// everything" generation (a family made before it is dead, even one that
/// fell out of the index). One hash per family, whatever its number of
/// rotations (tokens identify themselves). Keys expire with their
/// deadlines. Spends and revocations are durable writes
/// ([`RedisOptions::replica_acks`]).
#[derive(Clone)]
pub struct RedisRefreshStore {
    connection: Connection,
    options: Arc<RedisOptions>,
}

impl fmt::Debug for RedisRefreshStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRefreshStore")
            .field("prefix", &self.options.prefix)
            .finish_non_exhaustive()
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        Value::Int(number) => Some(number.to_string()),
        _ => None,
    }
}

/// `[kind, id, subject, scopes, created, absolute]` → (kind, family).
fn parse_reply(reply: &[Value]) -> Result<(String, Option<Family>), StoreError> {
    let malformed = || StoreError::unavailable(StoreKind::Refresh, "malformed reply from the refresh script");
    let kind = reply.first().and_then(text).ok_or_else(malformed)?;
    if reply.len() < 6 {
        return Ok((kind, None));
    }
    let field = |index: usize| reply.get(index).and_then(text).ok_or_else(malformed);
    let number = |index: usize| field(index)?.parse::<u64>().map_err(|_| malformed());
    let scopes = field(3)?;
    Ok((
        kind,
        Some(Family {
            id: field(1)?,
            subject: field(2)?,
            scopes: scopes.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            created_ms: number(4)?,
            absolute_deadline_ms: number(5)?,
        }),
    ))
}

impl RedisRefreshStore {
    /// Connects to one Redis at `url`, failing if it cannot be reached now.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// Connects to `servers` with explicit options.
    pub async fn connect_with(servers: impl Into<RedisServers>, options: RedisOptions) -> Result<Self, StoreError> {
        let connection = connect(&servers.into(), &options, StoreKind::Refresh, None).await?;
        Ok(Self {
            connection,
            options: Arc::new(options),
        })
    }

    fn family_key(&self, route: Route, id: &str) -> String {
        format!("{}rf:{id}", self.options.tag(route))
    }

    fn index_key(&self, route: Route) -> String {
        format!("{}rs", self.options.tag(route))
    }

    fn gen_key(&self, route: Route) -> String {
        format!("{}rg", self.options.tag(route))
    }

    /// The index field prefix of `subject`: its length, `:`, itself, so
    /// no subject's prefix is another's.
    fn subject_prefix(subject: &str) -> String {
        format!("{}:{subject}", subject.len())
    }

    async fn family_script(&self, id: &str, revoke: bool) -> Result<Option<Family>, StoreError> {
        let Some(route) = Route::prefix_of(id) else {
            return Ok(None);
        };
        let mut connection = self.connection.clone();
        let call = Call::new(&scripts().family)
            .key(self.family_key(route, id))
            .arg(id)
            .arg(if revoke { "1" } else { "0" });
        let reply: Vec<Value> = if revoke {
            call.run_durable(&mut connection, self.options.replica_acks).await
        } else {
            call.run(&mut connection).await
        }
        .map_err(unavailable)?;
        if reply.is_empty() {
            return Ok(None);
        }
        Ok(parse_reply(&reply)?.1)
    }
}

impl RefreshStore for RedisRefreshStore {
    fn create(&self, family: &Family, idle: Duration) -> StoreFuture<'_, ()> {
        let family = family.clone();
        Box::pin(async move {
            let route = Route::of_subject(&family.subject);
            if Route::prefix_of(&family.id) != Some(route) {
                return Err(StoreError::corrupt(
                    StoreKind::Refresh,
                    "a family id not routed to its subject (see Family::id)",
                ));
            }
            let mut connection = self.connection.clone();
            let idle_deadline = family
                .created_ms
                .saturating_add(millis(idle))
                .min(family.absolute_deadline_ms);
            let _: i64 = Call::new(&scripts().create)
                .key(self.family_key(route, &family.id))
                .key(self.index_key(route))
                .key(self.gen_key(route))
                .arg(&family.subject)
                .arg(family.scopes.join(" "))
                .arg(family.created_ms)
                .arg(family.absolute_deadline_ms)
                .arg(idle_deadline)
                .arg(format!("{}{}", Self::subject_prefix(&family.subject), family.id))
                .run_durable(&mut connection, self.options.replica_acks)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn spend(&self, id: &str, seq: u64, now_ms: u64, rules: SpendRules) -> StoreFuture<'_, Spend> {
        let id = id.to_owned();
        Box::pin(async move {
            let Some(route) = Route::prefix_of(&id) else {
                return Ok(Spend::Unknown);
            };
            let mut connection = self.connection.clone();
            let reply: Vec<Value> = Call::new(&scripts().spend)
                .key(self.family_key(route, &id))
                .key(self.gen_key(route))
                .arg(&id)
                .arg(seq)
                .arg(now_ms)
                .arg(millis(rules.grace))
                .arg(millis(rules.idle))
                .arg(millis(rules.min_interval))
                .run_durable(&mut connection, self.options.replica_acks)
                .await
                .map_err(unavailable)?;
            let (kind, family) = parse_reply(&reply)?;
            Ok(match (kind.as_str(), family) {
                ("rotated", Some(family)) => Spend::Rotated(family),
                ("retry", Some(family)) => Spend::Retry(family),
                ("reused", Some(family)) => Spend::Reused(family),
                ("ended", _) => Spend::Ended,
                ("throttled", _) => Spend::Throttled,
                _ => Spend::Unknown,
            })
        })
    }

    fn family(&self, id: &str) -> StoreFuture<'_, Option<Family>> {
        let id = id.to_owned();
        Box::pin(async move { self.family_script(&id, false).await })
    }

    fn revoke_family(&self, id: &str) -> StoreFuture<'_, Option<Family>> {
        let id = id.to_owned();
        Box::pin(async move { self.family_script(&id, true).await })
    }

    fn revoke_subject(&self, subject: &str) -> StoreFuture<'_, Vec<String>> {
        let subject = subject.to_owned();
        Box::pin(async move {
            let route = Route::of_subject(&subject);
            let prefix = Self::subject_prefix(&subject);
            let mut connection = self.connection.clone();
            // The generation first: from then on every older family of the
            // subject is dead, whatever happens next.
            let ids: Vec<String> = Call::new(&scripts().subject_families)
                .key(self.index_key(route))
                .key(self.gen_key(route))
                .arg(&subject)
                .arg(&prefix)
                .run_durable(&mut connection, self.options.replica_acks)
                .await
                .map_err(unavailable)?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut call = Call::new(&scripts().revoke_families).key(self.index_key(route));
            for id in &ids {
                call = call.key(self.family_key(route, id));
            }
            call.arg(&prefix)
                .args(&ids)
                .run_durable(&mut connection, self.options.replica_acks)
                .await
                .map_err(unavailable)
        })
    }
}
