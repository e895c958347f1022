//! Telemetry about web applications a process serves: the application, its URIs, and the
//! tokens clients authenticate with. Field docs live in
//! `schemas/avro/telemetry/{WebappRegistration,WebappUriDiscovery,AuthTokenSighting}.v1.avsc`.
use serde::{Deserialize, Serialize};

use super::Envelope;
use crate::codec::AvroRecord;

/// A new web application: a listening socket that served an HTTP-style transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebappRegistration {
    pub envelope: Envelope,
    pub protocol: String,
    pub address_family: String,
    pub local_addr: String,
    pub local_port: i32,
    pub remote_addr: Option<String>,
    pub remote_port: Option<i32>,
}

impl AvroRecord for WebappRegistration {
    const FULL_NAME: &'static str = "io.secpipe.telemetry.WebappRegistration";
}

/// A URI a known web application served for the first time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebappUriDiscovery {
    pub envelope: Envelope,
    pub method: String,
    pub uri: String,
    pub local_port: i32,
}

impl AvroRecord for WebappUriDiscovery {
    const FULL_NAME: &'static str = "io.secpipe.telemetry.WebappUriDiscovery";
}

/// A request authenticated with a token. Only a keyed fingerprint of the token is ever carried:
/// producers replace the clear value before anything is produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthTokenSighting {
    pub envelope: Envelope,
    pub auth_type: String,
    /// HMAC-SHA-256 of the token under a per-site key, 64 lower-case hex digits.
    pub token_fingerprint: String,
    pub local_port: i32,
}

impl AvroRecord for AuthTokenSighting {
    const FULL_NAME: &'static str = "io.secpipe.telemetry.AuthTokenSighting";
}
