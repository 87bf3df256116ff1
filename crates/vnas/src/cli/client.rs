//! A small blocking HTTP client for the management API.

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::types::ErrorBody;

pub struct Client {
    base: String,
    http: reqwest::blocking::Client,
}

impl Client {
    pub fn new(api: &str) -> anyhow::Result<Client> {
        let http = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        Ok(Client { base: api.trim_end_matches('/').to_string(), http })
    }

    fn send<T: DeserializeOwned>(&self, request: reqwest::blocking::RequestBuilder) -> anyhow::Result<T> {
        let response = request.send().with_context(|| {
            format!("cannot reach the vnas API at {} (is a node running? see --api)", self.base)
        })?;
        let status = response.status();
        let text = response.text().context("reading the API's answer")?;
        if !status.is_success() {
            match serde_json::from_str::<ErrorBody>(&text) {
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

    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.http.delete(format!("{}{path}", self.base)))
    }
}
