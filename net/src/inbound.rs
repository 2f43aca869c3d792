//! Inbound streams on one protocol, handed to the swarm's owner as events.
//!
//! `libp2p-stream` delivers inbound streams through a channel of one slot
//! that connection tasks fill with `try_send`: when two connections
//! negotiate a stream before the accept loop runs again, the second stream
//! is dropped and its opener sees "Peer disconnected". Sixteen `ww run`
//! processes started at once lost ten of their connections that way. Here a
//! negotiated stream travels as a connection-handler event instead: the
//! swarm's per-connection event channel is bounded and its connection task
//! waits for room, so a burst of clients queues (with backpressure down to
//! yamux and TCP) rather than being dropped.
//!
//! Outbound streams still go through `libp2p-stream`, whose opening path
//! waits for room instead of dropping.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::ReadyUpgrade;
use libp2p::core::Endpoint;
use libp2p::swarm::handler::{ConnectionEvent, FullyNegotiatedInbound};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol};
use tracing::warn;

pub use crate::limits::{STREAMS_PER_CONNECTION_QUEUED_MAX, STREAMS_QUEUED_MAX};

/// An inbound stream, negotiated on the behaviour's protocol.
#[derive(Debug)]
pub struct InboundStream {
    /// The authenticated peer that opened it.
    pub peer: PeerId,
    /// The stream.
    pub stream: Stream,
}

/// The behaviour: accepts `protocol` on every connection.
pub struct Behaviour {
    protocol: StreamProtocol,
    ready: VecDeque<InboundStream>,
}

impl Behaviour {
    /// Accepts inbound streams on `protocol`.
    pub fn new(protocol: StreamProtocol) -> Self {
        Self {
            protocol,
            ready: VecDeque::new(),
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = InboundStream;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::new(peer, self.protocol.clone()))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::new(peer, self.protocol.clone()))
    }

    fn on_swarm_event(&mut self, _: FromSwarm<'_>) {}

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        _: ConnectionId,
        stream: THandlerOutEvent<Self>,
    ) {
        if self.ready.len() >= STREAMS_QUEUED_MAX {
            warn!(%peer, "refusing an inbound {} stream: {STREAMS_QUEUED_MAX} already queued", self.protocol);
            return;
        }
        self.ready.push_back(InboundStream { peer, stream });
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<InboundStream, THandlerInEvent<Self>>> {
        match self.ready.pop_front() {
            Some(stream) => Poll::Ready(ToSwarm::GenerateEvent(stream)),
            None => Poll::Pending,
        }
    }
}

/// The connection handler: negotiates inbound streams on the protocol and
/// passes each to the behaviour.
pub struct Handler {
    peer: PeerId,
    protocol: StreamProtocol,
    negotiated: VecDeque<Stream>,
}

impl Handler {
    fn new(peer: PeerId, protocol: StreamProtocol) -> Self {
        Self {
            peer,
            protocol,
            negotiated: VecDeque::new(),
        }
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Stream;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = Infallible;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(ReadyUpgrade::new(self.protocol.clone()), ())
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, Infallible, Stream>> {
        match self.negotiated.pop_front() {
            Some(stream) => Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(stream)),
            None => Poll::Pending,
        }
    }

    fn on_behaviour_event(&mut self, event: Infallible) {
        match event {}
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<'_, Self::InboundProtocol, Self::OutboundProtocol, (), Infallible>,
    ) {
        if let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
            protocol: stream,
            ..
        }) = event
        {
            if self.negotiated.len() >= STREAMS_PER_CONNECTION_QUEUED_MAX {
                warn!(peer = %self.peer, "refusing an inbound {} stream: {STREAMS_PER_CONNECTION_QUEUED_MAX} already queued on one connection", self.protocol);
                return;
            }
            self.negotiated.push_back(stream);
        }
    }
}
