use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::Principal;
use portcullis_session::{Changes, SessionKey, SessionRecord, SessionStore, StoreError, StoreFuture, StoreKind};
use redis::aio::ConnectionManager;

use crate::connection::{RedisOptions, connect};
use redis::{Script, Value};

/// Sessions in Redis: one hash per session, keyed by the session key (a
/// keyed hash of the id, never the id), and one set per principal.
///
/// Layout, under the prefix: `s:{key}` is a hash with the metadata fields
/// (`_principal`, `_scopes`, `_created`, `_idle`, `_absolute`, `_seen`,
/// `_ua`) and one `d:{name}` field per value, so writes to different keys
/// never overwrite each other; a rotated-away key holds only `_moved_to`
/// for its grace period. `principal:{principal key}` is the set of a
/// principal's session keys, by [`Principal::key`]'s unambiguous
/// `{issuer length}:{issuer}{subject}` (never the subject alone: another
/// issuer's `alice` is someone else). Every key expires on its own
/// (`PEXPIRE`).
#[derive(Clone)]
pub struct RedisSessionStore {
    connection: ConnectionManager,
    prefix: String,
    scripts: &'static Scripts,
}

impl fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSessionStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

struct Scripts {
    load: Script,
    create: Script,
    update: Script,
    rotate: Script,
    delete: Script,
    sessions_of: Script,
    delete_all_of: Script,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        // ARGV[1] = prefix
        load: Script::new(
            r"
            local h = redis.call('HGETALL', KEYS[1])
            for i = 1, #h, 2 do
              if h[i] == '_moved_to' then return redis.call('HGETALL', ARGV[1] .. 's:' .. h[i + 1]) end
            end
            return h",
        ),
        // ARGV = prefix, ttl_ms, member, index_ttl_ms, field/value pairs…
        create: Script::new(CREATE),
        // ARGV = prefix, nset, (name, value)*, nremove, name*, touch, idle, seen, ttl_ms
        update: Script::new(
            r"
            local key = KEYS[1]
            local moved = redis.call('HGET', key, '_moved_to')
            if moved then key = ARGV[1] .. 's:' .. moved end
            if redis.call('HEXISTS', key, '_created') == 0 then return 0 end
            local i = 2
            local n = tonumber(ARGV[i]); i = i + 1
            for _ = 1, n do redis.call('HSET', key, 'd:' .. ARGV[i], ARGV[i + 1]); i = i + 2 end
            n = tonumber(ARGV[i]); i = i + 1
            for _ = 1, n do redis.call('HDEL', key, 'd:' .. ARGV[i]); i = i + 1 end
            if ARGV[i] == '1' then
              redis.call('HSET', key, '_idle', ARGV[i + 1], '_seen', ARGV[i + 2])
              redis.call('PEXPIRE', key, ARGV[i + 3])
            end
            return 1",
        ),
        // KEYS = old, new; ARGV = prefix, ttl_ms, new member, index_ttl_ms, grace_ms ('' for none), old member, pairs…
        rotate: Script::new(ROTATE),
        // KEYS = key; ARGV = prefix
        delete: Script::new(
            r"
            local function drop(key, member)
              local principal = redis.call('HGET', key, '_principal')
              if principal then redis.call('SREM', ARGV[1] .. 'principal:' .. principal, member) end
              redis.call('DEL', key)
            end
            local moved = redis.call('HGET', KEYS[1], '_moved_to')
            if moved then drop(ARGV[1] .. 's:' .. moved, moved) end
            drop(KEYS[1], ARGV[2])
            return 1",
        ),
        // KEYS = index; ARGV = prefix
        sessions_of: Script::new(
            r"
            local out = {}
            for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
              local h = redis.call('HGETALL', ARGV[1] .. 's:' .. member)
              if #h == 0 then redis.call('SREM', KEYS[1], member)
              else table.insert(out, member); table.insert(out, h) end
            end
            return out",
        ),
        // KEYS = index; ARGV = prefix
        delete_all_of: Script::new(
            r"
            local ended = 0
            for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
              ended = ended + redis.call('DEL', ARGV[1] .. 's:' .. member)
            end
            redis.call('DEL', KEYS[1])
            return ended",
        ),
    })
}

/// The Lua function both `create` and `rotate` use to write a record and
/// index it under its principal.
macro_rules! create_fn {
    () => {
        r"
local function create(key, ttl, member, index_ttl, first)
  redis.call('DEL', key)
  redis.call('HSET', key, unpack(ARGV, first))
  redis.call('PEXPIRE', key, ttl)
  local principal = redis.call('HGET', key, '_principal')
  if principal then
    local index = ARGV[1] .. 'principal:' .. principal
    redis.call('SADD', index, member)
    if redis.call('PTTL', index) < tonumber(index_ttl) then redis.call('PEXPIRE', index, index_ttl) end
  end
end
"
    };
}

const CREATE: &str = concat!(create_fn!(), "create(KEYS[1], ARGV[2], ARGV[3], ARGV[4], 5)\nreturn 1");

// Finality: nothing is written when the old key resolves to no live
// record (a logout meanwhile). Through a grace alias, the record it points
// to is the one moved: one live session, never two.
const ROTATE: &str = concat!(
    create_fn!(),
    r"
local live, live_member = KEYS[1], ARGV[6]
local moved = redis.call('HGET', KEYS[1], '_moved_to')
if moved then live, live_member = ARGV[1] .. 's:' .. moved, moved end
if redis.call('HEXISTS', live, '_created') == 0 then return 0 end
local old_principal = redis.call('HGET', live, '_principal')
if old_principal then redis.call('SREM', ARGV[1] .. 'principal:' .. old_principal, live_member) end
redis.call('DEL', live)
redis.call('DEL', KEYS[1])
create(KEYS[2], ARGV[2], ARGV[3], ARGV[4], 7)
if ARGV[5] ~= '' then
  for _, key in ipairs({live, KEYS[1]}) do
    redis.call('HSET', key, '_moved_to', ARGV[3])
    redis.call('PEXPIRE', key, ARGV[5])
  end
end
return 1"
);

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::unavailable(StoreKind::Session, error)
}

