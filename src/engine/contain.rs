//! Third-party parsers that may panic on malformed input (mozjpeg by design: libjpeg's
//! errors unwind as panics; candle's model builders and the tokenizers crate on inputs
//! they do not check). Our callers turn the panic into an error naming the file.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`; a panic becomes `Err` with its message. Only for third-party code: our
/// own parsers return errors and never rely on this.
pub fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    // Nothing `f` borrows is used after a panic except to build the error.
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_string()
        } else {
            "panicked".to_string()
        }
    })
}
