//! A small blocking HTTP client for the management API.

use std::path::Path;

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::commands::ApiUrl;
use crate::api::types::ErrorBody;

pub struct Client {
    base: String,
    http: reqwest::blocking::Client,
    /// The admin token, or why there is none (said when the API refuses).
    token: Result<String, String>,
}

impl Client {
    /// A client for the API the command line names, with its token.
    pub fn new(api: &ApiUrl) -> anyhow::Result<Client> {
        let token = crate::token::for_client(api.token_file.as_deref());
        Client::with(&api.api, token, api.ca_file.as_deref())
    }

    /// `ca`: a PEM file of roots to trust for an HTTPS API (a cluster's
    /// own certificate), besides the system's.
    pub fn with(base: &str, token: Result<String, String>, ca: Option<&Path>) -> anyhow::Result<Client> {
        let mut builder = reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(60));
        if let Some(ca) = ca {
            crate::tls::install_provider();
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("parsing the certificates in {}", ca.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().context("building the HTTP client")?;
        Ok(Client { base: base.trim_end_matches('/').to_string(), http, token })
    }

    fn send<T: DeserializeOwned>(&self, mut request: reqwest::blocking::RequestBuilder) -> anyhow::Result<T> {
        if let Ok(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().with_context(|| {
            format!("cannot reach the vnas API at {} (is a node running? see --api)", self.base)
        })?;
        let status = response.status();
        let text = response.text().context("reading the API's answer")?;
        if !status.is_success() {
            match serde_json::from_str::<ErrorBody>(&text) {
                Ok(error) if status == reqwest::StatusCode::UNAUTHORIZED => match &self.token {
                    Err(why) => bail!("{} ({}); no admin token: {why}", error.message, error.code),
                    Ok(_) => bail!("the API refused the admin token ({})", error.code),
                },
                Ok(error) => bail!("{} ({})", error.message, error.code),
                Err(_) => bail!("the API answered {status}: {text}"),
            }
        }
        serde_json::from_str(&text).with_context(|| format!("unexpected answer from the API: {text}"))
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.http.get(format!("{}{path}", self.base)))
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
    }

    pub fn patch<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        self.send(self.http.patch(format!("{}{path}", self.base)).json(body))
    }

    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.http.delete(format!("{}{path}", self.base)))
    }
}
