//! The host's store clients, pooled per endpoint and shared by every task that uses
//! the endpoint: one Elasticsearch client per (URL, credentials), one MongoDB client
//! per connection string, one CQL session per contact points and credentials. They
//! run on a small runtime of their own, so a plugin call
//! (on a blocking thread) can wait for them, and so they outlive any one task.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::cassandra::{CassandraClient, Sessions, session_key};
use super::elasticsearch::ElasticsearchClient;
use super::mongodb::MongodbClient;
use crate::runtime::bindings::capabilities::wasm_connect::connector::cassandra::Connection as CqlConnection;
use crate::runtime::bindings::capabilities::wasm_connect::connector::elasticsearch::Connection;
use crate::runtime::bindings::types::Error;

/// Requests one endpoint serves at once from this host; further calls wait their turn.
pub(super) const MAX_IN_FLIGHT_PER_ENDPOINT: usize = 4;
/// Attempts of one request before the failure is handed to the plugin.
pub(super) const REQUEST_ATTEMPTS: u32 = 3;
/// First delay between attempts; doubles each time.
pub(super) const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);

/// Every pooled store client of this host.
#[derive(Default)]
pub struct StoreClients {
    runtime: OnceLock<tokio::runtime::Runtime>,
    elasticsearch: Mutex<HashMap<ElasticsearchKey, Arc<ElasticsearchClient>>>,
    mongodb: Mutex<HashMap<String, Arc<MongodbClient>>>,
    cassandra: Sessions,
}

impl std::fmt::Debug for StoreClients {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("StoreClients")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ElasticsearchKey {
    url: String,
    api_key: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl StoreClients {
    /// Runs `future` to completion on the clients' runtime. Called from plugin calls,
    /// which run on blocking threads, never from an async task.
    pub(super) fn block_on<F: Future>(&self, future: F) -> F::Output {
        let runtime = self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("store-io")
                .enable_all()
                .build()
                .expect("building the store client runtime")
        });
        runtime.block_on(future)
    }

    /// The client for one Elasticsearch endpoint and identity.
    pub(super) fn elasticsearch(&self, connection: &Connection) -> Result<Arc<ElasticsearchClient>, Error> {
        let key = ElasticsearchKey {
            url: connection.url.trim_end_matches('/').to_owned(),
            api_key: connection.api_key.clone(),
            username: connection.username.clone(),
            password: connection.password.clone(),
        };
        let mut clients = self.elasticsearch.lock().expect("client pool lock");
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = Arc::new(ElasticsearchClient::new(connection)?);
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// The client for one MongoDB connection string.
    pub(super) fn mongodb(&self, uri: &str) -> Result<Arc<MongodbClient>, Error> {
        if let Some(client) = self.mongodb.lock().expect("client pool lock").get(uri) {
            return Ok(client.clone());
        }
        // Parsing a connection string may resolve DNS (mongodb+srv): outside the lock.
        let client = Arc::new(self.block_on(MongodbClient::new(uri))?);
        Ok(self.mongodb.lock().expect("client pool lock").entry(uri.to_owned()).or_insert(client).clone())
    }
}

impl Drop for StoreClients {
    fn drop(&mut self) {
        // The host drops its runtime from async code at shutdown: do not block there.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl StoreClients {
    /// The session for one set of CQL contact points and credentials.
    pub(super) fn cassandra(&self, connection: &CqlConnection) -> Result<Arc<CassandraClient>, Error> {
        let key = session_key(connection);
        if let Some(client) = self.cassandra.lock().expect("client pool lock").get(&key) {
            return Ok(client.clone());
        }
        // Connecting discovers the cluster: outside the lock.
        let client = Arc::new(self.block_on(CassandraClient::new(connection))?);
        Ok(self.cassandra.lock().expect("client pool lock").entry(key).or_insert(client).clone())
    }
}

/// Waits before attempt `attempt` (from 1) of a request.
pub(super) async fn retry_pause(attempt: u32) {
    tokio::time::sleep(FIRST_RETRY_DELAY * 2u32.pow(attempt.saturating_sub(1))).await;
}
