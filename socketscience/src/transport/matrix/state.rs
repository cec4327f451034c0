//! The state file: the device, its access token and where the room was
//! last read, so that a restart resumes without logging in again and
//! without missing what was posted meanwhile.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::MatrixError;

/// What the state file holds (JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Saved {
    /// The homeserver the token belongs to.
    #[serde(default)]
    pub(crate) homeserver: String,
    /// The full user id (`@smokey:example.org`).
    #[serde(default)]
    pub(crate) user_id: String,
    /// The device the token belongs to (transaction ids are per device).
    #[serde(default)]
    pub(crate) device_id: Option<String>,
    /// The access token.
    #[serde(default)]
    pub(crate) access_token: Option<String>,
    /// The room the sync position belongs to.
    #[serde(default)]
    pub(crate) room_id: Option<String>,
    /// The `next_batch` of the last sync handed to the node.
    #[serde(default)]
    pub(crate) next_batch: Option<String>,
    /// The last message event of the room handed to the node (or seen at
    /// the first connect): a gap is read back to it.
    #[serde(default)]
    pub(crate) last_event_id: Option<String>,
}

/// Reads the state file; `Ok(None)` if it does not exist.
pub(crate) fn load(path: &Path) -> Result<Option<Saved>, MatrixError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(MatrixError::StateFile {
                path: path.to_owned(),
                reason: e.to_string(),
            })
        }
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| MatrixError::StateFile {
            path: path.to_owned(),
            reason: format!(
                "not a socketscience Matrix state file ({e}); delete it to start afresh"
            ),
        })
}

/// Writes the state file, owner-only (0600), through a temporary file so
/// that a crash never leaves half a file.
pub(crate) fn store(path: &Path, saved: &Saved) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(saved).map_err(std::io::Error::other)?;
    let mut tmp = PathBuf::from(path);
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    tmp.set_file_name(name);
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(&json)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_round_trips_owner_only() {
        let dir = std::env::temp_dir().join(format!("ss-matrix-state-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        assert_eq!(load(&path).unwrap(), None);
        let saved = Saved {
            homeserver: "http://127.0.0.1:8008".into(),
            user_id: "@smokey:localhost".into(),
            device_id: Some("ABC".into()),
            access_token: Some("syt_x".into()),
            room_id: Some("!r:localhost".into()),
            next_batch: Some("s1_2".into()),
            last_event_id: Some("$e".into()),
        };
        store(&path, &saved).unwrap();
        assert_eq!(load(&path).unwrap(), Some(saved));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::write(&path, "not json").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("delete it"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
