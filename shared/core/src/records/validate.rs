//! Checks a batch before anything is written: every record an object with an `id`, no id twice,
//! sizes within limits. Errors name the record index and the problem.

use serde_json::Value;
use uuid::Uuid;

use crate::{Error, Result};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_records: usize,
    pub max_record_bytes: usize,
    pub max_batch_bytes: usize,
    pub max_id_len: usize,
}

pub const LIMITS: Limits = Limits {
    max_records: 10_000,
    max_record_bytes: 1024 * 1024,
    max_batch_bytes: 64 * 1024 * 1024,
    max_id_len: 1024,
};

/// A record ready to store: its id, its canonical JSON and the hash of that JSON.
#[derive(Debug)]
pub struct ValidRecord {
    pub id: String,
    pub json: String,
    pub hash: Uuid,
}

fn at(i: usize, message: impl Into<String>) -> Error {
    Error::invalid(format!("records[{i}]"), message)
}

fn id_of(i: usize, record: &Value, limits: &Limits) -> Result<String> {
    let Value::Object(fields) = record else {
        return Err(at(i, "is not an object"));
    };
    let id = match fields.get("id") {
        None | Some(Value::Null) => return Err(at(i, "has no `id`")),
        Some(Value::String(s)) if s.is_empty() => return Err(at(i, "has an empty `id`")),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(at(i, "has an `id` that is neither a string nor a number")),
    };
    if id.len() > limits.max_id_len {
        return Err(at(
            i,
            format!("has an `id` longer than {} bytes", limits.max_id_len),
        ));
    }
    Ok(id)
}

fn check_count(records: &[Value], limits: &Limits) -> Result<()> {
    if records.len() > limits.max_records {
        return Err(Error::invalid(
            "records",
            format!(
                "a batch holds at most {} records, got {}; save in smaller batches",
                limits.max_records,
                records.len()
            ),
        ));
    }
    Ok(())
}

/// Reports the first id that appears twice, naming both indices.
fn check_unique<'a>(ids: impl Iterator<Item = (usize, &'a str)>) -> Result<()> {
    let mut first_seen = std::collections::HashMap::new();
    for (i, id) in ids {
        if let Some(j) = first_seen.insert(id, i) {
            return Err(Error::invalid(
                format!("records[{i}]"),
                format!(
                    "has the same id `{id}` as records[{j}]; each id may appear once per batch"
                ),
            ));
        }
    }
    Ok(())
}

/// Validates a batch for saving or updating.
pub fn batch(records: &[Value], limits: &Limits) -> Result<Vec<ValidRecord>> {
    check_count(records, limits)?;
    let mut out = Vec::with_capacity(records.len());
    let mut total = 0usize;
    for (i, record) in records.iter().enumerate() {
        let id = id_of(i, record, limits)?;
        // serde_json objects are sorted maps, so this text is canonical and its hash stable.
        let json = serde_json::to_string(record).map_err(|e| at(i, e.to_string()))?;
        if json.len() > limits.max_record_bytes {
            return Err(at(
                i,
                format!(
                    "is {} bytes; a record may hold at most {}",
                    json.len(),
                    limits.max_record_bytes
                ),
            ));
        }
        total += json.len();
        if total > limits.max_batch_bytes {
            return Err(Error::invalid(
                "records",
                format!(
                    "the batch exceeds {} bytes at records[{i}]; save in smaller batches",
                    limits.max_batch_bytes
                ),
            ));
        }
        let digest = blake3::hash(json.as_bytes());
        let hash = Uuid::from_bytes(digest.as_bytes()[..16].try_into().expect("16 bytes"));
        out.push(ValidRecord { id, json, hash });
    }
    check_unique(out.iter().enumerate().map(|(i, r)| (i, r.id.as_str())))?;
    Ok(out)
}

/// Validates a batch for deletion: only the ids matter.
pub fn ids(records: &[Value], limits: &Limits) -> Result<Vec<String>> {
    check_count(records, limits)?;
    let ids = records
        .iter()
        .enumerate()
        .map(|(i, r)| id_of(i, r, limits))
        .collect::<Result<Vec<_>>>()?;
    check_unique(ids.iter().enumerate().map(|(i, id)| (i, id.as_str())))?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(e: Error) -> (String, String) {
        match e {
            Error::Invalid { field, message } => (field, message),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn names_the_index_and_problem() {
        let cases = [
            (json!([{"id": "a"}, {"name": "x"}]), "records[1]", "no `id`"),
            (json!([{"id": ""}]), "records[0]", "empty"),
            (json!([{"id": {"x": 1}}]), "records[0]", "neither"),
            (json!([{"id": "a"}, 5]), "records[1]", "not an object"),
            (
                json!([{"id": "a"}, {"id": "b"}, {"id": "a"}]),
                "records[2]",
                "records[0]",
            ),
            (json!([{"id": 1}, {"id": "1"}]), "records[1]", "same id"),
        ];
        for (records, at, says) in cases {
            let (f, m) = field(batch(records.as_array().unwrap(), &LIMITS).unwrap_err());
            assert_eq!(f, at, "{m}");
            assert!(m.contains(says), "{m}");
        }
    }

    #[test]
    fn enforces_size_limits() {
        let small = Limits {
            max_records: 2,
            max_record_bytes: 30,
            max_batch_bytes: 50,
            max_id_len: 5,
        };
        let (f, _) = field(
            batch(
                &[json!({"id": 1}), json!({"id": 2}), json!({"id": 3})],
                &small,
            )
            .unwrap_err(),
        );
        assert_eq!(f, "records");
        let (f, m) = field(batch(&[json!({"id": 1, "big": "x".repeat(40)})], &small).unwrap_err());
        assert_eq!(f, "records[0]");
        assert!(m.contains("bytes"));
        let (f, _) = field(batch(&[json!({"id": "toolong"})], &small).unwrap_err());
        assert_eq!(f, "records[0]");
        let (f, m) = field(
            batch(
                &[
                    json!({"id": 1, "a": "x".repeat(15)}),
                    json!({"id": 2, "a": "x".repeat(15)}),
                ],
                &small,
            )
            .unwrap_err(),
        );
        assert_eq!(f, "records", "{m}");
    }

    #[test]
    fn hashing_ignores_key_order() {
        let a = batch(&[json!({"id": 1, "a": 1, "b": 2})], &LIMITS).unwrap();
        let b = batch(
            &[serde_json::from_str(r#"{"b":2,"a":1,"id":1}"#).unwrap()],
            &LIMITS,
        )
        .unwrap();
        assert_eq!(a[0].hash, b[0].hash);
        assert_eq!(a[0].json, b[0].json);
    }
}
