//! A client that keeps cookies, like one browser or device.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use serde_json::Value;

use crate::{Answer, send};

/// A client with a cookie jar (one browser, or one device).
#[derive(Debug, Default)]
pub struct Client {
    /// Cookies set so far, by name.
    pub cookies: BTreeMap<String, String>,
    /// A bearer token sent with every request.
    pub bearer: Option<String>,
}

/// A request body.
#[derive(Debug)]
pub enum Body<'a> {
    /// None.
    None,
    /// `application/x-www-form-urlencoded`.
    Form(&'a str),
    /// `application/json`.
    Json(Value),
}

impl Client {
    /// Sends a request over a real socket with the jar's cookies (and
    /// bearer), and keeps the cookies the answer sets.
    pub async fn call(
        &mut self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        body: Body<'_>,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(format!("http://{addr}{path}"));
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header("cookie", jar.join("; "));
        }
        if let Some(token) = &self.bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let body = match body {
            Body::None => Bytes::new(),
            Body::Form(form) => {
                request = request.header("content-type", "application/x-www-form-urlencoded");
                Bytes::from(form.to_owned())
            }
            Body::Json(value) => {
                request = request.header("content-type", "application/json");
                Bytes::from(value.to_string())
            }
        };
        let answer = send(request.body(Full::new(body)).expect("request")).await;
        for set in answer.headers.get_all("set-cookie") {
            let pair = set.to_str().expect("ascii").split(';').next().expect("pair");
            let (name, value) = pair.split_once('=').expect("name=value");
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        answer
    }
}
