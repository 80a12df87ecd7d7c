//! `endpoint-prober`: on every write, calls the Elasticsearch, MongoDB or Cassandra capability
//! with an endpoint taken from a plain (non-granting) option, to test that the host
//! refuses every endpoint the connector's configuration does not grant.

use wasm_connect_sdk::elasticsearch::{self, Connection};
use wasm_connect_sdk::{ConfigOption, Description, Error, OptionType, Plugin, RecordView, Settings, Sink, cassandra, export_sink, mongodb};

/// The task.
pub struct EndpointProber {
    reach_elasticsearch: Option<String>,
    reach_mongodb: Option<String>,
    reach_cassandra: Option<String>,
}

impl Plugin for EndpointProber {
    fn description() -> Description {
        Description::new("endpoint-prober", env!("CARGO_PKG_VERSION"), "Calls a store endpoint of its choosing, for grant tests.")
            .option(ConfigOption::new("url", OptionType::ElasticsearchUrl, "The granted Elasticsearch URL."))
            .option(ConfigOption::new("uri", OptionType::MongodbUri, "The granted MongoDB URI."))
            .option(ConfigOption::new("reach_elasticsearch", OptionType::String, "The Elasticsearch URL actually called."))
            .option(ConfigOption::new("reach_mongodb", OptionType::String, "The MongoDB URI actually called."))
            .option(ConfigOption::new("contact_points", OptionType::CqlContactPoints, "The granted CQL contact points."))
            .option(ConfigOption::new("reach_cassandra", OptionType::String, "The CQL contact points actually called."))
    }
}

impl Sink for EndpointProber {
    fn open(settings: &Settings) -> Result<Self, Error> {
        Ok(Self {
            reach_elasticsearch: settings.get("reach_elasticsearch").map(str::to_owned),
            reach_mongodb: settings.get("reach_mongodb").map(str::to_owned),
            reach_cassandra: settings.get("reach_cassandra").map(str::to_owned),
        })
    }

    fn write(&mut self, _records: &[RecordView<'_>]) -> Result<(), Error> {
        if let Some(url) = &self.reach_elasticsearch {
            let connection = Connection { url: url.clone(), api_key: None, username: None, password: None };
            let document = elasticsearch::BulkOperation {
                action: elasticsearch::BulkAction::Index,
                index: "probe".to_owned(),
                id: Some("probe".to_owned()),
                document: Some(b"{}".to_vec()),
            };
            elasticsearch::bulk(&connection, &[document])?;
        }
        if let Some(uri) = &self.reach_mongodb {
            let document = mongodb::WriteOperation {
                kind: mongodb::WriteKind::Insert,
                collection: "probe".to_owned(),
                filter: None,
                document: Some(b"{}".to_vec()),
            };
            mongodb::bulk_write(uri, "probe", &[document])?;
        }
        if let Some(contact_points) = &self.reach_cassandra {
            let connection =
                cassandra::Connection { contact_points: contact_points.clone(), username: None, password: None, local_datacenter: None };
            cassandra::execute(&connection, "SELECT now() FROM system.local")?;
        }
        Ok(())
    }
}

export_sink!(EndpointProber);
