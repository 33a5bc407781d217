//! The libp2p behaviours of a node and the swarm around them.
//!
//! The transport is built by hand because `SwarmBuilder::with_tcp` cannot take a pre-shared
//! key: TCP → private network (the mesh key) → multistream → noise → yamux, with a short
//! set-up timeout (a peer with the wrong key may only fail when it passes). No QUIC: pnet
//! only wraps stream transports, so a QUIC listener would bypass the key.

use std::collections::HashMap;
use std::error::Error;
use std::time::Duration;

use libp2p::core::upgrade::Version;
use libp2p::gossipsub::{self, IdentTopic, PeerScoreParams, PeerScoreThresholds, TopicScoreParams};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    Swarm, SwarmBuilder, Transport as _, allow_block_list, connection_limits, identify, identity, mdns, noise, ping,
    pnet, tcp, yamux,
};

use super::P2pConfig;
use super::codec::{FrameCodec, RPC_PROTOCOL};
use crate::NetError;

/// The one gossip topic: node snapshots.
pub const SNAPSHOT_TOPIC: &str = "mindmesh/snapshot/1";
const IDENTIFY_PROTOCOL: &str = "/mindmesh/id/1.0.0";

#[derive(NetworkBehaviour)]
pub struct MeshBehaviour {
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub limits: connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub gossipsub: gossipsub::Behaviour,
    pub rpc: request_response::Behaviour<FrameCodec>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
}

fn gossipsub(key: &identity::Keypair, cfg: &P2pConfig) -> Result<gossipsub::Behaviour, NetError> {
    let err = |e: String| NetError::Config(format!("gossipsub: {e}"));
    let config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(cfg.gossip_heartbeat)
        // signatures checked, and every message held until the mesh logic validates it
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        // the envelope (signature, key, topic) around the payload
        .max_transmit_size(cfg.max_gossip_bytes + 1024)
        .build()
        .map_err(|e| err(e.to_string()))?;
    let mut behaviour = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
        .map_err(|e| err(e.into()))?;

    let topic = IdentTopic::new(SNAPSHOT_TOPIC);
    // Snapshots come once a second per node: the delivery-rate penalties (P3, P3b) would punish
    // honest quiet peers. Invalid messages (P4) are what we score, squared: a few garbage
    // messages put a peer under the graylist threshold.
    let topic_params = TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 10.0,
        first_message_deliveries_weight: 0.5,
        first_message_deliveries_decay: 0.5,
        first_message_deliveries_cap: 10.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -30.0,
        invalid_message_deliveries_decay: 0.5,
        ..TopicScoreParams::default()
    };
    let params = PeerScoreParams {
        topics: HashMap::from([(topic.hash(), topic_params)]),
        // one private mesh often runs on one host (tests, compose): co-located peers are normal
        ip_colocation_factor_weight: 0.0,
        ..PeerScoreParams::default()
    };
    behaviour.with_peer_score(params, PeerScoreThresholds::default()).map_err(err)?;
    behaviour.subscribe(&topic).map_err(|e| err(e.to_string()))?;
    Ok(behaviour)
}

fn behaviour(key: &identity::Keypair, cfg: &P2pConfig) -> Result<MeshBehaviour, NetError> {
    let peer_id = key.public().to_peer_id();
    let mdns = if cfg.mdns {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                .map_err(|e| NetError::Config(format!("mdns: {e}")))?,
        )
    } else {
        None
    };
    let rpc_config = request_response::Config::default()
        .with_request_timeout(cfg.request_timeout)
        .with_max_concurrent_streams(cfg.max_concurrent_streams);
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(cfg.max_connections))
        .with_max_pending_incoming(Some(cfg.max_connections / 4 + 1))
        .with_max_established_per_peer(Some(4));
    Ok(MeshBehaviour {
        blocked: allow_block_list::Behaviour::default(),
        limits: connection_limits::Behaviour::new(limits),
        identify: identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                .with_agent_version(format!("mindmesh/{}", env!("CARGO_PKG_VERSION")))
                .with_cache_size(0),
        ),
        ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(2))),
        gossipsub: gossipsub(key, cfg)?,
        rpc: request_response::Behaviour::with_codec(
            FrameCodec { max_frame_bytes: cfg.max_rpc_bytes },
            [(RPC_PROTOCOL, ProtocolSupport::Full)],
            rpc_config,
        ),
        mdns: Toggle::from(mdns),
    })
}

/// A swarm that only talks to holders of the mesh key.
pub fn build_swarm(cfg: &P2pConfig) -> Result<Swarm<MeshBehaviour>, NetError> {
    let psk: pnet::PreSharedKey = cfg.mesh_key.psk();
    let connect_timeout = cfg.connect_timeout;
    let transport_err = |e: &dyn std::fmt::Display| NetError::Transport(e.to_string());
    let swarm = SwarmBuilder::with_existing_identity(cfg.keypair.clone())
        .with_tokio()
        .with_other_transport(|key| -> Result<_, Box<dyn Error + Send + Sync>> {
            let noise = noise::Config::new(key)?;
            Ok(tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                .and_then(move |socket, _| pnet::PnetConfig::new(psk).handshake(socket))
                .upgrade(Version::V1Lazy)
                .authenticate(noise)
                .multiplex(yamux::Config::default())
                .timeout(connect_timeout))
        })
        .map_err(|e| transport_err(&e))?
        .with_dns()
        .map_err(|e| transport_err(&e))?
        .with_behaviour(|key| -> Result<_, Box<dyn Error + Send + Sync>> { Ok(behaviour(key, cfg)?) })
        .map_err(|e| transport_err(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(cfg.idle_timeout))
        .build();
    Ok(swarm)
}
