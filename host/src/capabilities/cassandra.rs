//! `cassandra`: CQL writes to Cassandra or ScyllaDB through the `scylla` driver. Each
//! statement is prepared once per session; rows go in unlogged batches, one batch per
//! table, partition key and write time, so a batch never spans partitions (the only
//! kind of unlogged batch that is cheap for the cluster) and every row keeps its own
//! write time (the protocol's batch timestamp, which is what `USING TIMESTAMP` sets).
//! A batch the server refuses is retried row by row to find the rows at fault.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::statement::Consistency as DriverConsistency;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlTimestamp, CqlValue as DriverValue};
use tokio::sync::Semaphore;

use super::stores::{MAX_IN_FLIGHT_PER_ENDPOINT, REQUEST_ATTEMPTS, retry_pause};
use crate::runtime::TaskState;
use crate::runtime::bindings::capabilities::wasm_connect::connector::cassandra::{Connection, Consistency, CqlValue, Host, Row};
use crate::runtime::bindings::types::Error;

/// Most rows in one unlogged batch (Cassandra warns about large batches).
const MAX_ROWS_PER_BATCH: usize = 50;
/// Batches of one call in flight at once on the session.
const BATCHES_IN_FLIGHT: usize = 16;
/// How long a schema change waits for the cluster to agree on the new schema.
const SCHEMA_AGREEMENT_WAIT: Duration = Duration::from_secs(5);

/// One pooled session for one set of contact points and credentials.
pub(crate) struct CassandraClient {
    session: Session,
    prepared: Mutex<HashMap<String, PreparedStatement>>,
    in_flight: Semaphore,
    shown: String,
}

type Values = Vec<Option<DriverValue>>;
/// A row waiting for its batch: its position in the call, its statement, its values.
type PendingRow = (usize, u32, Values);
/// What rows of one batch share: table, partition key, write time.
type BatchKey = (String, Vec<u8>, Option<i64>);

impl CassandraClient {
    pub(super) async fn new(connection: &Connection) -> Result<Self, Error> {
        let shown = connection.contact_points.clone();
        let points: Vec<&str> = connection.contact_points.split(',').map(str::trim).filter(|point| !point.is_empty()).collect();
        let mut builder = SessionBuilder::new()
            .known_nodes(&points)
            .connection_timeout(Duration::from_secs(5))
            // Agreement is awaited explicitly after a schema change, with a bound.
            .auto_await_schema_agreement(false);
        if let Some(username) = &connection.username {
            builder = builder.user(username.clone(), connection.password.clone().unwrap_or_default());
        }
        let session =
            builder.build().await.map_err(|error| Error::Retriable(format!("cannot connect to Cassandra at {shown}: {error}")))?;
        Ok(Self { session, prepared: Mutex::new(HashMap::new()), in_flight: Semaphore::new(MAX_IN_FLIGHT_PER_ENDPOINT), shown })
    }

