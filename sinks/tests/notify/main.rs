//! The notification sinks against real local destinations: an HTTP receiver (axum) and an
//! SMTP server with STARTTLS, both on 127.0.0.1, started by each test. One test binary, so
//! that `cargo test -p secpipe-sinks notify` runs them all and links once.

mod notify_delivery;
mod notify_email;
mod notify_http;
mod notify_sns;
mod support;
