//! The server's routing table: which agent carries which dial and
//! connection, and which frontend (an apiserver's stream) waits for it.
//!
//! One lock guards it, held only to look up or change a route, never across
//! an await: packets are sent after the lock is released. Every route has
//! two owners (a frontend and an agent); whichever ends first removes the
//! route and tells the other side, so nothing outlives both.

use std::collections::HashMap;
use std::sync::Mutex;

use rand::Rng;
use tokio::sync::mpsc;
use tonic::Status;

use crate::proto::{Frame, Packet};

/// Where the packets for one frontend stream go (its answer stream).
pub type FrontendTx = mpsc::Sender<Result<Packet, Status>>;
/// Where the packets for one agent go (the server's side of its stream).
pub type AgentTx = mpsc::Sender<Packet>;

/// A stream's number in this process, never reused.
pub type StreamId = u64;

#[derive(Default)]
pub struct Hub {
    routes: Mutex<Routes>,
}

#[derive(Default)]
struct Routes {
    next_stream: StreamId,
    agents: HashMap<StreamId, AgentEntry>,
    /// Dials sent to an agent and not yet answered: (agent, random).
    pending: HashMap<(StreamId, i64), Waiting>,
    /// Open connections: (agent, connect ID).
    conns: HashMap<(StreamId, i64), Waiting>,
    frontends: HashMap<StreamId, FrontendEntry>,
}

struct AgentEntry {
    agent_id: String,
    tx: AgentTx,
    draining: bool,
    /// The hosts (node name, addresses) this agent is the best route to.
    identifiers: Vec<String>,
}

#[derive(Clone)]
struct Waiting {
    frontend: StreamId,
    tx: FrontendTx,
}

#[derive(Default)]
struct FrontendEntry {
    /// The agent each of its dials went to, by random.
    dials: HashMap<i64, StreamId>,
    /// The agent each of its connections runs on, by connect ID.
    conns: HashMap<i64, StreamId>,
}

/// Counts for metrics and for the tests that check nothing leaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub agents: usize,
    pub frontends: usize,
    pub pending_dials: usize,
    pub connections: usize,
}

/// What the frontend should do with a dial request.
pub enum DialRoute {
    /// Send this packet to this agent.
    ToAgent(AgentTx, Packet),
    /// Answer the frontend with this refusal.
    Refused(Frame),
}

/// A packet and who gets it, decided under the lock and sent after.
pub enum Delivery {
    Agent(AgentTx, Packet),
    Frontend(FrontendTx, Packet),
}

impl Hub {
    pub fn counts(&self) -> Counts {
        let routes = self.routes.lock().unwrap();
        Counts {
            agents: routes.agents.len(),
            frontends: routes.frontends.len(),
            pending_dials: routes.pending.len(),
            connections: routes.conns.len(),
        }
    }

    pub fn agent_ids(&self) -> Vec<String> {
        let routes = self.routes.lock().unwrap();
        routes.agents.values().map(|a| a.agent_id.clone()).collect()
    }

    pub fn add_agent(&self, agent_id: &str, identifiers: Vec<String>, tx: AgentTx) -> StreamId {
        let mut routes = self.routes.lock().unwrap();
        routes.next_stream += 1;
        let id = routes.next_stream;
        routes.agents.insert(
            id,
            AgentEntry {
                agent_id: agent_id.to_string(),
                tx,
                draining: false,
                identifiers,
            },
        );
        id
    }

    pub fn add_frontend(&self) -> StreamId {
        let mut routes = self.routes.lock().unwrap();
        routes.next_stream += 1;
        let id = routes.next_stream;
        routes.frontends.insert(id, FrontendEntry::default());
        id
    }

    /// A frontend asks for a dial: picks an agent at random among those
    /// that name the dial's host (a node's own agent for its kubelet), else
    /// among all, preferring agents not draining; records the dial as
    /// pending there.
    pub fn dial(&self, frontend: StreamId, tx: &FrontendTx, request: Frame) -> DialRoute {
        let Frame::DialRequest(dial) = request else {
            unreachable!("dial() takes a dial request")
        };
        let refuse = |why: &str| DialRoute::Refused(Frame::dial_failed(dial.random, why));
        if dial.protocol != "tcp" {
            return refuse("only tcp is carried");
        }
        let mut routes = self.routes.lock().unwrap();
        let Some(agent) = routes.pick_agent(dial_host(&dial.address)) else {
            return refuse("no agent is connected to this server");
        };
        if routes.pending.contains_key(&(agent, dial.random)) {
            return refuse("a dial with this random is already pending");
        }
        let waiting = Waiting {
            frontend,
            tx: tx.clone(),
        };
        routes.pending.insert((agent, dial.random), waiting);
        if let Some(entry) = routes.frontends.get_mut(&frontend) {
            entry.dials.insert(dial.random, agent);
        }
        let agent_tx = routes.agents[&agent].tx.clone();
        DialRoute::ToAgent(agent_tx, Frame::DialRequest(dial).into())
    }