    /// Runs one unprepared statement (schema changes).
    pub(crate) async fn execute(&self, statement: &str) -> Result<(), Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.session.query_unpaged(statement, ()).await {
                Ok(_) => {
                    let _ = tokio::time::timeout(SCHEMA_AGREEMENT_WAIT, self.session.await_schema_agreement()).await;
                    return Ok(());
                }
                Err(error) => self.classify(&error, statement),
            };
            if !matches!(failure, Error::Retriable(_)) || attempt >= REQUEST_ATTEMPTS {
                return Err(failure);
            }
            retry_pause(attempt).await;
        }
    }

    async fn prepare(&self, statement: &str, consistency: DriverConsistency) -> Result<PreparedStatement, Error> {
        if let Some(prepared) = self.prepared.lock().expect("prepared lock").get(statement) {
            let mut prepared = prepared.clone();
            prepared.set_consistency(consistency);
            return Ok(prepared);
        }
        let mut prepared = self.session.prepare(statement).await.map_err(|error| match error {
            ref failure if is_transient_prepare(failure) => {
                Error::Retriable(format!("cannot prepare on Cassandra at {}: {error}", self.shown))
            }
            _ => Error::Fatal(format!("Cassandra at {} refused the statement {statement:?}: {error}", self.shown)),
        })?;
        self.prepared.lock().expect("prepared lock").insert(statement.to_owned(), prepared.clone());
        prepared.set_consistency(consistency);
        Ok(prepared)
    }

    /// Writes every row and returns one outcome each.
    pub(crate) async fn write(
        &self,
        statements: &[String],
        rows: Vec<Row>,
        consistency: Consistency,
    ) -> Result<Vec<Option<String>>, Error> {
        let consistency = driver_consistency(consistency);
        let mut prepared = Vec::with_capacity(statements.len());
        for statement in statements {
            prepared.push(self.prepare(statement, consistency).await?);
        }
        let mut outcomes: Vec<Option<String>> = vec![None; rows.len()];
        // Group the rows into batches by table, partition key and write time.
        let mut groups: BTreeMap<BatchKey, Vec<PendingRow>> = BTreeMap::new();
        for (position, row) in rows.into_iter().enumerate() {
            let Some(statement) = prepared.get(row.statement as usize) else {
                outcomes[position] = Some(format!("row refers to statement {} of {}", row.statement, prepared.len()));
                continue;
            };
            let values = match row.values.into_iter().map(driver_value).collect::<Result<Values, String>>() {
                Ok(values) => values,
                Err(message) => {
                    outcomes[position] = Some(message);
                    continue;
                }
            };
            let partition_key = match statement.compute_partition_key(&values) {
                Ok(key) => key.to_vec(),
                Err(error) => {
                    outcomes[position] = Some(format!("the row's values do not fit the statement: {error}"));
                    continue;
                }
            };
            let table = statement.get_table_spec().map(|table| format!("{}.{}", table.ks_name(), table.table_name())).unwrap_or_default();
            groups.entry((table, partition_key, row.write_time)).or_default().push((position, row.statement, values));
        }
        let batches: Vec<(Option<i64>, Vec<PendingRow>)> = groups
            .into_iter()
            .flat_map(|((_, _, write_time), rows)| {
                let mut chunks = Vec::new();
                let mut rows = rows.into_iter().peekable();
                while rows.peek().is_some() {
                    chunks.push((write_time, rows.by_ref().take(MAX_ROWS_PER_BATCH).collect::<Vec<_>>()));
                }
                chunks
            })
            .collect();
        let _permit = self.in_flight.acquire().await.expect("the semaphore is never closed");
        let results: Vec<Result<Vec<(usize, String)>, Error>> = futures::stream::iter(batches)
            .map(|(write_time, rows)| self.write_batch(&prepared, write_time, rows))
            .buffer_unordered(BATCHES_IN_FLIGHT)
            .collect()
            .await;
        for result in results {
            for (position, message) in result? {
                outcomes[position] = Some(message);
            }
        }
        Ok(outcomes)
    }

    /// Writes one batch; when the server refuses it, writes its rows one by one to
    /// find the refused ones. Returns the refused rows.
    async fn write_batch(
        &self,
        prepared: &[PreparedStatement],
        write_time: Option<i64>,
        rows: Vec<PendingRow>,
    ) -> Result<Vec<(usize, String)>, Error> {
        let mut batch = Batch::new(BatchType::Unlogged);
        for (_, statement, _) in &rows {
            batch.append_statement(prepared[*statement as usize].clone());
        }
        if let Some(consistency) = prepared.first().and_then(PreparedStatement::get_consistency) {
            batch.set_consistency(consistency);
        }
        batch.set_timestamp(write_time);
        let values: Vec<&Values> = rows.iter().map(|(_, _, values)| values).collect();
        match self.with_retries(|| self.session.batch(&batch, &values), "batch").await {
            Ok(()) => return Ok(Vec::new()),
            Err(Error::Fatal(_)) if rows.len() > 1 => {}
            Err(Error::Fatal(message)) => return Ok(vec![(rows[0].0, message)]),
            Err(other) => return Err(other),
        }
        let mut refused = Vec::new();
        for (position, statement, values) in rows {
            let mut single = prepared[statement as usize].clone();
            single.set_timestamp(write_time);
            match self.with_retries(|| self.session.execute_unpaged(&single, &values), "row").await {
                Ok(()) => {}
                Err(Error::Fatal(message)) => refused.push((position, message)),
                Err(other) => return Err(other),
            }
        }
        Ok(refused)
    }

    /// Runs `request`, retrying transient failures; a refusal comes back as Fatal.
    async fn with_retries<F, R>(&self, request: impl Fn() -> F, what: &str) -> Result<(), Error>
    where
        F: std::future::Future<Output = Result<R, ExecutionError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match request().await {
                Ok(_) => return Ok(()),
                Err(error) => self.classify(&error, what),
            };
            if !matches!(failure, Error::Retriable(_)) || attempt >= REQUEST_ATTEMPTS {
                return Err(failure);
            }
            retry_pause(attempt).await;
        }
    }

    /// Retriable: the cluster is unreachable, overloaded or timed out. Fatal: the
    /// server refused the request itself (bad values, unknown table, auth).
    fn classify(&self, error: &ExecutionError, what: &str) -> Error {
        let refused = match error {
            ExecutionError::BadQuery(_) => true,
            ExecutionError::LastAttemptError(RequestAttemptError::SerializationError(_)) => true,
            ExecutionError::LastAttemptError(RequestAttemptError::DbError(db_error, _)) => matches!(
                db_error,
                DbError::SyntaxError
                    | DbError::Invalid
                    | DbError::AlreadyExists { .. }
                    | DbError::FunctionFailure { .. }
                    | DbError::AuthenticationError
                    | DbError::Unauthorized
                    | DbError::ConfigError
                    | DbError::ProtocolError
            ),
            _ => false,
        };
        if refused {
            Error::Fatal(format!("Cassandra at {} refused the {what}: {error}", self.shown))
        } else {
            Error::Retriable(format!("cannot write to Cassandra at {}: {error}", self.shown))
        }
    }
}

