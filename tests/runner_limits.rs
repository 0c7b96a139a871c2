//! A tenant cannot starve the other tasks of its runner: what a run holds on the host side (the
//! provider answers it reads, the JSON crossing into the sandbox) counts against its memory
//! limit, and its concurrent host calls, log bytes and answer sizes are capped, each with an
//! error that names the setting.

use lasso_services::queue::{TaskKind, TaskState, tasks};
use lasso_tests::fakehub::{run, setup};
use lasso_tests::run_alone;
use serde_json::json;

/// The process's peak resident memory so far.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

fn failure(task: &tasks::Task) -> String {
    assert_eq!(task.state, TaskState::Failed, "{:?}", task.output);
    task.error.as_ref().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn host_buffers_count_against_the_run_memory_limit() {
    run_alone("runner_limits::host_buffers_count_against_the_run_memory_limit_in_own_process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measures the process's memory; host_buffers_count_against_the_run_memory_limit runs it alone"]
async fn host_buffers_count_against_the_run_memory_limit_in_own_process() {
    // Thirty 8 MiB answers at once from a run allowed 16 MiB: read whole on the host, they
    // would take 240 MiB of the runner that nine other tasks share.
    let s = setup(&[
        ("LASSO_SCRIPT_MEMORY_MB", "16".into()),
        ("LASSO_SCRIPT_MAX_CONCURRENT_CALLS", "64".into()),
    ])
    .await;
    let before = peak_rss();
    let task = run(
        &s,
        TaskKind::Action,
        "fetch-blobs",
        Some(json!({"calls": 30, "bytes": 8 << 20})),
    )
    .await;
    let growth = peak_rss().saturating_sub(before);
    let message = failure(&task);
    println!("peak memory grew by {growth} bytes; the run failed with: {message}");
    assert!(
        message.contains("memory limit of 16 MiB") && message.contains("LASSO_SCRIPT_MEMORY_MB"),
        "{message}"
    );
    assert!(
        growth < 64 << 20,
        "the process's peak memory grew by {growth} bytes for a run limited to 16 MiB"
    );
    s.workers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_caps_gets_an_error_naming_the_setting() {
    let s = setup(&[
        ("LASSO_SCRIPT_MAX_CONCURRENT_CALLS", "4".into()),
        ("LASSO_SCRIPT_RESPONSE_MB", "1".into()),
        ("LASSO_SCRIPT_LOG_MB", "1".into()),
    ])
    .await;
    let blobs = |calls: u32, bytes: u32| Some(json!({"calls": calls, "bytes": bytes}));

    let within = run(&s, TaskKind::Action, "fetch-blobs", blobs(4, 1024)).await;
    assert_eq!(within.state, TaskState::Succeeded, "{:?}", within.error);
    assert_eq!(within.output, Some(json!(4)));

    let crowd = run(&s, TaskKind::Action, "fetch-blobs", blobs(5, 1024)).await;
    let message = failure(&crowd);
    assert!(
        message.contains("at most 4") && message.contains("LASSO_SCRIPT_MAX_CONCURRENT_CALLS"),
        "{message}"
    );

    let large = run(&s, TaskKind::Action, "fetch-blobs", blobs(1, 2 << 20)).await;
    let message = failure(&large);
    assert!(
        message.contains("1 MiB") && message.contains("LASSO_SCRIPT_RESPONSE_MB"),
        "{message}"
    );

    // Forty lines of 60,000 characters: 2.4 MB of logs for a run allowed 1 MiB.
    let flood = run(
        &s,
        TaskKind::Action,
        "log-flood",
        Some(json!({"lines": 40, "size": 60_000})),
    )
    .await;
    let message = failure(&flood);
    assert!(
        message.contains("1 MiB") && message.contains("LASSO_SCRIPT_LOG_MB"),
        "{message}"
    );
    s.workers.stop().await;
}