    /// A frontend's packet for a connection or a dial it has: DATA and
    /// CLOSE_REQ by connect ID, DIAL_CLS by random. `None`: it has no such
    /// connection (a late packet), which is dropped.
    pub fn from_frontend(&self, frontend: StreamId, frame: Frame) -> Option<Delivery> {
        let mut routes = self.routes.lock().unwrap();
        let entry = routes.frontends.get_mut(&frontend)?;
        let agent = match &frame {
            Frame::Data(d) => *entry.conns.get(&d.connect_id)?,
            Frame::CloseRequest(c) => *entry.conns.get(&c.connect_id)?,
            Frame::CloseDial(c) => {
                let agent = entry.dials.remove(&c.random)?;
                routes.pending.remove(&(agent, c.random));
                agent
            }
            _ => return None,
        };
        let tx = routes.agents.get(&agent)?.tx.clone();
        Some(Delivery::Agent(tx, frame.into()))
    }

    /// An agent's packet: routed to the frontend that waits for it, with
    /// the routes updated. Packets for routes that are gone are answered
    /// (a late DIAL_RSP's connection is closed) or dropped.
    pub fn from_agent(&self, agent: StreamId, frame: Frame) -> Option<Delivery> {
        let mut routes = self.routes.lock().unwrap();
        match frame {
            Frame::DialResponse(rsp) => {
                let Some(waiting) = routes.pending.remove(&(agent, rsp.random)) else {
                    if rsp.error.is_empty() {
                        // Nobody waits any more: close what the agent opened.
                        let tx = routes.agents.get(&agent)?.tx.clone();
                        let close = Frame::CloseRequest(crate::proto::CloseRequest {
                            connect_id: rsp.connect_id,
                        });
                        return Some(Delivery::Agent(tx, close.into()));
                    }
                    return None;
                };
                let frontend = routes.frontends.get_mut(&waiting.frontend)?;
                frontend.dials.remove(&rsp.random);
                if rsp.error.is_empty() {
                    if frontend.conns.contains_key(&rsp.connect_id) {
                        // Two agents gave one frontend the same connect ID:
                        // refuse the second rather than cross the streams.
                        let tx = routes.agents.get(&agent)?.tx.clone();
                        let close = Frame::CloseRequest(crate::proto::CloseRequest {
                            connect_id: rsp.connect_id,
                        });
                        let _ = waiting.tx.try_send(Ok(Frame::dial_failed(
                            rsp.random,
                            "connect ID already in use on this stream",
                        )
                        .into()));
                        return Some(Delivery::Agent(tx, close.into()));
                    }
                    frontend.conns.insert(rsp.connect_id, agent);
                    routes
                        .conns
                        .insert((agent, rsp.connect_id), waiting.clone());
                }
                Some(Delivery::Frontend(
                    waiting.tx,
                    Frame::DialResponse(rsp).into(),
                ))
            }
            Frame::Data(data) => {
                let waiting = routes.conns.get(&(agent, data.connect_id))?;
                Some(Delivery::Frontend(
                    waiting.tx.clone(),
                    Frame::Data(data).into(),
                ))
            }
            Frame::CloseResponse(close) => {
                let waiting = routes.conns.remove(&(agent, close.connect_id))?;
                if let Some(frontend) = routes.frontends.get_mut(&waiting.frontend) {
                    frontend.conns.remove(&close.connect_id);
                }
                Some(Delivery::Frontend(
                    waiting.tx,
                    Frame::CloseResponse(close).into(),
                ))
            }
            Frame::CloseDial(cls) => {
                let waiting = routes.pending.remove(&(agent, cls.random))?;
                if let Some(frontend) = routes.frontends.get_mut(&waiting.frontend) {
                    frontend.dials.remove(&cls.random);
                }
                Some(Delivery::Frontend(waiting.tx, Frame::CloseDial(cls).into()))
            }
            Frame::Drain => {
                if let Some(entry) = routes.agents.get_mut(&agent) {
                    entry.draining = true;
                }
                None
            }
            Frame::DialRequest(_) | Frame::CloseRequest(_) => None,
        }
    }