fn is_transient_prepare(error: &scylla::errors::PrepareError) -> bool {
    !format!("{error}").contains("Invalid") && !format!("{error}").contains("Syntax")
}

fn driver_consistency(consistency: Consistency) -> DriverConsistency {
    match consistency {
        Consistency::Any => DriverConsistency::Any,
        Consistency::One => DriverConsistency::One,
        Consistency::Two => DriverConsistency::Two,
        Consistency::Three => DriverConsistency::Three,
        Consistency::Quorum => DriverConsistency::Quorum,
        Consistency::All => DriverConsistency::All,
        Consistency::LocalQuorum => DriverConsistency::LocalQuorum,
        Consistency::EachQuorum => DriverConsistency::EachQuorum,
        Consistency::LocalOne => DriverConsistency::LocalOne,
    }
}

fn driver_value(value: CqlValue) -> Result<Option<DriverValue>, String> {
    Ok(Some(match value {
        CqlValue::Null => return Ok(None),
        CqlValue::Text(text) => DriverValue::Text(text),
        CqlValue::Int(number) => DriverValue::Int(number),
        CqlValue::Bigint(number) => DriverValue::BigInt(number),
        CqlValue::Double(number) => DriverValue::Double(number),
        CqlValue::Boolean(flag) => DriverValue::Boolean(flag),
        CqlValue::Timestamp(ms) => DriverValue::Timestamp(CqlTimestamp(ms)),
        CqlValue::Uuid(text) => {
            DriverValue::Uuid(uuid::Uuid::parse_str(&text).map_err(|error| format!("{text:?} is not a UUID: {error}"))?)
        }
        CqlValue::TextList(items) => DriverValue::List(items.into_iter().map(DriverValue::Text).collect()),
        CqlValue::TextMap(entries) => {
            DriverValue::Map(entries.into_iter().map(|(key, value)| (DriverValue::Text(key), DriverValue::Text(value))).collect())
        }
    }))
}

impl Host for TaskState {
    fn execute(&mut self, connection: Connection, statement: String) -> Result<(), Error> {
        self.grants.check_cassandra(&connection.contact_points)?;
        self.in_host(|stores| {
            let client = stores.cassandra(&connection)?;
            stores.block_on(client.execute(&statement))
        })
    }

    fn write(
        &mut self,
        connection: Connection,
        statements: Vec<String>,
        rows: Vec<Row>,
        consistency: Consistency,
    ) -> Result<Vec<Option<String>>, Error> {
        self.grants.check_cassandra(&connection.contact_points)?;
        self.write_to_store(|stores| {
            let client = stores.cassandra(&connection)?;
            stores.block_on(client.write(&statements, rows, consistency))
        })
    }
}

/// The pool key of a CQL session.
pub(super) fn session_key(connection: &Connection) -> (String, Option<String>, Option<String>, Option<String>) {
    (
        super::normalize_contact_points(&connection.contact_points),
        connection.username.clone(),
        connection.password.clone(),
        connection.local_datacenter.clone(),
    )
}

/// The pooled sessions, by contact points and credentials.
pub(super) type Sessions = Mutex<HashMap<(String, Option<String>, Option<String>, Option<String>), Arc<CassandraClient>>>;
