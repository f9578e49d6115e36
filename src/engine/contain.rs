//! Third-party parsers that may panic on malformed input (mozjpeg by design: libjpeg's
//! errors unwind as panics; candle's model builders and the tokenizers crate on inputs
//! they do not check). Our callers turn the panic into an error naming the file.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    /// Set while `contain` runs on this thread: its panics are errors, not news.
    static CONTAINING: Cell<bool> = const { Cell::new(false) };
}

/// Keeps the panic hook quiet for panics `contain` turns into errors (the binary calls
/// this once); every other panic is reported as before.
pub fn quiet_contained_panics() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !CONTAINING.with(Cell::get) {
            report(info);
        }
    }));
}

/// Runs `f`; a panic becomes `Err` with its message. Only for third-party code: our
/// own parsers return errors and never rely on this.
pub fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    // Nothing `f` borrows is used after a panic except to build the error.
    let outer = CONTAINING.with(|c| c.replace(true));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    CONTAINING.with(|c| c.set(outer));
    outcome.map_err(|payload| {
        if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_string()
        } else {
            "panicked".to_string()
        }
    })
}
