//! An API failure: an HTTP status and the JSON body every handler answers it with.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use candor_api::ErrorBody;

/// An API failure: an HTTP status and the body to send.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: u16, error: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: error.into(),
                details: Vec::new(),
                status: None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, Json(self.body)).into_response()
    }
}
