//! The konnectivity protocol's messages, as kube-apiserver's konnectivity
//! client (`sigs.k8s.io/apiserver-network-proxy/konnectivity-client`, the
//! served module) encodes them: one `Packet` type on both gRPC services.
//! Field numbers and enum values are the protocol's facts; the definitions
//! are written here with prost's derive, so no protoc is needed.

/// gRPC path of the service the apiserver calls (over the Unix socket).
pub const PROXY_PATH: &str = "/ProxyService/Proxy";
/// gRPC path of the service agents call (over TLS from the tenant network).
pub const AGENT_PATH: &str = "/AgentService/Connect";

/// Stream metadata an agent sends: its identity.
pub const HEADER_AGENT_ID: &str = "agentid";
/// Stream metadata an agent sends: the addresses and names it is the best
/// route to (its node), as upstream encodes them: `host=NAME&ipv4=ADDR`.
pub const HEADER_AGENT_IDENTIFIERS: &str = "agentidentifiers";

/// Encodes identifiers as a URL query (keys in order), as upstream does.
pub fn encode_identifiers(pairs: &[(&str, &str)]) -> String {
    let mut sorted: Vec<_> = pairs.iter().filter(|(_, v)| !v.is_empty()).collect();
    sorted.sort();
    sorted
        .iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The values of `host`, `ipv4` and `ipv6` in an identifiers header: what a
/// dial's host is matched against. Anything malformed is skipped.
pub fn decode_identifiers(header: &str) -> Vec<String> {
    header
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| matches!(*k, "host" | "ipv4" | "ipv6"))
        .filter_map(|(_, v)| unescape(v))
        .filter(|v| !v.is_empty() && v.len() <= 253)
        .collect()
}

