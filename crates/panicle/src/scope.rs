//! Extra context per thread and per task: user tags and the current request.
//!
//! A task scope is entered only while its future is polled (on the polling
//! thread), like a tokio task-local, so a panic inside a handler sees the
//! request it serves. The hook reads scopes with `try_borrow`/`try_lock`
//! only: it never waits on them.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use panicle_protocol::Request;

/// What a task scope carries.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScopeData {
    pub tags: BTreeMap<String, String>,
    pub request: Option<Request>,
}

pub(crate) type SharedScope = Arc<Mutex<ScopeData>>;

thread_local! {
    static THREAD_TAGS: RefCell<BTreeMap<String, String>> = const { RefCell::new(BTreeMap::new()) };
    static CURRENT: RefCell<Option<SharedScope>> = const { RefCell::new(None) };
    /// The id of the last event the hook built on this thread (or the
    /// derived id of a folded panic), for the layer's 500 answer.
    static LAST_EVENT_ID: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Sets a tag for panics of the current task (inside [`scoped`] or a
/// request of the tower layer), else of the current thread.
pub fn set_tag(key: impl Into<String>, value: impl Into<String>) {
    let (key, value) = (key.into(), value.into());
    let in_task = CURRENT.with(|c| match &*c.borrow() {
        Some(scope) => {
            if let Ok(mut s) = scope.lock() {
                s.tags.insert(key.clone(), value.clone());
            }
            true
        }
        None => false,
    });
    if !in_task {
        THREAD_TAGS.with(|t| t.borrow_mut().insert(key, value));
    }
}

/// Removes a tag set by [`set_tag`] in the same scope.
pub fn remove_tag(key: &str) {
    let in_task = CURRENT.with(|c| match &*c.borrow() {
        Some(scope) => {
            if let Ok(mut s) = scope.lock() {
                s.tags.remove(key);
            }
            true
        }
        None => false,
    });
    if !in_task {
        THREAD_TAGS.with(|t| t.borrow_mut().remove(key));
    }
}

/// Runs `future` in a scope of its own: tags set inside stay with this task
/// (whichever worker thread polls it). It starts with a copy of the tags
/// visible where it is created.
pub fn scoped<F: Future>(future: F) -> Scoped<F> {
    let (tags, request) = snapshot();
    Scoped {
        inner: Box::pin(future),
        scope: Arc::new(Mutex::new(ScopeData { tags, request })),
    }
}

/// A future running in its own tag scope; see [`scoped`].
pub struct Scoped<F> {
    inner: Pin<Box<F>>,
    scope: SharedScope,
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let scope = self.scope.clone();
        enter(&scope, || self.inner.as_mut().poll(cx))
    }
}

/// Makes `scope` current on this thread while `f` runs; restored also
/// when `f` unwinds.
pub(crate) fn enter<R>(scope: &SharedScope, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<SharedScope>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            let _ = CURRENT.try_with(|c| {
                if let Ok(mut c) = c.try_borrow_mut() {
                    *c = previous;
                }
            });
        }
    }
    let previous = CURRENT.with(|c| c.replace(Some(scope.clone())));
    let _restore = Restore(previous);
    f()
}

/// Tags (thread's, overridden by the task's) and the request, for the hook.
/// Never blocks: a scope that is busy is skipped.
pub(crate) fn snapshot() -> (BTreeMap<String, String>, Option<Request>) {
    let mut tags = THREAD_TAGS
        .try_with(|t| t.try_borrow().map(|t| t.clone()).unwrap_or_default())
        .unwrap_or_default();
    let mut request = None;
    let _ = CURRENT.try_with(|c| {
        if let Ok(c) = c.try_borrow()
            && let Some(scope) = &*c
            && let Ok(s) = scope.try_lock()
        {
            tags.extend(s.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
            request = s.request.clone();
        }
    });
    (tags, request)
}

pub(crate) fn set_last_event_id(id: &str) {
    let _ = LAST_EVENT_ID.try_with(|l| {
        if let Ok(mut l) = l.try_borrow_mut() {
            *l = Some(id.to_string());
        }
    });
}

/// The id of the event the hook built for the last panic on this thread.
/// A panic folded by storm control has an id of its own too, inside its
/// aggregate's range: the server resolves it to that aggregate.
pub fn take_last_event_id() -> Option<String> {
    LAST_EVENT_ID
        .try_with(|l| l.borrow_mut().take())
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        let waker = std::task::Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[test]
    fn thread_and_task_tags_are_separate() {
        set_tag("tenant", "acme");
        let inside = block_on(scoped(async {
            set_tag("order", "42");
            snapshot().0
        }));
        assert_eq!(inside.get("tenant").map(String::as_str), Some("acme"));
        assert_eq!(inside.get("order").map(String::as_str), Some("42"));
        let outside = snapshot().0;
        assert_eq!(
            outside.get("order"),
            None,
            "the task's tag stays in the task"
        );
        remove_tag("tenant");
        assert!(snapshot().0.is_empty());
    }

    #[test]
    fn scope_is_restored_after_an_unwind() {
        let scope: SharedScope = Arc::default();
        let r = std::panic::catch_unwind(|| enter(&scope, || panic!("boom")));
        assert!(r.is_err());
        assert!(CURRENT.with(|c| c.borrow().is_none()));
    }
}
