//! The session with the homeserver: connecting (login, room), logging in
//! again when the token stops working, and the state file.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use ruma::api::client::account::whoami;
use ruma::api::client::alias::get_alias;
use ruma::api::client::discovery::get_supported_versions;
use ruma::api::client::membership::join_room_by_id_or_alias;
use ruma::api::client::session::login;
use ruma::api::client::sync::sync_events::v3 as sync;
use ruma::api::client::uiaa::MatrixUserIdentifier;
use ruma::api::{MatrixVersion, SupportedVersions};
use ruma::{OwnedDeviceId, OwnedRoomId, OwnedUserId, RoomOrAliasId};
use tracing::{debug, info, warn};

use crate::sync::lock;

use super::api::{send, Endpoint, Failure};
use super::state::{self, Saved};
use super::{MatrixError, Settings};

/// A user name and password.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Who is logged in, and the sync position; what the state file keeps.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) token: String,
    pub(crate) device_id: Option<OwnedDeviceId>,
    pub(crate) next_batch: Option<String>,
    pub(crate) last_event_id: Option<String>,
}

/// A connection to one homeserver as one user, for one room.
#[derive(Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    pub(crate) base: String,
    versions: SupportedVersions,
    credentials: Option<Credentials>,
    pub(crate) settings: Settings,
    state_file: Option<PathBuf>,
    pub(crate) user_id: OwnedUserId,
    pub(crate) room_id: OwnedRoomId,
    /// What starts the transaction ids of this run's posts: unique to the
    /// run, so that a restart on the same device never reuses one (the
    /// homeserver would answer with the old event).
    pub(crate) txn_prefix: String,
    session: Mutex<Session>,
    /// Held while logging in again, so that one login serves everyone.
    relogin: tokio::sync::Mutex<()>,
}

/// What connect is given: what `MatrixChatBuilder` collects.
#[derive(Debug, Clone)]
pub(crate) struct Start {
    pub(crate) homeserver: String,
    pub(crate) room: String,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) access_token: Option<String>,
    pub(crate) state_file: Option<PathBuf>,
    pub(crate) settings: Settings,
}

