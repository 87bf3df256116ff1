//! The console's stylesheet and script, in the binary (no CDN, nothing
//! fetched at run time).

use axum::http::header;
use axum::response::IntoResponse;

const CSS: &str = include_str!("console.css");
const JS: &str = include_str!("console.js");

pub async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")], CSS)
}

pub async fn js() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")], JS)
}
