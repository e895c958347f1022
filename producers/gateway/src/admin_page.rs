//! `GET /admin/events`: a small page for administrators that lists live admin events with the
//! filters, sorting and paging of `GET /v1/admin-events`, and each event's history from its
//! `scan_failures` rows. Plain HTML and a little JavaScript compiled into the binary; the page
//! holds no data, so it is served without a token, and every request it makes carries the admin
//! token the user enters (kept in the tab's sessionStorage, sent as `Authorization: Bearer`).
use axum::{
    http::header,
    response::{IntoResponse, Response},
};

const PAGE: &str = include_str!("admin_page.html");

/// The page, with headers that keep it from loading anything but this gateway's API.
pub(crate) async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
        ],
        PAGE,
    )
        .into_response()
}
