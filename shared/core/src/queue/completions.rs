//! Waiting for tasks to finish. In `listen` mode one session connection per process LISTENs on
//! `lasso_task_done` (sent by a trigger whenever an action task reaches a terminal state) and
//! wakes the waiters of that task; in `poll` mode waiters re-check on a backoff schedule, for
//! databases reached through a transaction-mode pooler, where LISTEN does not work.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use crate::Result;
use crate::config::ActionWait;

/// The channel the `tasks_action_done` trigger notifies, with the task id as payload.
pub const CHANNEL: &str = "lasso_task_done";
const POLL_FIRST: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(500);
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// What a check found: the value waited for, or the task to wait on before checking again
/// (the same one, or the next attempt of a retried task).
pub enum Check<T> {
    Ready(T),
    Watch(Uuid),
}

type Waiters = Mutex<HashMap<Uuid, Vec<(u64, Arc<Notify>)>>>;

/// The process's waiters, and (in listen mode) the listener that wakes them. Nothing connects
/// until the first wait.
pub struct Completions {
    mode: ActionWait,
    database_url: SecretString,
    waiters: Arc<Waiters>,
    next_token: std::sync::atomic::AtomicU64,
    listener: OnceLock<()>,
}

impl Completions {
    pub fn new(mode: ActionWait, database_url: SecretString) -> Self {
        Self {
            mode,
            database_url,
            waiters: Arc::default(),
            next_token: Default::default(),
            listener: OnceLock::new(),
        }
    }

    /// Runs `check` until it is `Ready` or `deadline` passes (`None`). After a `Watch(id)` it
    /// runs again when task `id` finishes (listen) or after a growing pause (poll). The waiter
    /// registers before each check, so a task that finishes in between still wakes it.
    pub async fn wait<T, F, Fut>(
        &self,
        first: Uuid,
        deadline: Instant,
        mut check: F,
    ) -> Result<Option<T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Check<T>>>,
    {
        if self.mode == ActionWait::Listen {
            self.start_listener();
        }
        let mut watched = first;
        let mut pause = POLL_FIRST;
        loop {
            let registration = (self.mode == ActionWait::Listen).then(|| self.register(watched));
            match check().await? {
                Check::Ready(value) => return Ok(Some(value)),
                Check::Watch(id) if id != watched => {
                    watched = id;
                    continue;
                }
                Check::Watch(_) => {}
            }
            let woken = async {
                match &registration {
                    Some(r) => r.notify.notified().await,
                    None => {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(POLL_MAX);
                    }
                }
            };
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep_until(deadline) => return Ok(None),
            }
        }
    }

    fn register(&self, id: Uuid) -> Registration {
        let token = self
            .next_token
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        self.waiters
            .lock()
            .expect("waiters lock")
            .entry(id)
            .or_default()
            .push((token, notify.clone()));
        Registration {
            id,
            token,
            notify,
            waiters: self.waiters.clone(),
        }
    }

    /// Spawns the listener once per process. It keeps one session connection (LISTEN does not
    /// survive a transaction-mode pooler) and reconnects with backoff when it drops.
    fn start_listener(&self) {
        self.listener.get_or_init(|| {
            tokio::spawn(listen(self.database_url.clone(), self.waiters.clone()));
        });
    }
}

/// A waiter's place in the map, removed when the wait moves on or ends.
struct Registration {
    id: Uuid,
    token: u64,
    notify: Arc<Notify>,
    waiters: Arc<Waiters>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut waiters = self.waiters.lock().expect("waiters lock");
        if let Some(list) = waiters.get_mut(&self.id) {
            list.retain(|(token, _)| *token != self.token);
            if list.is_empty() {
                waiters.remove(&self.id);
            }
        }
    }
}

fn wake(waiters: &Waiters, id: Option<Uuid>) {
    let waiters = waiters.lock().expect("waiters lock");
    let woken = waiters
        .iter()
        .filter(|(task, _)| id.is_none_or(|id| **task == id))
        .flat_map(|(_, list)| list.iter());
    for (_, notify) in woken {
        // A permit is stored when the waiter is between its check and its wait.
        notify.notify_one();
    }
}

async fn connect(url: &SecretString) -> Result<PgListener> {
    let options: PgConnectOptions = url
        .expose_secret()
        .parse()
        .map_err(|_| crate::Error::invalid("LASSO_DATABASE_URL", "not a valid Postgres URL"))?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(options.application_name("lasso-listener"));
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

async fn listen(url: SecretString, waiters: Arc<Waiters>) {
    let mut pause = RECONNECT_FIRST;
    loop {
        let mut listener = match connect(&url).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "task completion listener could not connect; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RECONNECT_MAX);
                continue;
            }
        };
        pause = RECONNECT_FIRST;
        // Tasks that finished while nobody listened sent nothing we saw: every waiter checks again.
        wake(&waiters, None);
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => match notification.payload().parse() {
                    Ok(id) => wake(&waiters, Some(id)),
                    Err(_) => tracing::warn!(
                        payload = notification.payload(),
                        "unexpected payload on the task completion channel"
                    ),
                },
                // The connection dropped and was re-established (LISTEN included); what was sent
                // in between is lost, so every waiter checks again.
                Ok(None) => wake(&waiters, None),
                Err(e) => {
                    tracing::warn!(error = %e, "task completion listener failed; reconnecting");
                    wake(&waiters, None);
                    break;
                }
            }
        }
    }
}