fn escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Stream metadata a server answers with: its identity and how many servers
/// there are, so that an agent keeps one stream to each.
pub const HEADER_SERVER_ID: &str = "serverid";
pub const HEADER_SERVER_COUNT: &str = "servercount";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PacketType {
    DialReq = 0,
    DialRsp = 1,
    CloseReq = 2,
    CloseRsp = 3,
    Data = 4,
    DialCls = 5,
    Drain = 6,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Packet {
    #[prost(enumeration = "PacketType", tag = "1")]
    pub r#type: i32,
    #[prost(oneof = "Payload", tags = "2, 3, 4, 5, 6, 7, 8")]
    pub payload: Option<Payload>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Payload {
    #[prost(message, tag = "2")]
    DialRequest(DialRequest),
    #[prost(message, tag = "3")]
    DialResponse(DialResponse),
    #[prost(message, tag = "4")]
    Data(Data),
    #[prost(message, tag = "5")]
    CloseRequest(CloseRequest),
    #[prost(message, tag = "6")]
    CloseResponse(CloseResponse),
    #[prost(message, tag = "7")]
    CloseDial(CloseDial),
    #[prost(message, tag = "8")]
    Drain(Drain),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DialRequest {
    /// "tcp" is the only protocol kube-apiserver asks for.
    #[prost(string, tag = "1")]
    pub protocol: String,
    /// host:port
    #[prost(string, tag = "2")]
    pub address: String,
    /// The dialer's identifier of this dial, echoed in the response.
    #[prost(int64, tag = "3")]
    pub random: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DialResponse {
    #[prost(string, tag = "1")]
    pub error: String,
    /// The connection's identifier, chosen by the agent that dialed.
    #[prost(int64, tag = "2")]
    pub connect_id: i64,
    #[prost(int64, tag = "3")]
    pub random: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CloseRequest {
    #[prost(int64, tag = "1")]
    pub connect_id: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CloseResponse {
    #[prost(string, tag = "1")]
    pub error: String,
    #[prost(int64, tag = "2")]
    pub connect_id: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CloseDial {
    #[prost(int64, tag = "1")]
    pub random: i64,
}

/// An agent's hint that it is about to stop: new dials go elsewhere.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Drain {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Data {
    #[prost(int64, tag = "1")]
    pub connect_id: i64,
    #[prost(string, tag = "2")]
    pub error: String,
    #[prost(bytes = "bytes", tag = "3")]
    pub data: bytes::Bytes,
}

/// A packet as the two ends use it: the type and its payload agree.
/// Anything else (a type without its payload, a payload under another type,
/// an unknown type) is malformed and ends the stream that sent it.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    DialRequest(DialRequest),
    DialResponse(DialResponse),
    Data(Data),
    CloseRequest(CloseRequest),
    CloseResponse(CloseResponse),
    CloseDial(CloseDial),
    Drain,
}

/// Why a packet was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed packet: {0}")]
pub struct Malformed(pub &'static str);

impl TryFrom<Packet> for Frame {
    type Error = Malformed;

    fn try_from(packet: Packet) -> Result<Self, Malformed> {
        let kind = PacketType::try_from(packet.r#type).map_err(|_| Malformed("unknown type"))?;
        let frame = match (kind, packet.payload) {
            (PacketType::DialReq, Some(Payload::DialRequest(p))) => Frame::DialRequest(p),
            (PacketType::DialRsp, Some(Payload::DialResponse(p))) => Frame::DialResponse(p),
            (PacketType::Data, Some(Payload::Data(p))) => Frame::Data(p),
            (PacketType::CloseReq, Some(Payload::CloseRequest(p))) => Frame::CloseRequest(p),
            (PacketType::CloseRsp, Some(Payload::CloseResponse(p))) => Frame::CloseResponse(p),
            (PacketType::DialCls, Some(Payload::CloseDial(p))) => Frame::CloseDial(p),
            (PacketType::Drain, _) => Frame::Drain,
            _ => return Err(Malformed("the payload does not match the type")),
        };
        Ok(frame)
    }
}

impl From<Frame> for Packet {
    fn from(frame: Frame) -> Packet {
        let (kind, payload) = match frame {
            Frame::DialRequest(p) => (PacketType::DialReq, Payload::DialRequest(p)),
            Frame::DialResponse(p) => (PacketType::DialRsp, Payload::DialResponse(p)),
            Frame::Data(p) => (PacketType::Data, Payload::Data(p)),
            Frame::CloseRequest(p) => (PacketType::CloseReq, Payload::CloseRequest(p)),
            Frame::CloseResponse(p) => (PacketType::CloseRsp, Payload::CloseResponse(p)),
            Frame::CloseDial(p) => (PacketType::DialCls, Payload::CloseDial(p)),
            Frame::Drain => (PacketType::Drain, Payload::Drain(Drain {})),
        };
        Packet {
            r#type: kind as i32,
            payload: Some(payload),
        }
    }
}

impl Frame {
    pub fn data(connect_id: i64, data: bytes::Bytes) -> Frame {
        Frame::Data(Data {
            connect_id,
            error: String::new(),
            data,
        })
    }

    pub fn close_response(connect_id: i64, error: impl Into<String>) -> Frame {
        Frame::CloseResponse(CloseResponse {
            error: error.into(),
            connect_id,
        })
    }

    pub fn dial_failed(random: i64, error: impl Into<String>) -> Frame {
        Frame::DialResponse(DialResponse {
            error: error.into(),
            connect_id: 0,
            random,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Bytes as the Go client encodes a DIAL_REQ for "10.0.0.1:10250" with
    /// random 7 (field 1 = 0 is omitted by proto3; field 2 = message).
    #[test]
    fn a_dial_request_has_the_wire_form_of_the_go_client() {
        let packet: Packet = Frame::DialRequest(DialRequest {
            protocol: "tcp".into(),
            address: "10.0.0.1:10250".into(),
            random: 7,
        })
        .into();
        let bytes = packet.encode_to_vec();
        let mut expected = vec![0x12, 23, 0x0a, 3];
        expected.extend_from_slice(b"tcp");
        expected.extend_from_slice(&[0x12, 14]);
        expected.extend_from_slice(b"10.0.0.1:10250");
        expected.extend_from_slice(&[0x18, 7]);
        assert_eq!(bytes, expected);
        let back = Frame::try_from(Packet::decode(bytes.as_slice()).unwrap()).unwrap();
        assert!(matches!(back, Frame::DialRequest(d) if d.random == 7));
    }

    #[test]
    fn identifiers_round_trip_as_a_query() {
        let header = encode_identifiers(&[
            ("ipv4", "10.0.0.5"),
            ("host", "worker-0"),
            ("ipv6", "fd00::5"),
        ]);
        assert_eq!(header, "host=worker-0&ipv4=10.0.0.5&ipv6=fd00%3A%3A5");
        assert_eq!(
            decode_identifiers(&header),
            ["worker-0", "10.0.0.5", "fd00::5"]
        );
        assert_eq!(
            decode_identifiers("host=%zz&cidr=10.0.0.0/8&ipv4=1.2.3.4"),
            ["1.2.3.4"]
        );
    }

    #[test]
    fn a_type_without_its_payload_is_malformed() {
        let packet = Packet {
            r#type: PacketType::Data as i32,
            payload: None,
        };
        assert!(Frame::try_from(packet).is_err());
        let unknown = Packet {
            r#type: 99,
            payload: None,
        };
        assert_eq!(Frame::try_from(unknown), Err(Malformed("unknown type")));
    }
}

#[cfg(test)]
mod hostile {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;

    proptest! {
        /// Any bytes a peer sends decode to a packet or an error, and any
        /// packet to a frame or `Malformed`: never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(packet) = Packet::decode(bytes.as_slice()) {
                let _ = Frame::try_from(packet);
            }
        }

        /// Every well-formed frame survives the wire unchanged.
        #[test]
        fn frames_round_trip(connect_id in any::<i64>(), random in any::<i64>(), data in proptest::collection::vec(any::<u8>(), 0..256), text in ".{0,40}") {
            for frame in [
                Frame::data(connect_id, data.clone().into()),
                Frame::close_response(connect_id, text.clone()),
                Frame::dial_failed(random, text.clone()),
                Frame::DialRequest(DialRequest { protocol: "tcp".into(), address: text.clone(), random }),
                Frame::CloseRequest(CloseRequest { connect_id }),
                Frame::CloseDial(CloseDial { random }),
                Frame::Drain,
            ] {
                let bytes = Packet::from(frame.clone()).encode_to_vec();
                let back = Frame::try_from(Packet::decode(bytes.as_slice()).unwrap()).unwrap();
                prop_assert_eq!(back, frame);
            }
        }
    }
}
