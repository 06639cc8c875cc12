//! Refresh-token families in Redis; every spend is one atomic Lua script.

use std::fmt;
use std::time::Duration;

use portcullis_core::{StoreError, StoreFuture, StoreKind};
use portcullis_refresh::{Family, RefreshStore, Spend, SpendRules};
use redis::aio::ConnectionManager;
use redis::{Script, Value};

use crate::connection::{RedisOptions, connect};
use portcullis_core::duration_millis as millis;

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::unavailable(StoreKind::Refresh, error)
}

// One hash per family, whatever its number of rotations: `n` the live
// token's number, `t` when it was made live, `d` when it idles out, `r`
// revoked. It expires when the live token idles out (never past the
// absolute deadline): then nothing of it can be spent.

// KEYS = family, subject set; ARGV = subject, scopes, created, absolute, idle deadline
const CREATE: &str = r"
redis.call('HSET', KEYS[1], 'sub', ARGV[1], 'scopes', ARGV[2], 'c', ARGV[3], 'a', ARGV[4], 'r', '0', 'n', '0', 't', ARGV[3], 'd', ARGV[5])
redis.call('PEXPIREAT', KEYS[1], ARGV[5])
redis.call('SADD', KEYS[2], KEYS[3])
local ttl = redis.call('PTTL', KEYS[2])
local wanted = tonumber(ARGV[4]) - tonumber(ARGV[3])
if ttl < wanted then redis.call('PEXPIRE', KEYS[2], string.format('%.0f', wanted)) end
return 1";

// KEYS = family; ARGV = family id, seq, now, grace ms, idle ms, min interval ms
const SPEND: &str = r"
local f = redis.call('HMGET', KEYS[1], 'sub', 'scopes', 'c', 'a', 'r', 'n', 't', 'd')
if not f[1] then return {'unknown'} end
local now = tonumber(ARGV[3])
if f[5] == '1' or tonumber(f[4]) <= now then return {'ended'} end
local out = {ARGV[1], f[1], f[2], f[3], f[4]}
local seq, live = tonumber(ARGV[2]), tonumber(f[6])
if seq == live then
  if tonumber(f[8]) <= now then return {'ended'} end
  if now - tonumber(f[7]) < tonumber(ARGV[6]) then return {'throttled'} end
  local d = string.format('%.0f', math.min(now + tonumber(ARGV[5]), tonumber(f[4])))
  redis.call('HSET', KEYS[1], 'n', string.format('%.0f', live + 1), 't', ARGV[3], 'd', d)
  redis.call('PEXPIREAT', KEYS[1], d)
  return {'rotated', out[1], out[2], out[3], out[4], out[5]}
end
if seq + 1 == live and now - tonumber(f[7]) < tonumber(ARGV[4]) then
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

// KEYS = subject set; ARGV = prefix
const REVOKE_SUBJECT: &str = r"
local out = {}
for _, fk in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', fk) == 1 then
    redis.call('HSET', fk, 'r', '1')
    table.insert(out, string.sub(fk, #ARGV[1] + 4))
  else
    redis.call('SREM', KEYS[1], fk)
  end
end
return out";

struct Scripts {
    create: Script,
    spend: Script,
    family: Script,
    revoke_subject: Script,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        create: Script::new(CREATE),
        spend: Script::new(SPEND),
        family: Script::new(FAMILY),
        revoke_subject: Script::new(REVOKE_SUBJECT),
    })
}

/// Refresh-token families in Redis, so every instance rotates the same
/// tokens: a spend is one atomic script, so two instances spending one
/// token at once never both rotate.
///
/// Layout, under the prefix: `rf:{id}` per family (subject, scopes,
/// created, absolute deadline, revoked, and the live token's number, when
/// it was made live and when it idles out), `rs:{subject}` the set of a
/// subject's family keys. One hash per family, whatever its number of
/// rotations (tokens identify themselves). Keys expire with their
/// deadlines. Like the
/// session store, the scripts name keys across slots: a single Redis (or a
/// primary with replicas), not Redis Cluster.
#[derive(Clone)]
pub struct RedisRefreshStore {
    connection: ConnectionManager,
    prefix: String,
}

impl fmt::Debug for RedisRefreshStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRefreshStore")
            .field("prefix", &self.prefix)
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
    /// Connects to `url`, failing if Redis cannot be reached now.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// Connects with explicit options.
    pub async fn connect_with(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        let connection = connect(url, &options, StoreKind::Refresh).await?;
        Ok(Self {
            connection,
            prefix: options.prefix,
        })
    }

    fn family_key(&self, id: &str) -> String {
        format!("{}rf:{}", self.prefix, id)
    }

    async fn family_script(&self, id: &str, revoke: bool) -> Result<Option<Family>, StoreError> {
        let mut connection = self.connection.clone();
        let reply: Vec<Value> = scripts()
            .family
            .key(self.family_key(id))
            .arg(id)
            .arg(if revoke { "1" } else { "0" })
            .invoke_async(&mut connection)
            .await
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
            let mut connection = self.connection.clone();
            let idle_deadline = family
                .created_ms
                .saturating_add(millis(idle))
                .min(family.absolute_deadline_ms);
            let _: i64 = scripts()
                .create
                .key(self.family_key(&family.id))
                .key(format!("{}rs:{}", self.prefix, family.subject))
                .key(self.family_key(&family.id))
                .arg(&family.subject)
                .arg(family.scopes.join(" "))
                .arg(family.created_ms)
                .arg(family.absolute_deadline_ms)
                .arg(idle_deadline)
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn spend(&self, id: &str, seq: u64, now_ms: u64, rules: SpendRules) -> StoreFuture<'_, Spend> {
        let key = self.family_key(id);
        let id = id.to_owned();
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let reply: Vec<Value> = scripts()
                .spend
                .key(key)
                .arg(&id)
                .arg(seq)
                .arg(now_ms)
                .arg(millis(rules.grace))
                .arg(millis(rules.idle))
                .arg(millis(rules.min_interval))
                .invoke_async(&mut connection)
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
        let set = format!("{}rs:{}", self.prefix, subject);
        Box::pin(async move {
            let mut connection = self.connection.clone();
            scripts()
                .revoke_subject
                .key(set)
                .arg(&self.prefix)
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)
        })
    }
}
