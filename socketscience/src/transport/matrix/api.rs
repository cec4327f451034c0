//! Typed requests over HTTP: ruma builds each request and reads its
//! answer, reqwest carries it.

use std::borrow::Cow;
use std::time::Duration;

use ruma::api::client::account::whoami;
use ruma::api::client::alias::get_alias;
use ruma::api::client::discovery::get_supported_versions;
use ruma::api::client::membership::join_room_by_id_or_alias;
use ruma::api::client::message::{get_message_events, send_message_event};
use ruma::api::client::session::login;
use ruma::api::client::sync::sync_events::v3 as sync;
use ruma::api::error::{ErrorKind, FromHttpResponseError, IntoHttpError, RetryAfter};
use ruma::api::{
    auth_scheme::SendAccessToken, IncomingResponseExt as _, OutgoingRequest,
    OutgoingRequestExt as _, SupportedVersions,
};

use super::MatrixError;

/// How a request failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The homeserver answered with a Matrix error.
    Matrix(ruma::api::error::Error),
    /// No answer: the homeserver is unreachable, restarting, or too slow.
    Network(String),
    /// An answer that is not what the endpoint returns.
    Protocol(String),
    /// The access token was refused and cannot be renewed.
    Fatal(MatrixError),
}

impl Failure {
    /// How long the homeserver asks to wait, if it rate-limits the request.
    pub(crate) fn rate_limited(&self) -> Option<Duration> {
        let Failure::Matrix(e) = self else {
            return None;
        };
        match e.error_kind() {
            Some(ErrorKind::LimitExceeded(data)) => Some(match &data.retry_after {
                Some(RetryAfter::Delay(d)) => *d,
                Some(RetryAfter::DateTime(t)) => t
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_default(),
                None => Duration::from_secs(1),
            }),
            _ if e.status_code.as_u16() == 429 => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// Whether trying again later may succeed (network, 5xx, 429).
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Failure::Network(_) => true,
            Failure::Matrix(e) => e.status_code.is_server_error() || e.status_code.as_u16() == 429,
            Failure::Protocol(_) | Failure::Fatal(_) => false,
        }
    }

    /// Whether the homeserver no longer takes the access token.
    pub(crate) fn is_unknown_token(&self) -> bool {
        matches!(self, Failure::Matrix(e) if matches!(e.error_kind(), Some(ErrorKind::UnknownToken(_))))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Matrix(e) => write!(f, "{e}"),
            Failure::Network(e) => write!(f, "{e}"),
            Failure::Protocol(e) => write!(f, "unexpected answer: {e}"),
            Failure::Fatal(e) => write!(f, "{e}"),
        }
    }
}

/// A request of the client-server API this transport makes: every one of
/// them takes an access token (or none) and a versioned path.
pub(crate) trait Endpoint:
    OutgoingRequest<EndpointError = ruma::api::error::Error> + Send
{
    /// The request as HTTP, for `base` with `token`.
    fn to_http(
        self,
        base: &str,
        token: &str,
        versions: &SupportedVersions,
    ) -> Result<http::Request<Vec<u8>>, IntoHttpError>;
}

macro_rules! versioned_endpoints {
    ($($request:ty),* $(,)?) => {$(
        impl Endpoint for $request {
            fn to_http(
                self,
                base: &str,
                token: &str,
                versions: &SupportedVersions,
            ) -> Result<http::Request<Vec<u8>>, IntoHttpError> {
                self.try_into_http_request(base, SendAccessToken::IfRequired(token), Cow::Borrowed(versions))
            }
        }
    )*};
}

versioned_endpoints!(
    whoami::v3::Request,
    get_alias::v3::Request,
    join_room_by_id_or_alias::v3::Request,
    get_message_events::v3::Request,
    send_message_event::v3::Request,
    login::v3::Request,
    sync::Request,
);

impl Endpoint for get_supported_versions::Request {
    fn to_http(
        self,
        base: &str,
        _token: &str,
        _versions: &SupportedVersions,
    ) -> Result<http::Request<Vec<u8>>, IntoHttpError> {
        self.try_into_http_request(base, SendAccessToken::None, ())
    }
}

/// Sends one typed request without a client (connect uses it before it
/// knows who it is).
pub(crate) async fn send<R: Endpoint>(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    versions: &SupportedVersions,
    request: R,
    timeout: Duration,
) -> Result<R::IncomingResponse, Failure> {
    let request = request
        .to_http(base, token, versions)
        .map_err(|e| Failure::Protocol(format!("cannot build the request: {e}")))?;
    let mut request = reqwest::Request::try_from(request)
        .map_err(|e| Failure::Protocol(format!("cannot build the request: {e}")))?;
    *request.timeout_mut() = Some(timeout);
    let answer = http
        .execute(request)
        .await
        .map_err(|e| Failure::Network(describe(&e)))?;
    let status = answer.status();
    let headers = answer.headers().clone();
    let body = answer
        .bytes()
        .await
        .map_err(|e| Failure::Network(describe(&e)))?;
    let mut response = http::Response::builder().status(status);
    if let Some(h) = response.headers_mut() {
        *h = headers;
    }
    let response = response
        .body(body.as_ref())
        .map_err(|e| Failure::Protocol(e.to_string()))?;
    R::IncomingResponse::try_from_http_response(response).map_err(|e| match e {
        FromHttpResponseError::Server(e) => Failure::Matrix(e),
        FromHttpResponseError::Deserialization(e) => {
            Failure::Protocol(format!("HTTP {status}: {e}"))
        }
        e => Failure::Protocol(format!("HTTP {status}: {e}")),
    })
}

/// A reqwest error with its causes.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
