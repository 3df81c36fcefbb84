//! S3-compatible object storage (AWS S3, Ceph RGW, OpenStack Swift's S3 API,
//! versitygw): requests are signed by rusty-s3 as presigned URLs (SigV4, path
//! style, which every one of them serves) and sent with hyper. Credentials
//! come from the environment, as every S3 tool reads them; errors never carry
//! a signed URL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use crate::Error;
use crate::error::Category;
use crate::layout::{Listed, TenantPrefix};

/// How long a signed request stays valid: long enough for a large upload.
const SIGNED_FOR: Duration = Duration::from_secs(3600);
/// Listing bodies and manifests are small; more is not what we asked for.
const MAX_SMALL_BODY: usize = 16 << 20;

/// Where the backups go, as the user gave it.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `https://host[:port]` (or `http://` on a trusted network).
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// A CA bundle for the endpoint's certificate; else the system's roots.
    pub ca_file: Option<PathBuf>,
}

type Body = BoxBody<Bytes, std::io::Error>;

pub struct Store {
    bucket: Bucket,
    credentials: Credentials,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>,
    /// `bucket` at `endpoint`, for messages.
    place: String,
}

impl Store {
    /// Checks the configuration and reads `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`; talks to no one yet.
    pub fn new(config: &StoreConfig) -> Result<Self, Error> {
        let endpoint: url::Url = config
            .endpoint
            .parse()
            .map_err(|_| Error::input("--store", format!("{:?} is not a URL", config.endpoint)))?;
        let bucket = Bucket::new(
            endpoint,
            UrlStyle::Path,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| Error::input("--store", format!("{:?}: {e}", config.endpoint)))?;
        let credentials = credentials_from_env()?;
        let tls = tls_config(config.ca_file.as_deref())?;
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Store {
            bucket,
            credentials,
            client: Client::builder(TokioExecutor::new()).build(https),
            place: format!("bucket {:?} at {}", config.bucket, config.endpoint),
        })
    }

    /// Checks the bucket is there and the credentials are good, so a wrong
    /// bucket or key is named before any snapshot is taken.
    pub async fn check(&self) -> Result<(), Error> {
        let url = self
            .bucket
            .head_bucket(Some(&self.credentials))
            .sign(SIGNED_FOR);
        let response = self
            .send("check", "", http::Method::HEAD, url, empty())
            .await?;
        self.expect_success("check", "", response).await.map(drop)
    }

    pub async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), Error> {
        let url = self
            .bucket
            .put_object(Some(&self.credentials), key)
            .sign(SIGNED_FOR);
        let body = Full::new(Bytes::from(bytes))
            .map_err(|never| match never {})
            .boxed();
        let response = self.send("put", key, http::Method::PUT, url, body).await?;
        self.expect_success("put", key, response).await.map(drop)
    }

    /// Uploads a file, streamed (a snapshot may be gigabytes).
    pub async fn put_file(&self, key: &str, path: &Path) -> Result<(), Error> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::file(path, e))?;
        let length = file
            .metadata()
            .await
            .map_err(|e| Error::file(path, e))?
            .len();
        let url = self
            .bucket
            .put_object(Some(&self.credentials), key)
            .sign(SIGNED_FOR);
        let chunks = read_chunks(file).map_ok(Frame::data);
        let body = BodyExt::boxed(StreamBody::new(chunks));
        let request = http::Request::put(url.as_str())
            .header(http::header::CONTENT_LENGTH, length)
            .body(body)
            .expect("a valid request");
        let response = self.request("put", key, request).await?;
        self.expect_success("put", key, response).await.map(drop)
    }

    /// Downloads a small object (a manifest, sealed keys) whole.
    pub async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, Error> {
        let mut chunks = Box::pin(self.get_stream(key).await?);
        let mut out = Vec::new();
        while let Some(chunk) = chunks.next().await {
            out.extend_from_slice(&chunk?);
            if out.len() > MAX_SMALL_BODY {
                return Err(self.failed("get", key, "larger than 16 MiB", Category::Corrupt));
            }
        }
        Ok(out)
    }

    /// Downloads an object as a stream of chunks.
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> Result<impl Stream<Item = Result<Bytes, Error>> + use<>, Error> {
        let url = self
            .bucket
            .get_object(Some(&self.credentials), key)
            .sign(SIGNED_FOR);
        let response = self
            .send("get", key, http::Method::GET, url, empty())
            .await?;
        if !response.status().is_success() {
            return Err(self.expect_success("get", key, response).await.unwrap_err());
        }
        let (key, place) = (key.to_string(), self.place.clone());
        Ok(response.into_body().into_data_stream().map(move |chunk| {
            chunk.map_err(|e| Error::Store {
                operation: "get",
                key: key.clone(),
                message: format!("{place}: the download broke off: {e}"),
                category: Category::Unavailable,
            })
        }))
    }

    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), key)
            .sign(SIGNED_FOR);
        let response = self
            .send("delete", key, http::Method::DELETE, url, empty())
            .await?;
        self.expect_success("delete", key, response).await.map(drop)
    }

    /// Every object gantry wrote under the tenant's prefix (others ignored).
    pub async fn list(&self, tenant: &TenantPrefix) -> Result<Vec<Listed>, Error> {
        let mut listed = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
            action.with_prefix(tenant.prefix.as_str());
            if let Some(token) = &token {
                action.with_continuation_token(token.as_str());
            }
            let url = action.sign(SIGNED_FOR);
            let response = self
                .send("list", &tenant.prefix, http::Method::GET, url, empty())
                .await?;
            let body = self
                .expect_success("list", &tenant.prefix, response)
                .await?;
            let text = String::from_utf8_lossy(&body);
            let page = rusty_s3::actions::ListObjectsV2::parse_response(&text).map_err(|e| {
                self.failed(
                    "list",
                    &tenant.prefix,
                    &format!("unreadable listing: {e}"),
                    Category::Unavailable,
                )
            })?;
            listed.extend(page.contents.into_iter().filter_map(|object| {
                let (name, kind) = tenant.parse(&object.key)?;
                Some(Listed {
                    key: object.key,
                    name,
                    kind,
                    bytes: object.size.unwrap_or(0),
                })
            }));
            match page.next_continuation_token {
                Some(next) => token = Some(next),
                None => return Ok(listed),
            }
        }
    }

    async fn send(
        &self,
        operation: &'static str,
        key: &str,
        method: http::Method,
        url: url::Url,
        body: Body,
    ) -> Result<http::Response<hyper::body::Incoming>, Error> {
        let request = http::Request::builder()
            .method(method)
            .uri(url.as_str())
            .body(body)
            .expect("a valid request");
        self.request(operation, key, request).await
    }

    async fn request(
        &self,
        operation: &'static str,
        key: &str,
        request: http::Request<Body>,
    ) -> Result<http::Response<hyper::body::Incoming>, Error> {
        tracing::debug!(operation, key, place = %self.place, "object store request");
        self.client.request(request).await.map_err(|e| {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message = format!("{message}: {cause}");
                source = cause.source();
            }
            self.failed(
                operation,
                key,
                &format!("not reachable: {message}"),
                Category::Unavailable,
            )
        })
    }

    /// The body of a 2xx answer; anything else becomes an error naming S3's
    /// own error code (`NoSuchBucket`, `InvalidAccessKeyId`, ...).
    async fn expect_success(
        &self,
        operation: &'static str,
        key: &str,
        response: http::Response<hyper::body::Incoming>,
    ) -> Result<Bytes, Error> {
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_SMALL_BODY)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            return Ok(body);
        }
        let code = xml_field(&body, "Code").unwrap_or_else(|| match status.as_u16() {
            // HEAD answers carry no body: name the likely code ourselves.
            404 => "NoSuchBucket or NoSuchKey".to_string(),
            403 => "AccessDenied".to_string(),
            _ => String::new(),
        });
        let category = match status.as_u16() {
            401 | 403 | 404 | 400 => Category::Refused,
            _ => Category::Unavailable,
        };
        let hint = match code.as_str() {
            "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied" => {
                " (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
            }
            "NoSuchBucket" => " (the bucket does not exist)",
            _ => "",
        };
        Err(self.failed(
            operation,
            key,
            &format!("HTTP {status} {code}{hint}"),
            category,
        ))
    }

    fn failed(
        &self,
        operation: &'static str,
        key: &str,
        message: &str,
        category: Category,
    ) -> Error {
        Error::Store {
            operation,
            key: key.to_string(),
            message: format!("{}: {message}", self.place),
            category,
        }
    }
}

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

fn read_chunks(file: tokio::fs::File) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::try_unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buffer = vec![0u8; 256 * 1024];
        let read = file.read(&mut buffer).await?;
        if read == 0 {
            return Ok(None);
        }
        buffer.truncate(read);
        Ok(Some((Bytes::from(buffer), file)))
    })
}

/// The text of `<name>…</name>` in an S3 error body.
fn xml_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find(&format!("<{name}>"))? + name.len() + 2;
    let end = text[start..].find(&format!("</{name}>"))? + start;
    Some(text[start..end].to_string())
}

fn credentials_from_env() -> Result<Credentials, Error> {
    let read = |name: &'static str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::input(name, "is not set (the object store's credentials)"))
    };
    Ok(Credentials::new(
        read("AWS_ACCESS_KEY_ID")?,
        read("AWS_SECRET_ACCESS_KEY")?,
    ))
}

fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, Error> {
    let roots = match ca_file {
        Some(path) => crate::tls::roots_from(path)?,
        None => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            roots
        }
    };
    Ok(crate::tls::client_builder(roots).with_no_client_auth())
}