impl Client {
    /// Reaches the homeserver, logs in (or takes the token given or
    /// saved), resolves and joins the room.
    pub(crate) async fn connect(start: Start) -> Result<Client, MatrixError> {
        let Start {
            homeserver,
            room,
            credentials,
            access_token,
            state_file,
            settings,
        } = start;
        let base = homeserver.trim_end_matches('/').to_owned();
        let room_ref = <&RoomOrAliasId>::try_from(room.as_str()).map_err(|e| {
            MatrixError::Config(format!(
                "`{room}` is not a room id (`!abc:server`) or alias (`#name:server`): {e}"
            ))
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(settings.request_timeout)
            .user_agent(concat!("socketscience/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| MatrixError::Config(format!("cannot build the HTTP client: {e}")))?;

        // Is there a Matrix homeserver at all?
        let no_versions = SupportedVersions {
            versions: Default::default(),
            features: Default::default(),
        };
        let versions = send(
            &http,
            &base,
            "",
            &no_versions,
            get_supported_versions::Request::new(),
            settings.request_timeout,
        )
        .await
        .map_err(|e| MatrixError::Unreachable {
            homeserver: base.clone(),
            reason: e.to_string(),
        })?;
        let mut versions = versions.as_supported_versions();
        if versions.versions.is_empty() {
            // Paths fall back to v3, which every current homeserver serves.
            versions.versions.insert(MatrixVersion::V1_1);
        }

        let saved = match &state_file {
            Some(path) => state::load(path)?,
            None => None,
        };
        // A state file of another homeserver or user is not used (and is
        // overwritten).
        let saved = saved.filter(|s| {
            s.homeserver == base
                && credentials.as_ref().is_none_or(|c| {
                    s.user_id == c.user || s.user_id.starts_with(&format!("@{}:", c.user))
                })
        });

        // The token: given, else saved, else a login.
        let mut session = Session {
            token: String::new(),
            device_id: saved
                .as_ref()
                .and_then(|s| s.device_id.as_deref())
                .map(Into::into),
            next_batch: None,
            last_event_id: None,
        };
        let mut user_id = None;
        let given = access_token.is_some();
        let token = access_token.or_else(|| saved.as_ref().and_then(|s| s.access_token.clone()));
        if let Some(token) = token {
            match send(
                &http,
                &base,
                &token,
                &versions,
                whoami::v3::Request::new(),
                settings.request_timeout,
            )
            .await
            {
                Ok(me) => {
                    session.token = token;
                    if me.device_id.is_some() {
                        session.device_id = me.device_id;
                    }
                    user_id = Some(me.user_id);
                }
                Err(e) if e.is_unknown_token() && credentials.is_some() && !given => {
                    info!(homeserver = %base, "the saved access token is no longer valid: logging in again");
                }
                Err(e) if e.is_unknown_token() => {
                    return Err(MatrixError::TokenRefused {
                        reason: if given {
                            "the access token given was refused (M_UNKNOWN_TOKEN)".into()
                        } else {
                            "the access token in the state file was refused (M_UNKNOWN_TOKEN)"
                                .into()
                        },
                    })
                }
                Err(e) => {
                    return Err(MatrixError::Login {
                        user: "(access token)".into(),
                        reason: e.to_string(),
                    })
                }
            }
        }
        let user_id = match user_id {
            Some(user_id) => user_id,
            None => {
                let Some(credentials) = &credentials else {
                    return Err(MatrixError::Config(
                        "give `credentials(user, password)` or an `access_token(token)` \
                     (or a state file holding one)"
                            .into(),
                    ));
                };
                let answer = log_in(
                    &http,
                    &base,
                    &versions,
                    credentials,
                    session.device_id.clone(),
                    &settings,
                )
                .await?;
                session.token = answer.access_token;
                session.device_id = Some(answer.device_id);
                answer.user_id
            }
        };
        let token = session.token.clone();

        // The room: resolve an alias, then join (nothing happens if the
        // user is in the room already).
        let room_id: OwnedRoomId = match <&ruma::RoomAliasId>::try_from(room_ref.as_str()) {
            Ok(alias) => {
                send(
                    &http,
                    &base,
                    &token,
                    &versions,
                    get_alias::v3::Request::new(alias.to_owned()),
                    settings.request_timeout,
                )
                .await
                .map_err(|e| MatrixError::Room {
                    room: room.clone(),
                    reason: match &e {
                        Failure::Matrix(m) if m.status_code.as_u16() == 404 => {
                            format!("no such room alias ({e})")
                        }
                        _ => e.to_string(),
                    },
                })?
                .room_id
            }
            Err(_) => <&ruma::RoomId>::try_from(room_ref.as_str())
                .map_err(|e| MatrixError::Config(format!("`{room}`: {e}")))?
                .to_owned(),
        };
        send(
            &http,
            &base,
            &token,
            &versions,
            join_room_by_id_or_alias::v3::Request::new(room_id.clone().into()),
            settings.request_timeout,
        )
        .await
        .map_err(|e| MatrixError::Room {
            room: room.clone(),
            reason: format!("cannot join it as {user_id}: {e}"),
        })?;

        // The sync position, if the state file has one for this room and user.
        if let Some(saved) = saved.filter(|s| {
            s.user_id == user_id.as_str() && s.room_id.as_deref() == Some(room_id.as_str())
        }) {
            session.next_batch = saved.next_batch;
            session.last_event_id = saved.last_event_id;
        }
        let client = Client {
            http,
            base,
            versions,
            credentials,
            settings,
            state_file,
            user_id,
            room_id,
            txn_prefix: format!("{}{:016x}-", super::sync::TXN_MARK, fastrand::u64(..)),
            session: Mutex::new(session),
            relogin: tokio::sync::Mutex::new(()),
        };
        client.save();
        Ok(client)
    }

    /// The current session (token and sync position).
    pub(crate) fn session(&self) -> Session {
        lock(&self.session).clone()
    }

    /// Records the sync position and saves it.
    pub(crate) fn advance(&self, next_batch: String, last_event_id: Option<String>) {
        {
            let mut session = lock(&self.session);
            session.next_batch = Some(next_batch);
            if last_event_id.is_some() {
                session.last_event_id = last_event_id;
            }
        }
        self.save();
    }

    /// Writes the state file, if there is one.
    pub(crate) fn save(&self) {
        let Some(path) = &self.state_file else {
            return;
        };
        let session = self.session();
        let saved = Saved {
            homeserver: self.base.clone(),
            user_id: self.user_id.to_string(),
            device_id: session.device_id.map(|d| d.to_string()),
            access_token: Some(session.token),
            room_id: Some(self.room_id.to_string()),
            next_batch: session.next_batch,
            last_event_id: session.last_event_id,
        };
        if let Err(e) = state::store(path, &saved) {
            warn!(path = %path.display(), error = %e, "cannot write the Matrix state file");
        }
    }

    /// Sends a request with the current token; when the homeserver no
    /// longer takes it, logs in again (if it can) and sends it once more.
    pub(crate) async fn call<R: Endpoint>(
        &self,
        request: R,
        timeout: Duration,
    ) -> Result<R::IncomingResponse, Failure> {
        let token = self.session().token;
        let first = send(
            &self.http,
            &self.base,
            &token,
            &self.versions,
            request.clone(),
            timeout,
        )
        .await;
        match first {
            Err(e) if e.is_unknown_token() => {
                self.log_in_again(&token, &e).await?;
                let token = self.session().token;
                send(
                    &self.http,
                    &self.base,
                    &token,
                    &self.versions,
                    request,
                    timeout,
                )
                .await
            }
            other => other,
        }
    }

    /// Replaces the refused token `old` by a new login, unless another
    /// task already did.
    async fn log_in_again(&self, old: &str, why: &Failure) -> Result<(), Failure> {
        let _one = self.relogin.lock().await;
        if self.session().token != old {
            return Ok(());
        }
        let Some(credentials) = &self.credentials else {
            return Err(Failure::Fatal(MatrixError::TokenRefused {
                reason: format!(
                    "the homeserver no longer takes the access token ({why}) and no \
                     credentials are set to log in again"
                ),
            }));
        };
        warn!(user = %self.user_id, reason = %why, "the access token was refused: logging in again");
        let device = self.session().device_id;
        let answer = log_in(
            &self.http,
            &self.base,
            &self.versions,
            credentials,
            device,
            &self.settings,
        )
        .await
        .map_err(Failure::Fatal)?;
        {
            let mut session = lock(&self.session);
            session.token = answer.access_token;
            session.device_id = Some(answer.device_id);
        }
        self.save();
        Ok(())
    }

    /// A sync request's answer.
    pub(crate) async fn sync(&self, request: sync::Request) -> Result<sync::Response, Failure> {
        let timeout = request.timeout.unwrap_or_default() + self.settings.request_timeout;
        self.call(request, timeout).await
    }

    /// Sends a request with the usual timeout.
    pub(crate) async fn request<R: Endpoint>(
        &self,
        request: R,
    ) -> Result<R::IncomingResponse, Failure> {
        self.call(request, self.settings.request_timeout).await
    }
}

/// Logs in with a password, on `device` if one is known (its transaction
/// ids then still count).
async fn log_in(
    http: &reqwest::Client,
    base: &str,
    versions: &SupportedVersions,
    credentials: &Credentials,
    device: Option<OwnedDeviceId>,
    settings: &Settings,
) -> Result<login::v3::Response, MatrixError> {
    let identifier = MatrixUserIdentifier::new(credentials.user.clone()).into();
    let mut request = login::v3::Request::new(login::v3::LoginInfo::Password(
        login::v3::Password::new(identifier, credentials.password.clone()),
    ));
    request.device_id = device;
    request.initial_device_display_name = Some("socketscience".into());
    let answer = send(http, base, "", versions, request, settings.request_timeout)
        .await
        .map_err(|e| MatrixError::Login {
            user: credentials.user.clone(),
            reason: match &e {
                Failure::Matrix(m) if m.status_code.as_u16() == 403 => {
                    format!("wrong user name or password ({e})")
                }
                _ => e.to_string(),
            },
        })?;
    debug!(user = %answer.user_id, device = %answer.device_id, "logged in to Matrix");
    Ok(answer)
}
