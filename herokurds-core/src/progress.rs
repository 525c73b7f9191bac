//! Progress reporting: the library never prints.
//!
//! Long operations (a transfer, a checksum pass, a bucket sync, a whole
//! migration) describe what they are doing as typed events, one event enum
//! per module (`transfer::TransferEvent`, `s3::SyncEvent`, ...). The caller
//! passes something implementing [`Progress`] for that event type; the
//! binaries render the events as progress bars or NDJSON, embedders do what
//! they like. Every method has a no-op default, so `&NoProgress` is always a
//! valid argument.

/// Receives the events of a long-running operation.
///
/// Implementations must be cheap and must not block: events are delivered on
/// the worker that produced them.
pub trait Progress<E>: Send + Sync {
    /// Called for every event, in the order each worker produced them.
    fn event(&self, event: &E) {
        let _ = event;
    }
}

/// A [`Progress`] that ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl<E> Progress<E> for NoProgress {}

/// Any `Fn(&E)` closure is a [`Progress`].
impl<E, F> Progress<E> for F
where
    F: Fn(&E) + Send + Sync,
{
    fn event(&self, event: &E) {
        self(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn run<P: Progress<u32>>(p: &P) {
        for i in 0..3 {
            p.event(&i);
        }
    }

    #[test]
    fn closures_receive_every_event_in_order() {
        let seen = Mutex::new(Vec::new());
        run(&|e: &u32| seen.lock().unwrap().push(*e));
        assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn no_progress_accepts_any_event_type() {
        run(&NoProgress);
        NoProgress.event(&"a string event");
    }
}
