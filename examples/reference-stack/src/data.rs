//! The app's own data: its users (argon2-hashed passwords) and notes (in
//! memory, or in Redis so several instances share them).

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::password_hash::SaltString;
use argon2::password_hash::rand_core::OsRng;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

/// A user who can log in.
pub(crate) struct User {
    pub(crate) name: &'static str,
    pub(crate) scopes: &'static [&'static str],
    password_hash: String,
}

/// The demo users, hashed at start (argon2id, random salts).
pub(crate) struct Users(Vec<User>);

impl Users {
    pub(crate) fn demo() -> Result<Self, String> {
        let hash = |password: &str| {
            Argon2::default()
                .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
                .map(|hash| hash.to_string())
                .map_err(|error| format!("hashing a password failed: {error}"))
        };
        Ok(Self(vec![
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
        ]))
    }

    /// The user, if `password` is theirs. Unknown users cost a hash check
    /// too, so timing does not tell which names exist.
    pub(crate) fn check(&self, name: &str, password: &str) -> Option<&User> {
        let user = self.0.iter().find(|user| user.name == name);
        let hash = user.map_or(self.0[0].password_hash.as_str(), |user| user.password_hash.as_str());
        let parsed = PasswordHash::new(hash).ok()?;
        let matches = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
        user.filter(|_| matches)
    }

    pub(crate) fn scopes_of(&self, name: &str) -> &'static [&'static str] {
        self.0
            .iter()
            .find(|user| user.name == name)
            .map_or(&[], |user| user.scopes)
    }
}

/// One note.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Note {
    pub(crate) id: u64,
    pub(crate) text: String,
}

/// Notes per subject.
pub(crate) enum Notes {
    Memory(Mutex<HashMap<String, Vec<Note>>>),
    Redis(ConnectionManager),
}

impl Notes {
    pub(crate) async fn list(&self, subject: &str) -> Result<Vec<Note>, String> {
        match self {
            Self::Memory(notes) => Ok(notes
                .lock()
                .map_err(|_| "notes lock poisoned")?
                .get(subject)
                .cloned()
                .unwrap_or_default()),
            Self::Redis(connection) => {
                let mut connection = connection.clone();
                let items: Vec<String> = connection
                    .lrange(format!("reference:notes:{subject}"), 0, -1)
                    .await
                    .map_err(|error| error.to_string())?;
                Ok(items
                    .iter()
                    .filter_map(|item| serde_json::from_str(item).ok())
                    .collect())
            }
        }
    }

    pub(crate) async fn add(&self, subject: &str, text: String) -> Result<Note, String> {
        match self {
            Self::Memory(notes) => {
                let mut notes = notes.lock().map_err(|_| "notes lock poisoned")?;
                let list = notes.entry(subject.to_owned()).or_default();
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
                    .rpush(format!("reference:notes:{subject}"), json)
                    .await
                    .map_err(|error| error.to_string())?;
                Ok(note)
            }
        }
    }
}
