//! The door to memory-aware admission: the waker asks here before it wakes a persona, and
//! the admission actor (`capacity::Keeper`, which sits above the control facade it evicts
//! through) answers. Kept apart from the actor so the waker, below the control facade,
//! can ask without an import ring.

use mindmesh_supervisor::StatusTable;
use tokio::sync::{mpsc, oneshot, watch};

/// Admissions waiting for the actor; callers wait (backpressure) beyond it.
const INBOX: usize = 256;

/// A wake refused for want of memory.
#[derive(Debug, Clone, PartialEq)]
pub struct NoRoom {
    pub retry_after_s: u32,
    /// What was needed, what is free, what was kept and why.
    pub message: String,
}

pub(crate) struct Request {
    pub name: String,
    pub reply: oneshot::Sender<Result<(), NoRoom>>,
}

/// Asks the admission actor; cheap to clone.
#[derive(Clone)]
pub struct Admitter {
    tx: mpsc::Sender<Request>,
    status: watch::Receiver<StatusTable>,
}

/// The actor's end of the channel, handed to the admission actor (`capacity::Keeper`) once
/// the control facade exists (the waker, which admits, is made before it).
pub struct Inbox(mpsc::Receiver<Request>);

impl Inbox {
    pub(crate) fn into_receiver(self) -> mpsc::Receiver<Request> {
        self.0
    }
}

impl Admitter {
    pub fn channel(status: watch::Receiver<StatusTable>) -> (Admitter, Inbox) {
        let (tx, rx) = mpsc::channel(INBOX);
        (Admitter { tx, status }, Inbox(rx))
    }

    /// May `name` start here? Evicts to make room if it must. A persona that still has its
    /// process (paused) holds its memory already and is let through at once.
    pub async fn admit(&self, name: &str) -> Result<(), NoRoom> {
        if self.status.borrow().get(name).is_some_and(|s| s.phase.has_process()) {
            return Ok(());
        }
        let (reply, rx) = oneshot::channel();
        let stopping = || NoRoom { retry_after_s: 1, message: "the node is stopping".into() };
        self.tx.send(Request { name: name.to_owned(), reply }).await.map_err(|_| stopping())?;
        rx.await.unwrap_or_else(|_| Err(stopping()))
    }
}
