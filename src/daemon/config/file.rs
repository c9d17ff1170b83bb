//! The daemon's configuration file as written: every key it may hold, with no defaults applied
//! and no secret resolved yet. Unknown keys and wrong types are refused here, with the YAML
//! position of the offending key (through `pipeline::deserialize_at`).

use std::fmt;
use std::path::PathBuf;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::duration::HumanDuration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DaemonFile {
    pub listen: Option<String>,
    pub state: Option<StateFile>,
    pub work_dir: Option<PathBuf>,
    pub concurrency: Option<usize>,
    pub shutdown_grace: Option<HumanDuration>,
    pub max_body_bytes: Option<usize>,
    #[serde(default)]
    pub sources: SourcesFile,
    #[serde(default)]
    pub api: ApiFile,
    #[serde(default)]
    pub repositories: Vec<RepositoryFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub(crate) enum StateFile {
    Sqlite(PathBuf),
    Postgres(PostgresFile),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostgresFile {
    pub url_env: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourcesFile {
    pub github: Option<SecretSourceFile>,
    pub gitlab: Option<SecretSourceFile>,
    pub generic: Option<SecretSourceFile>,
}

/// Where a secret comes from. Secrets are never written in the file itself, so the file can be
/// committed and shown.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretSourceFile {
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiFile {
    /// `sha256:<64 hex digits>` of each accepted bearer token.
    #[serde(default)]
    pub tokens: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RepositoryFile {
    pub name: String,
    pub clone_url: String,
    pub pipeline: Option<PathBuf>,
    #[serde(default)]
    pub branches: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    /// Branch glob → pipeline environment, in the order written (first match wins).
    #[serde(default)]
    pub environments: OrderedPairs<String>,
    pub credentials: Option<CredentialsFile>,
    pub known_hosts: Option<PathBuf>,
    #[serde(default)]
    pub env: OrderedPairs<EnvValueFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CredentialsFile {
    pub username: Option<String>,
    pub token_env: Option<String>,
    pub ssh_key: Option<PathBuf>,
    pub passphrase_env: Option<String>,
}

/// A run's environment variable: a literal value, or `{ from_env: NAME }` read from the
/// daemon's own environment (for values that must not be written in the file).
#[derive(Debug)]
pub(crate) enum EnvValueFile {
    Literal(String),
    FromEnv(String),
}

impl<'de> Deserialize<'de> for EnvValueFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FromEnv {
            from_env: String,
        }
        struct EnvVisitor;
        impl<'de> Visitor<'de> for EnvVisitor {
            type Value = EnvValueFile;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, or `{ from_env: NAME }`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(EnvValueFile::Literal(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let from = FromEnv::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(EnvValueFile::FromEnv(from.from_env))
            }
        }
        deserializer.deserialize_any(EnvVisitor)
    }
}

/// A YAML mapping kept in the order it was written, where the order means something (the first
/// matching branch glob wins).
#[derive(Debug)]
pub(crate) struct OrderedPairs<T>(pub Vec<(String, T)>);

impl<T> Default for OrderedPairs<T> {
    fn default() -> Self {
        OrderedPairs(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OrderedPairs<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairsVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for PairsVisitor<T> {
            type Value = OrderedPairs<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut pairs = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, T>()? {
                    pairs.push((key, value));
                }
                Ok(OrderedPairs(pairs))
            }
        }
        deserializer.deserialize_map(PairsVisitor(std::marker::PhantomData))
    }
}
