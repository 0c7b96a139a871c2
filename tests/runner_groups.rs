//! Runner groups: a runner of group A, connected as its group's database user, cannot read or
//! change anything of an environment in group B — not its connections, records or tasks — even
//! when a crafted task asks it to.

use lasso_shared::connections;
use lasso_shared::queue::{NewTask, TaskKind, TaskMessage, TaskState, tasks};
use lasso_shared::records::{self, ListQuery, Scope};
use lasso_shared::runner::{self, Outcome};
use lasso_shared::{Context, Error, environments, runner_groups};
use lasso_tests::*;
use serde_json::json;

struct Group {
    name: String,
    env_id: i64,
    connection: i64,
}

/// A context for a runner of `group`: the same database, as the group's runner user.
async fn runner_context(db: &TestDb, group: &str) -> Context {
    Context::build(config(&runner_database(db, group).await, &[]), None).unwrap()
}

async fn group(admin: &Context, api: &Api, name: &str) -> Group {
    let group = unique(name).replace('-', "_");
    let (env, key) = environments::create(&admin.db, name).await.unwrap();
    runner_groups::assign(&admin.db, env.id, &group)
        .await
        .unwrap();
    let api = Api::new(&api.base, &key);
    api.post(
        "/integrations",
        json!({"provider": "openai", "unique_key": "openai"}),
    )
    .await;
    let (status, body) = api
        .post(
            "/connections",
            json!({"provider_config_key": "openai", "connection_id": "shared-name",
                   "credentials": {"type": "API_KEY", "apiKey": format!("sk-{name}-secret")}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let connection = body["id"].as_i64().unwrap();
    records::save(
        &admin.db,
        &Scope::new(connection, "Doc", None),
        &[json!({"id": "1", "owner": name})],
        None,
    )
    .await
    .unwrap();
    Group {
        name: group,
        env_id: env.id,
        connection,
    }
}

#[tokio::test]
async fn a_runner_cannot_reach_another_groups_data() {
    let db = fresh_database().await;
    let admin = local_context(&db).await;
    let api = Api::new(&serve_api(admin.clone()).await, "");
    let a = group(&admin, &api, "alpha").await;
    let b = group(&admin, &api, "beta").await;
    let runner_a = runner_context(&db, &a.name).await;

    // Its own group's data is there...
    let own = connections::get(
        &runner_a.db,
        &runner_a.cipher,
        a.env_id,
        "openai",
        "shared-name",
    )
    .await
    .unwrap();
    assert_eq!(own.id, a.connection);
    let own_records = records::list(
        &runner_a.db,
        &Scope::new(a.connection, "Doc", None),
        &ListQuery {
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(own_records.records.len(), 1);

    // ...the other group's is not, asked for directly by its ids.
    let theirs = connections::get(
        &runner_a.db,
        &runner_a.cipher,
        b.env_id,
        "openai",
        "shared-name",
    )
    .await;
    assert!(matches!(theirs, Err(Error::NotFound { .. })), "{theirs:?}");
    let their_records = records::list(
        &runner_a.db,
        &Scope::new(b.connection, "Doc", None),
        &ListQuery {
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(their_records.records.is_empty());
    // Writing into the other group's connection is refused by the database.
    let write = records::save(
        &runner_a.db,
        &Scope::new(b.connection, "Doc", None),
        &[json!({"id": "planted"})],
        None,
    )
    .await;
    assert!(write.is_err(), "{write:?}");
    assert_eq!(
        records::count(&admin.db, &Scope::new(b.connection, "Doc", None))
            .await
            .unwrap(),
        1
    );
    // Secret keys are out of reach altogether.
    let keys = sqlx::query("SELECT * FROM environment_keys")
        .execute(&runner_a.db)
        .await;
    assert!(keys.is_err(), "runner users have no grant on secret keys");

    // A task of group B handed to group A's runner: the runner cannot even see it.
    let theirs = tasks::insert(
        &admin.db,
        &[NewTask::new(
            b.env_id,
            TaskKind::Script,
            "x",
            json!({"script_key": "x.js"}),
        )],
    )
    .await
    .unwrap()[0];
    lasso_shared::dispatcher::dispatch_all(&admin)
        .await
        .unwrap();
    let body = serde_json::to_string(&TaskMessage { task_id: theirs }).unwrap();
    assert_eq!(
        runner::process_message(&runner_a, &body).await.unwrap(),
        Outcome::Skipped(theirs)
    );
    assert_eq!(
        tasks::get(&admin.db, theirs).await.unwrap().unwrap().state,
        TaskState::Dispatched,
        "left for its own group"
    );

    // A crafted task of group A that names group B's connection: the connection is not found.
    let crafted = tasks::insert(
        &admin.db,
        &[NewTask::new(
            a.env_id,
            TaskKind::Action,
            "x",
            json!({"integration": "openai", "connection_id": "shared-name", "function": "anything",
                   "environment_id": b.env_id}),
        )],
    )
    .await
    .unwrap()[0];
    lasso_shared::dispatcher::dispatch_all(&admin)
        .await
        .unwrap();
    let body = serde_json::to_string(&TaskMessage { task_id: crafted }).unwrap();
    runner::process_message(&runner_a, &body).await.unwrap();
    let task = tasks::get(&admin.db, crafted).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Failed);
    assert!(!task.error.unwrap().to_string().contains("beta-secret"));
}
