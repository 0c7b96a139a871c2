//! Encryption key rotation (`lasso keys rotate`): with a new `LASSO_ENCRYPTION_KEY` and the
//! old one in `LASSO_PREVIOUS_ENCRYPTION_KEYS`, re-seals every stored secret under the new
//! key. Every store re-seals its own values, row by row and only where a previous key sealed
//! them, so the system keeps running meanwhile and an interrupted run is simply run again.
//! In-flight OAuth sessions (PKCE verifiers, minutes long) are not re-sealed: keep the old key
//! configured until they have expired.

use crate::{Context, Result, connections, environments, integrations};

/// What a rotation run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rotation {
    /// Values re-sealed under the current key.
    pub resealed: u64,
}

/// Re-seals at most `limit` values (all with `None`); a run that re-sealed nothing means no
/// value needs a previous key any more.
pub async fn rotate(ctx: &Context, limit: Option<u64>) -> Result<Rotation> {
    let limit = limit.unwrap_or(u64::MAX);
    let (db, cipher) = (&ctx.db, &ctx.cipher);
    let mut resealed = connections::reseal(db, cipher, limit).await?;
    resealed += integrations::reseal(db, cipher, limit - resealed).await?;
    resealed += environments::reseal(db, cipher, limit - resealed).await?;
    Ok(Rotation { resealed })
}
