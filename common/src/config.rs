//! Config files: TOML with unknown keys refused, and the `cluster.toml` a client uses.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read config {path:?}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parse config {path:?}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path:?}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Reads a TOML file into `T` (whose serde derive should carry `deny_unknown_fields`).
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        message: e.to_string(),
    })
}

/// What a client needs to reach a cluster (`DIR/cluster.toml` written by `cairn dev up`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// gRPC addresses (`host:port`) of the metadata replicas; any one is enough, the
    /// client tries them in turn.
    pub meta: Vec<String>,
    /// Chunk size in bytes for new objects (default 4 MiB).
    #[serde(default = "default_chunk_size")]
    pub chunk_size: usize,
    /// Directory with `ca.pem` and this client's `TLS_NAME.pem` / `.key` (from
    /// `cairn cert`); relative to the cluster file's directory.
    #[serde(default)]
    pub tls_dir: Option<PathBuf>,
    /// Certificate name in `tls_dir` (default "client").
    #[serde(default = "default_tls_name")]
    pub tls_name: String,
    /// Plaintext gRPC (development only; the daemons must run with `--insecure` too).
    #[serde(default)]
    pub insecure: bool,
    /// A file holding an API token (`cairn user add`): calls then act as the token's user
    /// instead of the certificate's name. Relative to the cluster file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

fn default_tls_name() -> String {
    "client".into()
}

fn default_chunk_size() -> usize {
    crate::DEFAULT_CHUNK_SIZE
}

impl ClusterFile {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut file: ClusterFile = load_toml(path)?;
        if let Some(base) = path.parent() {
            for relative in [&mut file.tls_dir, &mut file.token_file] {
                if let Some(p) = relative.as_mut() {
                    *p = base.join(&*p);
                }
            }
        }
        let invalid = |message: &str| ConfigError::Invalid {
            path: path.into(),
            message: message.into(),
        };
        if file.meta.is_empty() {
            return Err(invalid("`meta` lists no metadata addresses"));
        }
        if file.tls_dir.is_some() == file.insecure {
            return Err(invalid(
                "set exactly one of `tls_dir` (certificates from `cairn cert`) and `insecure = true`",
            ));
        }
        if !(4096..=64 * 1024 * 1024).contains(&file.chunk_size) {
            return Err(invalid(
                "`chunk_size` must be between 4096 and 67108864 bytes",
            ));
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_file_refuses_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("cairn-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, "meta = [\"127.0.0.1:1\"]\ntls_dir = \"tls\"\n").unwrap();
        let file = ClusterFile::load(&good).unwrap();
        assert_eq!(file.chunk_size, crate::DEFAULT_CHUNK_SIZE);
        assert_eq!(file.tls_dir, Some(dir.join("tls")), "relative to the file");
        assert_eq!(file.tls_name, "client");
        for (name, text) in [
            ("neither.toml", "meta = [\"127.0.0.1:1\"]\n"),
            (
                "both.toml",
                "meta = [\"127.0.0.1:1\"]\ntls_dir = \"t\"\ninsecure = true\n",
            ),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            assert!(
                matches!(ClusterFile::load(&path), Err(ConfigError::Invalid { .. })),
                "{name}"
            );
        }
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "meta = [\"127.0.0.1:1\"]\nmetta = 1\n").unwrap();
        assert!(matches!(
            ClusterFile::load(&bad),
            Err(ConfigError::Parse { .. })
        ));
        let empty = dir.join("empty.toml");
        std::fs::write(&empty, "meta = []\n").unwrap();
        assert!(matches!(
            ClusterFile::load(&empty),
            Err(ConfigError::Invalid { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