impl RedisSessionStore {
    /// Connects to `url` (`redis://…`), failing if Redis cannot be reached
    /// now.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// Connects with explicit options.
    pub async fn connect_with(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        let connection = connect(url, &options, StoreKind::Session).await?;
        Ok(Self {
            connection,
            prefix: options.prefix,
            scripts: scripts(),
        })
    }

    fn session_key(&self, key: &SessionKey) -> String {
        format!("{}s:{}", self.prefix, key.to_hex())
    }

    fn index_key(&self, principal: &Principal) -> String {
        format!("{}principal:{}", self.prefix, principal.key())
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
        for (name, value) in &record.data {
            fields.extend([format!("d:{name}"), value.clone()]);
        }
        fields
    }

    fn index_ttl(record: &SessionRecord) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        record.absolute_deadline_ms.saturating_sub(now).max(1)
    }
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
            .ok_or_else(|| StoreError::corrupt(StoreKind::Session, format!("field {name}")))
    };
    let mut record = SessionRecord::default();
    record.created_ms = number("_created")?;
    record.idle_deadline_ms = number("_idle")?;
    record.absolute_deadline_ms = number("_absolute")?;
    record.last_seen_ms = number("_seen")?;
    record.principal = match fields.get("_principal") {
        Some(key) => {
            Some(Principal::from_key(key).ok_or_else(|| StoreError::corrupt(StoreKind::Session, "field _principal"))?)
        }
        None => None,
    };
    record.user_agent = fields.get("_ua").cloned();
    record.scopes = match fields.get("_scopes") {
        Some(text) => {
            serde_json::from_str(text).map_err(|_| StoreError::corrupt(StoreKind::Session, "field _scopes"))?
        }
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
        let redis_key = self.session_key(key);
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let flat: Vec<String> = self
                .scripts
                .load
                .key(&redis_key)
                .arg(&self.prefix)
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            Ok(parse_record(flat)?.map(Arc::new))
        })
    }

    fn create(&self, key: &SessionKey, record: &SessionRecord, ttl: Duration) -> StoreFuture<'_, ()> {
        let redis_key = self.session_key(key);
        let member = key.to_hex();
        let fields = Self::fields(record);
        let index_ttl = Self::index_ttl(record);
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let _: i64 = self
                .scripts
                .create
                .key(&redis_key)
                .arg(&self.prefix)
                .arg(ms(ttl))
                .arg(&member)
                .arg(index_ttl)
                .arg(&fields)
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn update(&self, key: &SessionKey, changes: &Changes) -> StoreFuture<'_, bool> {
        let redis_key = self.session_key(key);
        let mut args: Vec<String> = vec![self.prefix.clone(), changes.set.len().to_string()];
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
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let updated: i64 = self
                .scripts
                .update
                .key(&redis_key)
                .arg(&args)
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            Ok(updated == 1)
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
        let (old_key, new_key) = (self.session_key(old), self.session_key(new));
        let (old_member, new_member) = (old.to_hex(), new.to_hex());
        let fields = Self::fields(record);
        let index_ttl = Self::index_ttl(record);
        let grace = grace.map(|g| ms(g).to_string()).unwrap_or_default();
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let moved: i64 = self
                .scripts
                .rotate
                .key(&old_key)
                .key(&new_key)
                .arg(&self.prefix)
                .arg(ms(ttl))
                .arg(&new_member)
                .arg(index_ttl)
                .arg(&grace)
                .arg(&old_member)
                .arg(&fields)
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            Ok(moved == 1)
        })
    }

    fn delete(&self, key: &SessionKey) -> StoreFuture<'_, ()> {
        let redis_key = self.session_key(key);
        let member = key.to_hex();
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let _: i64 = self
                .scripts
                .delete
                .key(&redis_key)
                .arg(&self.prefix)
                .arg(&member)
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn sessions_of(&self, principal: &Principal) -> StoreFuture<'_, Vec<(SessionKey, SessionRecord)>> {
        let index = self.index_key(principal);
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let answer: Vec<Value> = self
                .scripts
                .sessions_of
                .key(&index)
                .arg(&self.prefix)
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            let mut sessions = Vec::new();
            let mut iter = answer.into_iter();
            while let (Some(member), Some(fields)) = (iter.next(), iter.next()) {
                let member: String =
                    redis::from_redis_value(member).map_err(|e| StoreError::corrupt(StoreKind::Session, e))?;
                let flat: Vec<String> =
                    redis::from_redis_value(fields).map_err(|e| StoreError::corrupt(StoreKind::Session, e))?;
                let key = SessionKey::from_hex(&member)
                    .ok_or_else(|| StoreError::corrupt(StoreKind::Session, "index member"))?;
                if let Some(record) = parse_record(flat)? {
                    sessions.push((key, record));
                }
            }
            sessions.sort_by_key(|(_, record)| record.created_ms);
            Ok(sessions)
        })
    }

    fn delete_all_of(&self, principal: &Principal) -> StoreFuture<'_, usize> {
        let index = self.index_key(principal);
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let ended: i64 = self
                .scripts
                .delete_all_of
                .key(&index)
                .arg(&self.prefix)
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            Ok(usize::try_from(ended).unwrap_or(0))
        })
    }
}
