//! The repository config file of the CLI layout, `<repo>/versioning.conf`: one `key = value`
//! per line, `#` comments. Keys: `max_chain_depth`, `chunk_bytes`, `zstd_level` (the
//! [`RepoConfig`] fields of the same names); a missing key keeps its default, an unknown
//! one is an error (a typo must not silently change nothing).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::repo::RepoConfig;

/// The config file of the repository at `repo`.
pub fn config_path(repo: &Path) -> PathBuf {
    repo.join("versioning.conf")
}

/// The repository's config: the defaults overridden by its config file, if any.
pub fn load_config(repo: &Path) -> Result<RepoConfig> {
    let path = config_path(repo);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RepoConfig::default()),
        Err(e) => return Err(Error::io(&path)(e)),
    };
    parse_config(&text)
}

/// Parses the text of a config file over the defaults.
pub fn parse_config(text: &str) -> Result<RepoConfig> {
    let mut config = RepoConfig::default();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |reason: &str| Error::BadArgument {
            arg: line.to_string(),
            reason: reason.to_string(),
        };
        let (key, value) = line
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| bad("expected key = value"))?;
        match key {
            "max_chain_depth" => {
                config.max_chain_depth = value.parse().map_err(|_| bad("not a count"))?
            }
            "chunk_bytes" => {
                config.chunk_bytes = value
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n > 0)
                    .ok_or_else(|| bad("not a positive size in bytes"))?
            }
            "zstd_level" => config.zstd_level = value.parse().map_err(|_| bad("not a level"))?,
            _ => return Err(bad("unknown key")),
        }
    }
    Ok(config)
}

/// Writes the config file (tmp + rename, so a reader sees the old or the new file).
pub fn save_config(repo: &Path, config: &RepoConfig) -> Result<()> {
    let path = config_path(repo);
    let text = format!(
        "# ipfrs-versioning repository config\n\
         # most deltas a chunk's recipe may hold (its decode depth at checkout)\n\
         max_chain_depth = {}\n\
         chunk_bytes = {}\n\
         zstd_level = {}\n",
        config.max_chain_depth, config.chunk_bytes, config.zstd_level
    );
    let tmp = path.with_extension("conf.tmp");
    std::fs::write(&tmp, text).map_err(Error::io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(Error::io(&path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn keys_override_defaults_and_typos_are_refused() {
        let c = parse_config("# c\nmax_chain_depth = 3 # short\n\nzstd_level=5\n").unwrap();
        assert_eq!((c.max_chain_depth, c.zstd_level), (3, 5));
        assert_eq!(c.chunk_bytes, RepoConfig::default().chunk_bytes);
        assert!(parse_config("max_chain_deph = 3").is_err());
        assert!(parse_config("max_chain_depth = -1").is_err());
        assert!(parse_config("chunk_bytes = 0").is_err());
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_config(dir.path()).unwrap(), RepoConfig::default());
        save_config(dir.path(), &c).unwrap();
        assert_eq!(load_config(dir.path()).unwrap(), c);
    }
}
