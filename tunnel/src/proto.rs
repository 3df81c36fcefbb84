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
