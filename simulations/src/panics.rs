//! A panic inside a spawned task (a node's supervisor, its mesh loop) is caught by tokio and
//! ends only that task: the run would go on with a node that no longer supervises, wait for
//! what never comes and spin on virtual time. A panic hook notes the first panic of each
//! simulation thread, and the checker ends the run with it.

use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    static FIRST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Install the hook (once per process; the previous hook still prints the panic).
pub fn watch() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let what = info.to_string();
            // try_with: a panic while the thread's locals are being torn down has nowhere to go
            let _ = FIRST_PANIC.try_with(|p| {
                if let Ok(mut p) = p.try_borrow_mut() {
                    p.get_or_insert(what);
                }
            });
            previous(info);
        }));
    });
}

/// The first panic on this thread since the last call, if any.
pub fn take() -> Option<String> {
    FIRST_PANIC.with(|p| p.borrow_mut().take())
}
