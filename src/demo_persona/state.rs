//! What the persona knows: counters, the little it remembers of its conversations, and the
//! state it was restored from. Shared by the HTTP handlers through an `Arc`; everything that
//! changes per request is an atomic, except the remembered message (a small, reused string).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::demo_persona::flags::Flags;
use crate::demo_persona::tokens::TokenText;

/// Tag of the state blob, checked on restore: a blob of another format is reported, not used.
pub const STATE_FORMAT: &str = "mindmesh-demo-persona/1";
/// Largest state file read at start.
pub const MAX_STATE_FILE_BYTES: u64 = 1024 * 1024;
/// The remembered user message is cut here (on a char boundary).
pub const MAX_REMEMBERED_BYTES: usize = 256;

pub static HEADER_PERSONA_ID: HeaderName = HeaderName::from_static("x-mindmesh-persona-id");
pub static HEADER_STATE_RESTORED: HeaderName = HeaderName::from_static("x-mindmesh-state-restored");

/// The blob `POST /mindmesh/state/save` returns and `MINDMESH_STATE_FILE` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateBlob {
    pub format: String,
    pub persona_id: String,
    /// Completion requests over the persona's whole life, across restarts.
    pub requests_served: u64,
    /// How many times this state has been restored before it was saved.
    pub restores: u64,
    pub saved_at_unix_ms: u64,
    pub memory: Memory,
}

/// The persona's "memory": what a real persona would carry across hibernation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    /// The last user message seen (truncated).
    pub last_user_message: String,
    /// FNV-1a over every user message seen, in order: two personas that saw the same
    /// conversation have the same digest.
    pub conversation_digest: String,
}

/// What became of `MINDMESH_STATE_FILE`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Restore {
    /// No state file was given: a fresh start.
    Fresh,
    Restored {
        file: PathBuf,
        from_persona_id: String,
        saved_at_unix_ms: u64,
    },
    /// A file was given but could not be used; the persona starts fresh and says why.
    Failed {
        file: PathBuf,
        error: String,
    },
}

impl Restore {
    pub fn restored(&self) -> bool {
        matches!(self, Restore::Restored { .. })
    }
}

