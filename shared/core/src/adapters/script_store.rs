//! Where script bundles live: S3 on AWS, a directory locally. Keys are relative paths such as
//! `bundles/<sha256>.js`; both implementations reject anything that could escape the store.

use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Error, Result};

#[async_trait]
pub trait ScriptStore: Send + Sync {
    async fn put(&self, key: &str, body: Bytes) -> Result<()>;
    /// `Error::NotFound` when the key does not exist.
    async fn get(&self, key: &str) -> Result<Bytes>;
    /// Keys under `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;
}

fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && !key.starts_with('/')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "script key",
            format!("`{key}` is not a relative path of letters, digits, `._-/`"),
        ))
    }
}

pub struct S3ScriptStore {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl S3ScriptStore {
    pub fn new(sdk: &aws_config::SdkConfig, bucket: String, prefix: String) -> Self {
        let conf = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(super::custom_s3_endpoint(sdk))
            .build();
        Self {
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket,
            prefix,
        }
    }

    fn object_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }
}

fn s3_error(action: &str, key: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    // The SDK's Display shows only the outermost layer; its context names the cause.
    let detail = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
    Error::ScriptStore {
        message: format!("{action} `{key}`: {detail}"),
        source: Some(Box::new(e)),
    }
}

#[async_trait]
impl ScriptStore for S3ScriptStore {
    async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        check_key(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .body(body.into())
            .send()
            .await
            .map_err(|e| s3_error("put", key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        check_key(key)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) if se.is_no_such_key() => Error::not_found(format!("script `{key}`")),
                _ => s3_error("get", key, e),
            })?;
        let data = out
            .body
            .collect()
            .await
            .map_err(|e| s3_error("read", key, e))?;
        Ok(data.into_bytes())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let full_prefix = self.object_key(prefix);
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(full_prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_error("list", prefix, e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .map(|k| k[strip..].to_string()),
            );
        }
        keys.sort();
        Ok(keys)
    }
}

pub struct DirScriptStore {
    root: PathBuf,
}

impl DirScriptStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }
}

fn io_error(action: &str, key: &str, e: std::io::Error) -> Error {
    Error::ScriptStore {
        message: format!("{action} `{key}`: {e}"),
        source: Some(Box::new(e)),
    }
}

#[async_trait]
impl ScriptStore for DirScriptStore {
    async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        check_key(key)?;
        let path = self.root.join(key);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io_error("put", key, e))?;
        }
        // Write then rename, so a reader never sees half a bundle.
        let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
        tokio::fs::write(&tmp, &body)
            .await
            .map_err(|e| io_error("put", key, e))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| io_error("put", key, e))
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        check_key(key)?;
        match tokio::fs::read(self.root.join(key)).await {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::not_found(format!("script `{key}`")))
            }
            Err(e) => Err(io_error("get", key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("list", prefix, e)),
            };
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(|e| io_error("list", prefix, e))?
            {
                let path = entry.path();
                let file_type = entry
                    .file_type()
                    .await
                    .map_err(|e| io_error("list", prefix, e))?;
                if file_type.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    let key = rel.to_string_lossy().replace('\\', "/");
                    if key.starts_with(prefix) && !key.contains(".tmp-") {
                        keys.push(key);
                    }
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_store() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../b",
            "a//b",
            "a b",
            "a/./b",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["bundles/abc.js", "a", "x/y-z_1.js"] {
            assert!(check_key(good).is_ok(), "{good:?} refused");
        }
    }
}
