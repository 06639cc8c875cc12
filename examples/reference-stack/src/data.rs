//! The app's own data: its users (argon2-hashed passwords) and notes (in
//! memory, or in Redis so several instances share them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, SaltString};
use argon2::{Argon2, Block, Params, PasswordHash, PasswordHasher};
use portcullis::Principal;
use portcullis::redis::RedisConnection;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

/// A user who can log in.
pub(crate) struct User {
    pub(crate) name: &'static str,
    pub(crate) scopes: &'static [&'static str],
    password_hash: String,
}

/// The demo users, hashed at start (argon2id, random salts).
///
/// Checks run on the blocking pool, at most two at a time, each in one of
/// two reused 19 MiB work areas: a burst of logins neither stalls the
/// async workers nor makes the allocator hand out (and strand) a fresh
/// 19 MiB block per login.
pub(crate) struct Users {
    users: Vec<User>,
    work_areas: Arc<Mutex<Vec<Vec<Block>>>>,
    permits: Arc<tokio::sync::Semaphore>,
}

const CONCURRENT_CHECKS: usize = 2;

impl Users {
    pub(crate) fn demo() -> Result<Self, String> {
        let hash = |password: &str| {
            Argon2::default()
                .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
                .map(|hash| hash.to_string())
                .map_err(|error| format!("hashing a password failed: {error}"))
        };
        Ok(Self {
            users: vec![
                User {
                    name: "alice",
                    scopes: &["notes:read", "notes:write"],
                    password_hash: hash("alice-password")?,
                },
                User {
                    name: "bob",
                    scopes: &["notes:read"],
                    password_hash: hash("bob-password")?,
                },
            ],
            work_areas: Arc::default(),
            permits: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_CHECKS)),
        })
    }

    /// The user, if `password` is theirs. Unknown users cost a hash check
    /// too, so timing does not tell which names exist.
    pub(crate) async fn check(&self, name: &str, password: &str) -> Option<&User> {
        let user = self.users.iter().find(|user| user.name == name);
        let hash = user.map_or(self.users[0].password_hash.clone(), |user| user.password_hash.clone());
        let _permit = self.permits.acquire().await.ok()?;
        let work_areas = self.work_areas.clone();
        let password = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || {
            let mut memory = work_areas.lock().ok()?.pop().unwrap_or_default();
            let matches = verify(&mut memory, &password, &hash);
            work_areas.lock().ok()?.push(memory);
            Some(matches)
        })
        .await
        .ok()??;
        user.filter(|_| matches)
    }

    pub(crate) fn scopes_of(&self, name: &str) -> &'static [&'static str] {
        self.users
            .iter()
            .find(|user| user.name == name)
            .map_or(&[], |user| user.scopes)
    }
}

/// Verifies `password` against a PHC string in `memory` (grown once to the
/// hash's memory cost, then reused).
fn verify(memory: &mut Vec<Block>, password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(params), Some(expected), Some(salt)) = (Params::try_from(&parsed), parsed.hash, parsed.salt) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params.clone());
    if argon2
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..params.block_count()])
        .is_err()
    {
        return false;
    }
    // `Output` compares in constant time.
    Output::new(&out).is_ok_and(|computed| computed == expected)
}

/// One note.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Note {
    pub(crate) id: u64,
    pub(crate) text: String,
}

/// Notes per principal `(issuer, subject)`: another issuer's `alice` is
/// someone else, with notes of her own.
pub(crate) enum Notes {
    Memory(Mutex<HashMap<String, Vec<Note>>>),
    Redis(RedisConnection),
    Postgres(portcullis::postgres::Pool),
}

/// The stack's own table (the library's schema holds only its stores).
pub(crate) const NOTES_TABLE: &str = "CREATE TABLE IF NOT EXISTS reference_notes \
    (id bigserial PRIMARY KEY, principal text NOT NULL, text text NOT NULL); \
    CREATE INDEX IF NOT EXISTS reference_notes_by_principal ON reference_notes (principal)";

impl Notes {
    pub(crate) async fn list(&self, principal: &Principal) -> Result<Vec<Note>, String> {
        match self {
            Self::Memory(notes) => Ok(notes
                .lock()
                .map_err(|_| "notes lock poisoned")?
                .get(&principal.key())
                .cloned()
                .unwrap_or_default()),
            Self::Redis(connection) => {
                let mut connection = connection.clone();
                let items: Vec<String> = connection
                    .lrange(format!("reference:notes:{}", principal.key()), 0, -1)
                    .await
                    .map_err(|error| error.to_string())?;
                Ok(items
                    .iter()
                    .filter_map(|item| serde_json::from_str(item).ok())
                    .collect())
            }
            Self::Postgres(pool) => {
                let client = pool.get().await.map_err(|error| error.to_string())?;
                let rows = client
                    .query(
                        "SELECT id, text FROM reference_notes WHERE principal = $1 ORDER BY id",
                        &[&principal.key()],
                    )
                    .await
                    .map_err(|error| error.to_string())?;
                Ok(rows
                    .iter()
                    .map(|row| Note {
                        id: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
                        text: row.get(1),
                    })
                    .collect())
            }
        }
    }

    pub(crate) async fn add(&self, principal: &Principal, text: String) -> Result<Note, String> {
        match self {
            Self::Memory(notes) => {
                let mut notes = notes.lock().map_err(|_| "notes lock poisoned")?;
                let list = notes.entry(principal.key()).or_default();
                let note = Note {
                    id: list.len() as u64 + 1,
                    text,
                };
                list.push(note.clone());
                Ok(note)
            }
            Self::Redis(connection) => {
                let mut connection = connection.clone();
                let id: u64 = connection
                    .incr("reference:notes:next-id", 1)
                    .await
                    .map_err(|error| error.to_string())?;
                let note = Note { id, text };
                let json = serde_json::to_string(&note).map_err(|error| error.to_string())?;
                let _: i64 = connection
                    .rpush(format!("reference:notes:{}", principal.key()), json)
                    .await
                    .map_err(|error| error.to_string())?;
                Ok(note)
            }
            Self::Postgres(pool) => {
                let client = pool.get().await.map_err(|error| error.to_string())?;
                let row = client
                    .query_one(
                        "INSERT INTO reference_notes (principal, text) VALUES ($1, $2) RETURNING id",
                        &[&principal.key(), &text],
                    )
                    .await
                    .map_err(|error| error.to_string())?;
                Ok(Note {
                    id: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
                    text,
                })
            }
        }
    }
}