pub struct AppState {
    pub flags: Flags,
    pub persona_id_header: HeaderValue,
    pub restored_header: HeaderValue,
    pub pid: u32,
    pub seed: u64,
    pub started: Instant,
    pub started_unix_s: u64,
    pub text: TokenText,
    pub restore: Restore,
    /// Completion requests received before this process started (from the restored state).
    pub requests_before: u64,
    pub restores: u64,
    /// Completion requests received by this process (successful or failed).
    pub requests_served: AtomicU64,
    /// Completion requests being answered now, and the most there ever were at once: what a
    /// gateway's concurrency limit is checked against, measured where it matters.
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    pub errors_injected: AtomicU64,
    /// Draws taken from the seeded sequence (see `faults::draw`).
    pub draws: AtomicU64,
    conversation_digest: AtomicU64,
    last_user_message: Mutex<String>,
    /// PID of the `--spawn-child` grandchild; 0 while there is none.
    child_pid: AtomicU32,
    /// Recent user messages: what `/mindmesh/metrics` reports as its cache hit rate.
    pub prompt_cache: crate::demo_persona::reported::PromptCache,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl AppState {
    pub fn new(flags: Flags, seed: u64, restore: Restore, blob: Option<StateBlob>) -> anyhow::Result<Self> {
        let persona_id_header = HeaderValue::from_str(&flags.persona_id)
            .map_err(|_| anyhow::anyhow!("persona id {:?} is not a valid header value", flags.persona_id))?;
        let restored_header = HeaderValue::from_static(if restore.restored() { "true" } else { "false" });
        let (requests_before, restores, memory) = match blob {
            Some(b) => (b.requests_served, b.restores + 1, b.memory),
            None => (0, 0, Memory::default()),
        };
        let digest = u64::from_str_radix(&memory.conversation_digest, 16).unwrap_or(FNV_OFFSET);
        let mut last = String::with_capacity(MAX_REMEMBERED_BYTES);
        last.push_str(truncate(&memory.last_user_message, MAX_REMEMBERED_BYTES));
        let text = TokenText::new(flags.tokens);
        Ok(AppState {
            persona_id_header,
            restored_header,
            pid: std::process::id(),
            seed,
            started: Instant::now(),
            started_unix_s: unix_ms() / 1000,
            text,
            restore,
            requests_before,
            restores,
            requests_served: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            errors_injected: AtomicU64::new(0),
            draws: AtomicU64::new(0),
            conversation_digest: AtomicU64::new(digest),
            last_user_message: Mutex::new(last),
            child_pid: AtomicU32::new(0),
            prompt_cache: Default::default(),
            flags,
        })
    }

    /// Count a completion request; returns its number within this process (from 1).
    pub fn count_request(&self) -> u64 {
        self.requests_served.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A completion request is being answered until the guard drops (a streamed answer keeps
    /// it until its last frame).
    pub fn enter(self: &std::sync::Arc<Self>) -> InFlight {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(std::sync::Arc::clone(self))
    }

    /// Remember the last user message of a request.
    pub fn remember(&self, user_message: &str) {
        self.prompt_cache.touch(fnv1a(FNV_OFFSET, user_message.as_bytes()));
        let mut h = self.conversation_digest.load(Ordering::Relaxed);
        loop {
            let next = fnv1a(h, user_message.as_bytes());
            match self.conversation_digest.compare_exchange_weak(h, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(seen) => h = seen,
            }
        }
        // the string keeps its capacity: no allocation once warm
        let mut last = self.last_user_message.lock().unwrap_or_else(|p| p.into_inner());
        last.clear();
        last.push_str(truncate(user_message, MAX_REMEMBERED_BYTES));
    }

    pub fn memory(&self) -> Memory {
        let last = self.last_user_message.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Memory {
            last_user_message: last,
            conversation_digest: format!("{:016x}", self.conversation_digest.load(Ordering::Relaxed)),
        }
    }

    pub fn requests_total(&self) -> u64 {
        self.requests_before + self.requests_served.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> StateBlob {
        StateBlob {
            format: STATE_FORMAT.to_owned(),
            persona_id: self.flags.persona_id.clone(),
            requests_served: self.requests_total(),
            restores: self.restores,
            saved_at_unix_ms: unix_ms(),
            memory: self.memory(),
        }
    }

    pub fn child_pid(&self) -> Option<u32> {
        Some(self.child_pid.load(Ordering::Relaxed)).filter(|&p| p != 0)
    }

    pub fn set_child_pid(&self, pid: Option<u32>) {
        self.child_pid.store(pid.unwrap_or(0), Ordering::Relaxed);
    }
}

/// One completion request being answered.
pub struct InFlight(std::sync::Arc<AppState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Read the state file, if one is given. Never fails the start: a bad file is reported.
pub fn load(file: Option<&Path>) -> (Restore, Option<StateBlob>) {
    let Some(file) = file.filter(|f| !f.as_os_str().is_empty()) else { return (Restore::Fresh, None) };
    match read_blob(file) {
        Ok(blob) => (
            Restore::Restored {
                file: file.to_owned(),
                from_persona_id: blob.persona_id.clone(),
                saved_at_unix_ms: blob.saved_at_unix_ms,
            },
            Some(blob),
        ),
        Err(error) => (Restore::Failed { file: file.to_owned(), error }, None),
    }
}

fn read_blob(file: &Path) -> Result<StateBlob, String> {
    use std::io::Read;
    let f = std::fs::File::open(file).map_err(|e| format!("cannot open: {e}"))?;
    let mut bytes = Vec::new();
    f.take(MAX_STATE_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_STATE_FILE_BYTES {
        return Err(format!("larger than {MAX_STATE_FILE_BYTES} bytes"));
    }
    let blob: StateBlob = serde_json::from_slice(&bytes).map_err(|e| format!("not a state blob: {e}"))?;
    if blob.format != STATE_FORMAT {
        return Err(format!("format {:?}, expected {STATE_FORMAT:?}", blob.format));
    }
    Ok(blob)
}

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    // a separator, so ["ab", "c"] and ["a", "bc"] differ
    (h ^ 0xff).wrapping_mul(FNV_PRIME)
}

fn truncate(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn state(blob: Option<StateBlob>) -> AppState {
        let flags = Flags::try_parse_from(["p", "--port", "0", "--persona-id", "p1"]).unwrap();
        let restore = if blob.is_some() {
            Restore::Restored { file: "x".into(), from_persona_id: "p1".into(), saved_at_unix_ms: 1 }
        } else {
            Restore::Fresh
        };
        AppState::new(flags, 7, restore, blob).unwrap()
    }

    #[test]
    fn snapshot_round_trips_through_a_restore() {
        let a = state(None);
        a.count_request();
        a.remember("remember the blue door");
        a.count_request();
        a.remember("é".repeat(200).as_str());
        let blob = a.snapshot();
        assert_eq!(blob.requests_served, 2);
        assert!(blob.memory.last_user_message.len() <= MAX_REMEMBERED_BYTES);
        let json = serde_json::to_string(&blob).unwrap();
        let back: StateBlob = serde_json::from_str(&json).unwrap();
        let b = state(Some(back));
        assert_eq!(b.requests_total(), 2);
        assert_eq!(b.restores, 1);
        assert_eq!(b.memory(), blob.memory);
        assert_eq!(b.restored_header, "true");
        // the same conversation gives the same digest, a different order does not
        let c = state(None);
        c.remember("remember the blue door");
        c.remember("é".repeat(200).as_str());
        assert_eq!(c.memory().conversation_digest, blob.memory.conversation_digest);
    }

    #[test]
    fn a_bad_state_file_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.json");
        std::fs::write(&f, b"{\"format\":\"other/9\"}").unwrap();
        let (r, blob) = load(Some(&f));
        assert!(blob.is_none());
        assert!(matches!(r, Restore::Failed { .. }), "{r:?}");
        let (r, _) = load(Some(&dir.path().join("missing")));
        assert!(matches!(r, Restore::Failed { .. }));
        assert!(matches!(load(None).0, Restore::Fresh));
        assert!(matches!(load(Some(Path::new(""))).0, Restore::Fresh));
    }
}
