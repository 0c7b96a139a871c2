//! Runner groups: which runners may run an environment's code. Each group has its own queue,
//! runner function and database user `lasso_runner_<group>` (a member of `lasso_runner`, whose
//! grants and row-level security limit it to the group's environments — see the migration).

use crate::EnvironmentId;
use std::collections::HashMap;

use secrecy::SecretString;
use sqlx::PgPool;

use crate::crypto::random_token;
use crate::{Error, Result};

pub const SHARED: &str = "shared";

/// What a group name may be: it becomes part of a database user's name.
pub const NAME_RULE: &str =
    "1-31 lowercase letters, digits or `_`, starting with a letter or digit";

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 31
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

pub fn check_name(name: &str) -> Result<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(Error::invalid("runner_group", format!("use {NAME_RULE}")))
    }
}

/// The database user of a group's runners.
pub fn database_user(group: &str) -> String {
    format!("lasso_runner_{group}")
}

/// Creates the group's database user (or gives it a new password) and returns the password.
pub async fn create_database_user(db: &PgPool, group: &str) -> Result<SecretString> {
    check_name(group)?;
    let user = database_user(group);
    // A URL-safe random token: it cannot contain a quote, so it is safe inside the literal
    // (DDL takes no bind parameters).
    let password = random_token("");
    let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_roles WHERE rolname = $1")
        .bind(&user)
        .fetch_optional(db)
        .await?;
    let statement = match exists {
        Some(_) => format!("ALTER ROLE \"{user}\" LOGIN PASSWORD '{password}'"),
        None => format!("CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}' IN ROLE lasso_runner"),
    };
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .execute(db)
        .await?;
    Ok(SecretString::from(password))
}

/// Moves an environment's code to another group's runners.
pub async fn assign(db: &PgPool, environment_id: EnvironmentId, group: &str) -> Result<()> {
    check_name(group)?;
    sqlx::query("UPDATE environments SET runner_group = $2 WHERE id = $1")
        .bind(environment_id)
        .bind(group)
        .execute(db)
        .await?;
    Ok(())
}

/// Every group some environment runs on, and the shared group.
pub async fn in_use(db: &PgPool) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT runner_group FROM environments UNION SELECT $1 ORDER BY 1")
            .bind(SHARED)
            .fetch_all(db)
            .await?,
    )
}

/// The groups of several environments (the dispatcher routes a batch with one query).
pub async fn of_environments(
    db: &PgPool,
    environment_ids: &[EnvironmentId],
) -> Result<HashMap<EnvironmentId, String>> {
    let rows: Vec<(EnvironmentId, String)> =
        sqlx::query_as("SELECT id, runner_group FROM environments WHERE id = ANY($1)")
            .bind(environment_ids)
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_identifiers() {
        for good in ["shared", "acme", "team_7"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Acme",
            "a-b",
            "a\"b",
            "_x",
            "x; DROP ROLE y",
            &"a".repeat(32),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
