//! Refresh-token families in Redis; every spend is one atomic Lua script.

use std::fmt;
use std::time::Duration;

use portcullis_revocation::{Family, RefreshStore, Spend, StoreError, StoreFuture, TokenHash};
use redis::aio::ConnectionManager;
use redis::{Script, Value};

use crate::session::{RedisOptions, connection_manager};

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::unavailable(error)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

// KEYS = token, family, subject set; ARGV = family id, subject, scopes, created, absolute, idle deadline
const CREATE: &str = r"
redis.call('HSET', KEYS[1], 'f', ARGV[1], 'd', ARGV[6])
redis.call('PEXPIREAT', KEYS[1], ARGV[6])
redis.call('HSET', KEYS[2], 'sub', ARGV[2], 'scopes', ARGV[3], 'c', ARGV[4], 'a', ARGV[5], 'r', '0')
redis.call('PEXPIREAT', KEYS[2], ARGV[5])
redis.call('SADD', KEYS[3], ARGV[1])
local ttl = redis.call('PTTL', KEYS[3])
local wanted = tonumber(ARGV[5]) - tonumber(ARGV[4])
if ttl < wanted then redis.call('PEXPIRE', KEYS[3], string.format('%.0f', wanted)) end
return 1";

// KEYS = token, successor; ARGV = prefix, successor hex, now, grace ms, idle ms
const SPEND: &str = r"
local t = redis.call('HMGET', KEYS[1], 'f', 'd', 's', 'x')
if not t[1] then return {'unknown'} end
local fk = ARGV[1] .. 'rf:' .. t[1]
local fam = redis.call('HMGET', fk, 'sub', 'scopes', 'c', 'a', 'r')
if not fam[1] then return {'ended'} end
local now = tonumber(ARGV[3])
local out = {t[1], fam[1], fam[2], fam[3], fam[4]}
if fam[5] == '1' or tonumber(fam[4]) <= now then return {'ended'} end
if t[3] then
  if t[3] == ARGV[2] and now - tonumber(t[4]) < tonumber(ARGV[4]) then
    return {'retry', out[1], out[2], out[3], out[4], out[5]}
  end
  redis.call('HSET', fk, 'r', '1')
  return {'reused', out[1], out[2], out[3], out[4], out[5]}
end
if tonumber(t[2]) <= now then return {'ended'} end
redis.call('HSET', KEYS[1], 's', ARGV[2], 'x', ARGV[3])
-- A spent token is remembered while its family lives, to catch replays.
redis.call('PEXPIREAT', KEYS[1], fam[4])
local d = string.format('%.0f', math.min(now + tonumber(ARGV[5]), tonumber(fam[4])))
redis.call('HSET', KEYS[2], 'f', t[1], 'd', d)
redis.call('PEXPIREAT', KEYS[2], d)
return {'rotated', out[1], out[2], out[3], out[4], out[5]}";

// KEYS = token; ARGV = prefix
const REVOKE_FAMILY_OF: &str = r"
local id = redis.call('HGET', KEYS[1], 'f')
if not id then return {} end
local fk = ARGV[1] .. 'rf:' .. id
local fam = redis.call('HMGET', fk, 'sub', 'scopes', 'c', 'a')
if not fam[1] then return {} end
redis.call('HSET', fk, 'r', '1')
return {'revoked', id, fam[1], fam[2], fam[3], fam[4]}";

// KEYS = token; ARGV = prefix
const FAMILY_OF: &str = r"
local id = redis.call('HGET', KEYS[1], 'f')
if not id then return {} end
local fam = redis.call('HMGET', ARGV[1] .. 'rf:' .. id, 'sub', 'scopes', 'c', 'a')
if not fam[1] then return {} end
return {'found', id, fam[1], fam[2], fam[3], fam[4]}";

// KEYS = subject set; ARGV = prefix
const REVOKE_SUBJECT: &str = r"
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local fk = ARGV[1] .. 'rf:' .. id
  if redis.call('EXISTS', fk) == 1 then
    redis.call('HSET', fk, 'r', '1')
    table.insert(out, id)
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return out";

struct Scripts {
    create: Script,
    spend: Script,
    family_of: Script,
    revoke_family_of: Script,
    revoke_subject: Script,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        create: Script::new(CREATE),
        spend: Script::new(SPEND),
        family_of: Script::new(FAMILY_OF),
        revoke_family_of: Script::new(REVOKE_FAMILY_OF),
        revoke_subject: Script::new(REVOKE_SUBJECT),
    })
}

/// Refresh-token families in Redis, so every instance rotates the same
/// tokens: a spend is one atomic script, so two instances spending one
/// token at once never both rotate.
///
/// Layout, under the prefix: `rt:{hash}` per token (family, idle deadline,
/// and once spent its successor and when), `rf:{id}` per family (subject,
/// scopes, created, absolute deadline, revoked), `rs:{subject}` the set of
/// a subject's families. Keys expire with their deadlines. Like the
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
    let malformed = || StoreError::unavailable("malformed reply from the refresh script");
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
        let connection = connection_manager(url, &options).await.map_err(unavailable)?;
        Ok(Self {
            connection,
            prefix: options.prefix,
        })
    }

    fn token_key(&self, token: &TokenHash) -> String {
        format!("{}rt:{}", self.prefix, token.to_hex())
    }
}

impl RefreshStore for RedisRefreshStore {
    fn create(&self, first: &TokenHash, family: &Family, idle: Duration) -> StoreFuture<'_, ()> {
        let token = self.token_key(first);
        let family = family.clone();
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let idle_deadline = family
                .created_ms
                .saturating_add(millis(idle))
                .min(family.absolute_deadline_ms);
            let _: i64 = scripts()
                .create
                .key(token)
                .key(format!("{}rf:{}", self.prefix, family.id))
                .key(format!("{}rs:{}", self.prefix, family.subject))
                .arg(&family.id)
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

    fn spend(
        &self,
        token: &TokenHash,
        successor: &TokenHash,
        now_ms: u64,
        grace: Duration,
        idle: Duration,
    ) -> StoreFuture<'_, Spend> {
        let token = self.token_key(token);
        let successor_key = self.token_key(successor);
        let successor = successor.to_hex();
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let reply: Vec<Value> = scripts()
                .spend
                .key(token)
                .key(successor_key)
                .arg(&self.prefix)
                .arg(successor)
                .arg(now_ms)
                .arg(millis(grace))
                .arg(millis(idle))
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            let (kind, family) = parse_reply(&reply)?;
            Ok(match (kind.as_str(), family) {
                ("rotated", Some(family)) => Spend::Rotated(family),
                ("retry", Some(family)) => Spend::Retry(family),
                ("reused", Some(family)) => Spend::Reused(family),
                ("ended", _) => Spend::Ended,
                _ => Spend::Unknown,
            })
        })
    }

    fn family_of(&self, token: &TokenHash) -> StoreFuture<'_, Option<Family>> {
        let token = self.token_key(token);
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let reply: Vec<Value> = scripts()
                .family_of
                .key(token)
                .arg(&self.prefix)
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            if reply.is_empty() {
                return Ok(None);
            }
            Ok(parse_reply(&reply)?.1)
        })
    }

    fn revoke_family_of(&self, token: &TokenHash) -> StoreFuture<'_, Option<Family>> {
        let token = self.token_key(token);
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let reply: Vec<Value> = scripts()
                .revoke_family_of
                .key(token)
                .arg(&self.prefix)
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            if reply.is_empty() {
                return Ok(None);
            }
            Ok(parse_reply(&reply)?.1)
        })
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