    /// Ends one connection whose frontend cannot take its packets: the
    /// agent closes it, and the route goes.
    pub fn abandon_connection(&self, agent: StreamId, connect_id: i64) -> Option<Delivery> {
        let mut routes = self.routes.lock().unwrap();
        let waiting = routes.conns.remove(&(agent, connect_id))?;
        if let Some(frontend) = routes.frontends.get_mut(&waiting.frontend) {
            frontend.conns.remove(&connect_id);
        }
        let tx = routes.agents.get(&agent)?.tx.clone();
        let close = Frame::CloseRequest(crate::proto::CloseRequest { connect_id });
        Some(Delivery::Agent(tx, close.into()))
    }

    /// A frontend's connection whose data the agent did not take: the agent
    /// closes it and the frontend is told, so no byte is silently lost.
    pub fn fail_connection(&self, frontend: StreamId, connect_id: i64) -> Vec<Delivery> {
        let mut routes = self.routes.lock().unwrap();
        let Some(agent) = routes
            .frontends
            .get_mut(&frontend)
            .and_then(|f| f.conns.remove(&connect_id))
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(waiting) = routes.conns.remove(&(agent, connect_id)) {
            let close = Frame::close_response(connect_id, "the agent did not take the data");
            out.push(Delivery::Frontend(waiting.tx, close.into()));
        }
        if let Some(a) = routes.agents.get(&agent) {
            let close = Frame::CloseRequest(crate::proto::CloseRequest { connect_id });
            out.push(Delivery::Agent(a.tx.clone(), close.into()));
        }
        out
    }

    /// A frontend's stream ended: its agents close what it had open and
    /// forget what it was dialing.
    pub fn remove_frontend(&self, frontend: StreamId) -> Vec<Delivery> {
        let mut routes = self.routes.lock().unwrap();
        let Some(entry) = routes.frontends.remove(&frontend) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (random, agent) in entry.dials {
            routes.pending.remove(&(agent, random));
            if let Some(a) = routes.agents.get(&agent) {
                let cls = Frame::CloseDial(crate::proto::CloseDial { random });
                out.push(Delivery::Agent(a.tx.clone(), cls.into()));
            }
        }
        for (connect_id, agent) in entry.conns {
            routes.conns.remove(&(agent, connect_id));
            if let Some(a) = routes.agents.get(&agent) {
                let close = Frame::CloseRequest(crate::proto::CloseRequest { connect_id });
                out.push(Delivery::Agent(a.tx.clone(), close.into()));
            }
        }
        out
    }

    /// An agent's stream ended: every frontend that used it learns that its
    /// dial or connection is gone.
    pub fn remove_agent(&self, agent: StreamId) -> Vec<Delivery> {
        let mut routes = self.routes.lock().unwrap();
        routes.agents.remove(&agent);
        let pending: Vec<_> = routes
            .pending
            .keys()
            .filter(|(a, _)| *a == agent)
            .copied()
            .collect();
        let conns: Vec<_> = routes
            .conns
            .keys()
            .filter(|(a, _)| *a == agent)
            .copied()
            .collect();
        let mut out = Vec::new();
        for key in pending {
            let waiting = routes.pending.remove(&key).expect("listed");
            if let Some(f) = routes.frontends.get_mut(&waiting.frontend) {
                f.dials.remove(&key.1);
            }
            let cls = Frame::CloseDial(crate::proto::CloseDial { random: key.1 });
            out.push(Delivery::Frontend(waiting.tx, cls.into()));
        }
        for key in conns {
            let waiting = routes.conns.remove(&key).expect("listed");
            if let Some(f) = routes.frontends.get_mut(&waiting.frontend) {
                f.conns.remove(&key.1);
            }
            let close =
                Frame::close_response(key.1, "the agent carrying this connection went away");
            out.push(Delivery::Frontend(waiting.tx, close.into()));
        }
        out
    }
}

