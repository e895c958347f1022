//! secpipe's stream processors: they read the raw topics and write clean, small, queryable
//! streams (dedupe, aggregate, rate-limit, redact, expire, alert).

pub mod redact;
