//! `lasso compile` and `lasso deploy`: compile a script project locally, then send it to a
//! Lasso api, which stores the bundles and switches the active versions all at once.

use std::path::Path;

use anyhow::{Context as _, bail};
use lasso_services::Error;
use lasso_services::scripts::{CompiledProject, DeployOutcome, DeployRequest, DeployedRef};

/// Compiles the project; on problems, prints each as `file:line:col: message` to stderr and
/// fails.
pub fn compile(dir: &Path) -> anyhow::Result<CompiledProject> {
    match lasso_compile::compile(dir) {
        Ok(project) if project.functions.is_empty() => bail!(
            "{} holds no functions: expected nango.yaml or scripts under <integration>/syncs|actions|on-events/",
            dir.display()
        ),
        Ok(project) => Ok(project),
        Err(Error::Compile(diagnostics)) => {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            bail!(
                "{} problem(s) in {}; nothing was deployed",
                diagnostics.len(),
                dir.display()
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// Posts a compiled project to `host`'s `POST /scripts/deploy`.
pub async fn deploy(
    project: CompiledProject,
    host: &str,
    secret_key: &str,
    integration: Option<String>,
) -> anyhow::Result<DeployOutcome> {
    let functions = match &integration {
        Some(key) => project
            .functions
            .into_iter()
            .filter(|f| &f.integration == key)
            .collect(),
        None => project.functions,
    };
    if let Some(key) = &integration
        && functions.is_empty()
    {
        bail!("the project has no functions for integration `{key}`");
    }
    let url = format!("{}/scripts/deploy", host.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(secret_key)
        .json(&DeployRequest {
            integration,
            functions,
        })
        .send()
        .await
        .with_context(|| format!("sending the project to {url}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let error = &body["error"];
        let mut message = format!(
            "deploy refused ({status}): {}",
            error["message"].as_str().unwrap_or(&text)
        );
        for e in error["errors"].as_array().into_iter().flatten() {
            message.push_str(&format!(
                "\n  {}: {}",
                e["field"].as_str().unwrap_or("-"),
                e["message"].as_str().unwrap_or_default()
            ));
        }
        bail!("{message}");
    }
    serde_json::from_str(&text).with_context(|| format!("reading the answer of {url}"))
}

/// One line per function: what happened to it.
pub fn describe(outcome: &DeployOutcome) -> String {
    let mut lines = Vec::new();
    let mut add = |what: &str, refs: &[DeployedRef]| {
        for r in refs {
            lines.push(format!(
                "{what:<9} {} {}/{} ({})",
                r.function_type, r.integration, r.name, r.bundle_key
            ));
        }
    };
    add("new", &outcome.created);
    add("updated", &outcome.updated);
    add("unchanged", &outcome.unchanged);
    add("removed", &outcome.deleted);
    lines.join("\n")
}
