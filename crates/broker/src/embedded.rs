//! The embedded broker: librdkafka's in-process mock cluster, reachable at a fixed address.
//!
//! The mock listens on a kernel-chosen port. We advertise the `--listen` address in its metadata
//! (`rd_kafka_mock_broker_set_host_port`) and forward `--listen` to the real port, so clients
//! only ever see and use the address they were given.
//!
//! Limits of the mock (librdkafka 2.12), which the README states too: topics cannot be created
//! through the admin API (create them here, up front); each partition keeps at most 5 MiB of
//! stored (compressed) batches and drops the oldest beyond that; data lives in memory only.

use std::ffi::{CStr, CString};
use std::net::SocketAddr;

use rdkafka::bindings as rd;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::ClientConfig;
use tokio::net::{TcpListener, TcpStream};

/// Partitions of a topic the mock creates on first use.
pub const DEFAULT_PARTITIONS: i32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {addr}: {source} (is another broker running there? try another --listen port)")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the mock cluster: {0}")]
    Mock(String),
    #[error("cannot create topic {topic:?}: {detail}")]
    Topic { topic: String, detail: String },
}

/// The raw mock handle. librdkafka's mock functions are thread-safe (they post to the mock's own
/// thread or take its lock), so sharing the pointer is sound while `_holder` keeps it alive.
struct MockPtr(*mut rd::rd_kafka_mock_cluster_t);
unsafe impl Send for MockPtr {}
unsafe impl Sync for MockPtr {}

pub struct EmbeddedBroker {
    mock: MockPtr,
    listen: SocketAddr,
    forwarder: tokio::task::JoinHandle<()>,
    // Owns the mock cluster (created through `test.mock.num.brokers`); dropped last.
    _holder: BaseProducer,
}

impl EmbeddedBroker {
    /// Starts the broker on `listen` (port 0: any free port) with the given topics.
    pub async fn start(listen: SocketAddr, topics: &[(String, i32)]) -> Result<Self, BrokerError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| BrokerError::Listen {
                addr: listen,
                source,
            })?;
        let listen = listener
            .local_addr()
            .map_err(|source| BrokerError::Listen {
                addr: listen,
                source,
            })?;
        let holder: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", "1")
            .set("log_level", "3")
            .create()
            .map_err(|e| BrokerError::Mock(e.to_string()))?;
        let mock = unsafe { rd::rd_kafka_handle_mock_cluster(holder.client().native_ptr()) };
        if mock.is_null() {
            return Err(BrokerError::Mock(
                "librdkafka returned no mock cluster".into(),
            ));
        }
        let bootstraps = unsafe { CStr::from_ptr(rd::rd_kafka_mock_cluster_bootstraps(mock)) }
            .to_string_lossy()
            .into_owned();
        let real: SocketAddr = bootstraps
            .split(',')
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                BrokerError::Mock(format!("unexpected bootstrap address {bootstraps:?}"))
            })?;
        let host = CString::new(listen.ip().to_string()).expect("an IP has no NUL");
        unsafe {
            rd::rd_kafka_mock_broker_set_host_port(
                mock,
                1,
                host.as_ptr(),
                i32::from(listen.port()),
            );
            // The mock waits 3 s before a new group's first assignment; tests and demos need not.
            rd::rd_kafka_mock_group_initial_rebalance_delay_ms(mock, 0);
        }
        let broker = EmbeddedBroker {
            mock: MockPtr(mock),
            listen,
            forwarder: tokio::spawn(forward(listener, real)),
            _holder: holder,
        };
        for (topic, partitions) in topics {
            broker.create_topic(topic, *partitions)?;
        }
        Ok(broker)
    }

    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), BrokerError> {
        let err = |detail: String| BrokerError::Topic {
            topic: topic.to_owned(),
            detail,
        };
        if partitions < 1 {
            return Err(err("the partition count must be at least 1".into()));
        }
        let name = CString::new(topic).map_err(|_| err("contains a NUL byte".into()))?;
        let code =
            unsafe { rd::rd_kafka_mock_topic_create(self.mock.0, name.as_ptr(), partitions, 1) };
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            let msg = unsafe { CStr::from_ptr(rd::rd_kafka_err2str(code)) }
                .to_string_lossy()
                .into_owned();
            return Err(err(msg));
        }
        Ok(())
    }

    /// The address clients use (`bootstrap.servers`).
    pub fn address(&self) -> SocketAddr {
        self.listen
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.forwarder.abort();
    }
}

async fn forward(listener: TcpListener, real: SocketAddr) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = inbound.set_nodelay(true);
            let Ok(mut outbound) = TcpStream::connect(real).await else {
                return;
            };
            let _ = outbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}
