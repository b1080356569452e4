//! Test support: a real S3 protocol server (the `s3s-fs` crate, objects as
//! plain files under a directory) on `127.0.0.1` and an ephemeral port,
//! with conditional writes (`If-None-Match`, `If-Match`) as AWS S3 has
//! them. Tests point Elide at it through [`S3Server::store`] (an
//! `AmazonS3` client) or through the environment a CLI reads
//! ([`S3Server::env`]). Only built with the `testing` feature.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::ObjectStore;

use crate::error::{Result, StoreError};

/// Credentials the test server accepts.
pub const ACCESS_KEY: &str = "elide-test";
/// Its secret.
pub const SECRET_KEY: &str = "elide-test-secret";

/// A running server (stopped when dropped).
#[derive(Debug)]
pub struct S3Server {
    root: PathBuf,
    endpoint: String,
    _runtime: tokio::runtime::Runtime,
}

impl S3Server {
    /// Serve `root` (each subdirectory is a bucket; `bucket` is created).
    pub fn start(root: &Path, bucket: &str) -> Result<S3Server> {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use hyper_util::server::conn::auto::Builder as ConnBuilder;
        let io = |e: std::io::Error| StoreError::io(root.display(), e);
        std::fs::create_dir_all(root.join(bucket)).map_err(io)?;
        let fs = s3s_fs::FileSystem::new(root)
            .map_err(|e| StoreError::Internal(format!("s3s-fs: {e:?}")))?;
        let service = {
            let mut b = s3s::service::S3ServiceBuilder::new(fs);
            b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            b.build()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3-test-server")
            .enable_all()
            .build()
            .map_err(io)?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(io)?;
        let addr = listener.local_addr().map_err(io)?;
        runtime.spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                // Without it a response written in two segments waits for
                // the client's delayed ACK (40 ms a request).
                let _ = socket.set_nodelay(true);
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        Ok(S3Server {
            root: root.to_path_buf(),
            endpoint: format!("http://{addr}"),
            _runtime: runtime,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The directory the objects are files in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A client of `bucket` (path-style requests, plain HTTP).
    pub fn store(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>> {
        let s3 = crate::location::configure(AmazonS3Builder::new())?
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build()
            .map_err(|e| StoreError::ObjectStore {
                path: bucket.to_string(),
                source: e,
            })?;
        Ok(Arc::new(s3))
    }

    /// The environment a process configured by `AmazonS3Builder::from_env`
    /// needs to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }
}