/// The host of `host:port` or `[v6]:port`, as agents name themselves.
fn dial_host(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

impl Routes {
    fn pick_agent(&self, host: &str) -> Option<StreamId> {
        let of = |want: &dyn Fn(&AgentEntry) -> bool| -> Vec<StreamId> {
            let mut ids: Vec<StreamId> = self
                .agents
                .iter()
                .filter(|(_, a)| want(a))
                .map(|(id, _)| *id)
                .collect();
            ids.sort_unstable();
            ids
        };
        let names_host = |a: &AgentEntry| a.identifiers.iter().any(|i| i == host);
        let candidates = [
            of(&|a| !a.draining && names_host(a)),
            of(&|a| names_host(a)),
            of(&|a| !a.draining),
            of(&|_| true),
        ]
        .into_iter()
        .find(|ids| !ids.is_empty())
        .unwrap_or_default();
        if candidates.is_empty() {
            return None;
        }
        let pick = rand::rng().random_range(0..candidates.len());
        Some(candidates[pick])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{DialRequest, DialResponse};

    fn dial(random: i64, address: &str) -> Frame {
        Frame::DialRequest(DialRequest {
            protocol: "tcp".into(),
            address: address.into(),
            random,
        })
    }

    fn agent(hub: &Hub, id: &str, identifiers: &[&str]) -> (StreamId, mpsc::Receiver<Packet>) {
        let (tx, rx) = mpsc::channel(8);
        let ids = identifiers.iter().map(|s| s.to_string()).collect();
        (hub.add_agent(id, ids, tx), rx)
    }

    #[test]
    fn a_dial_to_a_nodes_address_goes_to_that_nodes_agent() {
        let hub = Hub::default();
        let (_a, mut rx_a) = agent(&hub, "a", &["worker-a", "10.0.0.1"]);
        let (_b, mut rx_b) = agent(&hub, "b", &["worker-b", "10.0.0.2"]);
        let (tx, _rx) = mpsc::channel(8);
        let frontend = hub.add_frontend();
        for random in 1..=20 {
            let DialRoute::ToAgent(agent_tx, packet) =
                hub.dial(frontend, &tx, dial(random, "10.0.0.2:10250"))
            else {
                panic!("refused");
            };
            agent_tx.try_send(packet).unwrap();
            assert!(rx_b.try_recv().is_ok(), "dial {random} went elsewhere");
            assert!(rx_a.try_recv().is_err());
        }
        // [v6]:port and names match too.
        let (_c, mut rx_c) = agent(&hub, "c", &["fd00::3"]);
        let DialRoute::ToAgent(agent_tx, packet) =
            hub.dial(frontend, &tx, dial(99, "[fd00::3]:10250"))
        else {
            panic!("refused");
        };
        agent_tx.try_send(packet).unwrap();
        assert!(rx_c.try_recv().is_ok());
    }

    #[test]
    fn routes_are_freed_by_whichever_side_ends_first() {
        let hub = Hub::default();
        let (a, _rx) = agent(&hub, "a", &[]);
        let (tx, _frx) = mpsc::channel(8);
        let frontend = hub.add_frontend();
        let DialRoute::ToAgent(..) = hub.dial(frontend, &tx, dial(7, "10.1.1.1:443")) else {
            panic!("refused");
        };
        let rsp = Frame::DialResponse(DialResponse {
            error: String::new(),
            connect_id: 3,
            random: 7,
        });
        assert!(matches!(
            hub.from_agent(a, rsp),
            Some(Delivery::Frontend(..))
        ));
        assert_eq!(hub.counts().connections, 1);
        // The agent goes: the frontend is told, and nothing is left.
        let told = hub.remove_agent(a);
        assert_eq!(told.len(), 1);
        assert_eq!(
            hub.counts(),
            Counts {
                agents: 0,
                frontends: 1,
                pending_dials: 0,
                connections: 0
            }
        );
        assert!(hub.remove_frontend(frontend).is_empty());
        assert_eq!(hub.counts(), Counts::default());
    }

    #[test]
    fn without_agents_a_dial_is_refused_with_a_reason() {
        let hub = Hub::default();
        let (tx, _rx) = mpsc::channel(8);
        let frontend = hub.add_frontend();
        let DialRoute::Refused(Frame::DialResponse(rsp)) =
            hub.dial(frontend, &tx, dial(1, "10.0.0.1:10250"))
        else {
            panic!("not refused");
        };
        assert_eq!(rsp.random, 1);
        assert!(rsp.error.contains("no agent"), "{}", rsp.error);
    }
}
